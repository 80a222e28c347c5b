"""A fleet's store: Redis in front of each host's SQLite mirror of enforce policies.

Every test starts its own redis-server (no persistence) and stops it.  A host is a
``redis_cache`` with its own mirror file; discovery on a host uses a resolver that does
not answer, so a state is either served from the stores or a failure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from discovery_support import RedisServer, _binary, free_port
from tlspolicy.discovery import Discovery, DiscoveryConfig, redis_cache
from tlspolicy.discovery.stscache import POLICY_NAMESPACE, encode_state
from tlspolicy.policies.mtasts import CachedMtaStsPolicy, FetchOutcome, parse_policy
from tlspolicy.policies.ststate import StsState, aware, expiry
from tlspolicy.stores import MirroredStore, Store, StoreError, dumps_json

pytestmark = pytest.mark.timeout(60)

DOMAIN = "example.com"


def _policy(mode: str) -> str:
    return f"version: STSv1\r\nmode: {mode}\r\nmx: mx.example.com\r\nmax_age: 86400\r\n"


def _state(mode: str = "enforce", domain: str = DOMAIN, policy_id: str = "id1") -> StsState:
    now = time.time()
    cached = CachedMtaStsPolicy(parse_policy(_policy(mode)), aware(now - 60), policy_id)
    return StsState(domain, "policy", cached, FetchOutcome.OK, "fetched", policy_id,
                    now + 3600, 0, None)


def _failed(domain: str = DOMAIN) -> StsState:
    now = time.time()
    return StsState(domain, "failed", None, FetchOutcome.FETCH_ERROR, "no answer", None,
                    now + 60, 1, now + 60)


async def _write(store: Store, state: StsState) -> None:
    await store.set(POLICY_NAMESPACE, state.domain, dumps_json(encode_state(state)),
                    expires_at=expiry(state))


def _config(tmp: Path) -> DiscoveryConfig:
    # Nothing answers DNS on this port: every lookup fails, quickly.
    return DiscoveryConfig(cache_path=tmp / "unused.sqlite3", resolver="127.0.0.1",
                           resolver_port=9, dns_timeout=0.3, first_wait=0.5,
                           resolv_conf=None)


async def _served(store: Store, tmp: Path, domain: str = DOMAIN) -> StsState:
    async with Discovery(_config(tmp), store=store) as discovery:
        return await discovery.sts_state(domain)


def _mode(state: StsState) -> str | None:
    return None if state.cached is None else state.cached.policy.mode.value


@pytest.fixture
def server() -> Iterator[RedisServer]:
    redis = RedisServer(_binary("redis-server"), free_port())
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


def _admin(server: RedisServer) -> Any:
    import redis

    return redis.Redis.from_url(server.url)


def _mirror(store: Store) -> Store:
    assert isinstance(store, MirroredStore)
    return store.mirror


@pytest.mark.parametrize("policy", ["volatile-lru", "volatile-lfu", "volatile-random",
                                    "volatile-ttl", "allkeys-lru"])
def test_any_eviction_policy_but_noeviction_is_refused(server: RedisServer, tmp_path: Path,
                                                       policy: str) -> None:
    """Every entry has an expiry, so volatile-* policies evict exactly these keys."""
    admin = _admin(server)
    admin.config_set("maxmemory-policy", policy)
    admin.close()
    with pytest.raises(StoreError, match=f"{policy}.*noeviction") as refused:
        asyncio.run(redis_cache(server.url, tmp_path / "m.sqlite3"))
    assert "volatile-* policy" not in str(refused.value)


def test_redis_entries_pass_over_keys_that_are_not_store_keys(
        server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A key that is not UTF-8, one with a space and one of the wrong type are passed
    over (logged once), not a traceback that hides every entry."""
    admin = _admin(server)
    try:
        admin.set(b"tlspolicy:mta-sts:bad\xff", b"x")
        admin.set(b"tlspolicy:mta-sts:has space", b"x")
        admin.hset(b"tlspolicy:mta-sts:hash.example", "a", "b")
    finally:
        admin.close()

    async def main() -> list[str]:
        store = await redis_cache(server.url, tmp_path / "m.sqlite3")
        await _write(store, _state(domain="a.example"))
        await _write(store, _state(domain="z.example"))
        keys = [e.key async for e in store.entries(POLICY_NAMESPACE)]
        primary = store.primary  # type: ignore[attr-defined]
        assert [e.key async for e in primary.entries(POLICY_NAMESPACE)] == keys
        await store.close()
        return keys

    with caplog.at_level("WARNING", logger="tlspolicy.stores"):
        assert asyncio.run(main()) == ["a.example", "z.example"]
    passed = [r for r in caplog.records if "passed over" in r.getMessage()]
    assert passed, caplog.text
