"""Answers with discovery while the resolver answers SERVFAIL, with and without the DNS
failure backoff, in the same run (issue 25, "Failure is cheap").

Run ``python benchmarks/outage.py`` (full) or ``--quick`` (small sizes; checks the script
works).  N domains have enforce policies in the store, their checks due (as after an
import); a DNS server on loopback answers every query SERVFAIL.  The socketmap lookup with
discovery answers every domain R times, round robin, one answer at a time.

outage
    answers/s without the backoff (every answer sends its MX query, as before) and with
    it; DNS queries sent and warning lines written by each; whether the answers are the
    same.  The ratio is with/without.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from discovery_support import DnsRelay  # noqa: E402
from test_discovery import enforce, seed  # noqa: E402
from tlspolicy import Resolver, loads_toml  # noqa: E402
from tlspolicy.discovery import Discovery, DiscoveryConfig  # noqa: E402
from tlspolicy.discovery.backoff import FailureBackoff  # noqa: E402
from tlspolicy.postfix.lookup import PolicyLookup  # noqa: E402
from tlspolicy.servers.discovered import DiscoveryLookup  # noqa: E402
from tlspolicy.servers.socketmap import SocketmapReply  # noqa: E402
from tlspolicy.stores import SqliteStore  # noqa: E402

CONFIG = '[global]\ntls = "ifavailable"\nuse_mta_sts = true\nuse_dane = true\n'
VERSION = (3, 7, 11)


class _NoBackoff(FailureBackoff[Any, Any]):
    """Every failed lookup sent again: the behaviour before the backoff."""

    def held(self, key: Any, now: float) -> Any:
        return None


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.lines += 1


async def _side(relay: DnsRelay, tmp: Path, n: int, rounds: int, backoff: bool
                ) -> tuple[float, int, int, list[str]]:
    domains = [f"d{i}.outage-{backoff}.example".lower() for i in range(n)]
    store = SqliteStore(tmp / f"outage-{backoff}.sqlite3")
    now = time.time()
    for domain in domains:
        await seed(store, domain, enforce(domain), fetched_at=now - 100, policy_id="id1",
                   next_check=now - 1)
    config = DiscoveryConfig(resolver="127.0.0.1", resolver_port=relay.port,
                             probe_name="test.", resolv_conf=None, dns_timeout=1.0,
                             https_port=9, first_wait=1.0, memory_cache_size=max(n, 1))
    discovery = Discovery(config, store=store)
    if not backoff:
        discovery.dns.backoff = _NoBackoff()
    counter = _Count()
    logger = logging.getLogger("tlspolicy")
    logger.addHandler(counter)
    logger.propagate = False
    answers: list[str] = []
    async with discovery:
        lookup = DiscoveryLookup(PolicyLookup(Resolver(loads_toml(CONFIG)),
                                              postfix_version=VERSION),
                                 discovery, postfix_version=VERSION)
        sent_before = relay.count("servfail")
        start = time.perf_counter()
        for _ in range(rounds):
            for domain in domains:
                reply = lookup("default", domain)
                if not isinstance(reply, SocketmapReply):
                    reply = await reply
                answers.append(reply.to_text())
        elapsed = time.perf_counter() - start
        sent = relay.count("servfail") - sent_before
    logger.removeHandler(counter)
    logger.propagate = True
    await store.close()
    # The domain names differ between the sides: compare the answers' shapes.
    shapes = [a.replace(f"outage-{backoff}".lower(), "outage") for a in answers]
    return len(answers) / elapsed, sent, counter.lines, shapes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    args = parser.parse_args()
    n, rounds = (50, 3) if args.quick else (2000, 10)
    relay = DnsRelay(0)
    relay.set_mode("servfail")
    relay.start()
    try:
        with tempfile.TemporaryDirectory() as name:
            tmp = Path(name)
            before = asyncio.run(_side(relay, tmp, n, rounds, backoff=False))
            after = asyncio.run(_side(relay, tmp, n, rounds, backoff=True))
    finally:
        relay.stop()
    print(f"outage: {n:,} domains with cached enforce policies x {rounds} answers each, "
          f"resolver answering SERVFAIL: {before[0]:,.0f} answers/s without the backoff, "
          f"{after[0]:,.0f} with it, ratio {after[0] / before[0]:.1f}; DNS queries sent "
          f"{before[1]:,} and {after[1]:,}; warning lines {before[2]:,} and {after[2]:,}; "
          f"answers the same: {'yes' if before[3] == after[3] else 'NO'}")
    return 0 if before[3] == after[3] else 1


if __name__ == "__main__":
    raise SystemExit(main())
