"""The store protocol, its entry type and errors."""

from __future__ import annotations

import contextlib
import enum
import logging
import re
from collections.abc import AsyncIterator
from typing import Any, Final, Protocol, runtime_checkable

import attrs

# The error classes and JSON helpers sit below every layer that handles stored values
# (discovery's cache codec among them); they are this package's public names.
from .._serialise import dumps_json, loads_json
from ..errors import StoreError, StoreUnavailableError

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_NAMESPACE_LENGTH",
    "NOT_READ",
    "NotRead",
    "Store",
    "StoreEntry",
    "StoreError",
    "StoreUnavailableError",
    "acquire_get",
    "check_name",
    "dumps_json",
    "get_now",
    "loads_json",
    "set_release",
]

#: The stores' one logger (a value passed over, a mirror's write that failed).
store_log: Final = logging.getLogger("tlspolicy.stores")

#: Longest namespace a store accepts (namespaces are chosen by the program).
MAX_NAMESPACE_LENGTH = 64
#: Longest key a store accepts (keys may come from strangers, e.g. a domain).
MAX_KEY_LENGTH = 512


# A control character, a space or DEL: what a key may not hold.  Searched by the regex
# engine, not a loop over the characters in Python (every store operation checks its
# names: this was some 1.5 us of a read).
_UNPRINTABLE: Final = re.compile(r"[\x00-\x20\x7f]")


def check_name(namespace: str, key: str) -> None:
    """Refuse namespaces and keys a backend could confuse with each other."""
    if not namespace or len(namespace) > MAX_NAMESPACE_LENGTH or not namespace.isascii() or (
            not namespace.replace("-", "").replace("_", "").replace(".", "").isalnum()):
        raise StoreError(f"store namespace {namespace[:80]!r} must be 1 to "
                         f"{MAX_NAMESPACE_LENGTH} letters, digits, '-', '_' or '.'")
    if not isinstance(key, str) or len(key) > MAX_KEY_LENGTH or _UNPRINTABLE.search(key):
        raise StoreError(f"store key {str(key)[:80]!r} must be at most {MAX_KEY_LENGTH} "
                         "printable characters without spaces")


@attrs.frozen(slots=True)
class StoreEntry:
    """One stored value: where it lives, its bytes and its absolute expiry (or ``None``)."""

    namespace: str
    key: str
    value: bytes
    expires_at: float | None


@runtime_checkable
class Store(Protocol):
    """What every backend provides.  All methods are coroutines; none blocks the loop.

    Times are seconds since the epoch (``time.time()``); ``expires_at`` ``None``
    means no expiry.  An entry at or past its expiry is as good as absent.
    """

    async def get(self, namespace: str, key: str) -> StoreEntry | None:
        """The unexpired entry, or ``None``."""

    async def set(self, namespace: str, key: str, value: bytes, *,
                  expires_at: float | None) -> None:
        """Store ``value``, replacing any entry of that name."""

    async def delete(self, namespace: str, key: str) -> bool:
        """Remove one entry; whether it existed."""

    async def purge(self, namespace: str, prefix: str = "") -> int:
        """Remove every entry of ``namespace`` whose key starts with ``prefix``; how many."""

    def entries(self, namespace: str, prefix: str = "") -> AsyncIterator[StoreEntry]:
        """The unexpired entries of ``namespace`` whose key starts with ``prefix``."""

    async def acquire(self, name: str, owner: str, ttl: float) -> bool:
        """Take the lock ``name`` for ``owner`` for ``ttl`` seconds, unless someone else
        holds an unexpired one; whether it was taken (taking one's own lock again
        extends it)."""

    async def release(self, name: str, owner: str) -> None:
        """Give the lock back if ``owner`` still holds it (an expired and re-taken lock
        is left to its new holder)."""

    async def close(self) -> None:
        """Release the backend's resources; the store is unusable afterwards."""



# The two combined operations below are optional for a backend: one that has them does
# each in one transaction or round trip (a refresh under the single-flight lock then costs
# two store operations, not four); for any other, they are the two plain calls in order.


class NotRead(enum.Enum):
    """The type of :data:`NOT_READ`."""

    NOT_READ = "not read"


#: What :func:`get_now` returns when the store cannot read the entry without waiting.
NOT_READ: Final = NotRead.NOT_READ


def get_now(store: Store, namespace: str, key: str) -> StoreEntry | NotRead | None:
    """:meth:`Store.get` when the backend can read the entry at once on this thread
    (a local file in the operating system's cache), else :data:`NOT_READ` without
    waiting: then only the awaited :meth:`Store.get` reads it.  Optional for a backend
    (a method ``get_now``); for one without it, always :data:`NOT_READ`."""
    now: Any = getattr(store, "get_now", None)
    if now is None:
        return NOT_READ
    entry: StoreEntry | NotRead | None = now(namespace, key)
    return entry


async def acquire_get(store: Store, name: str, owner: str, ttl: float, namespace: str,
                      key: str) -> tuple[bool, StoreEntry | None]:
    """:meth:`Store.acquire` of the lock ``name``, then :meth:`Store.get` of the entry:
    whether the lock was taken, and the unexpired entry as read after taking it (or
    after failing to: another holder's result may already be there)."""
    combined: Any = getattr(store, "acquire_get", None)
    if combined is not None:
        held, entry = await combined(name, owner, ttl, namespace, key)
        return bool(held), entry
    held = await store.acquire(name, owner, ttl)
    return held, await store.get(namespace, key)


async def set_release(store: Store, namespace: str, key: str, value: bytes, *,
                      expires_at: float | None, name: str, owner: str) -> None:
    """:meth:`Store.set` of the entry, then :meth:`Store.release` of the lock ``name``
    held by ``owner``.  The write is never made after the lock is given back; when the
    write fails, the lock is still given back (best effort) before the error is raised."""
    combined: Any = getattr(store, "set_release", None)
    if combined is not None:
        await combined(namespace, key, value, expires_at=expires_at, name=name, owner=owner)
        return
    try:
        await store.set(namespace, key, value, expires_at=expires_at)
    finally:
        with contextlib.suppress(StoreError):
            await store.release(name, owner)
