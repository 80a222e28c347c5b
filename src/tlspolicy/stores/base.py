"""The store protocol, its entry type and errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

import attrs

# The error classes and JSON helpers sit below every layer that handles stored values
# (discovery's cache codec among them); they are this package's public names.
from .._serialise import dumps_json, loads_json
from ..errors import StoreError, StoreUnavailableError

__all__ = [
    "MAX_KEY_LENGTH",
    "MAX_NAMESPACE_LENGTH",
    "Store",
    "StoreEntry",
    "StoreError",
    "StoreUnavailableError",
    "check_name",
    "dumps_json",
    "loads_json",
]

#: Longest namespace a store accepts (namespaces are chosen by the program).
MAX_NAMESPACE_LENGTH = 64
#: Longest key a store accepts (keys may come from strangers, e.g. a domain).
MAX_KEY_LENGTH = 512


def check_name(namespace: str, key: str) -> None:
    """Refuse namespaces and keys a backend could confuse with each other."""
    if not namespace or len(namespace) > MAX_NAMESPACE_LENGTH or not namespace.isascii() or (
            not namespace.replace("-", "").replace("_", "").replace(".", "").isalnum()):
        raise StoreError(f"store namespace {namespace[:80]!r} must be 1 to "
                         f"{MAX_NAMESPACE_LENGTH} letters, digits, '-', '_' or '.'")
    if not isinstance(key, str) or len(key) > MAX_KEY_LENGTH or any(
            ord(c) < 0x21 or ord(c) == 0x7F for c in key):
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

