"""The bounded regex match cache the resolver and its floors share (SEMANTICS 2)."""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Hashable

__all__ = ["RegexMatchCache"]


class RegexMatchCache:
    """A bounded, thread-safe LRU cache; reads take no lock.

    In the spirit of Momentum's ``match_cache_size``: remembering which regex
    stanzas match a domain saves running every pattern on every delivery.  The
    resolver uses the same structure to memoise whole decisions.  A size of 0
    disables caching.  ``None`` is never stored: it means "not cached".

    Reads are the hot path, so :meth:`get` only looks the key up and appends
    it to a buffer of recent reads; it never waits for a lock.  The buffer is
    replayed in order (moving each key to the young end) under the lock by the
    next :meth:`put`, or by a reader once the buffer holds ``drain_after``
    keys and the lock is free.  Eviction therefore sees the recency order of
    every read, except that reads made while a replay is running join the
    next replay.  A put of a new key with no read buffered takes no lock
    unless it has to evict.  ``hits`` and ``misses`` are statistics; under concurrent
    misses a few increments may be lost.
    """

    __slots__ = ("_data", "_drain_at", "_hits", "_lock", "_misses", "_reads", "size")

    def __init__(self, size: int) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"cache size must be a whole number >= 0, got {size!r}")
        self.size = size
        self._data: OrderedDict[Hashable, object] = OrderedDict()
        self._reads: deque[Hashable] = deque()
        self._lock = threading.Lock()
        # Replaying costs one move per read; bounding the buffer bounds the
        # pause a single put can see and the memory the buffer holds.
        self._drain_at = max(64, min(size, 4096))
        self._hits = 0
        self._misses = 0

    @property
    def hits(self) -> int:
        """Lookups answered from the cache."""
        return self._hits + len(self._reads)

    @property
    def misses(self) -> int:
        """Lookups that found nothing."""
        return self._misses

    def get(self, key: Hashable) -> object | None:
        """The cached value for ``key`` (marking it recently used), or ``None``."""
        value = self._data.get(key)
        if value is None:
            self._misses += 1
            return None
        reads = self._reads
        reads.append(key)
        if len(reads) > self._drain_at:
            self.drain()
        return value

    def drain(self) -> None:
        """Apply buffered reads to the recency order if no writer holds the lock."""
        if self._lock.acquire(blocking=False):
            try:
                self._replay()
            finally:
                self._lock.release()

    def _replay(self) -> None:
        # Called with the lock held: only lock holders move or remove keys.
        data, reads = self._data, self._reads
        replayed = 0
        # Only lock holders take from the buffer, so a non-empty one stays non-empty
        # until we take from it (readers only append).
        while reads:
            key = reads.popleft()
            replayed += 1
            if key in data:
                data.move_to_end(key)
        self._hits += replayed

    def put(self, key: Hashable, value: object) -> None:
        """Remember ``value``; evict the least recently used entries when full."""
        if self.size <= 0 or value is None:
            return
        data = self._data
        if not self._reads and key not in data:
            # The common case, a key just missed with no read to replay first, takes no
            # lock (acquiring one costs about as much as the rest of a put): only lock
            # holders move or remove keys, and a new key goes to the young end, as below.
            data[key] = value
            if len(data) <= self.size:
                return
            # Full (perhaps through other such puts at the same time): evict below.
        # acquire() and release() rather than a with statement, which costs twice as
        # much here (it looks both methods up and calls __exit__ with three arguments).
        lock = self._lock
        lock.acquire()
        try:
            if self._reads:
                self._replay()
            before = len(data)
            data[key] = value
            if len(data) == before:
                # Replaced: a new key is already at the young end.
                data.move_to_end(key)
            while len(data) > self.size:
                data.popitem(last=False)
        finally:
            lock.release()

    def clear(self) -> None:
        """Forget every entry (statistics are kept)."""
        with self._lock:
            self._replay()
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
