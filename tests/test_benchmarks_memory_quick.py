"""``benchmarks/memory.py --quick`` runs and prints every figure (no byte count or timing
asserted: they depend on the machine and the Python version)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Runs a benchmark script (quick mode); once per CI run, not in the fast subset.
pytestmark = [pytest.mark.slow, pytest.mark.benchmark]

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ("cached-policy-distinct", "cached-policy-provider", "cached-policy-lru", "fetch",
           "fetch-discovery")


@pytest.mark.timeout(300)
def test_quick_memory_benchmark_prints_every_figure() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "memory.py"), "--quick"],
                          capture_output=True, text=True, timeout=240, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    printed = {line.split(":", 1)[0] for line in done.stdout.splitlines() if ":" in line}
    assert not [f for f in FIGURES if f not in printed], done.stdout
    assert "machine:" in done.stdout
