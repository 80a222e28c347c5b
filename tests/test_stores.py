"""The store protocol on both backends: SQLite (a file) and a real redis-server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from discovery_support import RedisServer
from tlspolicy.stores import (
    MirroredStore,
    SqliteStore,
    Store,
    StoreEntry,
    StoreError,
    StoreUnavailableError,
    acquire_get,
    dumps_json,
    loads_json,
    set_release,
)
from tlspolicy.stores.base import MAX_KEY_LENGTH, check_name

pytestmark = pytest.mark.timeout(60)


class Clock:
    """A clock that starts at the real time and moves only when told to."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _run(coro_factory: Callable[[], object]) -> None:
    asyncio.run(coro_factory())  # type: ignore[arg-type]


async def _redis_store(url: str, clock: Clock, prefix: str) -> Store:
    from tlspolicy.stores.redis import RedisStore

    store = await RedisStore.connect(url, prefix=prefix, clock=clock)
    await store.purge("t")
    await store.purge("u")
    return store


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Clock], object]:
    if request.param == "sqlite":
        async def sqlite(clock: Clock) -> Store:
            return SqliteStore(tmp_path / "cache.sqlite3", clock=clock)
        return sqlite
    server: RedisServer = request.getfixturevalue("redis_server")

    async def redis(clock: Clock) -> Store:
        return await _redis_store(server.url, clock, f"test-{request.node.name}:")
    return redis


def test_get_set_expiry_delete(make_store: Callable[[Clock], object]) -> None:
    async def main() -> None:
        clock = Clock()
        store: Store = await make_store(clock)  # type: ignore[misc]
        assert await store.get("t", "a") is None
        await store.set("t", "a", b"one", expires_at=clock.now + 10)
        await store.set("t", "b", b"two", expires_at=None)
        entry = await store.get("t", "a")
        assert entry is not None and entry.value == b"one"
        assert entry.expires_at is not None and abs(entry.expires_at - (clock.now + 10)) < 0.01
        assert (await store.get("t", "b")).value == b"two"  # type: ignore[union-attr]
        # Never served at or past its expiry.
        clock.now += 10
        assert await store.get("t", "a") is None
        assert (await store.get("t", "b")) is not None
        assert await store.delete("t", "b") is True
        assert await store.delete("t", "b") is False
        assert await store.get("t", "b") is None
        await store.close()

    _run(main)


def test_namespaces_prefix_purge_and_iteration(make_store: Callable[[Clock], object]) -> None:
    async def main() -> None:
        clock = Clock()
        store: Store = await make_store(clock)  # type: ignore[misc]
        for key in ("example.com", "example.net", "ex_ample.org", "other.org"):
            await store.set("t", key, key.encode(), expires_at=clock.now + 60)
        await store.set("u", "example.com", b"other namespace", expires_at=None)
        await store.set("t", "gone.example", b"x", expires_at=clock.now + 1)
        clock.now += 2
        keys = [e.key async for e in store.entries("t")]
        assert keys == ["ex_ample.org", "example.com", "example.net", "other.org"]
        # "_" and "%" in a prefix are literal, not patterns.
        assert [e.key async for e in store.entries("t", "ex_")] == ["ex_ample.org"]
        assert await store.purge("t", "example.") == 2
        assert [e.key async for e in store.entries("t")] == ["ex_ample.org", "other.org"]
        assert (await store.get("u", "example.com")).value == b"other namespace"  # type: ignore[union-attr]
        # (Redis still holds the entry the test clock expired; the real clock never would.)
        await store.delete("t", "gone.example")
        assert await store.purge("t") == 2
        assert [e async for e in store.entries("t")] == []
        await store.close()

    _run(main)


