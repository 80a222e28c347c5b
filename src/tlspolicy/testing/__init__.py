"""Policy tests for operators: expectation files, configuration diffs and the scope tree.

- :mod:`tlspolicy.testing.expectations` reads expectation files (TOML lists of
  cases: a delivery request and the parts of the decision it must produce).
- :mod:`tlspolicy.testing.runner` runs them against a configuration and
  renders failure reports and JUnit XML.
- :mod:`tlspolicy.testing.diff` compares two configurations decision by
  decision and classes every change as downgrade, upgrade, neutral or review.
- :mod:`tlspolicy.testing.tree` renders a configuration's scope tree.
- :mod:`tlspolicy.testing.expiry` finds expiries that would weaken a decision
  and lists expiring stanzas.
- :mod:`tlspolicy.testing.shadow` runs a candidate configuration beside the
  live one and counts the differences (:class:`ShadowResolver`).
- :mod:`tlspolicy.testing.plugin` is a pytest plugin that collects
  expectation files as test items (imported by pytest only, never from here,
  so that pytest stays a test-time dependency).
- :mod:`tlspolicy.cli.policytests` adds the ``test``, ``diff`` and ``tree``
  commands to the ``tlspolicy`` command line.
"""

from __future__ import annotations

from .diff import Change, ChangeClass, ConfigDiff, Probe, diff_configs
from .expectations import (
    Case,
    ExpectationError,
    ExpectationFile,
    ExpectedOutcome,
    load_expectations,
    loads_expectations,
)
from .expiry import ExpiringStanza, exceptions, expiry_errors
from .runner import CaseResult, Mismatch, format_failure, format_report, junit_xml, run_case
from .shadow import ShadowCounts, ShadowResolver
from .tree import render_tree

__all__ = [
    "Case",
    "CaseResult",
    "Change",
    "ChangeClass",
    "ConfigDiff",
    "ExpectationError",
    "ExpectationFile",
    "ExpectedOutcome",
    "ExpiringStanza",
    "Mismatch",
    "Probe",
    "ShadowCounts",
    "ShadowResolver",
    "diff_configs",
    "exceptions",
    "expiry_errors",
    "format_failure",
    "format_report",
    "junit_xml",
    "load_expectations",
    "loads_expectations",
    "render_tree",
    "run_case",
]
