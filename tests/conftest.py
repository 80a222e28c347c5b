"""Hypothesis profiles: ``ci`` (thorough, reproducible) and ``default`` (quick local runs).

Select one with the ``HYPOTHESIS_PROFILE`` environment variable (``.ci/run`` sets
``ci``; README's command runs ``default``).  A property test without a budget of its
own runs hypothesis's usual 100 examples under both; the others state their two
budgets with ``strategies.examples(ci=..., default=...)`` (or ``CONFIG_EXAMPLES`` /
``PROPERTY_EXAMPLES``), which follow the same variable.  ``--property-budgets``
(with ``--collect-only -p no:xdist``) lists them; CONTRIBUTING.md has the table.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("default", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# Real servers (Redis, NSD + Unbound, HTTPS) for the discovery and store tests.
pytest_plugins = ["discovery_support"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--property-budgets", action="store_true",
                     help="print every property test's example budget under the hypothesis "
                     "profile in force (with --collect-only -p no:xdist)")


def pytest_collection_finish(session: pytest.Session) -> None:
    if not session.config.getoption("--property-budgets"):
        return
    seen: set[str] = set()
    for item in session.items:
        function = getattr(item, "obj", None)
        budget = getattr(function, "_hypothesis_internal_use_settings", None)
        if budget is None or not getattr(function, "is_hypothesis_test", False):
            continue
        name = item.nodeid.split("[", 1)[0]
        if name not in seen:
            seen.add(name)
            print(f"{name} {budget.max_examples}")
