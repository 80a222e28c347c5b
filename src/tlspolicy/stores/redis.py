"""Redis / Valkey store for a fleet of MTAs (the ``tlspolicy[redis]`` extra).

Keys are ``<prefix><namespace>:<key>``; expiry is Redis's own (``PXAT``), so an
expired entry vanishes for every process at once.  Locks are ``SET NX PX`` with
a compare-and-delete release, so a holder that dies blocks others only until
the lock's expiry.

Any eviction policy but ``noeviction`` is refused at :meth:`RedisStore.connect`:
``allkeys-*`` evicts any key, and ``volatile-*`` evicts keys with an expiry, which
every entry here has; losing an unexpired MTA-STS policy reopens trust on first use
(RFC 8461 section 10.2).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..errors import MissingDependencyError
from .base import StoreEntry, StoreError, StoreUnavailableError, check_name, store_log

__all__ = ["RedisStore"]

# Release only a lock we still hold: the value is the owner.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _redis() -> Any:
    try:
        import redis.asyncio as redis_asyncio  # the redis extra
        import redis.exceptions as redis_exceptions  # the redis extra
    except ImportError as exc:
        raise MissingDependencyError.for_extra("the Redis store", "redis", "redis") from exc
    return redis_asyncio, redis_exceptions


class RedisStore:
    """A :class:`~tlspolicy.stores.Store` in Redis or Valkey.

    Build it with :meth:`connect` (which checks the server's eviction policy).
    ``timeout`` bounds every operation; a server that is down or slower than
    that raises :class:`~tlspolicy.stores.StoreUnavailableError`.
    """

    def __init__(self, client: Any, *, prefix: str = "tlspolicy:",
                 clock: Callable[[], float] = time.time) -> None:
        self._client = client
        self._prefix = prefix
        self._clock = clock
        _, self._errors = _redis()
        self._release = client.register_script(_RELEASE)
        self._url = "redis"
        self._unchecked = False

    @classmethod
    async def connect(cls, url: str = "redis://127.0.0.1:6379/0", *,
                      prefix: str = "tlspolicy:", timeout: float = 2.0,
                      check_eviction: bool = True, require_up: bool = True,
                      clock: Callable[[], float] = time.time) -> RedisStore:
        """Connect to ``url`` and check ``maxmemory-policy``.

        Refuses (:class:`~tlspolicy.stores.StoreError`) any policy but ``noeviction``.
        With ``check_eviction`` false the check is skipped: only for servers
        whose ``CONFIG`` command is disabled, after checking the policy by
        other means.  With ``require_up`` false a server that is down is not an
        error: the store is returned, and the check runs before its first
        operation once the server answers (until then every operation raises
        :class:`~tlspolicy.stores.StoreUnavailableError`, so a
        :class:`~tlspolicy.stores.MirroredStore` serves its mirror).
        """
        redis_asyncio, _ = _redis()
        try:
            client = redis_asyncio.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout,
                retry_on_timeout=False)
        except ValueError as exc:  # not a redis://, rediss:// or unix:// URL, a bad port
            raise StoreError(f"not a Redis URL: {url!r}: {exc}") from None
        store = cls(client, prefix=prefix, clock=clock)
        store._url = url
        store._unchecked = check_eviction
        if check_eviction:
            try:
                await store._check_eviction()
            except StoreUnavailableError:
                if require_up:
                    await client.aclose()
                    raise
            except StoreError:
                await client.aclose()
                raise
        return store

    async def _check_eviction(self) -> None:
        errors = self._errors
        try:
            reply = await self._client.config_get("maxmemory-policy")
        except errors.ResponseError as exc:
            raise StoreError(
                f"Redis at {self._url}: cannot read maxmemory-policy ({exc}); check that it is "
                "noeviction and connect with check_eviction=False") from None
        except (errors.ConnectionError, errors.TimeoutError, OSError) as exc:
            raise StoreUnavailableError(f"Redis at {self._url}: {exc}") from None
        policy = reply.get("maxmemory-policy", reply.get(b"maxmemory-policy", b""))
        if isinstance(policy, bytes):
            policy = policy.decode(errors="replace")
        if str(policy) != "noeviction":
            # volatile-* too: every entry has an expiry, so those evict exactly them.
            raise StoreError(
                f"Redis at {self._url}: maxmemory-policy {policy} may evict unexpired MTA-STS "
                "policies (RFC 8461 section 10.2); set maxmemory-policy noeviction")
        self._unchecked = False

    def _key(self, namespace: str, key: str) -> str:
        return f"{self._prefix}{namespace}:{key}"

    async def _call(self, coroutine: Any) -> Any:
        if self._unchecked:
            try:
                await self._check_eviction()
            except BaseException:
                coroutine.close()  # never awaited: close it so nothing warns
                raise
        try:
            return await coroutine
        except (self._errors.ConnectionError, self._errors.TimeoutError, OSError) as exc:
            raise StoreUnavailableError(f"Redis: {exc}") from None
        except self._errors.RedisError as exc:
            raise StoreError(f"Redis: {exc}") from None

    async def get(self, namespace: str, key: str) -> StoreEntry | None:
        """The unexpired entry, or ``None``."""
        check_name(namespace, key)
        name = self._key(namespace, key)
        pipe = self._client.pipeline(transaction=False)
        pipe.get(name)
        pipe.pexpiretime(name)
        value, expiry = await self._call(pipe.execute())
        if value is None:
            return None
        expires_at = None if expiry is None or expiry < 0 else expiry / 1000
        if expires_at is not None and expires_at <= self._clock():
            return None
        return StoreEntry(namespace, key, bytes(value), expires_at)

    async def set(self, namespace: str, key: str, value: bytes, *,
                  expires_at: float | None) -> None:
        """Store ``value`` with Redis expiry at ``expires_at``."""
        check_name(namespace, key)
        if not isinstance(value, bytes):
            raise StoreError(f"store values are bytes, not {type(value).__name__}")
        name = self._key(namespace, key)
        if expires_at is None:
            await self._call(self._client.set(name, value))
        elif expires_at <= self._clock():
            await self._call(self._client.delete(name))
        else:
            await self._call(self._client.set(name, value, pxat=int(expires_at * 1000)))

    async def delete(self, namespace: str, key: str) -> bool:
        """Remove one entry; whether it existed."""
        check_name(namespace, key)
        return bool(await self._call(self._client.delete(self._key(namespace, key))))

    async def _scan(self, namespace: str, prefix: str) -> list[bytes]:
        pattern = "".join("\\" + c if c in "*?[]\\" else c
                          for c in self._key(namespace, prefix)) + "*"
        found: list[bytes] = []
        cursor = 0
        while True:
            cursor, keys = await self._call(self._client.scan(cursor, match=pattern, count=500))
            found.extend(keys)
            if int(cursor) == 0:
                return found

    async def purge(self, namespace: str, prefix: str = "") -> int:
        """Remove every entry of ``namespace`` under ``prefix``."""
        check_name(namespace, prefix)
        keys = await self._scan(namespace, prefix)
        removed = 0
        for start in range(0, len(keys), 500):
            removed += int(await self._call(self._client.delete(*keys[start:start + 500])))
        return removed

    async def entries(self, namespace: str, prefix: str = "") -> AsyncIterator[StoreEntry]:
        """The unexpired entries of ``namespace`` under ``prefix``, in key order."""
        check_name(namespace, prefix)
        head = len(self._key(namespace, ""))
        passed: list[str] = []
        for name in sorted(await self._scan(namespace, prefix)):
            # Put there by another writer (this store writes only keys check_name takes,
            # as strings): passed over, as the SQLite store passes over a row it cannot
            # read, so that one such key does not hide every entry after it.  A read of
            # that one entry reports it as an error.
            try:
                key = bytes(name).decode()[head:]
                check_name(namespace, key)
                entry = await self.get(namespace, key)
            except StoreUnavailableError:
                raise
            except (UnicodeDecodeError, StoreError) as exc:
                passed.append(f"{bytes(name)[:200]!r}: {str(exc)[:200]}")
                continue
            if entry is not None:
                yield entry
        if passed:
            store_log.warning("Redis store: %d key(s) under %s%s passed over (not entries "
                              "this store can read), the first %s", len(passed),
                              self._key(namespace, ""), prefix, passed[0])

    async def acquire(self, name: str, owner: str, ttl: float) -> bool:
        """``SET NX PX``: take the lock unless another owner holds an unexpired one."""
        check_name("lock", name)
        check_name("lock", owner)
        if not ttl > 0:
            raise StoreError(f"lock ttl {ttl!r} must be positive")
        key = self._key("lock", name)
        millis = max(1, int(ttl * 1000))
        if await self._call(self._client.set(key, owner, nx=True, px=millis)):
            return True
        # Our own lock: extend it, as the SQLite store does.
        holder = await self._call(self._client.get(key))
        if holder is not None and bytes(holder).decode(errors="replace") == owner:
            await self._call(self._client.pexpire(key, millis))
            return True
        return False

    async def acquire_get(self, name: str, owner: str, ttl: float, namespace: str,
                          key: str) -> tuple[bool, StoreEntry | None]:
        """:meth:`acquire`, then :meth:`get` of the entry, in one round trip (a pipeline;
        extending one's own lock takes a second)."""
        check_name("lock", name)
        check_name("lock", owner)
        check_name(namespace, key)
        if not ttl > 0:
            raise StoreError(f"lock ttl {ttl!r} must be positive")
        lock = self._key("lock", name)
        entry_key = self._key(namespace, key)
        millis = max(1, int(ttl * 1000))
        pipe = self._client.pipeline(transaction=False)
        pipe.set(lock, owner, nx=True, px=millis)
        pipe.get(lock)
        pipe.get(entry_key)
        pipe.pexpiretime(entry_key)
        results = await self._call(pipe.execute(raise_on_error=False))
        taken, holder, value, expiry = results
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            # The lock may have been taken while the entry could not be read (a key of
            # the wrong type): give it back, since the caller is told neither.
            if taken is True:
                await self.release(name, owner)
            error = failed[0]
            if isinstance(error, (self._errors.ConnectionError, self._errors.TimeoutError,
                                  OSError)):
                raise StoreUnavailableError(f"Redis: {error}")
            raise StoreError(f"Redis: {error}")
        held = bool(taken)
        if not held and holder is not None and \
                bytes(holder).decode(errors="replace") == owner:
            # Our own lock: extend it, as acquire does.
            await self._call(self._client.pexpire(lock, millis))
            held = True
        if value is None:
            return held, None
        expires_at = None if expiry is None or expiry < 0 else expiry / 1000
        if expires_at is not None and expires_at <= self._clock():
            return held, None
        return held, StoreEntry(namespace, key, bytes(value), expires_at)

    async def set_release(self, namespace: str, key: str, value: bytes, *,
                          expires_at: float | None, name: str, owner: str) -> None:
        """:meth:`set`, then :meth:`release` of the lock ``name``, in one round trip (a
        pipeline: the release runs even when the write fails)."""
        check_name(namespace, key)
        check_name("lock", name)
        if not isinstance(value, bytes):
            await self.release(name, owner)
            raise StoreError(f"store values are bytes, not {type(value).__name__}")
        entry_key = self._key(namespace, key)
        pipe = self._client.pipeline(transaction=False)
        if expires_at is None:
            pipe.set(entry_key, value)
        elif expires_at <= self._clock():
            pipe.delete(entry_key)
        else:
            pipe.set(entry_key, value, pxat=int(expires_at * 1000))
        # Queued on the pipeline (awaiting it sends nothing yet).
        await self._release(keys=[self._key("lock", name)], args=[owner], client=pipe)
        await self._call(pipe.execute())

    async def release(self, name: str, owner: str) -> None:
        """Delete the lock only if ``owner`` still holds it (atomic, in a script)."""
        check_name("lock", name)
        await self._call(self._release(keys=[self._key("lock", name)], args=[owner]))

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
