"""Discovery on a shared real redis-server: a fleet of processes, and Redis outages."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from discovery_support import DnsLab, HttpsLab, RedisServer, _binary, free_port
from tlspolicy import StsMode
from tlspolicy.discovery import Discovery, DiscoveryConfig, redis_cache
from tlspolicy.stores import StoreError

pytestmark = pytest.mark.timeout(180)

WORKER = Path(__file__).with_name("discovery_worker.py")


def _config(dns: DnsLab, web: HttpsLab) -> DiscoveryConfig:
    return DiscoveryConfig(resolver="127.0.0.1", resolver_port=dns.port, probe_name="test.",
                           https_port=web.port, ca_file=str(web.ca_file), resolv_conf=None,
                           https_timeout=3.0)


def _fleet_fetches(web: HttpsLab) -> int:
    with web.lock:
        return sum(1 for host, _ in web.requests if host.endswith(".fleet.secure.test"))


@pytest.mark.slow
def test_two_processes_share_one_fetch_per_domain(dns_lab: DnsLab, https_lab: HttpsLab,
                                                  tmp_path: Path) -> None:
    """Two processes ask for the same 300 uncached domains at once through one Redis:
    at most 1% more fetches than domains (races at the lock's edge), every policy found.
    (``benchmarks/discovery.py`` runs the same with 1,000 domains.)"""
    https_lab.reset()
    server = RedisServer(_binary("redis-server"), free_port())
    server.start()
    domains = [f"{n}.fleet.secure.test" for n in range(300)]
    try:
        processes = []
        for index in range(2):
            options = {"redis": server.url, "mirror": str(tmp_path / f"mirror{index}.sqlite3"),
                       "dns_port": dns_lab.port, "https_port": https_lab.port,
                       "ca_file": str(https_lab.ca_file), "domains": domains}
            processes.append(subprocess.Popen(
                [sys.executable, str(WORKER), json.dumps(options)], stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, env={"PYTHONPATH": ":".join(sys.path)}))
        results = []
        for process in processes:
            out, err = process.communicate(timeout=150)
            assert process.returncode == 0, err[-2000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        server.stop()
    assert all(r["enforce"] == len(domains) for r in results), results
    total = _fleet_fetches(https_lab)
    assert total == sum(r["fetches"] for r in results)
    assert len(domains) <= total <= len(domains) * 1.01, total


def test_enforce_policies_served_from_the_mirror_while_redis_is_down(
        dns_lab: DnsLab, https_lab: HttpsLab, tmp_path: Path) -> None:
    https_lab.reset()
    server = RedisServer(_binary("redis-server"), free_port())
    server.start()
    mirror = tmp_path / "mirror.sqlite3"

    async def before() -> None:
        store = await redis_cache(server.url, mirror, timeout=0.5)
        async with Discovery(_config(dns_lab, https_lab), store=store) as d:
            assert (await d.destination("mirror.secure.test")).mta_sts is not None
            assert (await d.destination("testing.secure.test")).mta_sts is not None
        await store.close()

    async def during() -> tuple[object, object, int]:
        # A restarted MTA while Redis is down: nothing in memory, Redis unreachable.
        store = await redis_cache(server.url, mirror, timeout=0.5)
        async with Discovery(_config(dns_lab, https_lab), store=store) as d:
            enforce = await d.destination("mirror.secure.test")
            testing = await d.destination("testing.secure.test")
            fetched = sum(d.fetches.values())
        await store.close()
        return enforce, testing, fetched

    try:
        asyncio.run(before())
    finally:
        server.stop()
    fetches_before = https_lab.fetches("mirror.secure.test")
    enforce, testing, fetched = asyncio.run(during())
    policy = enforce.mta_sts  # type: ignore[attr-defined]
    assert policy is not None and policy.mode is StsMode.ENFORCE
    assert https_lab.fetches("mirror.secure.test") == fetches_before  # served, not refetched
    # Only enforce policies are mirrored: the testing one is fetched again.
    assert testing.mta_sts is not None  # type: ignore[attr-defined]
    assert fetched == 1


def test_redis_with_allkeys_eviction_is_refused(tmp_path: Path) -> None:
    server = RedisServer(_binary("redis-server"), free_port(), maxmemory_policy="allkeys-lru")
    server.start()
    try:
        with pytest.raises(StoreError, match="allkeys-lru"):
            asyncio.run(redis_cache(server.url, tmp_path / "m.sqlite3"))
    finally:
        server.stop()
