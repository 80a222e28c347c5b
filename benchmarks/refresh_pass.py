"""The proactive refresh pass's cost when memory holds only part of the domains in use.

Run ``python benchmarks/refresh_pass.py`` (full) or ``--quick`` (few domains; checks the
script works).  One SQLite store of N enforce policies, none due for a check; N domains in
use by a drop-in socketmap lookup; a pass of ``refresh_once()`` over them (as the
server runs it every minute).

refresh-pass-evicted
    CPU time of one pass (the process's, all threads, until every refresh it started has
    ended) when discovery holds N/2 of the states (``memory_cache_size``), the other half
    evicted, against the same pass with all N held (the baseline), median of 3 passes each,
    in the same run.  A state that is not held costs a read of its schedule from the
    store (one SELECT and a JSON parse), not a refresh (the domain's lock taken, its state
    read and decoded, the lock given back).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from tlspolicy.discovery import Discovery, DiscoveryConfig, StsState  # noqa: E402
from tlspolicy.discovery.stscache import POLICY_NAMESPACE, encode_state  # noqa: E402
from tlspolicy.policies.mtasts import CachedMtaStsPolicy, FetchOutcome, parse_policy  # noqa: E402
from tlspolicy.postfix.dropin import DROP_IN_CONFIG  # noqa: E402
from tlspolicy.postfix.lookup import PolicyLookup  # noqa: E402
from tlspolicy.resolver import Resolver  # noqa: E402
from tlspolicy.servers.discovered import DiscoveryLookup  # noqa: E402
from tlspolicy.stores import SqliteStore, dumps_json  # noqa: E402

NOW = 1_800_000_000.0
VERSION = (3, 7, 11)


async def _fill(path: Path, names: list[str]) -> None:
    store = SqliteStore(path, clock=lambda: NOW)
    for name in names:
        policy = parse_policy(f"version: STSv1\nmode: enforce\nmx: mx.{name}\n"
                              "max_age: 604800\n".encode())
        cached = CachedMtaStsPolicy(policy, datetime.fromtimestamp(NOW - 100, UTC), "id1")
        state = StsState(name, "policy", cached, FetchOutcome.OK, "fetched", "id1",
                         NOW + 3600, 0, None)
        await store.set(POLICY_NAMESPACE, name, dumps_json(encode_state(state)),
                        expires_at=NOW + 604800)
    await store.close()


async def _passes(path: Path, names: list[str], held: int, passes: int) -> list[float]:
    store = SqliteStore(path, clock=lambda: NOW)
    # No resolver is asked: nothing is due (port 9, nothing listening).
    config = DiscoveryConfig(resolver="127.0.0.1", resolver_port=9, resolv_conf=None,
                             memory_cache_size=held)
    discovery = Discovery(config, store=store, clock=lambda: NOW)
    lookup = DiscoveryLookup(PolicyLookup(Resolver(DROP_IN_CONFIG), postfix_version=VERSION),
                             discovery, postfix_version=VERSION, drop_in=True, own_level="may")
    try:
        for name in names:
            await discovery.sts_state(name)  # held up to memory_cache_size, newest last
        lookup.in_use.update((name, NOW) for name in names)
        cpu: list[float] = []
        for _ in range(passes):
            started = time.process_time()
            await lookup.refresh_once()
            while discovery._refreshing:
                await asyncio.sleep(0.001)
            cpu.append(time.process_time() - started)
        return cpu
    finally:
        await discovery.close()
        await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few domains")
    parser.add_argument("--domains", type=int, default=None, help="domains in use (20000)")
    args = parser.parse_args(argv)
    n = args.domains or (400 if args.quick else 20_000)
    names = [f"d{i}.refresh-pass.test" for i in range(n)]
    with tempfile.TemporaryDirectory(prefix="tlspolicy-bench-refresh-") as tmp:
        path = Path(tmp) / "cache.sqlite3"
        asyncio.run(_fill(path, names))
        evicted: list[float] = []
        all_held: list[float] = []
        for _ in range(3):  # alternating, so that drift on the machine hits both alike
            evicted.extend(asyncio.run(_passes(path, names, n // 2, 1)))
            all_held.extend(asyncio.run(_passes(path, names, n, 1)))
    half, full = statistics.median(evicted), statistics.median(all_held)
    print(f"refresh-pass-evicted: {half * 1e3:.1f} ms CPU a pass over {n:,} domains in use, "
          f"{n // 2:,} held; all held {full * 1e3:.1f} ms; ratio {half / full:.2f} "
          f"(median of 3 each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
