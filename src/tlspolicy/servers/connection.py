"""One socketmap client connection of :class:`~tlspolicy.servers.SocketmapServer`: a
netstring decoder, one answer per turn of the loop, one timer for its time limits."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from ..postfix.netstring import NetstringDecoder, NetstringError, NetstringTooLongError
from ..postfix.replies import SocketmapReply

if TYPE_CHECKING:
    from .socketmap import SocketmapServer

__all__ = ["Connection", "EvictionOrder"]

log = logging.getLogger("tlspolicy.servers.socketmap")


class EvictionOrder:
    """Connections in the order they are closed to make room: those whose client sent EOF
    (Postfix never does while it waits for an answer), then the longest-idle of those
    waiting for no answer, then the longest-idle.  A connection whose answer is being
    computed is not idle: closing it would fail a lookup under way.  Each group is kept
    in order as connections change, so choosing costs the same however many there are."""

    __slots__ = ("all", "idle", "sent_eof")

    def __init__(self) -> None:
        #: By last touch (an answer written, or a lookup started), the longest idle first.
        self.all: OrderedDict[Connection, None] = OrderedDict()
        self.idle: OrderedDict[Connection, None] = OrderedDict()
        self.sent_eof: OrderedDict[Connection, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self.all)

    def add(self, conn: Connection) -> None:
        """A new connection (waiting for nothing yet)."""
        self.all[conn] = None
        self.idle[conn] = None

    def touch(self, conn: Connection) -> None:
        """``conn`` was answered, or its answer is now being computed."""
        conns = self.all
        if conn in conns:
            conns.move_to_end(conn)
            idle = self.idle
            if conn.waiting:
                idle.pop(conn, None)
            elif conn in idle:
                idle.move_to_end(conn)
            else:
                idle[conn] = None

    def saw_eof(self, conn: Connection) -> None:
        """``conn``'s client sent EOF."""
        if conn in self.all:
            self.sent_eof[conn] = None

    def remove(self, conn: Connection) -> bool:
        """Forget ``conn``; whether it was held."""
        if self.all.pop(conn, _ABSENT) is _ABSENT:
            return False
        self.idle.pop(conn, None)
        self.sent_eof.pop(conn, None)
        return True

    def victim(self) -> Connection:
        """The connection to close first (there must be one)."""
        return next(iter(self.sent_eof or self.idle or self.all))


_ABSENT: Final = object()


