"""Memory per cached MTA-STS policy and per finished policy fetch, measured with
tracemalloc, before and after in the same run (issue 25).

Run ``python benchmarks/memory.py`` (full) or ``--quick`` (small sizes; checks the script
works).  The stated shape: an enforce policy with two ``mx`` patterns, served as a
400-byte policy text (padded with an extension field, which RFC 8461 says to ignore).
Figures:

cached-policy-distinct / cached-policy-provider
    Python heap bytes per MTA-STS state held in memory, for N domains each with its own
    patterns (``mx: mx1.<domain>``, ``mx: *.mx.<domain>``) and for N domains all
    publishing one provider's policy.  Before: each state decoded from the store with
    copies of its own, held in a dict (the code before this change).  After: through
    ``Discovery.sts_state`` from a SQLite store into the bounded LRU.  Ratio before/after.
cached-policy-lru
    2N states asked for through an LRU of N (``memory_cache_size``): the heap held stays
    that of N states.
fetch
    Python heap bytes kept per finished fetch (the policies kept, as a cache keeps them),
    peak heap during the fetches and RSS growth per fetch, M fresh fetches from a loopback
    HTTPS server (another process, a test CA's certificate).  Before: one HTTPS client per
    fetch; after: one shared client.  Each side runs in a fresh process.  RSS is read
    after M, 2M and 3M further fetches: a one-time rise (allocator and OpenSSL warm-up)
    shows as a flat series, growth per fetch as a rising one.
fetch-discovery
    Python heap kept per freshly fetched domain through ``Discovery.sts_state`` (DNS on
    loopback with NSD and Unbound, as the tests run them): before, the DNS answers that
    served the fetch stayed cached until their TTL; after, they are dropped once the
    policy is in.
dropin-servfail
    Growth per key answered by the drop-in socketmap lookup (``DiscoveryLookup`` with
    ``drop_in=True`` over the drop-in configuration, as ``serve socketmap --discovery``
    builds it) over N imported enforce policies of the stated shape, with a loopback
    resolver answering SERVFAIL to everything (every answer is the cached policy's, every
    state records the failed check and the DNS failure is remembered for its backoff):
    Python heap (tracemalloc) and RSS (a pass without tracemalloc) between N/3 and N keys.
fetch-discovery-peak-rss
    The same for M further fresh domains without tracemalloc: RSS at start and its peak
    over the fetches, against start + 300 KB + M cached states of the heap measured
    above (the bound of issue 25).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from tlspolicy.discovery import POLICY_NAMESPACE, Discovery, DiscoveryConfig, StsState  # noqa: E402
from tlspolicy.discovery.https import fetch_policy, make_client, make_ssl_context  # noqa: E402
from tlspolicy.discovery.memory import Sharing  # noqa: E402
from tlspolicy.discovery.stscache import decode_state as _decode  # noqa: E402
from tlspolicy.discovery.stscache import encode_state as _encode  # noqa: E402
from tlspolicy.names import normalise_domain  # noqa: E402
from tlspolicy.policies.mtasts import CachedMtaStsPolicy, FetchOutcome, parse_policy  # noqa: E402
from tlspolicy.stores import SqliteStore, dumps_json  # noqa: E402

TEXT_SIZE = 400


def policy_text(domain: str, provider: bool = False) -> bytes:
    """The stated shape: enforce, two mx patterns, 400 bytes in all."""
    where = "provider.example" if provider else domain
    head = (f"version: STSv1\r\nmode: enforce\r\nmx: mx1.{where}\r\nmx: *.mx.{where}\r\n"
            "max_age: 604800\r\n")
    pad = TEXT_SIZE - len(head) - len("x-note: \r\n")
    text = (head + "x-note: " + "n" * pad + "\r\n").encode()
    assert len(text) == TEXT_SIZE, len(text)
    return text


def _heap() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class _Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _encoded(domains: list[str], now: float, provider: bool) -> list[tuple[str, bytes]]:
    blobs = []
    for domain in domains:
        cached = CachedMtaStsPolicy(parse_policy(policy_text(domain, provider)),
                                    datetime.fromtimestamp(now - 100, UTC),
                                    "20260101T000000")
        state = StsState(domain, "policy", cached, FetchOutcome.OK, "fetched",
                         "20260101T000000", now + 86400, 0, None)
        blobs.append((domain, dumps_json(_encode(state))))
    return blobs


async def _cached(tmp: Path, n: int, provider: bool, lru: int | None = None
                  ) -> tuple[float, float, int]:
    """(bytes per state before, after, states held after)."""
    clock = _Clock()
    kind = "provider" if provider else "distinct"
    domains = [f"a{i}.{kind}-{n}-{lru or 0}.example" for i in range(n)]
    blobs = _encoded(domains, clock.now, provider)
    store = SqliteStore(tmp / f"{kind}-{n}-{lru}.sqlite3")
    for domain, blob in blobs:
        await store.set(POLICY_NAMESPACE, domain, blob, expires_at=clock.now + 86400)
    # The side before: states held as the code before held them (each decoded with
    # copies of its own, in a dict keyed by the normalised name).  Its names are other
    # domains of the same length, so that neither side finds the other's names cached.
    others = [f"b{d[1:]}" for d in domains]
    others_blobs = _encoded(others, clock.now, provider)
    tracemalloc.start()
    base = _heap()
    before = {}
    for name, (_, blob) in zip(others, others_blobs, strict=True):
        key = normalise_domain(name)
        before[key] = _decode(key, blob)
    before_bytes = (_heap() - base) / n
    del before
    tracemalloc.stop()

    config = DiscoveryConfig(resolver="127.0.0.1", resolver_port=9, resolv_conf=None,
                             memory_cache_size=lru or n)
    discovery = Discovery(config, store=store, clock=clock)
    names = [str(d.encode().decode()) for d in domains]  # fresh strings, as a query's
    tracemalloc.start()
    base = _heap()
    for name in names:
        await discovery.sts_state(name)
    after_bytes = (_heap() - base) / (lru or n)
    tracemalloc.stop()
    held = len(discovery._memory)
    await discovery.close()
    await store.close()
    return before_bytes, after_bytes, held


# ------------------------------------------------------------------- fetches

_LAB = """
import sys, tempfile, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
import discovery_support as support
from memory import policy_text
with tempfile.TemporaryDirectory() as tmp:
    lab = support.HttpsLab(Path(tmp))
    lab.start()
    for n in range(support.FLEET_SIZE):
        lab.set(f"{n}.fleet.secure.test", support.PolicyAnswer(
            policy_text(f"{n}.fleet.secure.test")))
    print(lab.port, lab.ca_file, flush=True)
    sys.stdin.read()
    lab.stop()
