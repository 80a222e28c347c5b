"""Recording delivery results for TLS-RPT: the sink API and a buffered sink.

A sink has one method, ``record(result)``, taking a
:class:`~tlspolicy.policies.tlsrpt.SessionResult`.  The library's drivers call it for every
attempt when given ``sink=`` (see :func:`~tlspolicy.policies.tlsrpt.report_policy` and
:func:`~tlspolicy.policies.tlsrpt.session_result` to record from any other MTA).

:class:`BufferedSink` never blocks or fails a delivery: ``record`` only
counts the result in memory under a lock; a background thread with its own
event loop writes the counts to a store every ``flush_interval`` seconds.  A
store that is down is counted (``store_errors``) and logged, and what could
not be written stays buffered (bounded by ``max_pending`` distinct results;
beyond that new results are counted as ``dropped``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, Protocol, runtime_checkable

from tlspolicy.errors import TlsPolicyError
from tlspolicy.names import normalise_domain
from tlspolicy.policies.tlsrpt import PolicyType, SessionResult

from ..stores import Store, StoreError, dumps_json, loads_json

__all__ = [
    "DAY",
    "MAX_STORED_COUNT",
    "RESULTS_NAMESPACE",
    "BufferedSink",
    "MemorySink",
    "ResultSink",
    "decode_results",
    "encode_results",
    "period_start",
    "results_key_domain",
]

log = logging.getLogger("tlspolicy.reporting")

#: The store namespace of recorded result counts.
RESULTS_NAMESPACE = "tlsrpt-results"
#: The default reporting period: a UTC day, in seconds.
DAY = 86400


@runtime_checkable
class ResultSink(Protocol):
    """Where delivery results go.  ``record`` must return at once and never raise."""

    def record(self, result: SessionResult) -> None:
        """Take one attempt's result."""


class MemorySink:
    """Keeps every result in a list (tests, or an MTA that aggregates itself)."""

    def __init__(self) -> None:
        self.results: list[SessionResult] = []
        self._lock = threading.Lock()

    def record(self, result: SessionResult) -> None:
        """Append ``result``."""
        with self._lock:
            self.results.append(result)


