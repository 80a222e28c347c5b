"""Discovery answers while the store is slow or another process holds its write lock: a
stored policy is never answered weaker because a read waited (SEMANTICS 10, Outages), and
a store read that cannot finish in time leaves the state unknown, never "no policy",
within the answer deadline (SEMANTICS 11)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from test_discovery import Clock, seed
from test_store_busy import LockHolder
from tlspolicy.discovery import Discovery, DiscoveryConfig, MxLookup
from tlspolicy.formats.toml import loads_toml
from tlspolicy.postfix.lookup import PolicyLookup
from tlspolicy.postfix.replies import SocketmapReply
from tlspolicy.resolver import Resolver
from tlspolicy.servers.discovered import DiscoveryLookup
from tlspolicy.stores import NOT_READ, SqliteStore, StoreEntry

pytestmark = pytest.mark.timeout(120)

VERSION = (3, 7, 11)
CONFIG = '[global]\ntls = "ifavailable"\nuse_mta_sts = true\n'
SECURE = "secure match=mx.{0} servername=hostname"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A resolver on loopback that never answers: every check fails by its timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _policy(domain: str) -> bytes:
    return f"version: STSv1\nmode: enforce\nmx: mx.{domain}\nmax_age: 86400\n".encode()


def _discovery(store: Any, clock: Clock, port: int) -> Discovery:
    config = DiscoveryConfig(resolver="127.0.0.1", resolver_port=port, resolv_conf=None,
                             dns_timeout=0.2, https_port=9)
    d = Discovery(config, store=store, clock=clock)

    async def mx(domain: str) -> MxLookup:  # the MX lookup works (an insecure MX)
        return MxLookup("mx", (f"mx.{domain}",), False)

    d.mx = mx  # type: ignore[method-assign]
    return d


def _lookup(d: Discovery, deadline: float = 10.0) -> DiscoveryLookup:
    return DiscoveryLookup(PolicyLookup(Resolver(loads_toml(CONFIG)), postfix_version=VERSION),
                           d, postfix_version=VERSION, deadline=deadline)


async def _ask(lookup: DiscoveryLookup, key: str) -> str:
    reply = lookup("default", key)
    if not isinstance(reply, SocketmapReply):
        reply = await reply
    return reply.to_text()


def test_a_stored_policy_is_answered_while_another_process_holds_the_write_lock(
        tmp_path: Path, silent_port: int) -> None:
    # Policies due for a check (whose checks queue for the lock) and one fresh policy;
    # a restarted daemon with nothing in memory asks for all of them.
    path = tmp_path / "cache.sqlite3"
    due = [f"d{i}.example" for i in range(8)]
    holders: list[LockHolder] = []

    async def main() -> dict[str, str]:
        now = time.time()
        store = SqliteStore(path)
        for name in due:
            await seed(store, name, _policy(name), fetched_at=now - 60, policy_id="id1",
                       next_check=now - 1)
        await seed(store, "y.example", _policy("y.example"), fetched_at=now - 60,
                   policy_id="id1", next_check=now + 3600)
        await store.close()
        store = SqliteStore(path)
        d = _discovery(store, time.time, silent_port)  # type: ignore[arg-type]
        lookup = _lookup(d)
        answers: dict[str, str] = {}
        try:
            holders.append(LockHolder(path))
            async with asyncio.timeout(lookup.deadline):
                found = await asyncio.gather(*(_ask(lookup, name) for name in due))
                answers.update(zip(due, found, strict=True))
            async with asyncio.timeout(lookup.deadline):
                answers["y.example"] = await _ask(lookup, "y.example")
            await asyncio.sleep(0.1)  # the due checks wait for the lock meanwhile
            async with asyncio.timeout(lookup.deadline):
                answers["again"] = await _ask(lookup, "y.example")
        finally:
            for holder in holders:
                holder.release()
            await d.close()
            await store.close()
        return answers

    answers = asyncio.run(main())
    for name in due:
        assert answers[name] == f"OK {SECURE.format(name)}"
    assert answers["y.example"] == f"OK {SECURE.format('y.example')}"
    assert answers["again"] == f"OK {SECURE.format('y.example')}"


class HangingReads:
    """A store whose reads of entries never finish while ``hang`` is set (a disk that
    stopped answering); everything else is the SQLite store's."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner
        self.hang = False
        self._never = asyncio.Event()

    async def get(self, namespace: str, key: str) -> StoreEntry | None:
        if self.hang:
            await self._never.wait()
        return await self.inner.get(namespace, key)

    def get_now(self, namespace: str, key: str) -> object:
        return NOT_READ if self.hang else self.inner.get_now(namespace, key)

    async def acquire_get(self, name: str, owner: str, ttl: float, namespace: str,
                          key: str) -> tuple[bool, StoreEntry | None]:
        if self.hang:
            await self._never.wait()
        return await self.inner.acquire_get(name, owner, ttl, namespace, key)

    def entries(self, namespace: str, prefix: str = "") -> AsyncIterator[StoreEntry]:
        return self.inner.entries(namespace, prefix)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_store_read_that_does_not_finish_keeps_what_memory_holds(
        tmp_path: Path, silent_port: int) -> None:
    # The policy held in memory is due for its check; the store's read of it never
    # finishes: the held policy stays in force, answered within the deadline.
    async def main() -> tuple[str, str, str]:
        clock = Clock()
        inner = SqliteStore(tmp_path / "cache.sqlite3", clock=clock)
        await seed(inner, "h.example", _policy("h.example"), fetched_at=clock.now - 60,
                   policy_id="id1", next_check=clock.now + 600)
        store = HangingReads(inner)
        d = _discovery(store, clock, silent_port)
        lookup = _lookup(d, deadline=2.0)
        try:
            first = await _ask(lookup, "h.example")
            clock.now += 700  # due for its check, still in force
            store.hang = True
            async with asyncio.timeout(lookup.deadline):
                state = await d.sts_state("h.example", wait=0.5)
            async with asyncio.timeout(lookup.deadline):
                answer = await _ask(lookup, "h.example")
        finally:
            await d.close()
            await inner.close()
        return first, state.state, answer

    first, state, answer = asyncio.run(main())
    assert first == f"OK {SECURE.format('h.example')}"
    assert state == "policy"
    assert answer == f"OK {SECURE.format('h.example')}"


