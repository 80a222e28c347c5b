"""A shared store with a local mirror for the entries that must survive its outage."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar

from .base import (
    Store,
    StoreEntry,
    StoreError,
    StoreUnavailableError,
    acquire_get,
    set_release,
    store_log,
)

__all__ = ["MirroredStore"]

_T = TypeVar("_T")


#: Keys whose mirrored value a :class:`MirroredStore` remembers (the least recently
#: used are forgotten past it), and keys whose latest change it remembers.
_KNOWN_LIMIT = 100_000
#: Purges whose generation a :class:`MirroredStore` remembers (the oldest go first).
_PURGES_KEPT = 64


def _count(counts: dict[tuple[str, str], int], name: tuple[str, str], up: bool) -> None:
    if up:
        counts[name] = counts.get(name, 0) + 1
    elif counts[name] == 1:
        del counts[name]
    else:
        counts[name] -= 1


def _stamp(entry: StoreEntry) -> tuple[int, int, float | None]:
    # Which version of an entry this is, without keeping its bytes.
    return len(entry.value), hash(entry.value), entry.expires_at


class MirroredStore:
    """``primary`` (shared, e.g. Redis) in front of ``mirror`` (local, e.g. SQLite).

    Every write goes to the primary; the writes ``mirror_when(namespace, key,
    value)`` selects also go to the mirror, and so does a selected entry read from
    the primary that the mirror lacks or holds in another version (once per version:
    the versions this store knows are in the mirror are remembered).  So every host
    that uses an entry keeps its own copy, not only the host that wrote it.

    The mirror's copy (unexpired, selected) is preferred to what the primary answers
    when that is no entry, an entry it cannot read, or an entry the mirror would not
    select: a primary that lost the entry (evicted, flushed, damaged, or overwritten by
    a host that never knew it) does not take away what this host knew.  A write the
    mirror does not select removes the mirror's copy only when this store served that
    copy (or a selected version of the entry) before: the writer read it and replaced
    it.  A write made without having read it (a check that failed because the entry
    seemed missing) replaces nothing, and the copy stays.  :meth:`delete` and
    :meth:`purge` remove the copy; other hosts' copies stay until they are removed
    there, or replaced.  A read whose entry this store wrote, deleted or purged while
    the read was in flight neither writes the mirror nor is remembered: what the
    primary answered may be older than the change, and is served as it was read.

    While the primary is unavailable, reads, iteration and locks fall back to the
    mirror, so what was mirrored is still served.  After a failure the primary is
    left alone for ``retry_after`` seconds, so an outage costs one timeout, not one per
    operation.  Errors other than unavailability are raised as they are, except a read
    of an entry the mirror holds (served from the mirror).
    """

    def __init__(self, primary: Store, mirror: Store,
                 mirror_when: Callable[[str, str, bytes], bool], *,
                 retry_after: float = 5.0) -> None:
        self.primary = primary
        self.mirror = mirror
        self._mirror_when = mirror_when
        self._retry_after = retry_after
        self._down_until = 0.0
        # (namespace, key) -> the version of the selected entry this store last served,
        # which is in the mirror.
        self._known: OrderedDict[tuple[str, str], tuple[int, int, float | None]] = \
            OrderedDict()
        # Generations: each write, delete or purge of this store takes the next one when
        # it starts and again when it ends; a read that began at generation g is
        # overtaken by a change when the key's (or a purge's) generation is past g, or
        # while a change of its key (or a purge covering it) is in flight: one that
        # started before the read may not have reached the primary yet.
        self._generation = 0
        self._changed: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._purged: list[tuple[str, str, int]] = []
        # Changes in flight: (namespace, key) -> writes and deletes, (namespace, prefix)
        # -> purges.
        self._changing: dict[tuple[str, str], int] = {}
        self._purging_now: dict[tuple[str, str], int] = {}
        # Reads in flight (whose generations matter); with none, the generations of
        # past changes are forgotten (no read can be overtaken by them).
        self._reading = 0
        # Changes forgotten (past the limits) up to this generation: a read that began
        # before it counts as overtaken.
        self._forgotten = 0
        self._preferred_logged: set[tuple[str, str]] = set()
        #: Operations answered by the mirror because the primary was down.
        self.fallbacks = 0
        #: Reads answered by the mirror's copy because the primary had no usable entry.
        self.mirror_preferred = 0
        #: Entries read from the primary and copied into the mirror.
        self.mirrored_on_read = 0

    @property
    def primary_down(self) -> bool:
        """Whether the primary failed within the last ``retry_after`` seconds."""
        return time.monotonic() < self._down_until

    def _fell_back(self, what: str, exc: StoreUnavailableError | None) -> None:
        self.fallbacks += 1
        if exc is not None:
            self._down_until = time.monotonic() + self._retry_after
            store_log.warning("shared store unavailable (%s); %s served by the local "
                              "mirror, primary retried in %g s", exc, what, self._retry_after)

    async def _primary(self, what: str, call: Callable[[], Awaitable[_T]]) -> _T:
        if self.primary_down:
            self._fell_back(what, None)
            raise StoreUnavailableError("shared store marked down")
        try:
            return await call()
        except StoreUnavailableError as exc:
            self._fell_back(what, exc)
            raise

    def _selected(self, entry: StoreEntry | None) -> bool:
        return entry is not None and self._mirror_when(entry.namespace, entry.key,
                                                       entry.value)

    def _remember(self, entry: StoreEntry) -> None:
        name = (entry.namespace, entry.key)
        self._known[name] = _stamp(entry)
        self._known.move_to_end(name)
        if len(self._known) > _KNOWN_LIMIT:
            self._known.popitem(last=False)

    def _change(self, namespace: str, key: str, *, starts: bool) -> None:
        """A write or delete of the entry starts or ends (see :meth:`_overtaken`)."""
        name = (namespace, key)
        _count(self._changing, name, starts)
        if not self._reading:
            return  # no read to overtake, now or (its generation taken later) after
        self._generation += 1
        self._changed[name] = self._generation
        self._changed.move_to_end(name)
        if len(self._changed) > _KNOWN_LIMIT:
            self._forgotten = max(self._forgotten, self._changed.popitem(last=False)[1])

    def _purging(self, namespace: str, prefix: str, *, starts: bool) -> None:
        """A purge starts or ends."""
        _count(self._purging_now, (namespace, prefix), starts)
        if not self._reading:
            return
        self._generation += 1
        self._purged.append((namespace, prefix, self._generation))
        if len(self._purged) > _PURGES_KEPT:
            self._forgotten = max(self._forgotten, self._purged.pop(0)[2])

    @contextlib.contextmanager
    def _read(self) -> Iterator[int]:
        """A read in flight; the generation it began at."""
        self._reading += 1
        try:
            yield self._generation
        finally:
            self._reading -= 1
            if not self._reading:
                # Every read to come begins past these generations: none overtakes it.
                self._changed.clear()
                self._purged.clear()

    def _overtaken(self, namespace: str, key: str, since: int) -> bool:
        """Whether this store changed the entry after generation ``since`` (when a read
        of it began), or is changing it now (a change begun before the read may have
        reached the primary after it)."""
        if since < self._forgotten or self._changed.get((namespace, key), 0) > since \
                or (namespace, key) in self._changing:
            return True
        for space, prefix in self._purging_now:
            if space == namespace and key.startswith(prefix):
                return True
        for space, prefix, generation in reversed(self._purged):
            if generation <= since:
                return False
            if space == namespace and key.startswith(prefix):
                return True
        return False

    async def _copy(self, namespace: str, key: str, *, required: bool = False,
                    select: bool = True) -> StoreEntry | None:
        """The mirror's unexpired, selected copy (``None`` when it cannot be read, or,
        ``required``, :class:`StoreUnavailableError`: the answer would be "no entry"
        without knowing whether this host holds one); not ``select``: selected or not."""
        try:
            copy = await self.mirror.get(namespace, key)
        except StoreError as exc:
            store_log.warning("local mirror read of %s/%s failed: %s", namespace, key, exc)
            if required:
                raise StoreUnavailableError(
                    f"no shared entry for {namespace}/{key}, and the local mirror could "
                    f"not be read: {exc}") from exc
            return None
        return copy if not select or self._selected(copy) else None

    async def _served(self, namespace: str, key: str, entry: StoreEntry | None,
                      since: int, why: str | None = None) -> StoreEntry | None:
        """What a read begun at generation ``since`` answers when the primary answered
        ``entry`` (``why``: it could not read the entry), keeping the mirror current.
        A read this store's own change overtook serves what it read and leaves the
        mirror and what is remembered to that change."""
        if entry is not None and self._known.get((namespace, key)) == _stamp(entry):
            # A version remembered was selected, and is in the mirror: not decided again.
            self._known.move_to_end((namespace, key))
            return entry
        if entry is not None and self._selected(entry):
            if not self._overtaken(namespace, key, since):
                # A copy of another value is replaced whether it is selected or not.
                copy = await self._copy(namespace, key, select=False)
                if self._overtaken(namespace, key, since):
                    return entry
                if copy is None or copy.value != entry.value or \
                        copy.expires_at != entry.expires_at:
                    # Checked just before: a change starting later writes the mirror
                    # after this write.
                    try:
                        await self.mirror.set(namespace, key, entry.value,
                                              expires_at=entry.expires_at)
                    except StoreError as exc:
                        store_log.warning("local mirror write of %s/%s failed: %s",
                                          namespace, key, exc)
                        return entry
                    self.mirrored_on_read += 1
                if not self._overtaken(namespace, key, since):
                    self._remember(entry)
            return entry
        copy = await self._copy(namespace, key, required=entry is None)
        if self._overtaken(namespace, key, since):
            return entry if copy is None else copy
        if copy is None:
            self._known.pop((namespace, key), None)
            return entry
        self.mirror_preferred += 1
        if (namespace, key) not in self._preferred_logged:
            if len(self._preferred_logged) >= _KNOWN_LIMIT:
                self._preferred_logged.clear()
            self._preferred_logged.add((namespace, key))
            found = why or ("no entry" if entry is None else "an entry the mirror keeps none of")
            store_log.warning("shared store has %s for %s/%s; this host's mirrored copy "
                              "served", found, namespace, key)
        self._remember(copy)
        return copy

    async def get(self, namespace: str, key: str) -> StoreEntry | None:
        """From the primary (the mirror's copy when the primary has none usable), or
        from the mirror while the primary is down."""
        with self._read() as since:
            return await self._get(namespace, key, since)

    async def _get(self, namespace: str, key: str, since: int) -> StoreEntry | None:
        try:
            entry = await self._primary(f"get {namespace}/{key}",
                                        lambda: self.primary.get(namespace, key))
        except StoreUnavailableError:
            entry = await self.mirror.get(namespace, key)
            self._fallen_back(namespace, key, entry, since)
            return entry
        except StoreError as exc:
            if await self._copy(namespace, key) is None:
                raise
            return await self._served(namespace, key, None, since,
                                      f"an unreadable entry ({exc})")
        return await self._served(namespace, key, entry, since)

    def _fallen_back(self, namespace: str, key: str, entry: StoreEntry | None,
                     since: int) -> None:
        """The mirror answered a read begun at ``since`` (the primary being down)."""
        if entry is not None and self._known.get((namespace, key)) == _stamp(entry):
            self._known.move_to_end((namespace, key))
        elif self._selected(entry) and not self._overtaken(namespace, key, since):
            assert entry is not None
            self._remember(entry)

    async def _replace_copy(self, namespace: str, key: str, value: bytes,
                            expires_at: float | None) -> None:
        """The mirror's side of a write: a selected value is mirrored; another removes
        the mirror's copy only if this store served a selected version before."""
        if self._mirror_when(namespace, key, value):
            await self.mirror.set(namespace, key, value, expires_at=expires_at)
            self._remember(StoreEntry(namespace, key, value, expires_at))
        elif self._known.pop((namespace, key), None) is not None:
            await self.mirror.delete(namespace, key)
        elif await self._copy(namespace, key) is not None:
            store_log.info("write of %s/%s without having read this host's mirrored copy: "
                           "the copy is kept", namespace, key)

    async def set(self, namespace: str, key: str, value: bytes, *,
                  expires_at: float | None) -> None:
        """Mirror first (so an outage of the primary loses nothing selected), then primary."""
        self._change(namespace, key, starts=True)
        try:
            await self._replace_copy(namespace, key, value, expires_at)
            await self._primary(f"set {namespace}/{key}", lambda: self.primary.set(
                namespace, key, value, expires_at=expires_at))
        finally:
            self._change(namespace, key, starts=False)

    async def delete(self, namespace: str, key: str) -> bool:
        """Delete from both (this host's mirror; other hosts keep their copies); whether
        either had it."""
        self._change(namespace, key, starts=True)
        self._known.pop((namespace, key), None)
        try:
            local = await self.mirror.delete(namespace, key)
            return await self._primary(f"delete {namespace}/{key}",
                                       lambda: self.primary.delete(namespace, key)) or local
        finally:
            self._change(namespace, key, starts=False)

    async def purge(self, namespace: str, prefix: str = "") -> int:
        """Purge both (this host's mirror; other hosts keep their copies); the primary's
        count (the mirror's while the primary is down)."""
        self._purging(namespace, prefix, starts=True)
        for known in [k for k in self._known if k[0] == namespace and k[1].startswith(prefix)]:
            del self._known[known]
        try:
            local = await self.mirror.purge(namespace, prefix)
            try:
                return await self._primary(f"purge {namespace}/{prefix}*",
                                           lambda: self.primary.purge(namespace, prefix))
            except StoreUnavailableError:
                return local
        finally:
            self._purging(namespace, prefix, starts=False)

    async def entries(self, namespace: str, prefix: str = "") -> AsyncIterator[StoreEntry]:
        """The primary's entries, each replaced by the mirror's copy as :meth:`get` would
        serve it, in key order; the mirror's while the primary is down."""
        async def collect() -> list[StoreEntry]:
            return [entry async for entry in self.primary.entries(namespace, prefix)]

        try:
            items = await self._primary(f"entries {namespace}/{prefix}*", collect)
        except StoreUnavailableError:
            items = [entry async for entry in self.mirror.entries(namespace, prefix)]
        else:
            by_key = {entry.key: entry for entry in items}
            async for copy in self.mirror.entries(namespace, prefix):
                # Each entry decided once at most: a primary's version this store
                # remembers was selected, and a copy of the same value is no better.
                entry = by_key.get(copy.key)
                if entry is not None and (entry.value == copy.value or self._known.get(
                        (namespace, copy.key)) == _stamp(entry) or self._selected(entry)):
                    continue
                if self._selected(copy):
                    by_key[copy.key] = copy
            items = [by_key[key] for key in sorted(by_key)]
        for entry in items:
            yield entry

    async def acquire(self, name: str, owner: str, ttl: float) -> bool:
        """The primary's lock; the mirror's (single-flight on this host) while it is down."""
        try:
            return await self._primary(f"lock {name}",
                                       lambda: self.primary.acquire(name, owner, ttl))
        except StoreUnavailableError:
            return await self.mirror.acquire(name, owner, ttl)

    async def acquire_get(self, name: str, owner: str, ttl: float, namespace: str,
                          key: str) -> tuple[bool, StoreEntry | None]:
        """:meth:`acquire` and :meth:`get` together: the primary's (the entry as
        :meth:`get` serves it), or the mirror's while the primary is down."""
        with self._read() as since:
            return await self._acquire_get(name, owner, ttl, namespace, key, since)

    async def _acquire_get(self, name: str, owner: str, ttl: float, namespace: str,
                           key: str, since: int) -> tuple[bool, StoreEntry | None]:
        try:
            held, entry = await self._primary(f"lock {name}", lambda: acquire_get(
                self.primary, name, owner, ttl, namespace, key))
        except StoreUnavailableError:
            held, entry = await acquire_get(self.mirror, name, owner, ttl, namespace, key)
            self._fallen_back(namespace, key, entry, since)
            return held, entry
        except StoreError as exc:
            # The entry could not be read (the lock may be ours already: taking it again
            # extends it).  With no copy to serve the caller is told the read failed, so
            # a lock the primary may have taken for it is given back.
            if await self._copy(namespace, key) is None:
                with contextlib.suppress(StoreError):
                    await self._primary(f"unlock {name}",
                                        lambda: self.primary.release(name, owner))
                raise
            held = await self.acquire(name, owner, ttl)
            return held, await self._served(namespace, key, None, since,
                                            f"an unreadable entry ({exc})")
        return held, await self._served(namespace, key, entry, since)

    async def set_release(self, namespace: str, key: str, value: bytes, *,
                          expires_at: float | None, name: str, owner: str) -> None:
        """:meth:`set`, then :meth:`release`, each store's write and release together
        (the mirror's first, as :meth:`set` does)."""
        self._change(namespace, key, starts=True)
        try:
            await self._set_release(namespace, key, value, expires_at=expires_at,
                                    name=name, owner=owner)
        finally:
            self._change(namespace, key, starts=False)

    async def _set_release(self, namespace: str, key: str, value: bytes, *,
                           expires_at: float | None, name: str, owner: str) -> None:
        try:
            if self._mirror_when(namespace, key, value):
                await set_release(self.mirror, namespace, key, value, expires_at=expires_at,
                                  name=name, owner=owner)
                self._remember(StoreEntry(namespace, key, value, expires_at))
            else:
                try:
                    await self._replace_copy(namespace, key, value, expires_at)
                finally:
                    with contextlib.suppress(StoreError):
                        await self.mirror.release(name, owner)
        except BaseException:
            with contextlib.suppress(StoreError):
                await self._primary(f"unlock {name}",
                                    lambda: self.primary.release(name, owner))
            raise
        await self._primary(f"set {namespace}/{key}", lambda: set_release(
            self.primary, namespace, key, value, expires_at=expires_at, name=name,
            owner=owner))

    async def release(self, name: str, owner: str) -> None:
        """Release on both (the lock may have been taken on either)."""
        await self.mirror.release(name, owner)
        with contextlib.suppress(StoreUnavailableError):
            await self._primary(f"unlock {name}", lambda: self.primary.release(name, owner))

    async def close(self) -> None:
        """Close both stores.  Cancelled, it still closes both (a close cut short would
        leave the primary's connections open), then raises the cancellation."""
        closing = asyncio.ensure_future(self._close())
        cancelled = False
        while not closing.done():
            try:
                await asyncio.wait([closing])
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            if not closing.cancelled() and closing.exception() is not None:
                store_log.warning("closing the stores failed: %s", closing.exception())
            raise asyncio.CancelledError
        closing.result()

    async def _close(self) -> None:
        try:
            await self.primary.close()
        finally:
            await self.mirror.close()