def test_lock_single_holder_and_expiry(make_store: Callable[[Clock], object]) -> None:
    async def main() -> None:
        clock = Clock()
        store: Store = await make_store(clock)  # type: ignore[misc]
        name = f"lock-{time.monotonic_ns()}"
        assert await store.acquire(name, "a", 0.5) is True
        assert await store.acquire(name, "b", 0.5) is False
        assert await store.acquire(name, "a", 0.5) is True  # re-entrant for its owner
        await store.release(name, "b")  # not b's: nothing happens
        assert await store.acquire(name, "b", 0.5) is False
        await store.release(name, "a")
        assert await store.acquire(name, "b", 0.5) is True
        # A holder that never releases blocks others only until the lock expires.
        clock.now += 1
        await asyncio.sleep(0.6)
        assert await store.acquire(name, "c", 5) is True
        await store.release(name, "c")
        await store.close()

    _run(main)


def test_bad_names_and_values_are_typed_errors(tmp_path: Path) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path / "s.sqlite3")
        for namespace, key in (("", "k"), ("a b", "k"), ("t", "with space"), ("t", "x" * 600),
                               ("t", "nul\x00")):
            with pytest.raises(StoreError):
                await store.get(namespace, key)
        with pytest.raises(StoreError):
            await store.set("t", "k", "text", expires_at=None)  # type: ignore[arg-type]
        with pytest.raises(StoreError):
            loads_json(b"{not json")
        assert loads_json(dumps_json({"b": 1, "a": [1, 2]})) == {"a": [1, 2], "b": 1}
        await store.close()
        with pytest.raises(StoreError):
            await store.get("t", "k")

    _run(main)


def test_sqlite_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"

    async def write() -> None:
        store = SqliteStore(path)
        await store.set("t", "k", b"kept", expires_at=time.time() + 3600)
        await store.close()

    async def read() -> bytes | None:
        store = SqliteStore(path)
        entry = await store.get("t", "k")
        await store.close()
        return None if entry is None else entry.value

    asyncio.run(write())
    assert asyncio.run(read()) == b"kept"


def test_sqlite_reads_see_every_write_made_before_them(tmp_path: Path) -> None:
    # Reads run on the event loop's thread on a connection of their own, writes on the
    # worker's: each read sees what was written before it, never an older snapshot.
    async def main() -> list[bytes | None]:
        store = SqliteStore(tmp_path / "cache.sqlite3")
        seen: list[bytes | None] = []
        try:
            for i in range(5):
                await store.set("t", "k", str(i).encode(), expires_at=None)
                entry = await store.get("t", "k")
                seen.append(None if entry is None else entry.value)
            await store.delete("t", "k")
            seen.append(None if (entry := await store.get("t", "k")) is None else entry.value)
            assert store._local is not None and not store._local.in_transaction
        finally:
            await store.close()
        return seen

    assert asyncio.run(main()) == [b"0", b"1", b"2", b"3", b"4", None]


def test_sqlite_read_of_a_damaged_file_is_a_store_error(tmp_path: Path) -> None:
    # A read that fails on the calling thread's connection goes to the worker, which
    # reports it as every operation does: a StoreError naming the file, never sqlite3's.
    import sqlite3

    path = tmp_path / "cache.sqlite3"

    async def main() -> None:
        store = SqliteStore(path)
        try:
            await store.set("t", "k", b"v", expires_at=None)
            assert (await store.get("t", "k")) is not None
            other = sqlite3.connect(path, isolation_level=None)
            other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            other.close()
            with open(path, "r+b") as handle:
                handle.write(b"not a database at all" * 5)
            with pytest.raises(StoreError, match=r"cache\.sqlite3: file is not a database"):
                await store.get("t", "k")
        finally:
            await store.close()

    asyncio.run(main())


