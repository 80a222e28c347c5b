"""Hostile-input tests: every probe is bounded in time and touches loopback only."""

from __future__ import annotations

import os
import sys

# The probes share the helpers of the parent test directory.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
