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
- Connections beyond ``max_connections`` are closed at once without a reply;
  Postfix treats that as a temporary lookup failure and defers.
- A connection that sends no complete request for ``idle_timeout`` seconds
  is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import logging
import re
import signal
from collections.abc import Callable
from typing import Final, NamedTuple

import attrs

from .. import InvalidDomainError, normalise_domain
from ..errors import PolicyInputError, TlsPolicyError
from .netstring import NetstringDecoder, NetstringError, NetstringTooLongError, encode_netstring

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_REQUEST_BYTES",
    "MAX_REPLY_CHARS",
    "Lookup",
    "LookupFactory",
    "PostfixKey",
    "PostfixKeyError",
    "ReplyStatus",
    "SocketmapReply",
    "SocketmapServer",
    "parse_postfix_key",
    "run_forever",
    "serve",
]

log = logging.getLogger(__name__)

#: Largest request payload accepted.  A Postfix key is a domain (at most 253
#: characters, more as UTF-8), brackets and a port; the map name adds a little.
DEFAULT_MAX_REQUEST_BYTES: Final = 4096
#: Concurrent connections served; Postfix opens one per daemon process.
DEFAULT_MAX_CONNECTIONS: Final = 256
#: Seconds a connection may wait between requests before it is closed.
DEFAULT_IDLE_TIMEOUT: Final = 300.0
#: Postfix's socketmap client refuses replies longer than this (socketmap_table(5)).
MAX_REPLY_CHARS: Final = 100_000

_READ_CHUNK: Final = 65536


class ReplyStatus(enum.Enum):
    """The status word that starts every socketmap reply."""

    OK = "OK"
    NOTFOUND = "NOTFOUND"
    TEMP = "TEMP"
    TIMEOUT = "TIMEOUT"
    PERM = "PERM"


_FORBIDDEN_IN_TEXT: Final = re.compile(r"[\x00\r\n]")


def _check_text(instance: SocketmapReply, attribute: attrs.Attribute[str], value: str) -> None:
    if _FORBIDDEN_IN_TEXT.search(value):
        # Postfix handles replies as C strings, one line: NUL or a line break
        # would be cut or misread there.
        raise ValueError(f"socketmap reply text contains NUL, CR or LF: {value!r}")
    if instance.status is ReplyStatus.NOTFOUND and value:
        raise ValueError(f"a NOTFOUND reply carries no text, got {value!r}")
    if instance.status is ReplyStatus.OK and not value:
        raise ValueError("an OK reply needs data; use NOTFOUND for no result")


@attrs.frozen(slots=True)
class SocketmapReply:
    """One reply: a status and its data (OK) or reason (TEMP, TIMEOUT, PERM).

    Use the constructors :meth:`ok`, :meth:`notfound`, :meth:`temp`,
    :meth:`timeout` and :meth:`perm`.  Text holding NUL, CR or LF is refused
    at construction.
    """

    status: ReplyStatus
    text: str = attrs.field(default="", validator=_check_text)

    @classmethod
    def ok(cls, data: str) -> SocketmapReply:
        """The key was found; ``data`` is the table's value for it."""
        return cls(ReplyStatus.OK, data)

    @classmethod
    def notfound(cls) -> SocketmapReply:
        """The key is not in the table."""
        return cls(ReplyStatus.NOTFOUND, "")

    @classmethod
    def temp(cls, reason: str) -> SocketmapReply:
        """A temporary failure; Postfix defers the mail that needed the lookup."""
        return cls(ReplyStatus.TEMP, reason)

    @classmethod
    def timeout(cls, reason: str) -> SocketmapReply:
        """The lookup timed out; Postfix treats it as temporary."""
        return cls(ReplyStatus.TIMEOUT, reason)

    @classmethod
    def perm(cls, reason: str) -> SocketmapReply:
        """A permanent failure (bad request, broken configuration)."""
        return cls(ReplyStatus.PERM, reason)

    def to_text(self) -> str:
        """The reply as Postfix reads it, before netstring framing."""
        return f"{self.status.value} {self.text}"

    def encode(self) -> bytes:
        """The reply framed as one netstring."""
        return encode_netstring(self.to_text().encode("utf-8"))


#: ``lookup(map_name, key)``: what the server asks for every request.
Lookup = Callable[[str, str], SocketmapReply]
#: Builds a fresh lookup, e.g. by reading the configuration files again.
LookupFactory = Callable[[], Lookup]


