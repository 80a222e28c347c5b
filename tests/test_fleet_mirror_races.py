"""A read of the fleet store in flight while this store purges, deletes or rewrites the
same entry: what the read brings back from Redis is older than the change, so it is never
put into the local mirror (nor served from there) once the change has been made.

Every test starts its own redis-server.  The read is held between Redis's answer and the
mirror's side of it (a gate in front of the primary), so the change runs in between
every time, not by chance of scheduling."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from discovery_support import RedisServer, _binary, free_port
from test_fleet_mirror import DOMAIN, _config, _mode, _state, _write
from tlspolicy.discovery import Discovery, redis_cache
from tlspolicy.discovery.stscache import POLICY_NAMESPACE, encode_state, mirror_enforce_policies
from tlspolicy.stores import MirroredStore, Store, StoreEntry, dumps_json
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


@pytest.mark.parametrize("prefix", ["", DOMAIN[:3]])
def test_a_read_begun_while_a_purge_is_under_way_does_not_undo_it(
        server: RedisServer, tmp_path: Path, prefix: str) -> None:
    # The purge has started (its mirror side in flight, Redis not yet purged) when the
    # read begins: what the read brings back from Redis is older than the purge.
    async def main() -> tuple[Any, Any, Any]:
        other = await _host(server, tmp_path / "other.sqlite3")
        store = await _host(server, tmp_path / "this.sqlite3")
        try:
            await _write(other, _state())
            purging = asyncio.ensure_future(store.purge(POLICY_NAMESPACE, prefix))
            await asyncio.sleep(0)
            await asyncio.gather(purging, store.get(POLICY_NAMESPACE, DOMAIN))
            return (await store.primary.get(POLICY_NAMESPACE, DOMAIN),
                    await store.mirror.get(POLICY_NAMESPACE, DOMAIN),
                    await store.get(POLICY_NAMESPACE, DOMAIN))
        finally:
            await store.close()
            await other.close()

    assert asyncio.run(main()) == (None, None, None)


class Jittery:
    """A primary whose reads and changes each wait a few random milliseconds before
    and after, so reads and this host's changes of the same keys overlap every way."""

    def __init__(self, inner: Store, rnd: random.Random) -> None:
        self.inner = inner
        self.rnd = rnd

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def _late(self, call: Awaitable[Any]) -> Any:
        await asyncio.sleep(self.rnd.random() * 0.004)
        result = await call
        await asyncio.sleep(self.rnd.random() * 0.004)
        return result

    async def get(self, *args: Any) -> Any:
        return await self._late(self.inner.get(*args))

    async def acquire_get(self, *args: Any) -> Any:
        return await self._late(self.inner.acquire_get(*args))  # type: ignore[attr-defined]

    async def set(self, *args: Any, **kwargs: Any) -> Any:
        return await self._late(self.inner.set(*args, **kwargs))

    async def set_release(self, *args: Any, **kwargs: Any) -> Any:
        return await self._late(self.inner.set_release(  # type: ignore[attr-defined]
            *args, **kwargs))

    async def delete(self, *args: Any) -> Any:
        return await self._late(self.inner.delete(*args))

    async def purge(self, *args: Any) -> Any:
        return await self._late(self.inner.purge(*args))


_GROUPS = {"a": ["a1.example", "a2.example"], "b": ["b1.example", "b2.example"],
           "c": ["c.example"]}


def _value(domain: str, mode: str, policy_id: str) -> bytes:
    return dumps_json(encode_state(_state(mode, domain=domain, policy_id=policy_id)))


async def _jittered_rounds(store: MirroredStore, other: MirroredStore, seed: int,
                           rounds: int) -> list[tuple[int, str, list[str]]]:
    """Rounds of this host's purges, deletes and writes racing its reads (gets and
    lock-and-reads) of the same keys; what the mirror holds and a get serves after
    each round that is not the last change."""
    rnd = random.Random(seed)
    inner = store.primary
    store.primary = Jittery(inner, rnd)
    keys = [key for group in _GROUPS.values() for key in group]
    faults = []
    for round_ in range(rounds):
        for key in keys:  # enforce policies from another host, read here
            await other.set(POLICY_NAMESPACE, key, _value(key, "enforce", f"o{round_}"),
                            expires_at=time.time() + 3600)
            await store.get(POLICY_NAMESPACE, key)
        expect: dict[str, bytes | None] = {}
        changes: list[tuple[str, str]] = []
        for group, members in _GROUPS.items():
            choice = rnd.choice(["purge", "keys", "keys", "none"])
            if choice == "purge":
                changes.append(("purge", group))
                expect.update(dict.fromkeys(members))
            elif choice == "keys":
                for key in members:
                    what = rnd.choice(["delete", "enforce", "testing", "locked enforce",
                                       "locked testing", "none"])
                    if what != "none":
                        expect[key] = None if what == "delete" else _value(
                            key, what.split()[-1], f"t{round_}")
                        changes.append((what, key))

        async def change(what: str, key: str, value: bytes | None) -> None:
            await asyncio.sleep(rnd.random() * 0.01)
            expires_at = time.time() + 3600
            if what == "purge":
                await store.purge(POLICY_NAMESPACE, key)
            elif what == "delete":
                await store.delete(POLICY_NAMESPACE, key)
            elif what.startswith("locked"):
                assert value is not None
                await store.set_release(POLICY_NAMESPACE, key, value,
                                        expires_at=expires_at, name="L" + key, owner="me")
            else:
                assert value is not None
                await store.set(POLICY_NAMESPACE, key, value, expires_at=expires_at)

        async def read() -> None:
            await asyncio.sleep(rnd.random() * 0.012)
            key = rnd.choice(keys)
            if rnd.random() < 0.5:
                await store.get(POLICY_NAMESPACE, key)
            else:
                await store.acquire_get("R" + key, "reader", 5.0, POLICY_NAMESPACE, key)
                await store.release("R" + key, "reader")

        await asyncio.gather(*(change(what, key, expect.get(key)) for what, key in changes),
                             *(read() for _ in range(rnd.randint(5, 25))))
        for key, value in expect.items():
            copy = await store.mirror.get(POLICY_NAMESPACE, key)
            served = await store.get(POLICY_NAMESPACE, key)
            if (None if served is None else served.value) != value:
                faults.append((round_, key, ["served a version not last written"]))
            if copy is not None and copy.value != value:
                faults.append((round_, key, ["mirror holds an older version"]))
            if value is not None and mirror_enforce_policies(POLICY_NAMESPACE, key, value) \
                    and (copy is None or copy.value != value):
                faults.append((round_, key, ["enforce write not in the mirror"]))
    store.primary = inner
    return faults


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reads_racing_this_hosts_changes_never_leave_an_older_version(
        server: RedisServer, tmp_path: Path, seed: int) -> None:
    # Randomised (with a fixed seed) overlaps of reads and changes: after them the
    # mirror holds only the last change's version, and a get serves it.
    async def main() -> list[tuple[int, str, list[str]]]:
        other = await _host(server, tmp_path / "other.sqlite3")
        store = await _host(server, tmp_path / "this.sqlite3")
        try:
            return await _jittered_rounds(store, other, seed, 10)
        finally:
            await store.close()
            await other.close()

    assert asyncio.run(main()) == []
