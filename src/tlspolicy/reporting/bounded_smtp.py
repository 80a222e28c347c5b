"""An :class:`smtplib.SMTP` session that a stranger's mail server cannot hold or flood.

smtplib's ``timeout`` bounds each read and write on its own: a server that sends its
replies a byte at a time, each within the timeout, holds the session for as long as it
likes, and one that sends reply lines without end (``250-...``) is read into memory
line after line.  A report's mail goes to the MX hosts of a domain that published a
``rua``, so to servers anyone may run.  :class:`BoundedSMTP` ends both:

- every connection a :class:`BoundedSMTP` opens in one :func:`bounded` block, the
  plaintext one a fallback opens again included (the driver makes it of the same
  class), is shut down when the block's ``seconds`` are over, whatever it is doing (a
  TLS handshake included), and none is opened after that;
- each reply may take at most :data:`REPLY_BYTES`, all its lines together.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Final

__all__ = ["REPLY_BYTES", "BoundedSMTP", "bounded"]

#: What one reply may take, all its lines together: an EHLO reply is a few hundred bytes.
REPLY_BYTES: Final = 64 * 1024


class _Watch:
    """The connections of one :func:`bounded` block, shut down when its time is over.

    Each is held as a duplicate of its socket's descriptor: the session's own socket
    object is replaced (and its descriptor detached) when STARTTLS wraps it, but a
    shutdown through any descriptor of the connection ends every read and write on it,
    the handshake's included.  The duplicates are closed when the block ends.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.expired = False

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def add(self, sock: socket.socket) -> socket.socket:
        """Watch ``sock``'s connection; the duplicate held for it."""
        copy = sock.dup()
        with self._lock:
            self._sockets.append(copy)
            expired = self.expired
        if expired:
            _shut(copy)
        return copy

    def drop(self, copy: socket.socket) -> None:
        """Close a duplicate :meth:`add` made (its session closed the connection, which
        the duplicate would otherwise keep open until the block ends)."""
        with self._lock:
            if copy not in self._sockets:
                return
            self._sockets.remove(copy)
        copy.close()

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)

    def close(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


_local = threading.local()


@contextlib.contextmanager
def bounded(seconds: float) -> Iterator[None]:
    """Within the block, on this thread, every connection a :class:`BoundedSMTP` opens
    is shut down ``seconds`` after the block began (its reads and writes then fail with
    :class:`smtplib.SMTPServerDisconnected` or :class:`OSError`), and none is opened
    after that."""
    watch = _Watch(seconds)
    timer = threading.Timer(seconds, watch.expire)
    timer.daemon = True
    previous = getattr(_local, "watch", None)
    _local.watch = watch
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        _local.watch = previous
        watch.close()


class _Reply:
    """A session's reader that refuses a reply longer than :data:`REPLY_BYTES`."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.left = REPLY_BYTES

    def readline(self, limit: int = -1) -> bytes:
        line: bytes = self.raw.readline(limit)
        self.left -= len(line)
        if self.left < 0:
            # An OSError: smtplib closes the session and reports it as disconnected.
            raise OSError(f"a reply longer than {REPLY_BYTES} bytes")
        return line

    def close(self) -> None:
        self.raw.close()


class BoundedSMTP(smtplib.SMTP):
    """:class:`smtplib.SMTP` with a bound on each reply and, within :func:`bounded`, on
    the whole session.  Its constructor is smtplib's."""

    _watch: _Watch | None = None
    _copy: socket.socket | None = None

    def _get_socket(self, host: str, port: int, timeout: Any) -> socket.socket:
        # smtplib's own connection (socket.create_connection), under the block's watch,
        # and none once its time is over (a fallback reconnects late).
        watch = getattr(_local, "watch", None)
        if watch is None:
            return socket.create_connection((host, port), timeout, self.source_address)
        self._watch = watch
        left = watch.remaining()
        if left <= 0:
            raise smtplib.SMTPServerDisconnected(
                f"the session took longer than {watch.seconds:g} s")
        if isinstance(timeout, int | float):
            left = min(timeout, left)
        sock = socket.create_connection((host, port), left, self.source_address)
        try:
            self._copy = watch.add(sock)
        except OSError:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        """Close the connection, as :meth:`smtplib.SMTP.close`, and the watch's duplicate
        of it, so that the server sees it closed now."""
        try:
            super().close()
        finally:
            copy, self._copy = self._copy, None
            if copy is not None and self._watch is not None:
                self._watch.drop(copy)

    def getreply(self) -> tuple[int, bytes]:
        """Read one reply, as :meth:`smtplib.SMTP.getreply`, of at most
        :data:`REPLY_BYTES`, and none once the block's time is over."""
        if self.file is None and self.sock is not None:
            self.file = _Reply(self.sock.makefile("rb"))
        if isinstance(self.file, _Reply):
            self.file.left = REPLY_BYTES
        try:
            reply = super().getreply()
        finally:
            watch = self._watch
            if watch is not None and watch.expired:
                # Whatever was read when the connection was shut (a reply cut short, which
                # smtplib would take for one) is no reply.
                self.close()
                raise smtplib.SMTPServerDisconnected(
                    f"the session took longer than {watch.seconds:g} s")
        return reply
