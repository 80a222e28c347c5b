"""A shared store with a local mirror for the entries that must survive its outage."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
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


class MirroredStore:
    """``primary`` (shared, e.g. Redis) in front of ``mirror`` (local, e.g. SQLite).

    Every write goes to the primary; the writes ``mirror_when(namespace, key,
    value)`` selects also go to the mirror (and a write it does not select
    removes the mirror's old copy, so the mirror never serves something the
    primary has replaced).  While the primary is unavailable, reads, iteration
    and locks fall back to the mirror, so what was mirrored is still served.
    After a failure the primary is left alone for ``retry_after`` seconds, so an
    outage costs one timeout, not one per operation.  Errors other than
    unavailability are raised as they are.
    """

    def __init__(self, primary: Store, mirror: Store,
                 mirror_when: Callable[[str, str, bytes], bool], *,
                 retry_after: float = 5.0) -> None:
        self.primary = primary
        self.mirror = mirror
        self._mirror_when = mirror_when
        self._retry_after = retry_after
        self._down_until = 0.0
        #: Operations answered by the mirror because the primary was down.
        self.fallbacks = 0

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

    async def get(self, namespace: str, key: str) -> StoreEntry | None:
        """From the primary, or from the mirror while the primary is down."""
        try:
            return await self._primary(f"get {namespace}/{key}",
                                       lambda: self.primary.get(namespace, key))
        except StoreUnavailableError:
            return await self.mirror.get(namespace, key)

    async def set(self, namespace: str, key: str, value: bytes, *,
                  expires_at: float | None) -> None:
        """Mirror first (so an outage of the primary loses nothing selected), then primary."""
        if self._mirror_when(namespace, key, value):
            await self.mirror.set(namespace, key, value, expires_at=expires_at)
        else:
            await self.mirror.delete(namespace, key)
        await self._primary(f"set {namespace}/{key}", lambda: self.primary.set(
            namespace, key, value, expires_at=expires_at))

    async def delete(self, namespace: str, key: str) -> bool:
        """Delete from both; whether either had it."""
        local = await self.mirror.delete(namespace, key)
        return await self._primary(f"delete {namespace}/{key}",
                                   lambda: self.primary.delete(namespace, key)) or local

    async def purge(self, namespace: str, prefix: str = "") -> int:
        """Purge both; the primary's count (the mirror's while the primary is down)."""
        local = await self.mirror.purge(namespace, prefix)
        try:
            return await self._primary(f"purge {namespace}/{prefix}*",
                                       lambda: self.primary.purge(namespace, prefix))
        except StoreUnavailableError:
            return local

    async def entries(self, namespace: str, prefix: str = "") -> AsyncIterator[StoreEntry]:
        """The primary's entries, or the mirror's while the primary is down."""
        async def collect() -> list[StoreEntry]:
            return [entry async for entry in self.primary.entries(namespace, prefix)]

        try:
            items = await self._primary(f"entries {namespace}/{prefix}*", collect)
        except StoreUnavailableError:
            items = [entry async for entry in self.mirror.entries(namespace, prefix)]
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
        """:meth:`acquire` and :meth:`get` together: the primary's, or the mirror's while
        the primary is down."""
        try:
            return await self._primary(f"lock {name}", lambda: acquire_get(
                self.primary, name, owner, ttl, namespace, key))
        except StoreUnavailableError:
            return await acquire_get(self.mirror, name, owner, ttl, namespace, key)

    async def set_release(self, namespace: str, key: str, value: bytes, *,
                          expires_at: float | None, name: str, owner: str) -> None:
        """:meth:`set`, then :meth:`release`, each store's write and release together
        (the mirror's first, as :meth:`set` does)."""
        try:
            if self._mirror_when(namespace, key, value):
                await set_release(self.mirror, namespace, key, value, expires_at=expires_at,
                                  name=name, owner=owner)
            else:
                try:
                    await self.mirror.delete(namespace, key)
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
        """Close both stores."""
        try:
            await self.primary.close()
        finally:
            await self.mirror.close()