def test_sqlite_writes_behind_a_busy_file_keep_their_order(tmp_path: Path) -> None:
    # Another process holds the write lock: a write does not wait on the event loop's
    # thread but on the worker, the loop runs meanwhile, and a later write queues behind
    # it rather than overtaking it.
    import sqlite3

    path = tmp_path / "cache.sqlite3"

    async def main() -> bytes | None:
        store = SqliteStore(path, busy_timeout=10.0)
        try:
            await store.set("t", "k", b"0", expires_at=None)
            await store.set("t", "k", b"1", expires_at=None)
            other = sqlite3.connect(path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            first = asyncio.create_task(store.set("t", "k", b"2", expires_at=None))
            ticks = 0
            for _ in range(10):
                await asyncio.sleep(0.02)
                ticks += 1
            assert ticks == 10 and not first.done()
            other.execute("ROLLBACK")
            other.close()
            # The file is free now, but the first write still waits on the worker (its
            # busy handler sleeps between tries): the second must not go ahead of it.
            second = asyncio.create_task(store.set("t", "k", b"3", expires_at=None))
            await asyncio.wait_for(asyncio.gather(first, second), 10)
            entry = await store.get("t", "k")
            return None if entry is None else entry.value
        finally:
            await store.close()

    assert asyncio.run(main()) == b"3"


def test_sqlite_a_cancelled_operation_is_not_overtaken(tmp_path: Path) -> None:
    # A task cancelled while the worker runs its operation (waiting out the busy timeout)
    # does not cancel that operation: later ones must still queue behind it, or a late
    # write and a late lock release would land after what was asked after them.
    import sqlite3

    path = tmp_path / "cache.sqlite3"

    async def main() -> tuple[bytes | None, bool, bool]:
        store = SqliteStore(path, busy_timeout=10.0)
        try:
            await store.set("t", "k", b"0", expires_at=None)
            assert await store.acquire("L", "me", 60)
            other = sqlite3.connect(path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            write = asyncio.create_task(store.set("t", "k", b"1", expires_at=None))
            release = asyncio.create_task(store.release("L", "me"))
            await asyncio.sleep(0.05)
            write.cancel()
            release.cancel()
            await asyncio.gather(write, release, return_exceptions=True)
            other.execute("ROLLBACK")
            other.close()
            await store.set("t", "k", b"2", expires_at=None)
            mine = await store.acquire("L", "me", 60)
            await store.purge("u")  # on the worker: after whatever it still had in hand
            entry = await store.get("t", "k")
            theirs = await store.acquire("L", "other", 60)
            return None if entry is None else entry.value, mine, theirs
        finally:
            await store.close()

    assert asyncio.run(main()) == (b"2", True, False)


def test_sqlite_a_cancelled_close_still_closes(tmp_path: Path) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path / "cache.sqlite3")
        await store.set("t", "k", b"v", expires_at=None)
        await store.set("t", "k", b"v", expires_at=None)
        closing = asyncio.create_task(store.close())
        await asyncio.sleep(0)
        closing.cancel()
        await asyncio.gather(closing, return_exceptions=True)
        with pytest.raises(StoreError, match="closed"):
            await store.set("t", "k", b"w", expires_at=None)
        with pytest.raises(StoreError, match="closed"):
            await store.get("t", "k")

    asyncio.run(main())


def test_sqlite_wal_stays_bounded_under_a_stream_of_writes(tmp_path: Path) -> None:
    # Commits on the event loop's thread never checkpoint; the worker does, every few
    # hundred commits, with writes queued behind it so that the WAL file starts over.
    path = tmp_path / "cache.sqlite3"

    async def main() -> int:
        store = SqliteStore(path)
        largest = 0
        try:
            for i in range(3000):
                await store.set("t", f"k{i}", b"x" * 1000, expires_at=None)
                largest = max(largest, (tmp_path / "cache.sqlite3-wal").stat().st_size)
            assert len([e async for e in store.entries("t")]) == 3000
        finally:
            await store.close()
        return largest

    # Without checkpoints the WAL would hold every page written: over 12 MB here.
    assert asyncio.run(main()) < 8 * 1024 * 1024


def test_sqlite_store_read_from_a_second_thread(tmp_path: Path) -> None:
    # One read connection serves one thread; a second thread's reads go to the worker.
    import threading

    store = SqliteStore(tmp_path / "cache.sqlite3")
    results: list[bytes | None] = []

    async def read(value: bytes) -> None:
        await store.set("t", "k", value, expires_at=None)
        entry = await store.get("t", "k")
        results.append(None if entry is None else entry.value)

    asyncio.run(read(b"first"))
    thread = threading.Thread(target=lambda: asyncio.run(read(b"second")))
    thread.start()
    thread.join(30)
    asyncio.run(read(b"third"))
    asyncio.run(store.close())
    assert results == [b"first", b"second", b"third"]


_HOLD_AND_DIE = """
import asyncio, sys
sys.path[:0] = {paths!r}
from tlspolicy.stores import SqliteStore
async def main():
    {make}
    assert await store.acquire("shared", "dead-process", 1.5)
    print("held", flush=True)
asyncio.run(main())
"""


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_lock_across_processes_dead_holder(backend: str, tmp_path: Path,
                                           request: pytest.FixtureRequest) -> None:
    """A process takes the lock and dies without releasing: others wait only its ttl."""
    if backend == "sqlite":
        path = tmp_path / "shared.sqlite3"
        make = f"store = SqliteStore({str(path)!r})"
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        make = ("from tlspolicy.stores.redis import RedisStore; store = await "
                f"RedisStore.connect({server.url!r}, prefix='xproc:')")
    code = _HOLD_AND_DIE.format(paths=sys.path, make=make)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, check=True)
    assert out.stdout.strip() == "held"

    async def main() -> float:
        if backend == "sqlite":
            store: Store = SqliteStore(path)
        else:
            from tlspolicy.stores.redis import RedisStore
            store = await RedisStore.connect(server.url, prefix="xproc:")
        assert await store.acquire("shared", "me", 5) is False
        start = time.monotonic()
        while not await store.acquire("shared", "me", 5):
            assert time.monotonic() - start < 10, "a dead holder's lock never expired"
            await asyncio.sleep(0.05)
        await store.release("shared", "me")
        await store.close()
        return time.monotonic() - start

    asyncio.run(main())


