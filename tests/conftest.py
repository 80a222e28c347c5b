"""Hypothesis profiles: ``ci`` (thorough, reproducible) and ``default`` (quick local runs).

Select one with the ``HYPOTHESIS_PROFILE`` environment variable.  The ``ci``
profile keeps hypothesis's usual example count for ordinary property tests;
the configuration properties read their larger count from
``tests/strategies.py`` (``CONFIG_EXAMPLES``), which follows the same variable.
"""

from __future__ import annotations

import os

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