class Connection(asyncio.Protocol):
    """One client connection: a netstring decoder, one answer per turn, one timer.

    Fairness: a connection answers at most ONE request per turn of the loop:
    on receipt when no turn of its own is pending, else in its queued turn,
    which, while more requests are buffered, re-queues itself behind every
    other ready callback of the loop.  A client pipelining thousands of
    requests thus gets one answer per turn of the loop, like every other
    connection, and reading from it pauses while its backlog is large.

    Time limits: one timer per connection, re-armed for the remainder when it
    fires early, so a busy connection costs no timer operation per request.
    The idle deadline counts from the last complete request (or the accept):
    bytes of an unfinished request do not move it, so a client dribbling a
    byte at a time is not "active".  A request whose first byte arrived more
    than ``request_timeout`` ago and that is still incomplete ends the
    connection too.
    """

    __slots__ = ("_clock", "_eof", "_lost", "_read_paused", "_scheduled", "_server", "_task",
                 "_timer", "_timer_at", "_waiting", "_write_paused", "client", "decoder",
                 "last_complete", "partial_since", "transport")

    def __init__(self, server: SocketmapServer) -> None:
        self._server = server
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set on connect
        self.client = ""
        self.decoder = NetstringDecoder(server.max_request_bytes)
        self.last_complete = 0.0
        self.partial_since: float | None = None
        self._scheduled = False
        self._read_paused = False
        self._write_paused = False
        # An awaitable lookup is computing this connection's current answer (_task).
        self._waiting = False
        self._task: asyncio.Task[SocketmapReply] | None = None
        self._eof = False
        self._lost = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        # The loop's clock, read once per answer (the idle deadline counts from it).
        self._clock: Callable[[], float] = time.monotonic

    # -- transport callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        loop = _loop(self._server)
        self._clock = loop.time
        self.last_complete = loop.time()
        self._arm(self.last_complete + self._server.idle_timeout)
        self._server._admit(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.debug("socketmap: connection error: %s", exc)
        self._lost = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._drop_answer()
        self._server._forget(self)

    def data_received(self, data: bytes) -> None:
        if self._lost:
            return
        if not self._scheduled and not self._write_paused and not self._waiting:
            # No turn of ours is pending: answer one request now (saving a
            # loop iteration per request for a client that waits for each
            # answer); _serve_one queues a turn if more is buffered.
            payload = self.decoder.take_whole(data)
            if payload is not None:
                # The usual case: exactly one whole request, nothing buffered.
                try:
                    self._serve_payload(payload)
                except Exception:
                    log.exception("socketmap: unexpected error on a connection")
                    self.abort()
                return
            self._serve_one()
        else:
            self.decoder.feed(data)
        if (not self._read_paused and not self._lost
                and self.decoder.buffered > self._server._read_limit):
            self._read_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        self._server._saw_eof(self)
        self._schedule()
        # Stay open to write the answers still owed; _serve_one closes after them.
        return True

    def pause_writing(self) -> None:
        # The client does not read its answers: stop answering (and so, once
        # the backlog is large, reading) rather than buffer without bound.
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._schedule()

    # -- serving

    def _schedule(self) -> None:
        if (not self._scheduled and not self._write_paused and not self._lost
                and not self._waiting):
            self._scheduled = True
            _loop(self._server).call_soon(self._serve_one)

    def _serve_one(self) -> None:
        self._scheduled = False
        if self._lost or self._write_paused or self._waiting:
            return
        try:
            self._serve_one_request()
        except Exception:
            log.exception("socketmap: unexpected error on a connection")
            self.abort()

    def _serve_one_request(self) -> None:
        decoder = self.decoder
        try:
            payload = decoder.next_payload()
        except NetstringTooLongError as exc:
            log.warning("socketmap: %s; closing the connection", exc)
            self._fail(SocketmapReply.perm(f"request too large (limit {exc.limit} bytes)"))
            return
        except NetstringError as exc:
            log.warning("socketmap: %s; closing the connection", exc)
            self._fail(SocketmapReply.perm("malformed netstring"))
            return
        if payload is None:
            self._idle_pass()
            return
        self._serve_payload(payload)

    def _serve_payload(self, payload: bytes) -> None:
        server = self._server
        answer = server._answer(payload)
        if not isinstance(answer, SocketmapReply):
            # Computed elsewhere (I/O): the next request waits for this answer.
            self._waiting = True
            self._task = answer
            self.last_complete = _loop(server).time()
            self.partial_since = None
            server._touch(self)
            answer.add_done_callback(self._answered)
            return
        self._write_answer(answer)

    def _answered(self, task: asyncio.Task[SocketmapReply]) -> None:
        self._waiting = False
        self._task = None
        if self._lost or task.cancelled():
            return
        try:
            self._write_answer(task.result())
        except Exception:
            log.exception("socketmap: unexpected error on a connection")
            self.abort()

    def _write_answer(self, reply: SocketmapReply) -> None:
        self.transport.write(reply.encode())
        self.last_complete = self._clock()
        self.partial_since = None
        self._server._touch(self)
        if self.decoder.buffered or self._eof:
            # More may be waiting: after every other ready connection's turn.
            self._schedule()
        elif self._read_paused:
            self._read_paused = False
            self.transport.resume_reading()

    def _idle_pass(self) -> None:
        """Nothing complete is buffered: close after EOF, or time a started request."""
        if self._eof:
            if self.decoder.buffered:
                log.debug("socketmap: connection closed inside a request")
            self._lost = True
            self.transport.close()
            return
        if self._read_paused:
            self._read_paused = False
            self.transport.resume_reading()
        if not self.decoder.buffered:
            self.partial_since = None
        elif self.partial_since is None:
            self.partial_since = _loop(self._server).time()
            self._arm(self.partial_since + self._server.request_timeout)

    def _fail(self, reply: SocketmapReply) -> None:
        """Answer a framing error and close: the stream cannot be resynchronised."""
        self._lost = True
        self.transport.write(reply.encode())
        self.transport.close()

    def abort(self) -> None:
        """Close at once, dropping unsent answers; the slot is free immediately."""
        self._lost = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._drop_answer()
        self.transport.abort()
        self._server._forget(self)

    def _drop_answer(self) -> None:
        # Nobody is left to read the answer: stop waiting for it.  Work a lookup shares
        # with others (a DNS query, a policy fetch) runs on as its own task.
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    @property
    def waiting(self) -> bool:
        """Whether an answer of this connection's is being computed."""
        return self._waiting

    # -- time limits

    def _arm(self, when: float) -> None:
        if when >= self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = _loop(self._server).call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        if self._lost:
            # Closing after a framing error or EOF, but the answer is still
            # unsent because the client reads nothing: drop it.
            self.abort()
            return
        server = self._server
        now = _loop(server).time()
        if self._waiting:
            # The client waits for us, it is not idle; the answer has its own deadline.
            self._arm(now + server.idle_timeout)
            return
        deadline = self.last_complete + server.idle_timeout
        started = self.partial_since
        if started is not None:
            deadline = min(deadline, started + server.request_timeout)
        if now < deadline:
            self._arm(deadline)
            return
        if started is not None and started + server.request_timeout <= now:
            log.info("socketmap: request from %s not complete after %g s; closing",
                     self.client, server.request_timeout)
        else:
            log.debug("socketmap: idle connection from %s closed", self.client)
        self.abort()


def _loop(server: SocketmapServer) -> asyncio.AbstractEventLoop:
    loop = server._loop
    assert loop is not None, "connections exist only on a started server"
    return loop
