"""``benchmarks/peer_discovery.py --quick`` runs and prints its figures, or says why it was
skipped (no postmap, pip, network, ``unshare`` or port 53).  No timing is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Runs a benchmark script (quick mode); once per CI run, not in the fast subset.
pytestmark = [pytest.mark.slow, pytest.mark.benchmark]

ROOT = Path(__file__).resolve().parent.parent
FIGURES = tuple(f"peer-discovery-{mode}-{layout}" for mode in ("working", "servfail")
                for layout in ("same", "different"))


@pytest.mark.timeout(600)
def test_quick_peer_discovery_benchmark_prints_its_figures() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "peer_discovery.py"),
                           "--quick"], capture_output=True, text=True, timeout=540, cwd=ROOT,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    if "skipped:" in done.stdout:
        pytest.skip(done.stdout.strip().splitlines()[-1])
    printed = {line.split(":", 1)[0] for line in done.stdout.splitlines() if ":" in line}
    missing = [name for name in FIGURES if name not in printed]
    assert not missing, f"figures not printed: {missing}\n{done.stdout}"
    for line in done.stdout.splitlines():
        if line.startswith("peer-discovery-"):
            assert "answers/s" in line and "RSS after all passes" in line, line
    assert "import:" in done.stdout
