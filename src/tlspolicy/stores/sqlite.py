"""SQLite store: one file on disk, survives restarts, shared by processes on one host.

Every operation on one entry or lock runs on the calling thread (the event loop's), on a
connection of that thread's own that never waits for a lock: in WAL mode with
``synchronous=NORMAL`` a read takes no lock and a commit writes to the operating system's
cache without syncing, so either takes a few microseconds, where a trip to a worker thread
and back costs ten to forty times that.  What can wait or take long runs on private
threads instead.  Writes go to one worker thread per store: the checkpoints that sync the
file (every :data:`_CHECKPOINT_EVERY` commits made on the calling thread, which never
checkpoints itself), bulk deletes, and any write that found the file busy (another
process writing) or failed, which the worker runs again, waiting for the lock no longer
than ``busy_timeout`` from when the write was asked (a write queued behind others does not
wait a busy timeout after theirs) and reporting as ever.  While the worker has a write in
hand, every later write joins its queue, so writes take effect in the order they were
asked; past :data:`_MAX_WAITING` operations in its queue another is refused at once as
unavailable.  Reads never queue behind writes waiting for the lock: WAL lets them run at
any time, on the calling thread's connection, else (another thread's, or a read that found
the file busy or failed) on a reader thread with a connection of its own, bulk reads
included.  Only a read of an entry that a write still in the worker's hands is writing
waits for that write, so that it sees it.  The database is in WAL mode with a busy
timeout, so several processes on the host can share the file; the lock table gives them
single-flight (``BEGIN IMMEDIATE`` makes take-or-refuse atomic).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Final, TypeVar

from .base import (
    NOT_READ,
    NotRead,
    StoreEntry,
    StoreError,
    StoreUnavailableError,
    check_name,
    store_log,
)

__all__ = ["SqliteStore"]

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    expires_at REAL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS locks (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
"""

#: Commits on the calling thread's connection between two checkpoints on the worker: about
#: the WAL size at which SQLite would checkpoint by itself (1,000 pages), at a few pages a
#: commit.
_CHECKPOINT_EVERY: Final = 250

#: What :meth:`SqliteStore._here` returns when the operation is for the worker.
_WORKER: Final = object()
#: What :meth:`SqliteStore._here` returns when the read is for the reader thread.
_READER: Final = object()

#: Operations in the worker's (or the reader's) hands at most: past it, another is refused
#: at once as unavailable.  Each waits for the file no longer than the busy timeout from
#: when it was asked, so a queue this long drains within one busy timeout.
_MAX_WAITING = 1000

_GET: Final = ("SELECT value, expires_at FROM entries WHERE namespace=? AND key=? "
               "AND (expires_at IS NULL OR expires_at > ?)")

#: Entries read per batch when iterating, so a large namespace is never loaded at once.
_BATCH = 500


def _blob(value: object, namespace: str, key: str) -> bytes:
    """An entry's value as read; text or a number (put there by another writer: this
    store writes only blobs) is an SQLite error, so that it is reported as one, naming
    the file, and rolls back what the operation began."""
    if not isinstance(value, bytes):
        raise sqlite3.DataError(f"entry {namespace}/{key} is not a blob")
    return value


