"""The SQLite store while another process holds the file's write lock (a second daemon,
``cache purge``, ``import-cache``): reads, which WAL allows at any time, never wait
behind writes waiting for the lock; those writes wait no longer than the busy timeout
from when they were asked, and only so many of them.  The lock is held by a real second
process on the same file, given back when the test ends (or after a minute at most)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tlspolicy.stores import (
    NOT_READ,
    SqliteStore,
    StoreEntry,
    StoreUnavailableError,
    acquire_get,
)
from tlspolicy.stores import sqlite as sqlite_module

pytestmark = pytest.mark.timeout(120)

_HOLDER = """
import signal, sqlite3, sys
signal.alarm(60)  # never outlives the test by long, whatever happens to it
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT OR REPLACE INTO locks VALUES ('holder', 'other', 0)")
print("locked", flush=True)
sys.stdin.readline()  # until the test closes the pipe
conn.execute("ROLLBACK")
"""


class LockHolder:
    """A second process holding ``BEGIN IMMEDIATE`` on the file until :meth:`release`."""

    def __init__(self, path: Path) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "locked"

    def release(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture
def holder() -> Iterator[list[LockHolder]]:
    held: list[LockHolder] = []
    yield held
    for one in held:
        one.release()


async def _seeded(path: Path, busy_timeout: float) -> SqliteStore:
    store = SqliteStore(path, busy_timeout=busy_timeout)
    for key in ("fresh", "due", "written"):
        await store.set("t", key, key.encode(), expires_at=time.time() + 3600)
    return store


def test_reads_never_wait_behind_writes_waiting_for_the_lock(
        tmp_path: Path, holder: list[LockHolder]) -> None:
    path = tmp_path / "cache.sqlite3"

    async def main() -> None:
        store = await _seeded(path, busy_timeout=30.0)
        try:
            holder.append(LockHolder(path))
            # Writes and lock attempts queue on the worker, each waiting for the lock.
            waiting = [asyncio.ensure_future(store.set("t", f"w{i}", b"x", expires_at=None))
                       for i in range(3)]
            waiting.append(asyncio.ensure_future(
                acquire_get(store, "mta-sts.due", "me", 30, "t", "due")))
            for _ in range(5):
                await asyncio.sleep(0.01)
            # A read of an entry nobody is writing: at once, and on the loop's thread too.
            now = store.get_now("t", "fresh")
            assert isinstance(now, StoreEntry) and now.value == b"fresh"
            entry = await asyncio.wait_for(store.get("t", "fresh"), 10)
            assert entry is not None and entry.value == b"fresh"
            # From another thread (its own path to the file, not the worker's queue).
            other = await asyncio.wait_for(asyncio.to_thread(
                asyncio.run, store.get("t", "due")), 10)
            assert other is not None and other.value == b"due"
            listed = await asyncio.wait_for(_keys(store), 10)
            assert listed == ["due", "fresh", "written"]
            assert not any(task.done() for task in waiting)  # still waiting for the lock
            holder[0].release()
            await asyncio.wait_for(asyncio.gather(*waiting), 30)
            assert (await store.get("t", "w2")) is not None
        finally:
            await store.close()

    asyncio.run(main())


async def _keys(store: SqliteStore) -> list[str]:
    return [entry.key async for entry in store.entries("t")]


def test_a_read_of_an_entry_being_written_sees_the_write(
        tmp_path: Path, holder: list[LockHolder]) -> None:
    # A read does not overtake a write of the same entry that waits for the lock: it
    # returns what was written once the write is done, never the older value.
    path = tmp_path / "cache.sqlite3"

    async def main() -> None:
        store = await _seeded(path, busy_timeout=30.0)
        try:
            holder.append(LockHolder(path))
            write = asyncio.ensure_future(store.set("t", "written", b"new", expires_at=None))
            for _ in range(5):
                await asyncio.sleep(0.01)
            assert store.get_now("t", "written") is NOT_READ
            read = asyncio.ensure_future(store.get("t", "written"))
            for _ in range(5):
                await asyncio.sleep(0.01)
            assert not read.done() and not write.done()
            holder[0].release()
            entry = await asyncio.wait_for(read, 30)
            assert entry is not None and entry.value == b"new"
            await write
        finally:
            await store.close()

    asyncio.run(main())


def test_writes_waiting_for_the_lock_each_wait_one_busy_timeout_at_most(
        tmp_path: Path, holder: list[LockHolder]) -> None:
    # Each queued write waits for the lock no longer than the busy timeout from when it
    # was asked, not one busy timeout after another: eight writes queued at once have
    # all given up once the first has (they would take eight timeouts one by one).
    path = tmp_path / "cache.sqlite3"
    busy_timeout = 1.0

    async def main() -> list[object]:
        store = await _seeded(path, busy_timeout=busy_timeout)
        try:
            holder.append(LockHolder(path))
            writes = [store.set("t", f"w{i}", b"x", expires_at=None) for i in range(8)]
            async with asyncio.timeout(busy_timeout * 4):
                return await asyncio.gather(*writes, return_exceptions=True)
        finally:
            await store.close()

    results = asyncio.run(main())
    assert all(isinstance(result, StoreUnavailableError) for result in results), results


def test_writes_waiting_for_the_lock_are_bounded_in_number(
        tmp_path: Path, holder: list[LockHolder], monkeypatch: pytest.MonkeyPatch) -> None:
    # Past the bound, another write is refused at once as unavailable rather than queued.
    path = tmp_path / "cache.sqlite3"
    monkeypatch.setattr(sqlite_module, "_MAX_WAITING", 4)

    async def main() -> None:
        store = await _seeded(path, busy_timeout=30.0)
        try:
            holder.append(LockHolder(path))
            waiting = [asyncio.ensure_future(store.set("t", f"w{i}", b"x", expires_at=None))
                       for i in range(4)]
            await asyncio.sleep(0.05)
            with pytest.raises(StoreUnavailableError, match="wait"):
                await store.set("t", "w4", b"x", expires_at=None)
            assert not any(task.done() for task in waiting)
            # Reads still go their own way.
            entry = await asyncio.wait_for(store.get("t", "fresh"), 10)
            assert entry is not None
            holder[0].release()
            await asyncio.wait_for(asyncio.gather(*waiting), 30)
        finally:
            await store.close()

    asyncio.run(main())


@pytest.mark.parametrize("together", [False, True], ids=["acquire", "acquire_get"])
def test_a_lock_taken_after_waiting_for_the_file_lasts_its_ttl_from_then(
        tmp_path: Path, holder: list[LockHolder], together: bool) -> None:
    # The lock's expiry counts from when it is taken, not from when it was asked: one
    # taken after waiting for another process's write lock is not already partly run
    # out (and a second owner does not get it early).
    path = tmp_path / "cache.sqlite3"
    now = [1000.0]

    def clock() -> float:
        return now[0]

    async def main() -> tuple[bool, bool]:
        store = SqliteStore(path, clock=clock, busy_timeout=30.0)
        other = SqliteStore(path, clock=clock)
        try:
            await store.set("t", "k", b"v", expires_at=None)
            holder.append(LockHolder(path))
            if together:
                taking = asyncio.ensure_future(acquire_get(store, "L", "a", 10.0, "t", "k"))
            else:
                taking = asyncio.ensure_future(store.acquire("L", "a", 10.0))
            await asyncio.sleep(0.2)  # the call has been made and waits for the file
            assert not taking.done()
            now[0] = 1100.0  # the wait took 100 s
            holder[0].release()
            taken = await taking
            held = taken[0] if isinstance(taken, tuple) else taken
            now[0] = 1105.0  # half the ttl later
            return held, await other.acquire("L", "b", 10.0)
        finally:
            await other.close()
            await store.close()

    assert asyncio.run(main()) == (True, False)