def period_start(moment: float, period: int = DAY) -> int:
    """The start (epoch seconds) of the period holding ``moment``; periods align to
    the epoch, so a day period is a UTC day."""
    return int(moment // period) * period


_FIELDS = ("policy_domain", "policy_strings", "mx_hosts", "result_type", "sending_mta_ip",
           "receiving_mx_hostname", "receiving_mx_helo", "receiving_ip",
           "failure_reason_code", "additional_information")


def encode_results(items: Iterable[tuple[SessionResult, int]]) -> bytes:
    """Stored form of (result, count) pairs: compact JSON lists."""
    rows: list[list[Any]] = []
    for result, count in items:
        row: list[Any] = [result.policy_type.value]
        for name in _FIELDS:
            value = getattr(result, name)
            row.append(list(value) if isinstance(value, tuple) else value)
        row.append(count * result.count)
        rows.append(row)
    return dumps_json({"v": 1, "results": rows})


#: The largest count one stored row may carry: a node flushes every few seconds, so a
#: row over a billion attempts is not a count but a corrupt or hostile entry.
MAX_STORED_COUNT: Final = 10**9


def decode_results(data: bytes) -> list[tuple[SessionResult, int]]:
    """Read what :func:`encode_results` wrote; a corrupt entry raises ``StoreError``.

    The store may be shared by a fleet, so every row is checked as it is read:
    each field through :class:`~tlspolicy.policies.tlsrpt.SessionResult`'s own checks, and the
    count a whole number from 1 to :data:`MAX_STORED_COUNT`.
    """
    value = loads_json(data)
    if not isinstance(value, dict) or value.get("v") != 1 or not isinstance(
            value.get("results"), list):
        raise StoreError("stored TLS-RPT results are not in the expected form")
    out: list[tuple[SessionResult, int]] = []
    for row in value["results"]:
        if not isinstance(row, list) or len(row) != len(_FIELDS) + 2:
            raise StoreError("stored TLS-RPT result row is malformed")
        count = row[-1]
        if type(count) is not int or not 1 <= count <= MAX_STORED_COUNT:
            # A negative count would cancel real results; a huge one would be reported.
            shown = str(count) if len(str(count)) <= 30 else f"{str(count)[:30]}..."
            raise StoreError(f"stored TLS-RPT result row has the count {shown}, "
                             f"not a whole number from 1 to {MAX_STORED_COUNT}")
        try:
            fields = dict(zip(_FIELDS, row[1:-1], strict=True))
            out.append((SessionResult(PolicyType(row[0]), **fields), count))
        except (ValueError, TypeError) as exc:
            raise StoreError(f"stored TLS-RPT result row is malformed: {exc}") from None
    return out


def results_key_domain(key: str, start: int) -> str | None:
    """The policy domain of a stored results key ``start/domain/node/seq``, or ``None``
    when the key is not one :class:`BufferedSink` writes (another period, a domain that
    is not normalised, a node or sequence that is no name or number)."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != str(start) or not parts[3].isdigit():
        return None
    domain, node = parts[1], parts[2]
    if not _valid_node(node):
        return None
    try:
        if normalise_domain(domain) != domain:
            return None
    except TlsPolicyError:
        return None
    return domain


def _valid_node(node: str) -> bool:
    return bool(node) and node not in (".", "..") and node.isprintable() and \
        "/" not in node and not any(c.isspace() for c in node)


class BufferedSink:
    """A :class:`ResultSink` counting in memory and flushing to a store in the background.

    ``store_factory`` makes the store (or a coroutine making it) inside the
    flusher's own event loop, since stores bind to the loop that uses them:
    ``lambda: SqliteStore(path)``, or ``lambda: RedisStore.connect(url)`` so a
    fleet aggregates in one place.  Each flush writes one entry per
    (period, policy domain) under a key unique to this node, so nodes never
    overwrite each other and the report job sums them.  Entries expire
    ``retention`` seconds after their period ends.  Use as a context manager,
    or call :meth:`start` and :meth:`close` (which flushes what is left).
    """

    def __init__(self, store_factory: Callable[[], Store | Awaitable[Store]], *, period: int = DAY,
                 flush_interval: float = 5.0, max_pending: int = 100_000,
                 retention: float = 8 * DAY, node: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if period <= 0 or DAY % period:
            raise StoreError(f"reporting period {period!r} must divide a day (in seconds)")
        self._factory = store_factory
        self.period = period
        self.flush_interval = flush_interval
        self.max_pending = max_pending
        self.retention = retention
        self.node = node or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        if not _valid_node(self.node):
            # It is a part of every key written; the reader refuses keys it cannot split.
            raise StoreError(f"reporting node name {self.node[:60]!r} must be printable, "
                             "without '/' or blanks, and not '.' or '..'")
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[tuple[int, SessionResult], int] = {}
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._store: Store | None = None
        self._ready = threading.Event()
        #: Attempts recorded, flushed, dropped (buffer full), and failed store writes.
        self.recorded = 0
        self.flushed = 0
        self.dropped = 0
        self.store_errors = 0

    # ---------------------------------------------------------------- hot path

    def record(self, result: SessionResult) -> None:
        """Count ``result`` in its period.  Never blocks on I/O, never raises."""
        try:
            key = (int(self._clock() // self.period) * self.period, result)
            with self._lock:
                count = self._pending.get(key)
                if count is None and len(self._pending) >= self.max_pending:
                    self.dropped += 1
                    return
                self._pending[key] = (count or 0) + 1
                self.recorded += 1
        except Exception:  # a delivery must never fail because of reporting
            log.exception("TLS-RPT: recording a result failed")

    @property
    def pending(self) -> int:
        """Attempts counted but not yet written."""
        with self._lock:
            return sum(self._pending.values())

    # ----------------------------------------------------------------- flusher

    def start(self) -> BufferedSink:
        """Start the background flusher (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tlspolicy-tlsrpt-sink",
                                            daemon=True)
            self._thread.start()
            self._ready.wait(10)
        return self

    def __enter__(self) -> BufferedSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            made = self._factory()
            store = await made if inspect.isawaitable(made) else made
            self._store = store
        except Exception:
            log.exception("TLS-RPT: opening the result store failed; results stay in memory")
            self._ready.set()
            return
        finally:
            self._ready.set()
        try:
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.flush_interval)
                await self._flush(store)
        finally:
            await self._flush(store)
            try:
                await store.close()
            except Exception:
                log.exception("TLS-RPT: closing the result store failed")

    async def _flush(self, store: Store) -> None:
        with self._lock:
            taken, self._pending = self._pending, {}
        if not taken:
            return
        groups: dict[tuple[int, str], list[tuple[SessionResult, int]]] = {}
        for (start, result), count in taken.items():
            groups.setdefault((start, result.policy_domain), []).append((result, count))
        for (start, domain), items in groups.items():
            key = f"{start}/{domain}/{self.node}/{next(self._seq)}"
            try:
                await store.set(RESULTS_NAMESPACE, key, encode_results(items),
                                expires_at=start + self.period + self.retention)
            except Exception as exc:  # the store is down: count, log, keep the counts
                self.store_errors += 1
                log.warning("TLS-RPT: writing %d results for %s failed (%s); kept in memory",
                            sum(c for _, c in items), domain, exc)
                with self._lock:
                    for result, count in items:
                        k = (start, result)
                        if k in self._pending or len(self._pending) < self.max_pending:
                            self._pending[k] = self._pending.get(k, 0) + count
                        else:
                            self.dropped += count
            else:
                self.flushed += sum(c for _, c in items)

    def flush(self, timeout: float = 30.0) -> None:
        """Write what is buffered now and wait for it (for tests and shutdown)."""
        loop, store = self._loop, self._store
        if loop is None or store is None or self._thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._flush(store), loop)
        try:
            future.result(timeout)
        except Exception:
            log.exception("TLS-RPT: flushing results failed")

    def close(self, timeout: float = 30.0) -> None:
        """Flush what is left and stop the flusher."""
        if self._thread is None or self._loop is None or self._stop is None:
            return
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)
        self._thread = None
