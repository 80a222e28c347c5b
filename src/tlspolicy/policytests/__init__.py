"""Policy tests for operators: expectation files, their runner and the scope tree.

- :mod:`tlspolicy.policytests.expectations` reads expectation files (TOML lists of
  cases: a delivery request and the parts of the decision it must produce).
- :mod:`tlspolicy.policytests.runner` runs them against a configuration and
  renders failure reports and JUnit XML.
- :mod:`tlspolicy.policytests.tree` renders a configuration's scope tree.
- :mod:`tlspolicy.policytests.plugin` is a pytest plugin that collects
  expectation files as test items (imported by pytest only, never from here,
  so that pytest stays a test-time dependency).
- :mod:`tlspolicy.cli.policytests` adds the ``test``, ``diff`` and ``tree``
  commands to the ``tlspolicy`` command line.

The configuration diff these commands use is the core's :mod:`tlspolicy.diff`; the
expiry rules are :mod:`tlspolicy.expiry`; shadow evaluation is
:mod:`tlspolicy.servers.shadow`.
"""

from __future__ import annotations

from .expectations import (
    Case,
    ExpectationError,
    ExpectationFile,
    ExpectedOutcome,
)
from .reader import load_expectations, loads_expectations
from .runner import CaseResult, Mismatch, format_failure, format_report, junit_xml, run_case
from .tree import render_tree

__all__ = [
    "Case",
    "CaseResult",
    "ExpectationError",
    "ExpectationFile",
    "ExpectedOutcome",
    "Mismatch",
    "format_failure",
    "format_report",
    "junit_xml",
    "load_expectations",
    "loads_expectations",
    "render_tree",
    "run_case",
]
