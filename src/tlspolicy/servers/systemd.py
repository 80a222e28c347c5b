"""systemd integration without libsystemd: socket activation and readiness notification.

- Socket activation (sd_listen_fds(3)): systemd passes the sockets of a
  ``.socket`` unit as file descriptors 3, 4, ... and sets ``LISTEN_PID`` (the
  pid they are meant for) and ``LISTEN_FDS`` (how many).  :func:`listen_sockets`
  takes them; the variables are removed from the environment so that a child
  process never mistakes them for its own.
- Readiness (sd_notify(3)): ``NOTIFY_SOCKET`` names a unix datagram socket (a
  path, or ``@name`` for the abstract namespace); :func:`notify` sends one
  datagram of ``VARIABLE=value`` lines such as ``READY=1`` or ``STOPPING=1``.

Both are plain protocols over the standard library's sockets, so the daemon
needs no systemd library and behaves the same without systemd (nothing is
inherited, nothing is sent).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import MutableMapping
from typing import Final

from ..errors import TlsPolicyError

__all__ = [
    "LISTEN_FDS_START",
    "SystemdError",
    "activation_requested",
    "listen_sockets",
    "notify",
]

#: The first file descriptor systemd passes (``SD_LISTEN_FDS_START``).
LISTEN_FDS_START: Final = 3
# More than this many passed sockets is a misconfiguration, not a real unit.
_MAX_FDS: Final = 64


class SystemdError(TlsPolicyError):
    """The socket-activation environment is malformed or the sockets are unusable."""


def activation_requested(environ: MutableMapping[str, str] | None = None) -> bool:
    """Whether ``LISTEN_FDS`` is set for this process (``LISTEN_PID`` is our pid)."""
    env = os.environ if environ is None else environ
    pid = env.get("LISTEN_PID", "")
    # isdigit() alone takes '²', which int() refuses: ASCII digits only.
    return ("LISTEN_FDS" in env and pid.isascii() and pid.isdigit()
            and int(pid) == os.getpid())


def listen_sockets(environ: MutableMapping[str, str] | None = None, *,
                   unset: bool = True) -> list[socket.socket]:
    """The listening sockets systemd passed to this process, in order (none without
    socket activation).

    Raises :class:`SystemdError` when ``LISTEN_FDS`` is not a count, or a passed
    descriptor is not a listening stream socket.  With ``unset``, ``LISTEN_PID``,
    ``LISTEN_FDS`` and ``LISTEN_FDNAMES`` are removed from the environment.
    """
    env = os.environ if environ is None else environ
    try:
        if not activation_requested(env):
            return []
        text = env.get("LISTEN_FDS", "")
        if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= _MAX_FDS:
            raise SystemdError(f"LISTEN_FDS={text!r} is not a count of passed sockets "
                               f"(1 to {_MAX_FDS})")
        sockets: list[socket.socket] = []
        for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + int(text)):
            try:
                sock = socket.socket(fileno=fd)
            except OSError as exc:
                for s in sockets:
                    s.detach()
                raise SystemdError(f"file descriptor {fd} passed by systemd is not a socket: "
                                   f"{exc.strerror or exc}") from None
            # Our own descriptor now: not inherited by children (sd_listen_fds sets
            # FD_CLOEXEC too).
            sock.set_inheritable(False)
            kind = sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
            listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
            sockets.append(sock)
            if kind != socket.SOCK_STREAM or not listening:
                for s in sockets:
                    s.detach()
                raise SystemdError(f"file descriptor {fd} passed by systemd is not a "
                                   "listening stream socket (ListenStream= in the .socket "
                                   "unit)")
        return sockets
    finally:
        if unset:
            for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
                env.pop(name, None)


def notify(state: str, environ: MutableMapping[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to systemd's ``NOTIFY_SOCKET``.

    Returns whether a notification was sent: ``False`` when ``NOTIFY_SOCKET`` is
    unset or unusable (a daemon started by hand must run the same, so a failure
    to notify is never fatal).
    """
    env = os.environ if environ is None else environ
    where = env.get("NOTIFY_SOCKET", "")
    if not where or where[0] not in "/@":
        return False
    address = "\0" + where[1:] if where[0] == "@" else where
    with contextlib.suppress(OSError), \
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(address)
        sock.sendall(state.encode("utf-8"))
        return True
    return False
