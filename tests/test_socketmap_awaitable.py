"""The socketmap server with lookups that return an awaitable (discovery's path): order per
connection, other connections never blocked, time limits, closing and stopping while an
answer is pending.  Real sockets on loopback; the lookups are plain coroutines.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tlspolicy.errors import PolicyInputError
from tlspolicy.servers.socketmap import SocketmapReply, SocketmapServer

pytestmark = pytest.mark.timeout(60)

Lookup = Callable[[str, str], "SocketmapReply | Awaitable[SocketmapReply]"]


def _request(key: str, map_name: str = "m") -> bytes:
    data = f"{map_name} {key}".encode()
    return f"{len(data)}:".encode() + data + b","


async def _reply(reader: asyncio.StreamReader, timeout: float = 10.0) -> str:
    async def one() -> str:
        size = int((await reader.readuntil(b":"))[:-1])
        return (await reader.readexactly(size + 1))[:-1].decode()

    return await asyncio.wait_for(one(), timeout)


def _run(lookup: Lookup, body: Callable[[SocketmapServer], Awaitable[Any]],
         **kwargs: Any) -> Any:
    async def main() -> Any:
        async with SocketmapServer(lookup, **kwargs) as server:
            return await body(server)

    result = asyncio.run(main())
    gc.collect()
    return result


class Slow:
    """Answers ``sync`` at once, everything else after ``release`` is set."""

    def __init__(self) -> None:
        self.release: asyncio.Event | None = None
        self.started = 0

    def __call__(self, name: str, key: str) -> SocketmapReply | Awaitable[SocketmapReply]:
        if key == "sync":
            return SocketmapReply.ok("sync")
        return self._later(key)

    async def _later(self, key: str) -> SocketmapReply:
        self.started += 1
        if self.release is None:
            self.release = asyncio.Event()
        if key == "cancelled":
            raise asyncio.CancelledError  # a library's stray cancellation, not ours
        if key == "policy-error":
            raise PolicyInputError("bad\ninput")
        if key == "forever":
            await asyncio.Event().wait()
        await self.release.wait()
        return SocketmapReply.ok(f"late {key}")


def test_pipelined_requests_behind_a_pending_answer_come_back_in_order() -> None:
    slow = Slow()

    async def body(server: SocketmapServer) -> list[str]:
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(b"".join(_request(k) for k in ("a", "sync", "b", "sync")))
        await asyncio.sleep(0.2)
        assert slow.release is not None
        slow.release.set()
        got = [await _reply(reader) for _ in range(4)]
        writer.close()
        return got

    assert _run(slow, body) == ["OK late a", "OK sync", "OK late b", "OK sync"]


def test_a_pending_answer_never_blocks_other_connections() -> None:
    slow = Slow()

    async def body(server: SocketmapServer) -> list[str]:
        waiting = await asyncio.open_connection(*server.address)
        waiting[1].write(_request("a"))
        other = await asyncio.open_connection(*server.address)
        other[1].write(_request("sync"))
        first = await _reply(other[0])  # answered while "a" is still pending
        assert slow.release is not None
        slow.release.set()
        second = await _reply(waiting[0])
        for _, writer in (waiting, other):
            writer.close()
        return [first, second]

    assert _run(slow, body) == ["OK sync", "OK late a"]


def test_a_stray_cancellation_inside_a_lookup_answers_temp_and_serves_on(
        caplog: pytest.LogCaptureFixture) -> None:
    """A CancelledError raised inside the lookup (not the server cancelling it) must not
    leave the client without an answer, nor the requests behind it unserved."""
    slow = Slow()

    async def body(server: SocketmapServer) -> list[str]:
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(_request("cancelled") + _request("sync"))
        got = [await _reply(reader, 5.0), await _reply(reader, 5.0)]
        writer.close()
        return got

    got = _run(slow, body)
    assert got[0].startswith("TEMP ") and got[1] == "OK sync"


def test_errors_and_time_limits_of_awaitable_answers() -> None:
    slow = Slow()

    async def body(server: SocketmapServer) -> list[str]:
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(_request("policy-error") + _request("forever") + _request("sync"))
        got = [await _reply(reader) for _ in range(3)]
        writer.close()
        return got

    got = _run(slow, body, answer_timeout=0.5)
    assert got[0] == "PERM bad input"
    assert got[1].startswith("TEMP policy lookup took over 0.5 s")
    assert got[2] == "OK sync"


def test_the_idle_timer_spares_a_connection_waiting_for_its_answer() -> None:
    slow = Slow()

    async def body(server: SocketmapServer) -> str:
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(_request("a"))
        await asyncio.sleep(0.8)  # well past the idle timeout
        assert slow.release is not None
        slow.release.set()
        got = await _reply(reader)
        writer.close()
        return got

    assert _run(slow, body, idle_timeout=0.2) == "OK late a"


def test_eof_after_the_request_still_gets_the_answer_then_closes() -> None:
    slow = Slow()

    async def body(server: SocketmapServer) -> tuple[str, bytes]:
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(_request("a"))
        writer.write_eof()
        await asyncio.sleep(0.2)
        assert slow.release is not None
        slow.release.set()
        got = await _reply(reader)
        rest = await asyncio.wait_for(reader.read(), 5.0)
        writer.close()
        return got, rest

    assert _run(slow, body) == ("OK late a", b"")


def test_evicting_and_stopping_with_answers_pending_logs_nothing(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="asyncio")
    slow = Slow()

    async def body(server: SocketmapServer) -> list[Any]:
        first = await asyncio.open_connection(*server.address)
        first[1].write(_request("forever"))
        await asyncio.sleep(0.1)
        second = await asyncio.open_connection(*server.address)  # evicts the first
        second[1].write(_request("sync") + _request("forever"))
        got: list[Any] = [await _reply(second[0])]
        got.append(await asyncio.wait_for(first[0].read(), 5.0))
        for _, writer in (first, second):
            writer.close()
        return got

    assert _run(slow, body, max_connections_per_client=1) == ["OK sync", b""]
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
