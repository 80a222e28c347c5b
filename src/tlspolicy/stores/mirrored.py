"""A shared store with a local mirror for the entries that must survive its outage."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable

from .base import Store, StoreEntry, StoreUnavailableError

__all__ = ["MirroredStore"]

_log = logging.getLogger("tlspolicy.stores")


class MirroredStore:
    """``primary`` (shared, e.g. Redis) in front of ``mirror`` (local, e.g. SQLite).

    Every write goes to the primary; the writes ``mirror_when(namespace, key,
    value)`` selects also go to the mirror (and a write it does not select
    removes the mirror's old copy, so the mirror never serves something the
    primary has replaced).  While the primary is unavailable, reads, iteration
    and locks fall back to the mirror, so what was mirrored is still served.
    Errors other than unavailability are raised as they are.
    """

    def __init__(self, primary: Store, mirror: Store,
                 mirror_when: Callable[[str, str, bytes], bool]) -> None:
        self.primary = primary
        self.mirror = mirror
        self._mirror_when = mirror_when
        #: Operations answered by the mirror because the primary was down.
        self.fallbacks = 0

    def _fell_back(self, what: str, exc: StoreUnavailableError) -> None:
        self.fallbacks += 1
        _log.warning("shared store unavailable (%s); %s served by the local mirror", exc, what)

    async def get(self, namespace: str, key: str) -> StoreEntry | None:
        """From the primary, or from the mirror while the primary is down."""
        try:
            return await self.primary.get(namespace, key)
        except StoreUnavailableError as exc:
            self._fell_back(f"get {namespace}/{key}", exc)
            return await self.mirror.get(namespace, key)

    async def set(self, namespace: str, key: str, value: bytes, *,
                  expires_at: float | None) -> None:
        """Mirror first (so an outage of the primary loses nothing selected), then primary."""
        if self._mirror_when(namespace, key, value):
            await self.mirror.set(namespace, key, value, expires_at=expires_at)
        else:
            await self.mirror.delete(namespace, key)
        await self.primary.set(namespace, key, value, expires_at=expires_at)

    async def delete(self, namespace: str, key: str) -> bool:
        """Delete from both; whether either had it."""
        local = await self.mirror.delete(namespace, key)
        return await self.primary.delete(namespace, key) or local

    async def purge(self, namespace: str, prefix: str = "") -> int:
        """Purge both; the primary's count (the mirror's while the primary is down)."""
        local = await self.mirror.purge(namespace, prefix)
        try:
            return await self.primary.purge(namespace, prefix)
        except StoreUnavailableError as exc:
            self._fell_back(f"purge {namespace}/{prefix}*", exc)
            return local

    async def entries(self, namespace: str, prefix: str = "") -> AsyncIterator[StoreEntry]:
        """The primary's entries, or the mirror's while the primary is down."""
        try:
            items = [entry async for entry in self.primary.entries(namespace, prefix)]
        except StoreUnavailableError as exc:
            self._fell_back(f"entries {namespace}/{prefix}*", exc)
            items = [entry async for entry in self.mirror.entries(namespace, prefix)]
        for entry in items:
            yield entry

    async def acquire(self, name: str, owner: str, ttl: float) -> bool:
        """The primary's lock; the mirror's (single-flight on this host) while it is down."""
        try:
            return await self.primary.acquire(name, owner, ttl)
        except StoreUnavailableError as exc:
            self._fell_back(f"lock {name}", exc)
            return await self.mirror.acquire(name, owner, ttl)

    async def release(self, name: str, owner: str) -> None:
        """Release on both (the lock may have been taken on either)."""
        await self.mirror.release(name, owner)
        try:
            await self.primary.release(name, owner)
        except StoreUnavailableError as exc:
            self._fell_back(f"unlock {name}", exc)

    async def close(self) -> None:
        """Close both stores."""
        try:
            await self.primary.close()
        finally:
            await self.mirror.close()
