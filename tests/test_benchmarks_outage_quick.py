"""``benchmarks/outage.py --quick`` runs, prints its figure and finds the answers the same
with and without the DNS failure backoff (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Runs a benchmark script (quick mode); once per CI run, not in the fast subset.
pytestmark = [pytest.mark.slow, pytest.mark.benchmark]

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_quick_outage_benchmark_runs_and_answers_agree() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "outage.py"), "--quick"],
                          capture_output=True, text=True, timeout=240, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "outage:" in done.stdout and "answers the same: yes" in done.stdout, done.stdout
