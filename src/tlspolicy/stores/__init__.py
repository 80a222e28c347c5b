"""Stores: small async key-value stores with expiry, shared by the I/O layers.

A store holds bytes under a ``(namespace, key)`` pair, each entry with an
optional absolute expiry (seconds since the epoch); an expired entry is never
returned.  Stores also give a lock with expiry, so one fetch runs at a time for
one name across every process sharing the store, and a holder that dies blocks
the others only until its lock expires.

Backends: :class:`SqliteStore` (the default: one file on disk, survives
restarts, safe for several processes on one host) and
:class:`~tlspolicy.stores.redis.RedisStore` (Redis or Valkey, shared by a
fleet; needs the ``tlspolicy[redis]`` extra).  :class:`MirroredStore` puts a
local store behind a shared one for the entries that must outlive an outage of
the shared one; :func:`redis_with_mirror` builds a fleet's Redis store with its local
SQLite mirror.  Nothing here knows about MTA-STS: callers pick namespaces and
encode values (:func:`dumps_json` / :func:`loads_json` for JSON).
"""

from __future__ import annotations

from .base import (
    NOT_READ,
    NotRead,
    Store,
    StoreEntry,
    StoreError,
    StoreUnavailableError,
    acquire_get,
    dumps_json,
    get_now,
    loads_json,
    set_release,
)
from .fleet import redis_with_mirror
from .mirrored import MirroredStore
from .sqlite import SqliteStore

__all__ = [
    "NOT_READ",
    "MirroredStore",
    "NotRead",
    "SqliteStore",
    "Store",
    "StoreEntry",
    "StoreError",
    "StoreUnavailableError",
    "acquire_get",
    "dumps_json",
    "get_now",
    "loads_json",
    "redis_with_mirror",
    "set_release",
]
