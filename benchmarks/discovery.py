"""Discovery figures on loopback: NSD + Unbound (signed zones), the HTTPS policy server,
redis-server, all started here as the tests start them (``tests/discovery_support.py``).

Run ``python benchmarks/discovery.py`` (full) or ``--quick`` (small sizes; checks the
script works).  Figures:

cold-discovery
    ``await d.destination(domain, mx)`` for a domain nothing in this process has seen
    (fresh cache; the resolver's own cache warm), sequential: p50 and p99, against a
    bare DNS round trip (one MX query to the same resolver).
cache-hit
    ``await d.destination(domain, mx)`` for a domain already discovered, against a warm
    ``Resolver.resolve(domain, mx_host=mx, destination=...)`` in the same run.
store-size / memory
    SQLite bytes and Python heap bytes (tracemalloc) per cached domain.
fleet
    Two processes sharing one redis-server ask for the same N uncached domains at once:
    total policy fetches (at most N * 1.01 wanted).
store-hit-answer
    ``postmap -q -`` through the socketmap server with discovery, every domain's MTA-STS
    policy in the store and its DNS answers cached, answers reused while their inputs are
    unchanged (as in production), against the same server answering from the
    configuration alone (static), same keys, same run: answers/s ratio (>= 0.87 wanted),
    and against a dict serving the very same texts (>= 0.95 wanted).
store-hit-computed
    The same with answer reuse off: every answer made anew (decisions per MX host by the
    resolver, then rendered), against the static server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import discovery_support as support  # noqa: E402
from tlspolicy import Resolver, loads_toml  # noqa: E402
from tlspolicy.discovery import Discovery, DiscoveryConfig, DnsClient  # noqa: E402
from tlspolicy.stores import SqliteStore  # noqa: E402

CONFIG = loads_toml('[global]\ntls = "ifavailable"\nuse_mta_sts = true\nuse_dane = true\n')


def _config(dns: support.DnsLab, web: support.HttpsLab) -> DiscoveryConfig:
    return DiscoveryConfig(resolver="127.0.0.1", resolver_port=dns.port, probe_name="test.",
                           https_port=web.port, ca_file=str(web.ca_file), resolv_conf=None)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _cold(dns: support.DnsLab, web: support.HttpsLab, tmp: Path, n: int) -> None:
    domains = [f"{i}.fleet.secure.test" for i in range(n)]
    client = DnsClient("127.0.0.1", dns.port)
    bare: list[float] = []
    for domain in domains:
        client.forget()
        start = time.perf_counter()
        await client.query(domain, "MX")
        bare.append(time.perf_counter() - start)
    times: list[float] = []
    store = SqliteStore(tmp / "cold.sqlite3")
    async with Discovery(_config(dns, web), store=store) as d:
        for domain in domains:
            start = time.perf_counter()
            await d.destination(domain, "mx.fleet.secure.test")
            times.append(time.perf_counter() - start)
    await store.close()
    print(f"cold-discovery: p50 {_percentile(times, 0.5) * 1e3:.2f} ms, p99 "
          f"{_percentile(times, 0.99) * 1e3:.2f} ms over {n} domains (DNS + TLSA + HTTPS "
          f"policy fetch + SQLite write); baseline one MX query p50 "
          f"{_percentile(bare, 0.5) * 1e3:.2f} ms; ratio "
          f"{_percentile(times, 0.5) / _percentile(bare, 0.5):.1f}x")
    size = (tmp / "cold.sqlite3").stat().st_size + sum(
        p.stat().st_size for p in tmp.glob("cold.sqlite3-*"))
    print(f"store-size: {size / n:,.0f} bytes per cached domain (SQLite file and WAL, {n} "
          "domains)")


async def _hits(dns: support.DnsLab, web: support.HttpsLab, tmp: Path, n: int,
                repeats: int) -> None:
    domains = [f"{i}.fleet.secure.test" for i in range(n)]
    store = SqliteStore(tmp / "hits.sqlite3")
    resolver = Resolver(CONFIG)
    async with Discovery(_config(dns, web), store=store) as d:
        for domain in domains:
            await d.destination(domain, "mx.fleet.secure.test")
        tracemalloc.start()
        snapshot_before = tracemalloc.take_snapshot()
        d2 = Discovery(_config(dns, web), store=store)
        await d2.start()
        for domain in domains:
            await d2.destination(domain, "mx.fleet.secure.test")
        snapshot_after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        grown = sum(s.size_diff for s in snapshot_after.compare_to(snapshot_before, "filename"))
        print(f"memory: {grown / n:,.0f} bytes of Python heap per cached domain (DNS answers "
              f"and MTA-STS state, {n} domains)")
        destination = await d.destination(domains[0], "mx.fleet.secure.test")
        resolver.resolve(domains[0], mx_host="mx.fleet.secure.test", destination=destination)
        hit: list[float] = []
        warm: list[float] = []
        loops = 2000
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(loops):
                await d.destination(domains[0], "mx.fleet.secure.test")
            hit.append((time.perf_counter() - start) / loops)
            start = time.perf_counter()
            for _ in range(loops):
                resolver.resolve(domains[0], mx_host="mx.fleet.secure.test",
                                 destination=destination)
            warm.append((time.perf_counter() - start) / loops)
        await d2.close()
    await store.close()
    a, b = statistics.median(hit), statistics.median(warm)
    print(f"cache-hit: destination() {a * 1e6:.1f} us; baseline warm resolve() "
          f"{b * 1e6:.2f} us; ratio {a / b:.0f}x")


def _fleet(dns: support.DnsLab, web: support.HttpsLab, tmp: Path, n: int) -> None:
    try:
        binary = support._binary("redis-server")
    except BaseException:
        print("fleet: skipped: redis-server not installed")
        return
    server = support.RedisServer(binary, support.free_port())
    server.start()
    web.reset()
    domains = [f"{i}.fleet.secure.test" for i in range(n)]
    worker = ROOT / "tests" / "discovery_worker.py"
    try:
        processes = []
        for index in range(2):
            options = {"redis": server.url, "mirror": str(tmp / f"m{index}.sqlite3"),
                       "dns_port": dns.port, "https_port": web.port,
                       "ca_file": str(web.ca_file), "domains": domains}
            processes.append(subprocess.Popen(
                [sys.executable, str(worker), json.dumps(options)], stdout=subprocess.PIPE,
                text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}))
        results: list[dict[str, Any]] = []
        start = time.perf_counter()
        for process in processes:
            out, _ = process.communicate(timeout=600)
            results.append(json.loads(out.strip().splitlines()[-1]))
        elapsed = time.perf_counter() - start
    finally:
        server.stop()
    total = sum(r["fetches"] for r in results)
    print(f"fleet: {total} policy fetches for {n} domains asked by 2 processes sharing Redis "
          f"(limit {int(n * 1.01)}); {elapsed:.1f} s")


def _answers(dns: support.DnsLab, web: support.HttpsLab, tmp: Path, n: int,
             repeats: int) -> None:
    import threading

    import _postmap

    from tlspolicy.postfix.lookup import PolicyLookup
    from tlspolicy.servers.discovered import DiscoveryLookup
    from tlspolicy.servers.socketmap import SocketmapReply, SocketmapServer

    postmap = _postmap.find_postmap()
    if postmap is None:
        print("store-hit-answer: skipped: postmap not found (install Postfix)")
        return
    domains = [f"{i}.fleet.secure.test" for i in range(n)]
    version = (3, 10, 5)
    loop = asyncio.new_event_loop()
    store = SqliteStore(tmp / "answers.sqlite3")
    discovery = Discovery(_config(dns, web), store=store)
    static = PolicyLookup(Resolver(CONFIG), postfix_version=version)
    discovered = DiscoveryLookup(static, discovery, postfix_version=version)
    computed = DiscoveryLookup(static, discovery, postfix_version=version, memo_ttl=0)
    # The same answer texts from a plain dict: what a static table of these very answers
    # costs, so the ratio isolates discovery's own work from the answers' length.
    frozen: dict[str, SocketmapReply] = {}
    servers = [SocketmapServer(discovered), SocketmapServer(static),
               SocketmapServer(lambda _map, key: frozen[key]), SocketmapServer(computed)]
    ready = threading.Event()

    async def start() -> None:
        await discovery.start()
        for domain in domains:  # fetch and store every policy, warm the DNS cache
            reply = discovered("default", domain)
            if not isinstance(reply, SocketmapReply):
                reply = await reply
            frozen[domain] = SocketmapReply.ok(reply.text)
        for server in servers:
            await server.start()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    if not ready.wait(120):
        raise RuntimeError("discovery server did not start")
    try:
        keys_text = "".join(f"{d}\n" for d in domains)
        conf = tmp / "postmap"
        conf.mkdir(exist_ok=True)
        (conf / "main.cf").write_text("compatibility_level = 3.6\n")
        tables = [f"socketmap:inet:{s.address[0]}:{s.address[1]}:default" for s in servers]
        hit: list[float] = []
        base: list[float] = []
        same: list[float] = []
        made: list[float] = []
        for table in tables:  # warm-up: postmap itself, the page cache, the connections
            _postmap.query_all(postmap, conf, table, keys_text, n)
        for _ in range(repeats):
            hit.append(_postmap.query_all(postmap, conf, tables[0], keys_text, n))
            base.append(_postmap.query_all(postmap, conf, tables[1], keys_text, n))
            same.append(_postmap.query_all(postmap, conf, tables[2], keys_text, n))
            made.append(_postmap.query_all(postmap, conf, tables[3], keys_text, n))
    finally:
        for server in servers:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        asyncio.run_coroutine_threadsafe(discovery.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
    a, b = n / statistics.median(hit), n / statistics.median(base)
    print(f"store-hit-answer: {a:,.0f} answers/s with discovery (store hits, answers reused "
          f"while their inputs hold); baseline {b:,.0f} answers/s from the configuration "
          f"alone; ratio {a / b:.2f} (>= 0.87 wanted; {n} keys, median of {repeats})")
    c = n / statistics.median(same)
    print(f"store-hit-answer-same-text: {a:,.0f} answers/s with discovery; baseline {c:,.0f} "
          f"answers/s from a dict of the very same answers; ratio {a / c:.2f} (>= 0.95 "
          "wanted; the answers' length is paid by both sides)")
    m = n / statistics.median(made)
    print(f"store-hit-computed: {m:,.0f} answers/s with discovery, every answer made anew "
          f"(decisions per MX host, render); ratio {m / b:.2f} against the static server")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    args = parser.parse_args()
    n = 20 if args.quick else 500
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "dns").mkdir()
        dns = support.DnsLab(tmp / "dns", support.free_port(), support.free_port())
        web = support.HttpsLab(tmp / "web")
        try:
            dns.build()
            dns.start()
            web.start()
            asyncio.run(_cold(dns, web, tmp, n))
            asyncio.run(_hits(dns, web, tmp, n, 1 if args.quick else 7))
            _fleet(dns, web, tmp, 20 if args.quick else support.FLEET_SIZE)
            _answers(dns, web, tmp, 50 if args.quick else support.FLEET_SIZE,
                     1 if args.quick else 5)
        finally:
            web.stop()
            dns.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
