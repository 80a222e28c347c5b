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
from tlspolicy.discovery.stscache import POLICY_NAMESPACE, decode_state, encode_state
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


def test_a_policy_read_from_redis_is_mirrored_on_the_reading_host(
        server: RedisServer, tmp_path: Path) -> None:
    """Host A fetched the policy; host B only read it from Redis.  B restarts while
    Redis is down and still has it (single-flight means only one host fetches)."""

    async def main() -> None:
        a = await redis_cache(server.url, tmp_path / "a.sqlite3", timeout=0.5)
        await _write(a, _state())
        await a.close()
        b = await redis_cache(server.url, tmp_path / "b.sqlite3", timeout=0.5)
        assert _mode(await _served(b, tmp_path)) == "enforce"
        assert await _mirror(b).get(POLICY_NAMESPACE, DOMAIN) is not None
        await b.close()

    asyncio.run(main())
    server.stop()

    async def after() -> None:
        b = await redis_cache(server.url, tmp_path / "b.sqlite3", timeout=0.5)
        state = await _served(b, tmp_path)
        await b.close()
        assert state.state == "policy" and _mode(state) == "enforce"

    asyncio.run(after())


def test_mirroring_on_read_writes_once_per_entry_version(server: RedisServer,
                                                         tmp_path: Path) -> None:
    async def main() -> None:
        a = await redis_cache(server.url, tmp_path / "a.sqlite3", timeout=0.5)
        b = await redis_cache(server.url, tmp_path / "b.sqlite3", timeout=0.5)
        mirror = _mirror(b)
        writes: list[str] = []
        real_set = mirror.set

        async def counting_set(namespace: str, key: str, value: bytes, *,
                               expires_at: float | None) -> None:
            writes.append(key)
            await real_set(namespace, key, value, expires_at=expires_at)

        mirror.set = counting_set  # type: ignore[method-assign]
        await _write(a, _state())
        for _ in range(5):
            assert await b.get(POLICY_NAMESPACE, DOMAIN) is not None
        assert writes == [DOMAIN]
        # A new version of the entry is mirrored again, once.
        await _write(a, _state(policy_id="id2"))
        for _ in range(5):
            await b.get(POLICY_NAMESPACE, DOMAIN)
        assert writes == [DOMAIN, DOMAIN]
        copy = await mirror.get(POLICY_NAMESPACE, DOMAIN)
        assert copy is not None and b'"id2"' in copy.value
        # Another process of the same host (a new store) finds its mirror current.
        c = await redis_cache(server.url, tmp_path / "b.sqlite3", timeout=0.5)
        c_writes: list[str] = []
        c_set = _mirror(c).set

        async def c_counting(namespace: str, key: str, value: bytes, *,
                             expires_at: float | None) -> None:
            c_writes.append(key)
            await c_set(namespace, key, value, expires_at=expires_at)

        _mirror(c).set = c_counting  # type: ignore[method-assign]
        await c.get(POLICY_NAMESPACE, DOMAIN)
        assert c_writes == []
        for store in (a, b, c):
            await store.close()

    asyncio.run(main())


def _lose(server: RedisServer, how: str) -> None:
    admin = _admin(server)
    key = f"tlspolicy:{POLICY_NAMESPACE}:{DOMAIN}"
    try:
        if how == "evicted":
            admin.delete(key)
        elif how == "flushed":
            admin.flushall()
        elif how == "wrong type":
            admin.delete(key)
            admin.hset(key, "a", "b")
        elif how == "damaged":
            admin.set(key, b'{"v": 1, "state": "pol')
        elif how == "failed by another host":
            # A host that never held the policy wrote its failed check.
            admin.set(key, dumps_json(encode_state(_failed())), px=60_000)
    finally:
        admin.close()


@pytest.mark.parametrize("how", ["evicted", "flushed", "wrong type", "damaged",
                                 "failed by another host"])
def test_redis_losing_an_entry_does_not_lose_the_mirrored_policy(
        server: RedisServer, tmp_path: Path, how: str) -> None:
    """Redis answers, but without the entry (evicted, flushed, of the wrong type,
    damaged, or overwritten by a host that never knew the policy): the mirror's
    unexpired enforce policy is served, and the failed check that follows keeps it in
    the mirror (it replaces nothing)."""

    async def main() -> None:
        a = await redis_cache(server.url, tmp_path / "a.sqlite3", timeout=0.5)
        await _write(a, _state())
        await a.close()
        _lose(server, how)
        a = await redis_cache(server.url, tmp_path / "a.sqlite3", timeout=0.5)
        state = await _served(a, tmp_path)
        assert state.state == "policy" and _mode(state) == "enforce", state
        assert await _mirror(a).get(POLICY_NAMESPACE, DOMAIN) is not None
        # A forced check fails (nothing answers DNS): the policy stays in force.
        async with Discovery(_config(tmp_path), store=a) as discovery:
            state = await discovery.refresh(DOMAIN)
        assert _mode(state) == "enforce", state
        assert await _mirror(a).get(POLICY_NAMESPACE, DOMAIN) is not None
        await a.close()

    asyncio.run(main())


