"""The benchmarks run: ``benchmarks/run.py --quick`` exits 0 and prints every figure.

No timing is asserted anywhere: timings depend on the machine.  This test only
guards against the benchmark script rotting as the library changes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Runs a benchmark script (quick mode); once per CI run, not in the fast subset.
pytestmark = [pytest.mark.slow, pytest.mark.benchmark]

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "run.py"

FIGURES = (
    "warm-resolve",
    "scale-warm-small", "scale-warm-mid", "scale-warm-large",
    "scale-cold-small", "scale-cold-mid", "scale-cold-large",
    "regex-hit", "regex-miss",
    "compile",
    "memory",
    "socketmap",
    "socketmap-pinned-same", "socketmap-pinned-different",
    "footprint",
)


def test_quick_benchmarks_print_every_figure() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True,
                          text=True, timeout=240, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    printed = {line.split(":", 1)[0] for line in done.stdout.splitlines() if ":" in line}
    missing = [name for name in FIGURES if name not in printed]
    assert not missing, f"figures not printed: {missing}\n{done.stdout}"
    assert "machine:" in done.stdout


def test_quick_diff_benchmark_runs_and_agrees() -> None:
    script = ROOT / "benchmarks" / "diff_scale.py"
    done = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True,
                          text=True, timeout=240, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert "diff-fast:" in done.stdout and "diff-exhaustive:" in done.stdout
    assert "same changes: yes" in done.stdout