def _reading(namespace: str, key: str, now: float
             ) -> Callable[[sqlite3.Connection], StoreEntry | None]:
    """The read of one unexpired entry, on whichever connection runs it."""
    def work(conn: sqlite3.Connection) -> StoreEntry | None:
        row = conn.execute(_GET, (namespace, key, now)).fetchone()
        return None if row is None else StoreEntry(namespace, key,
                                                   _blob(row[0], namespace, key), row[1])
    return work


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class SqliteStore:
    """A :class:`~tlspolicy.stores.Store` in one SQLite file.

    ``path`` is created with its tables when missing (``":memory:"`` gives a
    private store for tests).  ``clock`` returns the current time in seconds
    since the epoch (``time.time`` unless a test passes another).
    ``busy_timeout`` bounds how long an operation waits for another process
    holding the file; past it the operation raises
    :class:`~tlspolicy.stores.StoreUnavailableError`.
    """

    def __init__(self, path: str | Path, *, clock: Callable[[], float] = time.time,
                 busy_timeout: float = 5.0) -> None:
        self.path = str(path)
        self._clock = clock
        self._busy_timeout = busy_timeout
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="tlspolicy-sqlite")
        self._conn: sqlite3.Connection | None = None
        # Reads that cannot run on the calling thread: a thread and connection of their
        # own, never behind the worker's writes (WAL lets a read run at any time).
        self._reader = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="tlspolicy-sqlite-read")
        self._reader_conn: sqlite3.Connection | None = None
        self._reader_ops = 0
        self._closed = False
        # The connection of the thread that first used the store (the event loop's): one
        # connection is never used by two threads at once, and another thread's
        # operations go to the worker.
        self._local: sqlite3.Connection | None = None
        self._local_thread: int | None = None
        self._local_commits = 0
        self._checkpoint: concurrent.futures.Future[None] | None = None
        # Operations handed to the worker and not finished: while there are any, the
        # next ones queue behind them (a write run here would overtake them).
        self._worker_ops = 0
        self._ops_lock = threading.Lock()
        # The entries (namespace, key) and prefixes (namespace, prefix) that writes in the
        # worker's hands write, each with how many: a read of one waits for them.
        self._writing: dict[tuple[str, str], int] = {}
        self._purging: dict[tuple[str, str], int] = {}

    # ----------------------------------------------------------------- plumbing

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=self._busy_timeout,
                                       isolation_level=None, check_same_thread=False)
                if self.path != ":memory:":
                    conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite store {self.path}: cannot open: {exc}") from None
            self._conn = conn
        return self._conn

    def _local_here(self) -> sqlite3.Connection | None:
        """The calling thread's connection, or ``None`` when its operations go to the
        worker: another thread has the connection, the file is private to one connection
        (``":memory:"``), or the worker has not opened it yet (its schema would not be
        there)."""
        local = self._local
        if local is not None:
            return local if self._local_thread == threading.get_ident() else None
        if self._conn is None or self.path in (":memory:", ""):
            return None
        try:
            # timeout=0: never wait for another connection's lock on the event loop.
            # wal_autocheckpoint=0: the checkpoints, which sync, run on the worker.
            local = sqlite3.connect(self.path, timeout=0, isolation_level=None,
                                    check_same_thread=False)
            local.execute("PRAGMA synchronous=NORMAL")
            local.execute("PRAGMA wal_autocheckpoint=0")
        except sqlite3.Error:
            return None  # the worker's connection serves, and reports any error
        self._local, self._local_thread = local, threading.get_ident()
        return local

    def _reader_connect(self) -> sqlite3.Connection:
        # Opened only once the worker's connection has made the file and its tables.
        if self._reader_conn is None:
            try:
                self._reader_conn = sqlite3.connect(
                    self.path, timeout=self._busy_timeout, isolation_level=None,
                    check_same_thread=False)
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite store {self.path}: cannot open: {exc}") from None
        return self._reader_conn

    def _close_reader(self) -> None:
        reader, self._reader_conn = self._reader_conn, None
        if reader is not None:
            reader.close()

    def _write_waits(self, namespace: str, key: str) -> bool:
        """Whether a write in the worker's hands writes the entry (a read of it then
        waits for that write, so that it sees it)."""
        if (namespace, key) in self._writing:
            return True
        purging = self._purging
        return bool(purging) and any(
            space == namespace and key.startswith(prefix) for space, prefix in list(purging))

    def _here(self, function: Callable[[sqlite3.Connection], _T], *, writes: bool,
              entry: tuple[str, str] | None = None) -> _T | object:
        """``function``'s result on the calling thread's connection, or :data:`_WORKER`
        when the worker is to run it, :data:`_READER` when the reader thread is (see the
        module's docstring).  ``entry``: the entry a read reads."""
        if self._closed:
            return _WORKER
        if writes:
            if self._worker_ops or (self._checkpoint is not None
                                    and not self._checkpoint.done()):
                # A checkpoint catches up with the WAL only while nothing is added to
                # it, and the next commit after it starts the WAL file from its beginning
                # again: until it is done, writes queue behind it.
                return _WORKER
        elif entry is not None and self._write_waits(*entry):
            return _WORKER
        local = self._local_here()
        if local is None:
            return _WORKER if writes else _READER
        try:
            result = function(local)
        except sqlite3.Error:
            # Busy (another process writing, or recovering the file) or failed: nothing
            # of it was committed, and the worker (a read: the reader) runs it again.
            self._roll_back_local(local)
            return _WORKER if writes else _READER
        except BaseException:
            # Not SQLite's (a value it cannot bind): nothing may stay half done.
            self._roll_back_local(local)
            raise
        if writes:
            self._local_commits += 1
            if self._local_commits >= _CHECKPOINT_EVERY:
                self._local_commits = 0
                self._checkpoint = self._executor.submit(self._checkpoint_now)
        return result

    def _roll_back_local(self, local: sqlite3.Connection) -> None:
        try:
            if local.in_transaction:
                local.rollback()
        except sqlite3.Error:
            self._local = None
            local.close()

    def _checkpoint_now(self) -> None:
        # PASSIVE: copies what no reader still needs and waits for nobody.  A failure
        # leaves the WAL longer until the next one; nothing is lost.
        with contextlib.suppress(sqlite3.Error, StoreError):
            self._connect().execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def _do(self, function: Callable[[sqlite3.Connection], _T], *, writes: bool,
                  entry: tuple[str, str] | None = None) -> _T:
        """``function`` run here, else on the worker or the reader (see the module's
        docstring).  ``entry``: the entry the operation reads (``writes`` false) or
        writes."""
        result = self._here(function, writes=writes, entry=None if writes else entry)
        if result is _WORKER:
            return await self._on_worker(function, writing=entry if writes else None)
        if result is _READER:
            return await self._on_reader(function)
        return result  # type: ignore[return-value]

    def _refuse_when_full(self, waiting: int) -> None:
        if waiting >= _MAX_WAITING:
            raise StoreUnavailableError(
                f"SQLite store {self.path}: {waiting} operations already wait for the "
                "file; refused")

    async def _on_worker(self, function: Callable[..., _T], *args: Any,
                         writing: tuple[str, str] | None = None,
                         purging: tuple[str, str] | None = None) -> _T:
        if self._closed:
            raise StoreError(f"SQLite store {self.path} is closed")
        self._refuse_when_full(self._worker_ops)
        return await self._run(function, *args, writing=writing, purging=purging)

    async def _on_reader(self, function: Callable[..., _T], *args: Any) -> _T:
        if self._closed:
            raise StoreError(f"SQLite store {self.path} is closed")
        if self._conn is None or self.path in (":memory:", ""):
            # Not opened yet (the worker makes the file and its tables), or private to
            # the worker's one connection.
            return await self._on_worker(function, *args)
        self._refuse_when_full(self._reader_ops)
        with self._ops_lock:
            self._reader_ops += 1
        try:
            future = self._reader.submit(self._guarded, self._reader_connect,
                                         time.monotonic() + self._busy_timeout, function,
                                         *args)
        except BaseException:
            with self._ops_lock:
                self._reader_ops -= 1
            raise
        future.add_done_callback(self._reader_done)
        return await asyncio.wrap_future(future)

    def _reader_done(self, future: concurrent.futures.Future[Any]) -> None:
        with self._ops_lock:
            self._reader_ops -= 1

    async def _run(self, function: Callable[..., _T], *args: Any,
                   writing: tuple[str, str] | None = None,
                   purging: tuple[str, str] | None = None) -> _T:
        # Counted until the worker is done with it, not until the awaiting task is: a task
        # cancelled while the worker runs its operation (waiting for the lock, say) must
        # not let a later operation overtake that one on this thread.
        with self._ops_lock:
            self._worker_ops += 1
            if writing is not None:
                self._writing[writing] = self._writing.get(writing, 0) + 1
            if purging is not None:
                self._purging[purging] = self._purging.get(purging, 0) + 1
        try:
            # The wait for the lock counts from now: one queued behind others waits for
            # it no longer than one busy timeout in all.
            future = self._executor.submit(self._guarded, self._connect,
                                           time.monotonic() + self._busy_timeout,
                                           function, *args)
        except BaseException:
            self._worker_done(None, writing, purging)
            raise
        future.add_done_callback(
            lambda done: self._worker_done(done, writing, purging))
        return await asyncio.wrap_future(future)

    def _worker_done(self, future: concurrent.futures.Future[Any] | None,
                     writing: tuple[str, str] | None,
                     purging: tuple[str, str] | None) -> None:
        with self._ops_lock:
            self._worker_ops -= 1
            for held, name in ((self._writing, writing), (self._purging, purging)):
                if name is not None:
                    left = held.pop(name) - 1
                    if left:
                        held[name] = left

    def _guarded(self, connect: Callable[[], sqlite3.Connection], deadline: float,
                 function: Callable[..., _T], *args: Any) -> _T:
        conn = connect()
        try:
            # What is left of the operation's wait for another process's lock (none left:
            # one try, no wait).
            wait = max(0, int((deadline - time.monotonic()) * 1000))
            conn.execute(f"PRAGMA busy_timeout={wait}")
            return function(conn, *args)
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.rollback()
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreUnavailableError(f"SQLite store {self.path}: {exc}") from None
            raise StoreError(f"SQLite store {self.path}: {exc}") from None
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.rollback()
            raise StoreError(f"SQLite store {self.path}: {exc}") from None
        except BaseException:
            # Not SQLite's (a value it cannot bind): nothing may stay half done.
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.rollback()
            raise

    # ------------------------------------------------------------------ entries

    async def get(self, namespace: str, key: str) -> StoreEntry | None:
        """The unexpired entry, or ``None``."""
        check_name(namespace, key)
        return await self._do(_reading(namespace, key, self._clock()), writes=False,
                              entry=(namespace, key))

    def get_now(self, namespace: str, key: str) -> StoreEntry | NotRead | None:
        """:meth:`get` when it can run now on this thread (see the module's docstring),
        else :data:`~tlspolicy.stores.NOT_READ`: a write of the entry waits in the
        worker's hands, the file is busy or private, or another thread has the
        connection."""
        check_name(namespace, key)
        result = self._here(_reading(namespace, key, self._clock()), writes=False,
                            entry=(namespace, key))
        return NOT_READ if result is _WORKER or result is _READER \
            else result  # type: ignore[return-value]

    async def set(self, namespace: str, key: str, value: bytes, *,
                  expires_at: float | None) -> None:
        """Store ``value``, replacing any entry of that name."""
        check_name(namespace, key)
        if not isinstance(value, bytes):
            raise StoreError(f"store values are bytes, not {type(value).__name__}")

        def work(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?)",
                         (namespace, key, value, expires_at))

        await self._do(work, writes=True, entry=(namespace, key))

    async def delete(self, namespace: str, key: str) -> bool:
        """Remove one entry; whether it existed."""
        check_name(namespace, key)

        def work(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute("DELETE FROM entries WHERE namespace=? AND key=?",
                                  (namespace, key))
            return cursor.rowcount > 0

        return await self._do(work, writes=True, entry=(namespace, key))

    async def purge(self, namespace: str, prefix: str = "") -> int:
        """Remove every entry of ``namespace`` whose key starts with ``prefix``."""
        check_name(namespace, prefix)

        def work(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "DELETE FROM entries WHERE namespace=? AND key LIKE ? ESCAPE '\\'",
                (namespace, _like_prefix(prefix)))
            # Expired rows anywhere are dead weight: drop them while we are here.
            conn.execute("DELETE FROM entries WHERE expires_at <= ?", (self._clock(),))
            return cursor.rowcount

        return await self._on_worker(work, purging=(namespace, prefix))

    async def entries(self, namespace: str, prefix: str = "") -> AsyncIterator[StoreEntry]:
        """The unexpired entries of ``namespace`` under ``prefix``, in key order."""
        check_name(namespace, prefix)
        after = ""
        first = True
        while True:
            now = self._clock()

            def work(conn: sqlite3.Connection, after: str = after,
                     first: bool = first, now: float = now) -> list[Any]:
                return conn.execute(
                    "SELECT key, value, expires_at FROM entries WHERE namespace=? "
                    "AND key LIKE ? ESCAPE '\\' AND (key > ? OR ?) "
                    "AND (expires_at IS NULL OR expires_at > ?) ORDER BY key LIMIT ?",
                    (namespace, _like_prefix(prefix), after, first, now, _BATCH)).fetchall()

            rows = await self._on_reader(work)
            for key, value, expires_at in rows:
                if isinstance(value, bytes):
                    yield StoreEntry(namespace, key, value, expires_at)
                else:
                    # Put there by another writer (this store writes only blobs): passed
                    # over, as a listing's reader passes over an entry it cannot decode,
                    # so that one such row does not hide every entry after it.  A read of
                    # this one entry reports it as an error.
                    store_log.warning("SQLite store %s: entry %s/%r is not a blob; "
                                      "passed over", self.path, namespace, str(key)[:200])
            if len(rows) < _BATCH:
                return
            after = rows[-1][0]
            first = False

    # -------------------------------------------------------------------- locks

    async def acquire(self, name: str, owner: str, ttl: float) -> bool:
        """Take the lock ``name`` for ``ttl`` seconds unless another owner holds it."""
        check_name("lock", name)
        check_name("lock", owner)
        if not ttl > 0:
            raise StoreError(f"lock ttl {ttl!r} must be positive")

        def work(conn: sqlite3.Connection) -> bool:
            conn.execute("BEGIN IMMEDIATE")
            # Read once the write lock is ours (perhaps a busy timeout after the call):
            # the lock lasts ``ttl`` from when it is taken.
            now = self._clock()
            row = conn.execute("SELECT owner, expires_at FROM locks WHERE name=?",
                               (name,)).fetchone()
            if row is not None and row[0] != owner and row[1] > now:
                conn.execute("COMMIT")
                return False
            conn.execute("INSERT OR REPLACE INTO locks VALUES (?, ?, ?)",
                         (name, owner, now + ttl))
            conn.execute("COMMIT")
            return True

        return await self._do(work, writes=True)

    async def acquire_get(self, name: str, owner: str, ttl: float, namespace: str,
                          key: str) -> tuple[bool, StoreEntry | None]:
        """:meth:`acquire`, then :meth:`get` of the entry, in one transaction (one trip
        to the worker thread): whether the lock was taken, and the entry."""
        check_name("lock", name)
        check_name("lock", owner)
        check_name(namespace, key)
        if not ttl > 0:
            raise StoreError(f"lock ttl {ttl!r} must be positive")

        def work(conn: sqlite3.Connection) -> tuple[bool, StoreEntry | None]:
            conn.execute("BEGIN IMMEDIATE")
            now = self._clock()  # once the write lock is ours, as in acquire
            row = conn.execute("SELECT owner, expires_at FROM locks WHERE name=?",
                               (name,)).fetchone()
            held = row is None or row[0] == owner or row[1] <= now
            if held:
                conn.execute("INSERT OR REPLACE INTO locks VALUES (?, ?, ?)",
                             (name, owner, now + ttl))
            found = conn.execute(_GET, (namespace, key, now)).fetchone()
            # Checked before the commit: an entry that is not a blob takes no lock.
            entry = None if found is None else StoreEntry(
                namespace, key, _blob(found[0], namespace, key), found[1])
            conn.execute("COMMIT")
            return held, entry

        return await self._do(work, writes=True)

    async def set_release(self, namespace: str, key: str, value: bytes, *,
                          expires_at: float | None, name: str, owner: str) -> None:
        """:meth:`set`, then :meth:`release` of the lock ``name``, in one transaction;
        when the write fails, the lock is still given back (best effort)."""
        check_name("lock", name)

        def work(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?)",
                         (namespace, key, value, expires_at))
            conn.execute("DELETE FROM locks WHERE name=? AND owner=?", (name, owner))
            conn.execute("COMMIT")

        try:
            check_name(namespace, key)
            if not isinstance(value, bytes):
                raise StoreError(f"store values are bytes, not {type(value).__name__}")
            await self._do(work, writes=True, entry=(namespace, key))
        except StoreError:
            # The write failed: the lock is given back all the same, as release would.
            with contextlib.suppress(StoreError):
                await self.release(name, owner)
            raise

    async def release(self, name: str, owner: str) -> None:
        """Give the lock back if ``owner`` still holds it."""
        check_name("lock", name)

        def work(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM locks WHERE name=? AND owner=?", (name, owner))

        await self._do(work, writes=True)

    async def close(self) -> None:
        """Close the database and stop the worker and reader threads."""
        if self._closed:
            return

        def work(conn: sqlite3.Connection) -> None:
            conn.close()

        # Closed from here on, even if this task is cancelled below: nothing reopens the
        # local connection, and the threads' closes still run after what is queued.
        self._closed = True
        local, self._local = self._local, None
        if local is not None:
            local.close()
        # After the reads it still has in hand (one of which may open its connection).
        reading = self._reader.submit(self._close_reader) if (
            self._reader_ops or self._reader_conn is not None) else None
        self._reader.shutdown(wait=False)
        try:
            if self._conn is not None:
                await asyncio.shield(self._run(work))
            if reading is not None:
                await asyncio.shield(asyncio.wrap_future(reading))
        finally:
            # Even when this task is cancelled: the worker ends after what is queued.
            self._executor.shutdown(wait=False)
