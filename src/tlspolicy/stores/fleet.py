"""A fleet's store: Redis/Valkey shared by every host, in front of a local SQLite mirror
that keeps the entries which must outlive an outage of Redis."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from .base import Store
from .mirrored import MirroredStore
from .redis import RedisStore
from .sqlite import SqliteStore

__all__ = ["redis_with_mirror"]


async def redis_with_mirror(url: str, local_path: str | Path,
                            mirror_when: Callable[[str, str, bytes], bool], *,
                            prefix: str = "tlspolicy:", timeout: float = 2.0,
                            retry_after: float = 5.0,
                            clock: Callable[[], float] = time.time) -> Store:
    """Redis/Valkey at ``url`` in front of a SQLite mirror at ``local_path``.

    The entries ``mirror_when`` accepts, written on this host or read from Redis, are
    mirrored, and served from the mirror while Redis is down or has no usable entry for
    them (see :class:`~tlspolicy.stores.MirroredStore`); Redis with any eviction policy
    but ``noeviction`` is refused.  A Redis that is down at start is not an error (the
    mirror serves, and the eviction check runs once it answers).  Needs the
    ``tlspolicy[redis]`` extra.
    """
    Path(local_path).parent.mkdir(parents=True, exist_ok=True)
    shared = await RedisStore.connect(url, prefix=prefix, timeout=timeout, require_up=False,
                                      clock=clock)
    return MirroredStore(shared, SqliteStore(local_path, clock=clock), mirror_when,
                         retry_after=retry_after)
