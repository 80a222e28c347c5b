"""``benchmarks/notfound.py --quick`` runs and prints a figure per pass and layout, or says
why it was skipped (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Runs a benchmark script (quick mode); once per CI run, not in the fast subset.
pytestmark = [pytest.mark.slow, pytest.mark.benchmark]

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(300)
def test_quick_notfound_benchmark_runs() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "notfound.py"), "--quick"],
                          capture_output=True, text=True, timeout=240, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    if "skipped:" in done.stdout:
        return
    lines = [line for line in done.stdout.splitlines() if line.startswith("notfound (")]
    assert len(lines) == 4, done.stdout
    assert all("answers/s" in line and "p99" in line for line in lines), done.stdout