# --------------------------------------------------------------------------- keys


class PostfixKeyError(PolicyInputError):
    """A socketmap key that is none of the forms Postfix sends."""


class PostfixKey(NamedTuple):
    """A parsed Postfix lookup key (see :func:`parse_postfix_key`)."""

    #: Lower-case domain in IDNA A-label form without trailing dot, or an IP
    #: literal in canonical form: ``[192.0.2.1]``, ``[ipv6:2001:db8::1]``.
    domain: str
    #: The port of ``[host]:port`` / ``host:port`` next hops, else ``None``.
    port: int | None
    #: ``.example.com``: Postfix asks about any subdomain of ``example.com``.
    parent: bool
    #: ``[host]``: the next hop was given in brackets (no MX lookup).
    bracketed: bool

    @property
    def is_ip(self) -> bool:
        """Whether :attr:`domain` is an IP literal."""
        return self.domain.startswith("[")


# A plain host name (lower case ASCII, optional trailing dot) whose last label starts
# with a letter or underscore, so it is neither an address nor all-numeric:
# parse_postfix_key's answer for it is the name itself.
_PLAIN_KEY: Final = re.compile(
    r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.?")
_PORT_DIGITS: Final = re.compile(r"[0-9]{1,5}")
# Postfix accepts service names for ports; resolving them through the system's
# services database would make this function impure, so the names a mail next
# hop uses are listed here.
_SERVICE_PORTS: Final = {"smtp": 25, "submission": 587, "submissions": 465, "smtps": 465,
                         "lmtp": 24}


def _parse_port(text: str, key: str) -> int:
    if _PORT_DIGITS.fullmatch(text):
        port = int(text)
        if 1 <= port <= 65535:
            return port
        raise PostfixKeyError(f"port {text} out of range 1-65535 in key {key!r}")
    if text.lower() in _SERVICE_PORTS:
        return _SERVICE_PORTS[text.lower()]
    raise PostfixKeyError(f"invalid port {text!r} in key {key!r}")


def _ip_literal(text: str) -> str | None:
    """Canonical literal for an address spelling, ``None`` when not an address."""
    inner = text
    explicit_v6 = inner[:5].lower() == "ipv6:"
    if explicit_v6:
        inner = inner[5:]
    try:
        address = ipaddress.ip_address(inner)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return f"[{address.ipv4_mapped}]"
        return f"[ipv6:{address.compressed}]"
    if explicit_v6:
        return None
    return f"[{address}]"


def _domain(text: str, key: str) -> str:
    # The same normalisation as every other domain name in the library, so a
    # key finds exactly the stanza a resolver request with that name would.
    if text.startswith("[") or text.endswith(".."):
        raise PostfixKeyError(f"invalid domain {text!r} in key {key!r}")
    try:
        name = normalise_domain(text)
    except InvalidDomainError as exc:
        raise PostfixKeyError(f"{exc} (key {key!r})") from None
    if name.startswith("[") or name.rsplit(".", 1)[-1].isdigit():
        # An IP literal is only accepted through the IP branch of the parser,
        # and an all-numeric last label is no host name (RFC 3696 section
        # 2): it is a mistyped address such as 192.0.2.300 or 1.2.3.4.5.
        raise PostfixKeyError(f"neither a domain nor an IP address: {key!r}")
    return name


def parse_postfix_key(key: str) -> PostfixKey:
    """Parse a key as Postfix sends it to a TLS policy (or transport) table.

    Accepted forms: ``example.com``, ``example.com.``, ``[example.com]``,
    ``[example.com]:587``, ``example.com:587`` (a service name such as
    ``smtp`` or ``submission`` may stand for the port), ``.example.com``
    (the parent-domain form Postfix tries after the exact name), IP literals
    ``[192.0.2.1]``, ``[ipv6:2001:db8::1]`` (also ``[2001:db8::1]``), with or
    without ``:port``.  Domains come back lower case, without trailing dot,
    international names as IDNA A-labels; addresses in the canonical literal
    form.  Anything else raises :class:`PostfixKeyError`.
    """
    if not isinstance(key, str):
        raise PostfixKeyError(f"key must be a string, not {type(key).__name__}")
    if key.isascii():
        # The common case, a plain host name, without trying it as an address first.
        lower = key.lower()
        if _PLAIN_KEY.fullmatch(lower):
            name = lower[:-1] if lower[-1] == "." else lower
            if len(name) <= 253:
                return PostfixKey(name, None, parent=False, bracketed=False)
    return _parse_general_key(key)


def _parse_general_key(key: str) -> PostfixKey:
    if not key or key != key.strip() or any(c.isspace() for c in key):
        raise PostfixKeyError(f"key is empty or contains white space: {key!r}")

    if key.startswith("["):
        close = key.find("]")
        if close < 0:
            raise PostfixKeyError(f"unterminated '[' in key {key!r}")
        inner, rest = key[1:close], key[close + 1 :]
        port: int | None = None
        if rest:
            if not rest.startswith(":") or len(rest) == 1:
                raise PostfixKeyError(f"unexpected {rest!r} after ']' in key {key!r}")
            port = _parse_port(rest[1:], key)
        if not inner or "[" in inner or "]" in inner:
            raise PostfixKeyError(f"invalid bracketed host in key {key!r}")
        literal = _ip_literal(inner)
        if literal is not None:
            return PostfixKey(literal, port, parent=False, bracketed=True)
        if ":" in inner:
            raise PostfixKeyError(f"invalid address literal in key {key!r}")
        return PostfixKey(_domain(inner, key), port, parent=False, bracketed=True)

    if "[" in key or "]" in key:
        raise PostfixKeyError(f"misplaced bracket in key {key!r}")

    if key.startswith("."):
        # Postfix builds parent forms from domain names only, never with a port.
        if ":" in key:
            raise PostfixKeyError(f"parent-domain key with a port or address: {key!r}")
        body = key[1:]
        if not body or body.startswith("."):
            raise PostfixKeyError(f"invalid parent-domain key {key!r}")
        domain = _domain(body, key)
        if _ip_literal(domain) is not None:
            raise PostfixKeyError(f"parent-domain form of an address: {key!r}")
        return PostfixKey(domain, None, parent=True, bracketed=False)

    literal = _ip_literal(key)
    if literal is not None:
        # A bare address (unbracketed IPv6 has no room for a port).
        return PostfixKey(literal, None, parent=False, bracketed=False)
    host, sep, port_text = key.rpartition(":")
    if sep:
        if ":" in host:
            raise PostfixKeyError(f"invalid key {key!r}: IPv6 addresses need brackets "
                                  "to carry a port")
        port = _parse_port(port_text, key)
        literal = _ip_literal(host)
        if literal is not None:
            return PostfixKey(literal, port, parent=False, bracketed=False)
        return PostfixKey(_domain(host, key), port, parent=False, bracketed=False)
    return PostfixKey(_domain(key, key), None, parent=False, bracketed=False)


# ------------------------------------------------------------------------- server


class SocketmapServer:
    """An asyncio socketmap server calling an injected :data:`Lookup`.

    ``reload`` builds a replacement lookup on :meth:`reload` (``SIGHUP`` under
    :func:`serve`); when it raises, the old lookup stays in place and the error
    is logged.  The lookup in force is read once per request, so a swap never
    mixes two lookups in one reply.
    """

    def __init__(
        self,
        lookup: Lookup,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        reload: LookupFactory | None = None,
    ) -> None:
        if max_request_bytes < 1:
            raise ValueError(f"max_request_bytes must be positive, got {max_request_bytes}")
        if max_connections < 1:
            raise ValueError(f"max_connections must be positive, got {max_connections}")
        if not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be positive, got {idle_timeout}")
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0-65535, got {port}")
        self._lookup = lookup
        self._reload = reload
        self.host = host
        self.port = port
        self.max_request_bytes = max_request_bytes
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._active = 0
        self._accepted = 0
        self._reload_lock = asyncio.Lock()

    # -- lookup management

    @property
    def lookup(self) -> Lookup:
        """The lookup currently answering requests."""
        return self._lookup

    def swap_lookup(self, lookup: Lookup) -> None:
        """Replace the lookup; requests already answered are unaffected."""
        self._lookup = lookup

    async def reload(self) -> bool:
        """Build a new lookup with the ``reload`` callback and swap it in.

        Returns ``True`` on success.  On failure, logs the error, keeps the old
        lookup and returns ``False``.  The callback runs in a worker thread so
        that reading files does not stall requests in progress.
        """
        if self._reload is None:
            log.warning("socketmap: reload requested but no reload callback configured")
            return False
        factory = self._reload
        async with self._reload_lock:
            try:
                new = await asyncio.to_thread(factory)
            except Exception as exc:
                log.error("socketmap: reload failed, keeping the previous lookup: %s", exc,
                          exc_info=not isinstance(exc, TlsPolicyError))
                return False
            if not callable(new):
                log.error("socketmap: reload returned %r, not a lookup; keeping the previous",
                          new)
                return False
            self._lookup = new
            log.info("socketmap: lookup reloaded")
            return True

    # -- life cycle

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` actually bound; the port is known after :meth:`start`."""
        if self._server is None or not self._server.sockets:
            return (self.host, self.port)
        name = self._server.sockets[0].getsockname()
        return (str(name[0]), int(name[1]))

    @property
    def active_connections(self) -> int:
        """Connections being served now."""
        return self._active

    @property
    def accepted_connections(self) -> int:
        """Connections served since start (refused ones not counted)."""
        return self._accepted

    async def start(self) -> None:
        """Bind and start accepting connections."""
        if self._server is not None:
            raise RuntimeError("socketmap server already started")
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, limit=_READ_CHUNK
        )
        host, port = self.address
        log.info("socketmap: listening on %s:%d", host, port)

    async def stop(self) -> None:
        """Stop accepting, close every connection and wait for their handlers."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.gather(*handlers, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5.0)

    async def __aenter__(self) -> SocketmapServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- connections

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if self._active >= self.max_connections:
            log.warning("socketmap: %d connections open, refusing %s", self._active,
                        writer.get_extra_info("peername"))
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
        self._active += 1
        self._accepted += 1
        if task is not None:
            self._handlers.add(task)
        try:
            await self._serve_connection(reader, writer)
        except asyncio.CancelledError:
            pass
        except (ConnectionError, OSError) as exc:
            log.debug("socketmap: connection error: %s", exc)
        except Exception:
            log.exception("socketmap: unexpected error on a connection")
        finally:
            self._active -= 1
            if task is not None:
                self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        decoder = NetstringDecoder(self.max_request_bytes)
        idle = _IdleTimer(asyncio.get_running_loop(), self.idle_timeout, writer)
        transport = writer.transport
        read = reader.read
        try:
            while True:
                chunk = await read(_READ_CHUNK)
                if not chunk:
                    if idle.expired:
                        log.debug("socketmap: idle connection closed")
                    elif decoder.buffered:
                        log.debug("socketmap: connection closed inside a request")
                    return
                idle.touch()
                if not self._serve_chunk(decoder, chunk, writer):
                    return
                if transport.get_write_buffer_size() > _READ_CHUNK:
                    # Only a client that does not read its answers gets here; wait for
                    # it rather than buffer without bound.
                    await writer.drain()
        finally:
            idle.cancel()

    def _serve_chunk(self, decoder: NetstringDecoder, chunk: bytes,
                     writer: asyncio.StreamWriter) -> bool:
        """Answer every complete request in ``chunk``; false when the stream is broken."""
        decoder.feed(chunk)
        replies: list[bytes] = []
        broken = False
        while True:
            try:
                payload = decoder.next_payload()
            except NetstringTooLongError as exc:
                log.warning("socketmap: %s; closing the connection", exc)
                replies.append(SocketmapReply.perm(
                    f"request too large (limit {exc.limit} bytes)").encode())
                broken = True
                break
            except NetstringError as exc:
                log.warning("socketmap: %s; closing the connection", exc)
                replies.append(SocketmapReply.perm("malformed netstring").encode())
                broken = True
                break
            if payload is None:
                break
            replies.append(self._answer(payload).encode())
        if replies:
            writer.write(replies[0] if len(replies) == 1 else b"".join(replies))
        return not broken

    def _answer(self, payload: bytes) -> SocketmapReply:
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            return SocketmapReply.perm("request is not UTF-8")
        name, sep, key = text.partition(" ")
        if not sep or not name:
            return SocketmapReply.perm("malformed request, expected 'name key'")
        lookup = self._lookup
        try:
            reply = lookup(name, key)
        except TlsPolicyError as exc:
            log.info("socketmap: %s %r: %s", name, key, exc)
            return _safe_perm(str(exc))
        except Exception:
            log.exception("socketmap: lookup %s %r failed", name, key)
            return SocketmapReply.temp("internal error in the policy server")
        if not isinstance(reply, SocketmapReply):
            log.error("socketmap: lookup returned %r, not a SocketmapReply", reply)
            return SocketmapReply.temp("internal error in the policy server")
        if len(reply.text) + len(reply.status.value) + 1 > MAX_REPLY_CHARS:
            log.error("socketmap: reply for %s %r longer than %d characters", name, key,
                      MAX_REPLY_CHARS)
            return SocketmapReply.perm("reply too long")
        if log.isEnabledFor(logging.DEBUG):
            log.debug("socketmap: %s %r -> %s", name, key, reply.to_text())
        return reply


class _IdleTimer:
    """Closes a connection that has been silent for ``timeout`` seconds.

    A request only records the time (``touch``); the one timer per connection
    re-arms itself for the remainder when it fires early, so a busy connection
    costs no timer operation per request.  On expiry the transport is closed,
    which ends the pending read with end of file.
    """

    __slots__ = ("_handle", "_loop", "_timeout", "_writer", "expired", "last")

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float,
                 writer: asyncio.StreamWriter) -> None:
        self._loop = loop
        self._timeout = timeout
        self._writer = writer
        self.expired = False
        self.last = loop.time()
        self._handle: asyncio.TimerHandle | None = loop.call_at(self.last + timeout, self._fire)

    def touch(self) -> None:
        self.last = self._loop.time()

    def _fire(self) -> None:
        deadline = self.last + self._timeout
        if self._loop.time() < deadline:
            self._handle = self._loop.call_at(deadline, self._fire)
            return
        self._handle = None
        self.expired = True
        self._writer.close()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def _safe_perm(message: str) -> SocketmapReply:
    """A PERM reply whose reason is ``message`` made fit for one Postfix line."""
    text = _FORBIDDEN_IN_TEXT.sub(" ", message)
    return SocketmapReply.perm(text[: MAX_REPLY_CHARS - 5])


# -------------------------------------------------------------------- entry points


async def serve(
    lookup_factory: LookupFactory,
    *,
    host: str = "127.0.0.1",
    port: int,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ready: Callable[[SocketmapServer], None] | None = None,
    handle_signals: bool = True,
    stop: asyncio.Event | None = None,
) -> None:
    """Run a socketmap server until ``SIGTERM``/``SIGINT`` (or ``stop`` is set).

    ``lookup_factory`` builds the first lookup (its errors propagate: a server
    that cannot load its policy does not start) and every reload on
    ``SIGHUP``.  ``ready`` is called once the socket is bound, e.g. to print
    the address.  With ``handle_signals`` false, only ``stop`` ends the server.
    """
    lookup = lookup_factory()
    server = SocketmapServer(
        lookup,
        host=host,
        port=port,
        max_request_bytes=max_request_bytes,
        max_connections=max_connections,
        idle_timeout=idle_timeout,
        reload=lookup_factory,
    )
    done = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[bool]] = set()

    def on_hup() -> None:
        task = loop.create_task(server.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    def on_stop(signame: str) -> None:
        log.info("socketmap: %s received, shutting down", signame)
        done.set()

    installed: list[signal.Signals] = []
    await server.start()
    try:
        if handle_signals:
            loop.add_signal_handler(signal.SIGHUP, on_hup)
            installed.append(signal.SIGHUP)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, on_stop, sig.name)
                installed.append(sig)
        if ready is not None:
            ready(server)
        await done.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        for task in list(reloads):
            task.cancel()
        await server.stop()
        log.info("socketmap: stopped")


def run_forever(
    lookup_factory: LookupFactory,
    *,
    host: str = "127.0.0.1",
    port: int,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ready: Callable[[SocketmapServer], None] | None = None,
) -> None:
    """Blocking form of :func:`serve` for a command-line entry point.

    Returns after a clean shutdown on ``SIGTERM`` or ``SIGINT``; an error
    building the first lookup or binding the socket propagates.
    """
    asyncio.run(
        serve(
            lookup_factory,
            host=host,
            port=port,
            max_request_bytes=max_request_bytes,
            max_connections=max_connections,
            idle_timeout=idle_timeout,
            ready=ready,
        )
    )
