"""A read of the fleet store in flight while this store purges, deletes or rewrites the
same entry: what the read brings back from Redis is older than the change, so it is never
put into the local mirror (nor served from there) once the change has been made.

Every test starts its own redis-server.  The read is held between Redis's answer and the
mirror's side of it (a gate in front of the primary), so the change runs in between
every time, not by chance of scheduling."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from discovery_support import RedisServer, _binary, free_port
from test_fleet_mirror import DOMAIN, _config, _mode, _state, _write
from tlspolicy.discovery import Discovery, redis_cache
from tlspolicy.discovery.stscache import POLICY_NAMESPACE
from tlspolicy.stores import MirroredStore, Store, StoreEntry
from tlspolicy.stores import mirrored as mirrored_module

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    redis = RedisServer(_binary("redis-server"), free_port())
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


class Gated:
    """A primary whose reads of one key, once answered, wait for :attr:`gate`."""

    def __init__(self, inner: Store, key: str) -> None:
        self.inner = inner
        self.key = key
        self.answered = asyncio.Event()
        self.gate = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def _held(self, key: str, read: Awaitable[Any]) -> Any:
        result = await read
        if key == self.key:
            self.answered.set()
            await self.gate.wait()
        return result

    async def get(self, namespace: str, key: str) -> StoreEntry | None:
        return await self._held(key, self.inner.get(namespace, key))

    async def acquire_get(self, name: str, owner: str, ttl: float, namespace: str,
                          key: str) -> tuple[bool, StoreEntry | None]:
        return await self._held(key, self.inner.acquire_get(  # type: ignore[attr-defined]
            name, owner, ttl, namespace, key))


async def _host(server: RedisServer, path: Path) -> MirroredStore:
    store = await redis_cache(server.url, path, timeout=2.0)
    assert isinstance(store, MirroredStore)
    return store


async def _raced(store: MirroredStore, change: Callable[[], Awaitable[Any]],
                 read: Callable[[], Awaitable[Any]] | None = None) -> Any:
    """``read`` (a get of DOMAIN by default) answered by Redis, then ``change`` run to
    its end, then the read let go; what the read answered."""
    gated = Gated(store.primary, DOMAIN)
    store.primary = gated
    reading = asyncio.ensure_future(
        read() if read is not None else store.get(POLICY_NAMESPACE, DOMAIN))
    try:
        async with asyncio.timeout(10):
            await gated.answered.wait()
            await change()
    finally:
        gated.gate.set()
    async with asyncio.timeout(10):
        result = await reading
    store.primary = gated.inner
    return result


def _entry_mode(entry: StoreEntry | None) -> str | None:
    if entry is None:
        return None
    return "enforce" if b'"enforce":true' in entry.value else "other"


@pytest.mark.parametrize("how", ["purge", "purge prefix", "delete"])
def test_a_read_in_flight_does_not_undo_a_purge_or_delete(
        server: RedisServer, tmp_path: Path, how: str) -> None:
    async def main() -> tuple[Any, Any, Any]:
        other = await _host(server, tmp_path / "other.sqlite3")
        store = await _host(server, tmp_path / "this.sqlite3")
        try:
            await _write(other, _state())  # written by another host: never read here

            async def change() -> None:
                if how == "purge":
                    await store.purge(POLICY_NAMESPACE)
                elif how == "purge prefix":
                    await store.purge(POLICY_NAMESPACE, DOMAIN[:3])
                else:
                    await store.delete(POLICY_NAMESPACE, DOMAIN)

            await _raced(store, change)
            return (await store.primary.get(POLICY_NAMESPACE, DOMAIN),
                    await store.mirror.get(POLICY_NAMESPACE, DOMAIN),
                    await store.get(POLICY_NAMESPACE, DOMAIN))
        finally:
            await store.close()
            await other.close()

    assert asyncio.run(main()) == (None, None, None)


def test_a_read_in_flight_does_not_undo_a_write(server: RedisServer,
                                                tmp_path: Path) -> None:
    # This host writes a testing policy while its read of the older enforce one (written
    # by another host) is in flight: from then on it reads its own write.
    async def main() -> tuple[Any, Any]:
        other = await _host(server, tmp_path / "other.sqlite3")
        store = await _host(server, tmp_path / "this.sqlite3")
        try:
            await _write(other, _state())
            await _raced(store, lambda: _write(store, _state("testing", policy_id="id2")))
            return (_entry_mode(await store.mirror.get(POLICY_NAMESPACE, DOMAIN)),
                    _entry_mode(await store.get(POLICY_NAMESPACE, DOMAIN)))
        finally:
            await store.close()
            await other.close()

    assert asyncio.run(main()) == (None, "other")


def test_a_read_in_flight_does_not_put_back_an_older_version(server: RedisServer,
                                                             tmp_path: Path) -> None:
    async def main() -> tuple[bytes | None, bytes | None]:
        other = await _host(server, tmp_path / "other.sqlite3")
        store = await _host(server, tmp_path / "this.sqlite3")
        try:
            await _write(other, _state(policy_id="old"))
            await _raced(store, lambda: _write(store, _state(policy_id="new")))
            copy = await store.mirror.get(POLICY_NAMESPACE, DOMAIN)
            entry = await store.get(POLICY_NAMESPACE, DOMAIN)
            return (None if copy is None else copy.value,
                    None if entry is None else entry.value)
        finally:
            await store.close()
            await other.close()

    copy, entry = asyncio.run(main())
    assert copy is not None and b'"new"' in copy
    assert entry == copy


def test_a_lock_and_read_in_flight_does_not_undo_a_purge(server: RedisServer,
                                                         tmp_path: Path) -> None:
    async def main() -> tuple[Any, Any]:
        other = await _host(server, tmp_path / "other.sqlite3")
        store = await _host(server, tmp_path / "this.sqlite3")
        try:
            await _write(other, _state())

            async def read() -> Any:
                held, _ = await store.acquire_get("L", "me", 10.0, POLICY_NAMESPACE,
                                                  DOMAIN)
                await store.release("L", "me")
                return held

            await _raced(store, lambda: store.purge(POLICY_NAMESPACE), read)
            return (await store.mirror.get(POLICY_NAMESPACE, DOMAIN),
                    await store.get(POLICY_NAMESPACE, DOMAIN))
        finally:
            await store.close()
            await other.close()

    assert asyncio.run(main()) == (None, None)


def test_discovery_purge_during_a_lookup_is_not_undone(server: RedisServer,
                                                       tmp_path: Path) -> None:
    # After Discovery.purge has returned, neither this process nor a new one on this
    # host answers the purged policy from the mirror.
    async def main() -> tuple[Any, Any]:
        other = await _host(server, tmp_path / "other.sqlite3")
        store = await _host(server, tmp_path / "this.sqlite3")
        try:
            await _write(other, _state())
            async with Discovery(_config(tmp_path), store=store) as discovery:
                await _raced(store, lambda: discovery.purge(DOMAIN),
                             lambda: discovery.sts_state(DOMAIN))
                copy = await store.mirror.get(POLICY_NAMESPACE, DOMAIN)
            again = await _host(server, tmp_path / "this.sqlite3")
            try:
                async with Discovery(_config(tmp_path), store=again) as fresh:
                    state = await fresh.sts_state(DOMAIN)
            finally:
                await again.close()
            return copy, _mode(state)
        finally:
            await store.close()
            await other.close()

    assert asyncio.run(main()) == (None, None)


def test_a_key_just_read_is_remembered_however_many_others_were(
        server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The versions this store served are bounded by forgetting the least recently used,
    # not all at once: a policy just served and then replaced by a testing one is not
    # served again from the mirror.
    monkeypatch.setattr(mirrored_module, "_KNOWN_LIMIT", 3)

    async def main() -> str | None:
        other = await _host(server, tmp_path / "other.sqlite3")
        store = await _host(server, tmp_path / "this.sqlite3")
        try:
            for domain in ("a.example", "b.example", DOMAIN):
                await _write(other, _state(domain=domain))
                assert await store.get(POLICY_NAMESPACE, domain) is not None
            await _write(other, _state(domain="c.example"))
            assert await store.get(POLICY_NAMESPACE, "c.example") is not None
            await _write(store, _state("testing", policy_id="id2"))
            return _entry_mode(await store.get(POLICY_NAMESPACE, DOMAIN))
        finally:
            await store.close()
            await other.close()

    assert asyncio.run(main()) == "other"
