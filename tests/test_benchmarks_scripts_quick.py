"""``benchmarks/memory.py``, ``tlsrpt.py``, ``store.py`` and ``refresh_pass.py`` with
``--quick`` run and print every figure (no byte count or timing asserted: they depend on
the machine and the Python version)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Runs a benchmark script (quick mode); once per CI run, not in the fast subset.
pytestmark = [pytest.mark.slow, pytest.mark.benchmark]

ROOT = Path(__file__).resolve().parent.parent

#: Each script, the figures it prints, and any other line it must print.
SCRIPTS = {
    "memory.py": (("cached-policy-distinct", "cached-policy-provider", "cached-policy-lru",
                   "fetch", "fetch-discovery"), ("machine",)),
    "tlsrpt.py": (("record", "record-sink", "aggregate", "aggregate-memory",
                   "aggregate-pure"), ()),
    "store.py": (("store-get", "store-set"), ()),
    "refresh_pass.py": (("refresh-pass-evicted",), ()),
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_quick_benchmark_prints_every_figure(script: str) -> None:
    figures, also = SCRIPTS[script]
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick"],
                          capture_output=True, text=True, timeout=240, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    printed = {line.split(":", 1)[0] for line in done.stdout.splitlines() if ":" in line}
    assert not [f for f in (*figures, *also) if f not in printed], done.stdout