def test_redis_refuses_every_eviction_policy_but_noeviction(
        redis_server: RedisServer) -> None:
    """volatile-* too: every entry is written with an expiry, so those evict exactly the
    store's entries."""
    from tlspolicy.stores.redis import RedisStore

    async def main() -> None:
        import redis.asyncio as redis_asyncio

        admin = redis_asyncio.Redis.from_url(redis_server.url)
        try:
            for policy in ("allkeys-lru", "allkeys-lfu", "allkeys-random", "volatile-lru",
                           "volatile-lfu", "volatile-random", "volatile-ttl"):
                await admin.config_set("maxmemory-policy", policy)
                with pytest.raises(StoreError, match="maxmemory-policy"):
                    await RedisStore.connect(redis_server.url)
            await admin.config_set("maxmemory-policy", "noeviction")
            store = await RedisStore.connect(redis_server.url)
            await store.close()
        finally:
            await admin.config_set("maxmemory-policy", "noeviction")
            await admin.aclose()

    asyncio.run(main())


def test_redis_lock_and_read_of_a_key_of_another_type_leaves_no_lock(
        redis_server: RedisServer) -> None:
    """A WRONGTYPE on the entry's read fails the call; the lock taken in the same round
    trip is given back, since the caller is told neither."""
    from tlspolicy.stores.redis import RedisStore

    async def main() -> None:
        import redis.asyncio as redis_asyncio

        admin = redis_asyncio.Redis.from_url(redis_server.url)
        store = await RedisStore.connect(redis_server.url, prefix="test-wrongtype:")
        try:
            await admin.rpush("test-wrongtype:t:k", "x")
            with pytest.raises(StoreError, match="WRONGTYPE"):
                await store.acquire_get("lk", "a", 30, "t", "k")
            assert await store.acquire("lk", "b", 30)  # free for another owner at once
        finally:
            await admin.delete("test-wrongtype:t:k", "test-wrongtype:lock:lk")
            await admin.aclose()
            await store.close()

    asyncio.run(main())


class _PlainStore:
    """A store with only the protocol's methods (no combined operations)."""

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self.get = inner.get
        self.set = inner.set
        self.acquire = inner.acquire
        self.release = inner.release
        self.close = inner.close


