"""SQLite store figures: one entry's read and write on the event loop's thread, against the
same operation sent to a worker thread and back (what every operation cost before).

Run ``python benchmarks/store.py`` (full) or ``--quick`` (few operations; checks the script
works).  Each figure is the median of several samples, candidate and baseline alternating in
the same run, with wall time and the process's CPU time (all threads) per operation.

store-get
    ``SqliteStore.get`` of an entry of 340 bytes in a file of 2,000 such entries, against the
    same ``SELECT`` run by ``loop.run_in_executor`` on a one-thread executor with its own
    connection (the worker's trip).
store-set
    ``SqliteStore.set`` of such an entry, against the same ``INSERT OR REPLACE`` on the
    worker.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from tlspolicy.stores import SqliteStore  # noqa: E402

_VALUE = b"x" * 340
_ENTRIES = 2000
_GET = ("SELECT value, expires_at FROM entries WHERE namespace=? AND key=? "
        "AND (expires_at IS NULL OR expires_at > ?)")


async def _sample(operation: Callable[[int], Awaitable[object]], n: int) -> tuple[float, float]:
    """Wall and CPU microseconds per operation over ``n`` operations."""
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        await operation(i)
    return ((time.perf_counter() - wall) / n * 1e6, (time.process_time() - cpu) / n * 1e6)


async def _measure(path: Path, n: int, repeats: int) -> None:
    store = SqliteStore(path)
    for i in range(_ENTRIES):
        await store.set("mta-sts", f"d{i}.example", _VALUE, expires_at=None)
    loop = asyncio.get_running_loop()
    worker = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    # The worker's own connection, opened on the worker as the store's was.
    conn = await loop.run_in_executor(worker, lambda: sqlite3.connect(
        path, isolation_level=None, check_same_thread=False))
    await loop.run_in_executor(worker, conn.execute, "PRAGMA synchronous=NORMAL")

    def worker_get(i: int) -> Awaitable[object]:
        key = f"d{i % _ENTRIES}.example"
        return loop.run_in_executor(worker, lambda: conn.execute(
            _GET, ("mta-sts", key, time.time())).fetchone())

    def worker_set(i: int) -> Awaitable[object]:
        key = f"d{i % _ENTRIES}.example"
        return loop.run_in_executor(worker, lambda: conn.execute(
            "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?)",
            ("mta-sts", key, _VALUE, None)))

    def store_get(i: int) -> Awaitable[object]:
        return store.get("mta-sts", f"d{i % _ENTRIES}.example")

    def store_set(i: int) -> Awaitable[object]:
        return store.set("mta-sts", f"d{i % _ENTRIES}.example", _VALUE, expires_at=None)

    try:
        for name, candidate, baseline in (("store-get", store_get, worker_get),
                                          ("store-set", store_set, worker_set)):
            ours: list[tuple[float, float]] = []
            theirs: list[tuple[float, float]] = []
            for _ in range(repeats):
                ours.append(await _sample(candidate, n))
                theirs.append(await _sample(baseline, n))
            wall = statistics.median(w for w, _ in ours)
            cpu = statistics.median(c for _, c in ours)
            base_wall = statistics.median(w for w, _ in theirs)
            base_cpu = statistics.median(c for _, c in theirs)
            print(f"{name}: on the loop's thread {wall:.1f} µs ({cpu:.1f} µs CPU), "
                  f"a trip to a worker thread {base_wall:.1f} µs ({base_cpu:.1f} µs CPU), "
                  f"ratio {base_wall / wall:.1f} (median of {repeats} x {n}, "
                  f"{len(os.sched_getaffinity(0))} CPUs)", flush=True)
    finally:
        await loop.run_in_executor(worker, conn.close)
        worker.shutdown()
        await store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few operations, one repeat")
    args = parser.parse_args()
    n, repeats = (200, 1) if args.quick else (5000, 5)
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_measure(Path(tmp) / "store.sqlite3", n, repeats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
