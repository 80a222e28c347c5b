"""An :class:`smtplib.SMTP` session that a stranger's mail server cannot hold or flood.

smtplib's ``timeout`` bounds each read and write on its own: a server that sends its
replies a byte at a time, each within the timeout, holds the session for as long as it
likes, and one that sends reply lines without end (``250-...``) is read into memory
line after line.  A report's mail goes to the MX hosts of a domain that published a
``rua``, so to servers anyone may run.  :class:`BoundedSMTP` ends both:

- every session opened in one :func:`bounded` block, the plaintext one a fallback opens
  again included (the driver makes it of the same class), is shut down when the
  block's ``seconds`` are over, whatever it is doing;
- each reply may take at most :data:`REPLY_BYTES`, all its lines together.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import threading
from collections.abc import Iterator
from typing import Any, Final

__all__ = ["REPLY_BYTES", "BoundedSMTP", "bounded"]

#: What one reply may take, all its lines together: an EHLO reply is a few hundred bytes.
REPLY_BYTES: Final = 64 * 1024


class _Watch:
    """The sessions of one :func:`bounded` block, shut down when its time is over."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._sessions: list[smtplib.SMTP] = []
        self.expired = False

    def add(self, session: smtplib.SMTP) -> None:
        with self._lock:
            self._sessions.append(session)
            expired = self.expired
        if expired:
            _shut(session)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            sessions = list(self._sessions)
        for session in sessions:
            _shut(session)


def _shut(session: smtplib.SMTP) -> None:
    # The session's socket as it is now (the TLS one after STARTTLS): a shutdown ends a
    # read or write under way in the session's thread at once.
    sock = session.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


_local = threading.local()


@contextlib.contextmanager
def bounded(seconds: float) -> Iterator[None]:
    """Within the block, on this thread, every :class:`BoundedSMTP` session connected
    is shut down ``seconds`` after the block began (its reads and writes then fail with
    :class:`smtplib.SMTPServerDisconnected` or :class:`OSError`)."""
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
    the whole session."""

    _watch: _Watch | None = None

    def connect(self, host: str = "localhost", port: int = 0,
                source_address: Any = None) -> tuple[int, bytes]:
        """Connect, as :meth:`smtplib.SMTP.connect`, under the current block's watch."""
        watch = getattr(_local, "watch", None)
        if watch is not None:
            self._watch = watch
            watch.add(self)
        return super().connect(host, port, source_address)

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
                # Whatever was read when the socket was shut (a reply cut short, which
                # smtplib would take for one) is no reply.
                self.close()
                raise smtplib.SMTPServerDisconnected(
                    f"the session took longer than {watch.seconds:g} s")
        return reply