async def _check_combined(store: Store, other: Store, clock: Clock, k: str = "k") -> None:
    name = f"lock-{time.monotonic_ns()}"
    assert await acquire_get(store, name, "a", 5, "t", k) == (True, None)
    # Another owner is refused the lock but still reads the entry.
    await store.set("t", k, b"v1", expires_at=clock.now + 60)
    held, entry = await acquire_get(other, name, "b", 5, "t", k)
    assert held is False and entry is not None and entry.value == b"v1"
    # Re-entrant for its owner, with the entry read under the lock.
    held, entry = await acquire_get(store, name, "a", 5, "t", k)
    assert held is True and entry is not None and entry.value == b"v1"
    # The write lands and the lock is given back: the other owner takes it at once.
    await set_release(store, "t", k, b"v2", expires_at=clock.now + 60, name=name,
                      owner="a")
    held, entry = await acquire_get(other, name, "b", 5, "t", k)
    assert held is True and entry is not None and entry.value == b"v2"
    # Giving back a lock one does not hold leaves it to its holder (the write lands).
    await set_release(store, "t", k, b"v3", expires_at=clock.now + 60, name=name,
                      owner="a")
    assert await store.acquire(name, "a", 5) is False
    assert (await store.get("t", k)).value == b"v3"  # type: ignore[union-attr]
    # A write that fails still gives the lock back.
    with pytest.raises(StoreError):
        await set_release(other, "t", k, "text", expires_at=None,  # type: ignore[arg-type]
                          name=name, owner="b")
    assert await store.acquire(name, "a", 5) is True
    await store.release(name, "a")
    # An expired entry is not read.
    await store.set("t", f"{k}-gone", b"x", expires_at=clock.now + 0.2)
    clock.now += 1
    await asyncio.sleep(0.3)
    assert await acquire_get(store, name, "a", 5, "t", f"{k}-gone") == (True, None)
    await store.release(name, "a")


def test_combined_lock_and_entry_operations(make_store: Callable[[Clock], object]) -> None:
    async def main() -> None:
        clock = Clock()
        store: Store = await make_store(clock)  # type: ignore[misc]
        try:
            await _check_combined(store, store, clock)
            # The same through the generic path (a store without the combined methods).
            plain = _PlainStore(store)
            await _check_combined(plain, plain, clock, "k2")  # type: ignore[arg-type]
        finally:
            await store.close()

    _run(main)


def test_combined_operations_through_a_mirrored_store(redis_server: RedisServer,
                                                      tmp_path: Path) -> None:
    async def main() -> None:
        clock = Clock()
        primary = await _redis_store(redis_server.url, clock, "test-mirrored-combined:")
        local = SqliteStore(tmp_path / "mirror.sqlite3", clock=clock)
        store = MirroredStore(primary, local,
                              mirror_when=lambda ns, key, value: value[:1] == b"v")
        try:
            await _check_combined(store, store, clock)
            assert (await acquire_get(store, "m", "a", 5, "t", "k"))[0] is True
            await set_release(store, "t", "k", b"v4", expires_at=clock.now + 60, name="m",
                              owner="a")
            assert (await local.get("t", "k")).value == b"v4"  # type: ignore[union-attr]
            assert (await primary.get("t", "k")).value == b"v4"  # type: ignore[union-attr]
            # A write the mirror does not select removes its copy, and frees both locks.
            assert await acquire_get(store, "m", "a", 5, "t", "k") == (
                True, await primary.get("t", "k"))
            await set_release(store, "t", "k", b"other", expires_at=clock.now + 60,
                              name="m", owner="a")
            assert await local.get("t", "k") is None
            assert await primary.acquire("m", "b", 5) is True
            assert await local.acquire("m", "b", 5) is True
        finally:
            await store.close()

    _run(main)


