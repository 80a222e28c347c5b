"""A Postfix socketmap server (socketmap_table(5)) over an injected lookup.

Postfix sends one netstring per request, ``name <space> key``, and expects one
netstring per reply: ``OK <space> data``, ``NOTFOUND <space>``, ``TEMP <space>
reason``, ``TIMEOUT <space> reason`` or ``PERM <space> reason``.  A connection
carries any number of requests in sequence (``postmap -q -`` and the Postfix
daemons keep one connection open).

The server knows nothing about TLS policy: it calls ``lookup(map_name, key)``
and sends back the :class:`SocketmapReply` it returns.  The library plugs its
resolver in as the lookup, with the map name naming the binding.

Protocol choices (Postfix's manual leaves them to the server):

- A request whose netstring announces more than ``max_request_bytes`` is
  answered ``PERM request too large`` and the connection is closed: the
  payload is not read, so the stream cannot be resynchronised.
- A broken netstring (bad length prefix, missing comma) is answered ``PERM
  malformed netstring`` and the connection is closed, for the same reason.
- A well-framed request that is not ``name key`` or not UTF-8 is answered
  ``PERM`` and the connection stays usable.
- A lookup raising a :class:`~tlspolicy.errors.TlsPolicyError` is answered
  ``PERM`` with the error text (retrying the same bad input cannot help); any
  other exception is logged and answered ``TEMP`` so Postfix defers rather
  than delivers under a policy nobody computed.
- A reply longer than Postfix accepts (100000 characters) is replaced by
  ``PERM reply too long``, again failing closed.
- Limits (connections in all and per client, idle and request deadlines,
  request size, reload time) are arguments of :class:`SocketmapServer`; the
  security documentation (its socketmap server section) lists each default
  and what the server does when it is hit.  In short: when the connection
  slots (all, or one client's) are taken, the longest-idle connection is
  closed to make room, never the new one (one that sent EOF first, and never
  one whose answer is being computed while another is idle); Postfix
  reconnects and retries a lookup once when its connection was closed under
  it.  A closed connection's lookup is no longer waited for.  A connection with no
  complete request for ``idle_timeout`` seconds, or whose started request is
  not complete after ``request_timeout`` seconds, is closed.  Each connection
  gets one answer per turn of the event loop, so a pipelining client cannot
  delay the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Final

from ..errors import TlsPolicyError
from ..postfix.keys import PostfixKey, PostfixKeyError, parse_postfix_key
from ..postfix.replies import MAX_REPLY_CHARS, ReplyStatus, SocketmapReply, one_line
from .answerlog import NonOkLog
from .connection import Connection, EvictionOrder, _loop
from .listening import (
    ListenError,
    client_key,
    format_address,
    is_loopback_address,
    remove_socket_file,
    start_inherited,
    start_tcp,
    start_unix,
)
from .loading import LoadTimeoutError, call_bounded

__all__ = [
    "DEFAULT_ANSWER_TIMEOUT",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_CONNECTIONS_PER_CLIENT",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_RELOAD_TIMEOUT",
    "DEFAULT_REQUEST_TIMEOUT",
    "DEFAULT_SOCKET_MODE",
    "MAX_REPLY_CHARS",
    "RELOAD_RESULTS",
    "SERVER_TEMP_CAUSES",
    "ListenError",
    "LoadTimeoutError",
    "Lookup",
    "LookupFactory",
    "PostfixKey",
    "PostfixKeyError",
    "ReplyStatus",
    "SocketmapReply",
    "SocketmapServer",
    "format_address",
    "is_loopback_address",
    "parse_postfix_key",
]

log = logging.getLogger(__name__)

#: Largest request payload accepted.  A Postfix key is a domain (at most 253
#: characters, more as UTF-8), brackets and a port; the map name adds a little.
DEFAULT_MAX_REQUEST_BYTES: Final = 4096
#: Connections served at once.  Postfix opens one per process that uses the
#: map (up to ``default_process_limit``, 100, per service); when all are
#: taken, the longest-idle connection is closed to make room.
DEFAULT_MAX_CONNECTIONS: Final = 512
#: Connections one client (a TCP peer address, or a unix-socket peer user id)
#: may hold; ``None``: no limit of its own.  Every Postfix process of a host
#: shares one address and one user id, so any lower default would make
#: Postfix compete with itself; set it when other clients share the server.
DEFAULT_MAX_CONNECTIONS_PER_CLIENT: Final[int | None] = None
#: Seconds after the last complete request (or the accept) before an idle
#: connection is closed.  Postfix closes its own idle socketmap connections
#: after 10 s, so a healthy Postfix never meets this limit; anything that
#: stays silent three times as long is not Postfix.
DEFAULT_IDLE_TIMEOUT: Final = 30.0
#: Seconds a request may take to arrive once its first byte has.  Postfix
#: writes a request (a few hundred bytes) in one go and waits 100 s for the
#: answer; 10 s is far beyond any honest transfer over loopback.
DEFAULT_REQUEST_TIMEOUT: Final = 10.0
#: Seconds a reload (or the first load) may take before it is abandoned.
DEFAULT_RELOAD_TIMEOUT: Final = 30.0
#: File mode of a unix socket: the server's user and group (add Postfix's
#: user to the group, or use 0o666 to let every local user in).
DEFAULT_SOCKET_MODE: Final = 0o660
#: The results :attr:`SocketmapServer.reload_results` counts.
RELOAD_RESULTS: Final = ("ok", "failed", "timeout", "refused", "superseded")
#: Causes of the ``TEMP`` answers the server gives itself (see ``SocketmapServer.on_temp``).
SERVER_TEMP_CAUSES: Final = ("deadline", "cancellation", "internal")
#: Seconds an awaitable lookup may take before the server answers ``TEMP`` itself.
#: Postfix gives up on a socketmap reply after 100 s; a lookup should keep its own,
#: shorter deadline (the discovery lookup's is 10 s) and this is only the last guard.
DEFAULT_ANSWER_TIMEOUT: Final = 30.0

_READ_CHUNK: Final = 65536
# Loads (first load and reloads) running or stuck at once; beyond, reloads wait.
_MAX_LOADERS: Final = 8
# At most one eviction warning per this many seconds (an attack floods otherwise).
_EVICTION_LOG_INTERVAL: Final = 10.0


#: ``lookup(map_name, key)``: what the server asks for every request.  It returns the
#: reply, or an awaitable of it for a lookup that must wait for I/O (discovery): the
#: connection then answers nothing else until it resolves, so replies keep their order.
Lookup = Callable[[str, str], "SocketmapReply | Awaitable[SocketmapReply]"]
#: Builds a fresh lookup, e.g. by reading the configuration files again.
LookupFactory = Callable[[], Lookup]


# ------------------------------------------------------------------------- server


class SocketmapServer:
    """An asyncio socketmap server calling an injected :data:`Lookup`.

    It listens on ``host``/``port`` (TCP) or on the unix socket ``unix_path``
    (created with ``socket_mode``).  A TCP address that is not loopback is
    refused with :class:`ListenError` unless ``allow_remote`` is true: the
    protocol has no authentication.

    Limits (see the module documentation for what happens when each is hit):
    ``max_connections`` in all, ``max_connections_per_client`` per peer
    address (TCP) or peer user id (unix socket; ``None``: no limit of its
    own), ``idle_timeout`` seconds after the last complete request,
    ``request_timeout`` seconds for a request once its first byte arrived,
    ``max_request_bytes`` per request, ``reload_timeout`` seconds per reload.

    ``sock`` is a listening socket bound by someone else (systemd socket
    activation): TCP or unix, served as it is (a TCP one is still refused when
    not loopback without ``allow_remote``; a unix one's file is left alone at
    stop).  ``reuse_port`` sets ``SO_REUSEPORT`` on the TCP sockets, so several
    processes can listen on one port and the kernel spreads connections among
    them.

    ``reload`` builds a replacement lookup on :meth:`reload` (``SIGHUP`` under
    :func:`serve`); when it raises or overruns ``reload_timeout``, the old
    lookup stays in place and the error is logged.  The lookup in force is
    read once per request, so a swap never mixes two lookups in one reply.
    """

    def __init__(
        self,
        lookup: Lookup,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        unix_path: str | None = None,
        socket_mode: int = DEFAULT_SOCKET_MODE,
        allow_remote: bool = False,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_connections_per_client: int | None = DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        reload: LookupFactory | None = None,
        reload_timeout: float = DEFAULT_RELOAD_TIMEOUT,
        sock: socket.socket | None = None,
        reuse_port: bool = False,
        answer_timeout: float = DEFAULT_ANSWER_TIMEOUT,
    ) -> None:
        if sock is not None and (unix_path is not None or reuse_port):
            raise ValueError("a passed socket is already bound: no unix_path or reuse_port")
        if reuse_port and unix_path is not None:
            raise ValueError("reuse_port applies to TCP only")
        if max_request_bytes < 1:
            raise ValueError(f"max_request_bytes must be positive, got {max_request_bytes}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be positive, got {max_connections}")
        if max_connections_per_client is not None and max_connections_per_client < 1:
            raise ValueError("max_connections_per_client must be positive, got "
                             f"{max_connections_per_client}")
        for name, value in (("idle_timeout", idle_timeout), ("request_timeout", request_timeout),
                            ("reload_timeout", reload_timeout),
                            ("answer_timeout", answer_timeout)):
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0-65535, got {port}")
        if not 0 <= socket_mode <= 0o777:
            raise ValueError(f"socket_mode must be a file mode 0-0o777, got {socket_mode:#o}")
        self._lookup = lookup
        self._reload = reload
        self.sock = sock
        self.reuse_port = reuse_port
        self.unix_path = unix_path
        if sock is not None and sock.family == socket.AF_UNIX:
            name = sock.getsockname()
            self.unix_path = name if isinstance(name, str) and name else "(inherited)"
        elif sock is not None:
            name = sock.getsockname()
            host, port = str(name[0]), int(name[1])
        self.host = host
        self.port = port
        self.socket_mode = socket_mode
        self.allow_remote = allow_remote
        self.max_request_bytes = max_request_bytes
        self.max_connections = max_connections
        self.max_connections_per_client = max_connections_per_client
        self.idle_timeout = idle_timeout
        self.request_timeout = request_timeout
        self.reload_timeout = reload_timeout
        self.answer_timeout = answer_timeout
        # Lookups still running (awaitable answers), cancelled at stop.
        self._pending: set[asyncio.Task[SocketmapReply]] = set()
        #: Every non-OK answer, logged once per map name, key and cause.
        self.answer_log = NonOkLog()
        #: Told the cause of every ``TEMP`` the server answers itself (the lookup gave
        #: none): ``deadline`` (``answer_timeout`` passed), ``cancellation`` (the lookup
        #: was cancelled under it) or ``internal`` (it raised or returned no reply).
        self.on_temp: Callable[[str], None] | None = None
        #: Those ``TEMP`` answers since start, by cause.
        self.temp_causes: dict[str, int] = dict.fromkeys(SERVER_TEMP_CAUSES, 0)
        # Enough to hold a pipelined burst and always a whole request.
        self._read_limit = max(_READ_CHUNK, 2 * max_request_bytes + 32)
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Open connections, longest idle (oldest last complete request) first; of them,
        # those waiting for no answer in the same order, and those whose client sent EOF:
        # the first closed to make room (see EvictionOrder).
        self._order = EvictionOrder()
        self._conns = self._order.all
        # Each client's own, when clients have a limit of their own.
        self._by_client: dict[str, EvictionOrder] = {}
        self._accepted = 0
        self._evicted = 0
        self._unlogged_evictions = 0
        self._eviction_logged_at = -math.inf
        self._unix_inode: tuple[int, int] | None = None
        self._loaders: list[threading.Thread] = []
        self._reload_tasks: set[asyncio.Task[bool]] = set()
        self._reload_seq = 0
        self._applied_seq = 0
        self._reload_pending = False
        #: Reloads since start by result: ``ok``, ``failed``, ``timeout``,
        #: ``refused`` (too many loads still running) and ``superseded``.
        self.reload_results: dict[str, int] = dict.fromkeys(RELOAD_RESULTS, 0)

    # -- lookup management

    @property
    def lookup(self) -> Lookup:
        """The lookup currently answering requests."""
        return self._lookup

    def swap_lookup(self, lookup: Lookup) -> None:
        """Replace the lookup; requests already answered are unaffected."""
        self._lookup = lookup

    def _running_loaders(self) -> int:
        self._loaders = [thread for thread in self._loaders if thread.is_alive()]
        return len(self._loaders)

    async def reload(self) -> bool:
        """Build a new lookup with the ``reload`` callback and swap it in.

        Returns ``True`` on success.  On failure (the callback raised, returned
        no lookup, or did not finish within ``reload_timeout``), logs the
        error, keeps the old lookup and returns ``False``.  The callback runs
        in a daemon thread, so reading files never stalls requests, and a load
        that never ends (a FIFO, a device) neither blocks later reloads nor
        the shutdown.  When reloads overlap, the latest one to start wins.
        """
        if self._reload is None:
            log.warning("socketmap: reload requested but no reload callback configured")
            return False
        if self._running_loaders() >= _MAX_LOADERS:
            log.error("socketmap: reload refused: %d earlier loads are still running or stuck "
                      "(reading a FIFO or a device?); keeping the previous lookup", _MAX_LOADERS)
            self._reload_pending = True
            self.reload_results["refused"] += 1
            return False
        self._reload_seq += 1
        seq = self._reload_seq
        try:
            new = await call_bounded(self._reload, self.reload_timeout, self._loaders)
        except Exception as exc:
            log.error("socketmap: reload failed, keeping the previous lookup: %s", exc,
                      exc_info=not isinstance(exc, TlsPolicyError))
            self.reload_results[
                "timeout" if isinstance(exc, LoadTimeoutError) else "failed"] += 1
            return False
        finally:
            if self._reload_pending and self._running_loaders() < _MAX_LOADERS:
                self._reload_pending = False
                self.request_reload()
        if not callable(new):
            log.error("socketmap: reload returned %r, not a lookup; keeping the previous",
                      new)
            self.reload_results["failed"] += 1
            return False
        if seq < self._applied_seq:
            log.warning("socketmap: a reload requested later has already taken effect; "
                        "discarding the result of an earlier one")
            self.reload_results["superseded"] += 1
            return False
        self._applied_seq = seq
        self._lookup = new
        self.reload_results["ok"] += 1
        log.info("socketmap: lookup reloaded")
        return True

    def request_reload(self) -> None:
        """Start :meth:`reload` in the background (what ``SIGHUP`` does).

        Needs a running event loop; :meth:`stop` cancels reloads still waiting.
        """
        task = asyncio.get_running_loop().create_task(self.reload())
        self._reload_tasks.add(task)
        task.add_done_callback(self._reload_tasks.discard)

    # -- life cycle

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` actually bound; the port is known after :meth:`start`.

        For a unix socket, ``(unix_path, 0)``.
        """
        if self.unix_path is not None:
            return (self.unix_path, 0)
        if self._server is None or not self._server.sockets:
            return (self.host, self.port)
        name = self._server.sockets[0].getsockname()
        return (str(name[0]), int(name[1]))

    @property
    def listen_address(self) -> str:
        """Where the server listens, as an operator writes it.

        ``127.0.0.1:10027``, ``[::1]:10027`` or ``unix:/path``; the same
        spelling Postfix's ``socketmap:inet:`` and ``socketmap:unix:`` use.
        """
        if self.unix_path is not None:
            return f"unix:{self.unix_path}"
        return format_address(*self.address)

    @property
    def active_connections(self) -> int:
        """Connections being served now."""
        return len(self._conns)

    @property
    def accepted_connections(self) -> int:
        """Connections accepted since start, including those closed since."""
        return self._accepted

    @property
    def evicted_connections(self) -> int:
        """Connections closed to make room for a new one, since start."""
        return self._evicted

    async def start(self) -> None:
        """Bind and start accepting connections.

        Raises :class:`ListenError` when the address is not loopback (and
        ``allow_remote`` is false), is in use, or cannot be bound.
        """
        if self._server is not None:
            raise RuntimeError("socketmap server already started")
        loop = asyncio.get_running_loop()
        self._loop = loop
        if self.sock is not None:
            self._server = await start_inherited(loop, self.sock, self._connection,
                                                 allow_remote=self.allow_remote)
        elif self.unix_path is not None:
            self._server, self._unix_inode = await start_unix(
                loop, self.unix_path, self._connection, mode=self.socket_mode)
        else:
            self._server = await start_tcp(loop, self.host, self.port, self._connection,
                                           allow_remote=self.allow_remote,
                                           reuse_port=self.reuse_port)
        log.info("socketmap: listening on %s", self.listen_address)

    async def stop(self) -> None:
        """Stop accepting, close every connection (and reloads still waiting)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._reload_tasks):
            task.cancel()
        for pending in list(self._pending):
            pending.cancel()
        for conn in list(self._conns):
            conn.abort()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        inode, self._unix_inode = self._unix_inode, None
        if inode is not None and self.unix_path is not None:
            remove_socket_file(self.unix_path, inode)
        # Let the transports deliver connection_lost before the loop goes away.
        await asyncio.sleep(0)

    async def __aenter__(self) -> SocketmapServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- connections

    def _connection(self) -> Connection:
        return Connection(self)

    def _admit(self, conn: Connection) -> None:
        """Register a new connection, closing the longest-idle one(s) to make room."""
        self._accepted += 1
        conn.client = client_key(conn.transport, self.unix_path is not None)
        per_client = self.max_connections_per_client
        if per_client is not None:
            peers = self._by_client.get(conn.client)
            if peers is not None and len(peers) >= per_client:
                self._evict(peers.victim(),
                            f"{conn.client} has {len(peers)} connections, its limit")
        if len(self._order) >= self.max_connections:
            self._evict(self._order.victim(),
                        f"{len(self._order)} connections open, the limit")
        self._order.add(conn)
        if per_client is not None:
            self._by_client.setdefault(conn.client, EvictionOrder()).add(conn)

    def _evict(self, victim: Connection, why: str) -> None:
        # Postfix's client retries a lookup once on a connection closed under
        # it, so closing an idle Postfix connection costs it a reconnect, not
        # a deferred mail; refusing the new one would fail a lookup.
        victim.abort()
        self._evicted += 1
        self._unlogged_evictions += 1
        loop = self._loop
        now = loop.time() if loop is not None else 0.0
        if now - self._eviction_logged_at >= _EVICTION_LOG_INTERVAL:
            log.warning("socketmap: %s: closed the longest-idle connection (%d such closes "
                        "since the last warning)", why, self._unlogged_evictions)
            self._eviction_logged_at = now
            self._unlogged_evictions = 0

    def _touch(self, conn: Connection) -> None:
        # A connection answered, or whose answer is now being computed.
        self._order.touch(conn)
        if self._by_client:
            peers = self._by_client.get(conn.client)
            if peers is not None:
                peers.touch(conn)

    def _saw_eof(self, conn: Connection) -> None:
        self._order.saw_eof(conn)
        peers = self._by_client.get(conn.client)
        if peers is not None:
            peers.saw_eof(conn)

    def _forget(self, conn: Connection) -> None:
        if not self._order.remove(conn):
            return
        peers = self._by_client.get(conn.client)
        if peers is not None:
            peers.remove(conn)
            if not peers:
                del self._by_client[conn.client]

    def _answer(self, payload: bytes) -> SocketmapReply | asyncio.Task[SocketmapReply]:
        """The reply to one request, or a task computing it (an awaitable lookup)."""
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            return self._checked("", payload[:100].decode("utf-8", "replace"),
                                 SocketmapReply.perm("request is not UTF-8"))
        name, sep, key = text.partition(" ")
        if not sep or not name:
            return self._checked(name, key, SocketmapReply.perm(
                "malformed request, expected 'name key'"))
        lookup = self._lookup
        try:
            reply = lookup(name, key)
        except TlsPolicyError as exc:
            return self._checked(name, key, _safe_perm(str(exc)))
        except Exception:
            log.exception("socketmap: lookup %r %r failed", name, key)
            return self._checked(name, key, self._temp("internal",
                                                       "internal error in the policy server"))
        if isinstance(reply, SocketmapReply):
            return self._checked(name, key, reply)
        if not inspect.isawaitable(reply):
            log.error("socketmap: lookup returned %r, not a SocketmapReply", reply)
            return self._temp("internal", "internal error in the policy server")
        task = _loop(self).create_task(self._await_answer(name, key, reply))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def _await_answer(self, name: str, key: str,
                            pending: Awaitable[SocketmapReply]) -> SocketmapReply:
        try:
            # A timeout scope, not wait_for: on Python 3.11 wait_for runs the lookup as a
            # task of its own, a second task for every answer.
            async with asyncio.timeout(self.answer_timeout):
                reply = await pending
        except TlsPolicyError as exc:
            return self._checked(name, key, _safe_perm(str(exc)))
        except TimeoutError:
            # Postfix defers rather than delivering under a policy nobody computed.
            return self._checked(name, key, self._temp(
                "deadline", f"policy lookup took over {self.answer_timeout:g} s"))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the server stops: nobody is left to answer
            # Cancelled inside the lookup, not by us: the client still waits for a reply
            # (and its pipelined requests behind it).
            return self._checked(name, key,
                                 self._temp("cancellation", "policy lookup was cancelled"))
        except Exception:
            log.exception("socketmap: lookup %r %r failed", name, key)
            return self._temp("internal", "internal error in the policy server")
        if not isinstance(reply, SocketmapReply):
            log.error("socketmap: lookup returned %r, not a SocketmapReply", reply)
            return self._temp("internal", "internal error in the policy server")
        return self._checked(name, key, reply)

    def _temp(self, cause: str, reason: str) -> SocketmapReply:
        """A ``TEMP`` the server answers itself, counted by ``cause``."""
        self.temp_causes[cause] = self.temp_causes.get(cause, 0) + 1
        if self.on_temp is not None:
            try:
                self.on_temp(cause)
            except Exception:  # counting never changes an answer
                log.exception("socketmap: counting a TEMP answer failed")
        return SocketmapReply.temp(reason)

    def _checked(self, name: str, key: str, reply: SocketmapReply) -> SocketmapReply:
        if len(reply.text) + len(reply.status.value) + 1 > MAX_REPLY_CHARS:
            log.error("socketmap: reply for %s %r longer than %d characters", name, key,
                      MAX_REPLY_CHARS)
            return SocketmapReply.perm("reply too long")
        if log.isEnabledFor(logging.DEBUG):
            log.debug("socketmap: %s %r -> %s", name, key, reply.to_text())
        if reply.status is not ReplyStatus.OK:
            self.answer_log.note(name, key, reply)
        return reply


def _safe_perm(message: str) -> SocketmapReply:
    """A PERM reply whose reason is ``message`` made fit for one Postfix line."""
    text = one_line(message)
    return SocketmapReply.perm(text[: MAX_REPLY_CHARS - 5])