def test_a_store_read_that_does_not_finish_is_unknown_not_no_policy(
        tmp_path: Path, silent_port: int) -> None:
    # Nothing held and the store's read never finishes: the state is "unreadable" (the
    # cache could not be read), given within the wait, never "pending" or "none"; with
    # the MX lookup failing too the answer is TEMP, within the answer deadline.
    async def main() -> tuple[str, str]:
        clock = Clock()
        inner = SqliteStore(tmp_path / "cache.sqlite3", clock=clock)
        await seed(inner, "u.example", _policy("u.example"), fetched_at=clock.now - 60,
                   policy_id="id1", next_check=clock.now + 600)
        store = HangingReads(inner)
        store.hang = True
        d = _discovery(store, clock, silent_port)

        async def failed_mx(domain: str) -> MxLookup:
            return MxLookup("failed", (), False, "SERVFAIL")

        d.mx = failed_mx  # type: ignore[method-assign]
        lookup = _lookup(d, deadline=2.0)
        try:
            async with asyncio.timeout(lookup.deadline):
                state = await d.sts_state("u.example", wait=0.5)
            async with asyncio.timeout(lookup.deadline):
                answer = await _ask(lookup, "u.example")
        finally:
            await d.close()
            await inner.close()
        return state.state, answer

    state, answer = asyncio.run(main())
    assert state == "unreadable"
    assert answer.startswith("TEMP ")


class DownStore:
    """A store every operation of which fails as unavailable."""

    def __getattr__(self, name: str) -> Any:
        async def down(*args: Any, **kwargs: Any) -> Any:
            from tlspolicy.stores import StoreUnavailableError
            raise StoreUnavailableError("down")
        return down

    async def close(self) -> None:
        pass


def test_a_failed_read_is_unknown_after_any_number_of_other_failed_reads(
        silent_port: int) -> None:
    # The domains whose latest read failed are bounded by dropping the oldest: after
    # more one-off failures than the bound, a failed read is still "unreadable" (the
    # cache could not be read), never "pending" (as if no policy was stored).
    import logging

    async def main() -> str:
        d = _discovery(DownStore(), Clock(), silent_port)
        try:
            for i in range(100_001):
                await d._load(f"n{i}.example")
            return (await d.sts_state("victim.example", wait=0.2)).state
        finally:
            await d.close()

    logger = logging.getLogger("tlspolicy.discovery")
    level = logger.level
    logger.setLevel(logging.ERROR)  # a warning per failed read
    try:
        assert asyncio.run(main()) == "unreadable"
    finally:
        logger.setLevel(level)