"""


async def _fetch_side(port: int, ca_file: str, m: int, shared: bool) -> dict[str, Any]:
    context = make_ssl_context(ca_file)
    client = make_client(context) if shared else None
    share = Sharing() if shared else None
    kept: list[Any] = []

    async def one(n: int) -> None:
        result = await fetch_policy(f"{n % 1000}.fleet.secure.test", ["127.0.0.1"], port=port,
                                    context=context, timeout=10.0, client=client)
        if result.policy is None:
            raise SystemExit(f"fetch failed: {result.detail}")
        kept.append(result.policy if share is None else share.policy(result.policy))

    for n in range(5):  # warm: imports, the first handshake
        await one(999 - n)
    kept.clear()
    tracemalloc.start()
    base = _heap()
    tracemalloc.reset_peak()
    for n in range(m):
        await one(n)
    held = (_heap() - base) / m
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    # RSS is read without tracemalloc (its own tables would count): after the first m
    # fetches, then after each further m, to tell a one-time rise from growth per fetch.
    rss0 = _rss()
    steps = []
    for step in range(1, 4):
        for n in range(m):
            await one(step * m + n)
        gc.collect()
        steps.append(_rss() - rss0)
    if client is not None:
        await client.aclose()
    return {"held": held, "peak": peak, "rss": steps}


def _fetch_child(port: int, ca_file: str, m: int, shared: bool) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--fetch-side", "shared" if shared else "own",
         "--port", str(port), "--ca-file", ca_file, "--fetches", str(m)],
        capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"fetch side failed: {done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _fetches(m: int) -> None:
    lab = subprocess.Popen([sys.executable, "-c", _LAB, str(ROOT / "tests"),
                            str(ROOT / "benchmarks")],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert lab.stdout is not None
        port_text, ca_file = lab.stdout.readline().split()
        port = int(port_text)
        before = _fetch_child(port, ca_file, m, shared=False)
        after = _fetch_child(port, ca_file, m, shared=True)
    finally:
        if lab.stdin is not None:
            lab.stdin.close()
        lab.wait(30)
    print(f"fetch: {m} fresh fetches of 400-byte policies over loopback HTTPS; heap kept "
          f"per finished fetch {before['held']:,.0f} B before (a client per fetch), "
          f"{after['held']:,.0f} B after (one shared client), ratio "
          f"{before['held'] / max(after['held'], 1):.2f}; peak heap during the fetches "
          f"{before['peak'] / 1024:,.0f} KiB before, {after['peak'] / 1024:,.0f} KiB after; "
          f"RSS change over 3 x {m} further fetches "
          f"{', '.join(f'{r / 1024:+,.0f}' for r in before['rss'])} KiB before, "
          f"{', '.join(f'{r / 1024:+,.0f}' for r in after['rss'])} KiB after")


async def _discovery_side(dns: Any, web: Any, tmp: Path, n: int, offset: int,
                          keep_answers: bool, peak: list[int] | None = None) -> float:
    import discovery_support as support

    store = SqliteStore(tmp / f"fresh-{offset}.sqlite3")
    config = DiscoveryConfig(resolver="127.0.0.1", resolver_port=dns.port, probe_name="test.",
                             https_port=web.port, ca_file=str(web.ca_file), resolv_conf=None)
    discovery = Discovery(config, store=store)
    await discovery.start()
    if keep_answers:  # before: the answers that served a fetch stayed until their TTL
        discovery.dns.drop = lambda name, rdtype: None  # type: ignore[method-assign]
    await discovery.sts_state(f"{support.FLEET_SIZE - 1 - offset}.fleet.secure.test")  # warm
    domains = [f"{offset + i}.fleet.secure.test" for i in range(n)]
    if peak is not None:
        # RSS, without tracemalloc (which holds memory of its own): at start and the
        # highest after each fetch.
        gc.collect()
        peak.append(_rss())
        peak.append(peak[0])
        for domain in domains:
            state = await discovery.sts_state(domain)
            if state.state != "policy":
                raise SystemExit(f"fetch of {domain} failed: {state.detail}")
            peak[1] = max(peak[1], _rss())
        await discovery.close()
        await store.close()
        return 0.0
    tracemalloc.start()
    base = _heap()
    for domain in domains:
        state = await discovery.sts_state(domain)
        if state.state != "policy":
            raise SystemExit(f"fetch of {domain} failed: {state.detail}")
    per = (_heap() - base) / n
    tracemalloc.stop()
    await discovery.close()
    await store.close()
    return per


def _fresh_discovery(n: int) -> None:
    import shutil

    import discovery_support as support

    missing = [b for b in ("nsd", "unbound", "ldns-signzone")
               if shutil.which(b) is None and not Path(f"/usr/sbin/{b}").exists()]
    if missing:
        print(f"fetch-discovery: skipped ({', '.join(missing)} not installed)")
        return
    peak: list[int] = []
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "dns").mkdir()
        dns = support.DnsLab(tmp / "dns", support.free_port(), support.free_port())
        web = support.HttpsLab(tmp / "web")
        try:
            dns.build()
            dns.start()
            web.start()
            before = asyncio.run(_discovery_side(dns, web, tmp, n, 0, True))
            after = asyncio.run(_discovery_side(dns, web, tmp, n, n, False))
            if 3 * n <= support.FLEET_SIZE:
                asyncio.run(_discovery_side(dns, web, tmp, n, 2 * n, False, peak))
        finally:
            web.stop()
            dns.stop()
    print(f"fetch-discovery: {n} fresh domains through Discovery.sts_state (TXT, policy host "
          f"address, HTTPS fetch, store write; signed zones on loopback): heap kept "
          f"{before:,.0f} B per fetched domain before (the DNS answers that served the fetch "
          f"kept until their TTL), {after:,.0f} B after, ratio {before / after:.2f}")
    if peak:
        # The bound of issue 25: start + 300 KB + what the in-memory cache holds (n states
        # of the heap measured above).
        bound = 300 * 1024 + n * after
        print(f"fetch-discovery-peak-rss: {n} further fresh domains, no tracemalloc: RSS "
              f"{peak[0] / 1024:,.0f} KiB at start, peak {peak[1] / 1024:,.0f} KiB, rise "
              f"{(peak[1] - peak[0]) / 1024:,.0f} KiB against a bound of "
              f"{bound / 1024:,.0f} KiB (300 KiB + {n} cached states of {after:,.0f} B)")


# ------------------------------------------------------------ drop-in, SERVFAIL

_SERVFAIL = r"""
import socket, sys
sys.path.insert(0, sys.argv[1])
from _dns_loop import serve_until_stdin_closes
def answer(wire):
    if len(wire) < 12:
        return None
    # The query back as a SERVFAIL response: QR, RD copied, RA, rcode 2, no answers.
    flags = 0x8000 | (int.from_bytes(wire[2:4]) & 0x0100) | 0x0080 | 2
    return wire[:2] + flags.to_bytes(2) + wire[4:6] + bytes(4) + wire[10:]
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", 0))
tcp = socket.socket()
tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
tcp.bind(("127.0.0.1", udp.getsockname()[1]))
tcp.listen()
serve_until_stdin_closes(udp, tcp, answer, lambda: 0, str(udp.getsockname()[1]))
"""


async def _dropin_side(tmp: Path, port: int, n: int, traced: bool, tag: str) -> float:
    import logging

    from tlspolicy import Resolver
    from tlspolicy.discovery.importcache import ImportedPolicy, import_policies
    from tlspolicy.postfix.dropin import DROP_IN_CONFIG
    from tlspolicy.postfix.lookup import PolicyLookup
    from tlspolicy.postfix.replies import SocketmapReply
    from tlspolicy.servers.discovered import DiscoveryLookup

    logging.getLogger("tlspolicy").setLevel(logging.CRITICAL)  # n failure warnings
    now = time.time()
    path = tmp / f"dropin-{tag}.sqlite3"
    store = SqliteStore(path)
    domains = [f"d{i}.{tag}{i % 97}.example" for i in range(n)]
    await import_policies(store, [ImportedPolicy(d, policy_text(d).decode(), now - 3600,
                                                 "bench1", "bench") for d in domains], now=now)
    await store.close()
    config = DiscoveryConfig(resolver="127.0.0.1", resolver_port=port, resolv_conf=None,
                             cache_path=path, https_port=9)
    discovery = Discovery(config)
    await discovery.start()
    version = (3, 7, 11)
    lookup = DiscoveryLookup(PolicyLookup(Resolver(DROP_IN_CONFIG), postfix_version=version),
                             discovery, postfix_version=version, drop_in=True,
                             own_level="may")

    async def ask(name: str) -> str:
        reply = lookup("postfix", name)
        if not isinstance(reply, SocketmapReply):
            reply = await reply
        return reply.to_text()

    for i in range(50):  # warm: imports, sockets, memos
        await ask(f"warm{i}.{tag}.example")
    third = n // 3
    measured: list[int] = []
    if traced:
        tracemalloc.start()
    for start, end in ((0, third), (third, n)):
        for domain in domains[start:end]:
            if not (await ask(domain)).startswith("OK secure"):
                raise SystemExit(f"{domain}: not the cached enforce policy's answer")
        await asyncio.sleep(1.0)  # the background checks fail and settle
        measured.append(_heap() if traced else (gc.collect(), _rss())[1])
    if traced:
        tracemalloc.stop()
    await discovery.close()
    return (measured[1] - measured[0]) / (n - third)


def _dropin_servfail(n: int) -> None:
    server = subprocess.Popen([sys.executable, "-c", _SERVFAIL, str(ROOT / "benchmarks")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        with tempfile.TemporaryDirectory() as name:
            rss = asyncio.run(_dropin_side(Path(name), port, n, False, "r"))
            heap = asyncio.run(_dropin_side(Path(name), port, n, True, "h"))
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(10)
    print(f"dropin-servfail: drop-in lookup over {n:,} imported enforce policies, resolver "
          f"answering SERVFAIL: {heap:,.0f} B of heap and {rss:,.0f} B of RSS per key "
          f"answered (growth from {n // 3:,} to {n:,} keys)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--fetch-side", choices=("own", "shared"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ca-file", help=argparse.SUPPRESS)
    parser.add_argument("--fetches", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fetch_side:
        result = asyncio.run(_fetch_side(args.port, args.ca_file, args.fetches,
                                         args.fetch_side == "shared"))
        print(json.dumps(result))
        return 0
    n = 500 if args.quick else 20_000
    m = 20 if args.quick else 300
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for provider in (False, True):
            before, after, _ = asyncio.run(_cached(tmp, n, provider))
            kind = "provider" if provider else "distinct"
            print(f"cached-policy-{kind}: {n:,} states held, {before:,.0f} B per cached "
                  f"policy before, {after:,.0f} B after, ratio {before / after:.2f} "
                  f"({'one provider policy for all' if provider else 'patterns per domain'}"
                  ", enforce, two mx patterns, 400-byte policy text)")
        lru = n // 2
        _, per_held, held = asyncio.run(_cached(tmp, n, False, lru=lru))
        print(f"cached-policy-lru: {n:,} domains asked through memory_cache_size {lru:,}: "
              f"{held:,} states held, {per_held * lru / 1024:,.0f} KiB in all "
              f"({per_held:,.0f} B per held state; evicted states' names and policies "
              "still in the bounded name and sharing tables count)")
    _dropin_servfail(600 if args.quick else 6000)
    _fetches(m)
    _fresh_discovery(m)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
