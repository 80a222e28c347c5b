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


#: A module holding a property test with at least this CI budget is started first.
LONG_BUDGET = 1000


def _budget(item: pytest.Item) -> int:
    """A property test's example budget under the profile in force; 0 for other tests."""
    function = getattr(item, "obj", None)
    budget = getattr(function, "_hypothesis_internal_use_settings", None)
    if budget is None or not getattr(function, "is_hypothesis_test", False):
        return 0
    return int(budget.max_examples)


def _longest_first(items: list[pytest.Item]) -> None:
    """Put the modules likely to take longest first, each module's tests still together.

    pytest-xdist hands the tests out in collection order (after the ``xdist_group``
    groups), so a test of several minutes collected late (the largest property tests take
    minutes under the ``ci`` profile) kept one worker busy while the other, out of work,
    waited.  First the modules with a property test of ``LONG_BUDGET`` examples or more,
    the largest budget first; then the modules marked ``slow`` (real servers, benchmarks);
    then the rest, each part in collection order.
    """
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:  # by file: a module's classes stay with its functions
        modules.setdefault(item.nodeid.split("::", 1)[0], []).append(item)

    def rank(tests: list[pytest.Item]) -> tuple[int, int]:
        largest = max(_budget(test) for test in tests)
        if largest >= LONG_BUDGET:
            return 0, -largest
        if any(test.get_closest_marker("slow") for test in tests):
            return 1, 0
        return 2, 0

    ordered = sorted(modules.values(), key=rank)  # stable: collection order within a rank
    items[:] = [item for tests in ordered for item in tests]


def _restore_xdist_groups(items: list[pytest.Item]) -> None:
    """Keep ``xdist_group`` working under ``--dist loadgroup`` on every pytest.

    pytest-xdist tells its scheduler an item's group by appending ``@GROUP`` to the item's
    node id on the worker, through an attribute pytest 9.2 no longer reads (node ids became
    structured; pytest-xdist issue 1386).  There every grouped test is scheduled alone: a
    module-scoped lab or browser is then built on every worker that runs one of its tests.
    Where the suffix is missing, this sets it through the structured id; where pytest-xdist
    set it, this does nothing.
    """
    for item in items:
        groups = {str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                  for mark in item.iter_markers("xdist_group")}
        if not groups:
            continue
        suffix = "@" + "_".join(sorted(groups))
        parse = getattr(type(getattr(item, "_id", None)), "parse", None)
        if item.nodeid.endswith(suffix) or parse is None:
            continue
        item._id = parse(item.nodeid + suffix)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On pytest-xdist's workers only: the order and groups the scheduler works from.

    A run without ``-n`` keeps pytest's own order.
    """
    if not hasattr(config, "workerinput"):
        return
    _longest_first(items)
    if getattr(config.option, "loadgroup", False):
        _restore_xdist_groups(items)


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