def test_only_a_replacement_removes_the_mirror_copy(server: RedisServer,
                                                    tmp_path: Path) -> None:
    """A write the mirror does not select removes its copy only when it replaces the
    copy this store served (a policy fetched in another mode); a failure written
    without having read the policy leaves the copy alone."""

    async def main() -> None:
        a = await redis_cache(server.url, tmp_path / "a.sqlite3", timeout=0.5)
        await _write(a, _state())
        await a.close()
        a = await redis_cache(server.url, tmp_path / "a.sqlite3", timeout=0.5)
        await _write(a, _failed())  # never read here: no replacement
        assert await _mirror(a).get(POLICY_NAMESPACE, DOMAIN) is not None
        # Read (the mirror's copy is preferred to the failure), then replaced.
        entry = await a.get(POLICY_NAMESPACE, DOMAIN)
        assert entry is not None and b'"enforce":true' in entry.value
        await _write(a, _state("testing", policy_id="id2"))
        assert await _mirror(a).get(POLICY_NAMESPACE, DOMAIN) is None
        entry = await a.get(POLICY_NAMESPACE, DOMAIN)
        assert entry is not None and b'"enforce":false' in entry.value
        await a.close()

    asyncio.run(main())


def test_purge_removes_the_shared_entry_and_this_hosts_copy(server: RedisServer,
                                                            tmp_path: Path) -> None:
    async def main() -> None:
        a = await redis_cache(server.url, tmp_path / "a.sqlite3", timeout=0.5)
        await _write(a, _state())
        await _write(a, _state(domain="other.example"))
        async with Discovery(_config(tmp_path), store=a) as discovery:
            assert await discovery.purge(DOMAIN) == 1
            assert await a.get(POLICY_NAMESPACE, DOMAIN) is None
            assert await _mirror(a).get(POLICY_NAMESPACE, DOMAIN) is None
            assert await discovery.purge() >= 1
        assert [e async for e in a.entries(POLICY_NAMESPACE)] == []
        assert [e async for e in _mirror(a).entries(POLICY_NAMESPACE)] == []
        await a.close()

    asyncio.run(main())


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


def _damaged(how: str) -> bytes:
    value = encode_state(_state())
    if how == "another record version":
        value["v"] = 2
        return dumps_json(value)
    if how == "truncated":
        return dumps_json(value)[:-20]
    if how == "a testing policy marked enforce":
        value["policy"] = _policy("testing")
        return dumps_json(value)
    return b'not json "enforce":true'


@pytest.mark.parametrize("how", ["another record version", "truncated", "not json",
                                 "a testing policy marked enforce"])
def test_a_damaged_entry_marked_enforce_does_not_replace_the_mirrored_policy(
        server: RedisServer, tmp_path: Path, how: str) -> None:
    """Only an entry that decodes to an enforce policy is mirrored: a damaged one that
    merely contains the bytes of the enforce flag leaves the good copy in the mirror,
    and the copy's policy is answered (and kept after the check that fails)."""
    key = f"tlspolicy:{POLICY_NAMESPACE}:{DOMAIN}"

    async def main() -> tuple[str | None, str | None, str | None]:
        a = await redis_cache(server.url, tmp_path / "a.sqlite3", timeout=0.5)
        try:
            await _write(a, _state())
            assert await _mirror(a).get(POLICY_NAMESPACE, DOMAIN) is not None
            damaged = _damaged(how)
            assert b'"enforce":true' in damaged
            admin = _admin(server)
            admin.set(key, damaged, px=3_600_000)
            admin.close()
            state = await _served(a, tmp_path)
            async with Discovery(_config(tmp_path), store=a) as discovery:
                checked = await discovery.refresh(DOMAIN)
            copy = await _mirror(a).get(POLICY_NAMESPACE, DOMAIN)
            # The good copy, or the failed check's state that keeps its policy.
            return (_mode(state), _mode(checked),
                    None if copy is None else _mode(decode_state(DOMAIN, copy.value)))
        finally:
            await a.close()

    assert asyncio.run(main()) == ("enforce", "enforce", "enforce")


def test_a_lock_and_read_of_an_unreadable_entry_leaves_no_lock_behind(
        server: RedisServer, tmp_path: Path) -> None:
    """Redis takes the lock but cannot read the entry (a key of another type) and this
    host holds no copy: the caller is told the read failed, and the lock it was not
    told about is given back, so another host can take it at once."""

    async def main() -> bool:
        a = await redis_cache(server.url, tmp_path / "a.sqlite3", timeout=0.5)
        b = await redis_cache(server.url, tmp_path / "b.sqlite3", timeout=0.5)
        try:
            _lose(server, "wrong type")
            with pytest.raises(StoreError):
                await a.acquire_get(  # type: ignore[attr-defined]
                    "refresh", "a", 60.0, POLICY_NAMESPACE, DOMAIN)
            return await b.acquire("refresh", "b", 60.0)
        finally:
            await a.close()
            await b.close()

    assert asyncio.run(main()) is True


def test_a_cancelled_close_still_closes_both_stores(server: RedisServer,
                                                    tmp_path: Path) -> None:
    # Cancelled at its first await, close() still closes the Redis connections and the
    # mirror, then raises the cancellation.
    async def main() -> tuple[bool, list[bool], bool]:
        store = await redis_cache(server.url, tmp_path / "this.sqlite3", timeout=2.0)
        assert isinstance(store, MirroredStore)
        await store.get(POLICY_NAMESPACE, DOMAIN)
        pool = store.primary._client.connection_pool  # type: ignore[attr-defined]
        closing = asyncio.ensure_future(store.close())
        await asyncio.sleep(0)
        closing.cancel()
        try:
            await closing
        except asyncio.CancelledError:
            cancelled = True
        else:
            cancelled = False
        connected = [c.is_connected for c in (*pool._available_connections,
                                               *pool._in_use_connections)]
        return cancelled, connected, store.mirror._closed  # type: ignore[attr-defined]

    cancelled, connected, mirror_closed = asyncio.run(main())
    assert cancelled and mirror_closed
    assert connected and not any(connected)