def test_redis_down_is_unavailable_and_mirror_serves(tmp_path: Path) -> None:
    """A stopped Redis raises StoreUnavailableError; MirroredStore serves mirrored entries."""
    from discovery_support import _binary, free_port
    from tlspolicy.stores.redis import RedisStore

    server = RedisServer(_binary("redis-server"), free_port())
    server.start()

    async def main() -> None:
        redis_store = await RedisStore.connect(server.url, timeout=1.0)
        local = SqliteStore(tmp_path / "mirror.sqlite3")
        store = MirroredStore(redis_store, local,
                              mirror_when=lambda ns, key, value: value.startswith(b"keep"))
        await store.set("t", "a", b"keep me", expires_at=time.time() + 60)
        await store.set("t", "b", b"shared only", expires_at=time.time() + 60)
        assert (await local.get("t", "b")) is None
        server.stop()
        with pytest.raises(StoreUnavailableError):
            await redis_store.get("t", "a")
        assert (await store.get("t", "a")).value == b"keep me"  # type: ignore[union-attr]
        assert await store.get("t", "b") is None
        assert store.fallbacks >= 1
        assert await store.acquire("l", "me", 1) is True  # local single-flight meanwhile
        await store.release("l", "me")
        await local.close()
        await redis_store.close()

    try:
        asyncio.run(main())
    finally:
        server.stop()


async def _aiter_list(items: AsyncIterator[object]) -> list[object]:
    return [item async for item in items]


@given(st.text(max_size=40) | st.text(st.characters(max_codepoint=0x80), max_size=40))
def test_a_store_key_holds_no_control_character_space_or_del(key: str) -> None:
    """Every backend's keys: at most MAX_KEY_LENGTH characters, none below 0x21 and no DEL
    (a space or a line break would let one key stand for another in a log or a listing);
    anything else, other scripts included, is a key."""
    allowed = not any(ord(c) < 0x21 or ord(c) == 0x7F for c in key)
    if allowed:
        check_name("mta-sts", key)
    else:
        with pytest.raises(StoreError, match="printable characters without spaces"):
            check_name("mta-sts", key)


def test_a_store_key_is_a_string_of_bounded_length() -> None:
    check_name("mta-sts", "x" * MAX_KEY_LENGTH)
    for bad in ("x" * (MAX_KEY_LENGTH + 1), b"x", 5, None):
        with pytest.raises(StoreError, match="store key"):
            check_name("mta-sts", bad)  # type: ignore[arg-type]
    for namespace in ("", "a b", "é", "x" * 65):
        with pytest.raises(StoreError, match="store namespace"):
            check_name(namespace, "k")



def test_sqlite_a_cancelled_close_still_ends_the_worker(tmp_path: Path) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path / "cache.sqlite3")
        await store.set("t", "k", b"v", expires_at=None)
        closing = asyncio.create_task(store.close())
        await asyncio.sleep(0)
        closing.cancel()
        await asyncio.gather(closing, return_exceptions=True)
        # The worker takes nothing new: its thread ends once what was queued is done.
        with pytest.raises(RuntimeError, match="shutdown"):
            store._executor.submit(lambda: None)

    asyncio.run(main())


def test_a_mirrored_store_that_cannot_read_its_mirror_does_not_answer_no_entry(
        tmp_path: Path) -> None:
    # The primary has no entry and the mirror cannot be read: whether this host holds a
    # copy is unknown, so the read is unavailable rather than "no entry".
    class FailingReads:
        def __init__(self, inner: Store) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        async def get(self, namespace: str, key: str) -> StoreEntry | None:
            raise StoreError("mirror damaged")

    async def main() -> None:
        primary = SqliteStore(tmp_path / "primary.sqlite3")
        local = SqliteStore(tmp_path / "mirror.sqlite3")
        store = MirroredStore(primary, FailingReads(local),  # type: ignore[arg-type]
                              mirror_when=lambda ns, key, value: True)
        try:
            with pytest.raises(StoreUnavailableError):
                await store.get("t", "k")
            await primary.set("t", "k", b"v", expires_at=None)
            assert (await store.get("t", "k")).value == b"v"  # type: ignore[union-attr]
        finally:
            await primary.close()
            await local.close()

    asyncio.run(main())
