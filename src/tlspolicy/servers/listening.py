"""Where a socketmap server listens: binding TCP addresses (loopback unless allowed), unix
sockets (a stale one replaced, never another file) and passed sockets, and who a
connection belongs to (its client, for the per-client limit)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import stat
import struct
import sys
from collections.abc import Callable
from typing import Any, Final

from ..errors import TlsPolicyError

__all__ = [
    "BACKLOG",
    "ListenError",
    "ProtocolFactory",
    "client_key",
    "format_address",
    "is_loopback_address",
    "remove_socket_file",
    "start_inherited",
    "start_tcp",
    "start_unix",
]

# The server's own logger: operators filter on it, whichever module speaks.
log = logging.getLogger("tlspolicy.servers.socketmap")

#: Pending connections the kernel queues; bursts of Postfix processes starting.
BACKLOG: Final = 1024
# struct ucred of SO_PEERCRED: pid, uid, gid.
_PEERCRED: Final = struct.Struct("3i")

#: Makes the protocol serving one accepted connection.
ProtocolFactory = Callable[[], asyncio.Protocol]


class ListenError(TlsPolicyError):
    """The server cannot listen where it was asked to.

    A non-loopback address without ``allow_remote``, an address already in
    use, a socket path held by a file that is not a stale socket.
    """


def format_address(host: str, port: int) -> str:
    """``host:port`` as an operator writes it; IPv6 addresses in brackets (``[::1]:10027``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback_address(address: str) -> bool:
    """Whether ``address`` (an IP address string) is a loopback address.

    ``::ffff:127.0.0.1`` counts as loopback; a host name does not (resolve it first).
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def _reason(exc: OSError) -> str:
    # asyncio wraps bind errors in a long message; the errno says it best.
    return os.strerror(exc.errno) if exc.errno else str(exc)


def client_key(transport: asyncio.BaseTransport, unix: bool) -> str:
    """Who a connection belongs to, for the per-client limit.

    Over TCP, the peer's address (every process of one host shares it); over
    a unix socket, the peer's user id from ``SO_PEERCRED`` (every Postfix
    process runs as the same user).
    """
    if unix:
        sock = transport.get_extra_info("socket")
        peercred = getattr(socket, "SO_PEERCRED", None)
        if sock is not None and peercred is not None:
            with contextlib.suppress(OSError):
                raw = sock.getsockopt(socket.SOL_SOCKET, peercred, _PEERCRED.size)
                _pid, uid, _gid = _PEERCRED.unpack(raw)
                return f"uid {uid}"
        return "unix peer"
    peer = transport.get_extra_info("peername")
    host = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown peer"
    with contextlib.suppress(ValueError):
        ip = ipaddress.ip_address(host)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ip)
    return host


async def start_inherited(loop: asyncio.AbstractEventLoop, sock: socket.socket,
                          protocol: ProtocolFactory, *, allow_remote: bool) -> asyncio.Server:
    """Serve ``sock``, a listening socket bound by someone else (systemd socket
    activation); a TCP one that is not loopback only with ``allow_remote``."""
    sock.setblocking(False)
    if sock.family == socket.AF_UNIX:
        try:
            # A passed socket's file belongs to whoever passed it (systemd): Python
            # 3.13's asyncio would remove it at close unless told not to.
            extra: dict[str, Any] = (
                {"cleanup_socket": False} if sys.version_info >= (3, 13) else {})
            return await loop.create_unix_server(protocol, sock=sock,
                                                 **extra)
        except OSError as exc:
            raise ListenError(f"cannot serve the passed socket: {_reason(exc)}") from None
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        raise ListenError(f"cannot serve a passed socket of family {sock.family!r}")
    address = str(sock.getsockname()[0])
    wanted = format_address(address, int(sock.getsockname()[1]))
    if not is_loopback_address(address) and not allow_remote:
        raise ListenError(
            f"refusing to serve the passed socket {wanted}: not a loopback address, and "
            "the socketmap protocol has no authentication; bind it to 127.0.0.1 or ::1 "
            "(ListenStream=) or allow it explicitly (--allow-remote)")
    try:
        return await loop.create_server(protocol, sock=sock)
    except OSError as exc:
        raise ListenError(f"cannot serve {wanted}: {_reason(exc)}") from None

async def start_tcp(loop: asyncio.AbstractEventLoop, host: str, port: int,
                    protocol: ProtocolFactory, *, allow_remote: bool,
                    reuse_port: bool) -> asyncio.Server:
    """Listen on ``host``:``port`` over TCP; an address that is not loopback only with
    ``allow_remote``."""
    wanted = format_address(host or "*", port)
    try:
        infos = await loop.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise ListenError(f"cannot listen on {wanted}: {exc.strerror or exc}") from None
    # Bind exactly the addresses checked here, not a second resolution.
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    remote = [a for a in addresses if not is_loopback_address(a)]
    if remote and not allow_remote:
        raise ListenError(
            f"refusing to listen on {wanted}: {', '.join(remote)} is not a loopback "
            "address, and the socketmap protocol has no authentication (anyone who "
            "reaches the port can query the policy); listen on 127.0.0.1, ::1 or a unix "
            "socket, or allow it explicitly (--allow-remote)")
    if remote:
        log.warning("socketmap: listening on the non-loopback address %s as allowed; the "
                    "socketmap protocol has no authentication, so restrict who can reach "
                    "it (firewall)", ", ".join(remote))
    try:
        return await loop.create_server(protocol, addresses, port,
                                        backlog=BACKLOG,
                                        reuse_port=reuse_port or None)
    except OSError as exc:
        raise ListenError(f"cannot listen on {wanted}: {_reason(exc)}") from None

async def start_unix(loop: asyncio.AbstractEventLoop, path: str, protocol: ProtocolFactory,
                     *, mode: int) -> tuple[asyncio.Server, tuple[int, int]]:
    """Listen on the unix socket ``path`` with file ``mode``, replacing a stale socket
    left there (never another file); returns the server and the socket file's device
    and inode, for :func:`remove_socket_file`."""
    where = f"unix:{path}"
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ListenError(f"cannot listen on {where}: {_reason(exc)}") from None
    else:
        if not stat.S_ISSOCK(info.st_mode):
            raise ListenError(f"cannot listen on {where}: the path exists and is not a "
                              "socket; not replacing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            # Nobody listens there: a socket left behind by a server that died.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        else:
            raise ListenError(f"cannot listen on {where}: another server is listening "
                              "there") from None
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        # The mode is set before listen(): no client can connect in between.
        os.chmod(path, mode)
        sock.listen(BACKLOG)
        sock.setblocking(False)
        created = os.stat(path)
        server = await loop.create_unix_server(protocol, sock=sock)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {where}: {_reason(exc)}") from None
    return server, (created.st_dev, created.st_ino)

def remove_socket_file(path: str, inode: tuple[int, int]) -> None:
    """Remove the unix socket file at ``path`` if it is still the one created (``inode``
    from :func:`start_unix`), not a successor's."""
    with contextlib.suppress(OSError):
        info = os.lstat(path)
        if (info.st_dev, info.st_ino) == inode:  # still ours, not a successor's
            os.unlink(path)
