"""Netstrings: the framing of Postfix's (and Sendmail's) socketmap protocol.

A netstring is ``<length>:<payload>,`` where ``<length>`` is the payload size
in bytes as ASCII decimal digits without leading zeros.  This module is pure:
an encoder and an incremental decoder that a server feeds with whatever bytes
the socket delivered.  The decoder knows the largest payload it will accept,
so a peer announcing a huge length is refused as soon as the digits show it,
before any payload is buffered.
"""

from __future__ import annotations

from typing import Final

from ..errors import PolicyInputError

__all__ = [
    "MalformedNetstringError",
    "NetstringDecoder",
    "NetstringError",
    "NetstringTooLongError",
    "encode_netstring",
]

_DIGITS: Final = frozenset(b"0123456789")


class NetstringError(PolicyInputError):
    """Bytes on a socketmap connection that are not an acceptable netstring."""


class MalformedNetstringError(NetstringError):
    """The bytes break the netstring syntax (bad length prefix, missing comma)."""


class NetstringTooLongError(NetstringError):
    """A netstring announces a payload longer than the decoder accepts."""

    def __init__(self, message: str, *, limit: int) -> None:
        self.limit = limit
        super().__init__(message)


def encode_netstring(payload: bytes) -> bytes:
    """Frame ``payload`` as one netstring."""
    return b"%d:%s," % (len(payload), payload)


class NetstringDecoder:
    """Incremental netstring decoder with a payload size limit.

    Feed received bytes with :meth:`feed`, then take complete payloads with
    :meth:`next_payload` until it returns ``None``.  Payloads that arrived
    before a framing error are handed out first; the error is raised when the
    bad netstring is reached, and every later call raises it again, because
    after a framing error the stream cannot be resynchronised.
    """

    def __init__(self, max_length: int) -> None:
        if max_length < 0:
            raise ValueError(f"max_length must not be negative, got {max_length}")
        self.max_length = max_length
        # One digit more than the limit needs tells "too long" from "malformed".
        self._max_digits = len(str(max_length))
        self._buffer = bytearray()
        self._error: NetstringError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet handed out as payloads."""
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        """Append received bytes."""
        if self._error is None:
            self._buffer += data

    def take_whole(self, data: bytes) -> bytes | None:
        """The payload of ``data`` when it is exactly one complete netstring and nothing
        is buffered; otherwise ``None``, having fed ``data`` for :meth:`next_payload`.

        A client that waits for each answer sends one whole netstring per write,
        and this takes it without copying it into the buffer.  Anything unusual
        (a split or pipelined request, a suspect length) goes the general way,
        which gives the same payloads and the same errors.
        """
        if self._buffer or self._error is not None:
            self.feed(data)
            return None
        colon = data.find(b":", 0, self._max_digits + 1)
        if colon > 0 and data[-1] == 0x2C:  # ","
            prefix = data[:colon]
            if prefix.isdigit() and (colon == 1 or data[0] != 0x30):
                length = int(prefix)
                if length <= self.max_length and colon + length + 2 == len(data):
                    return data[colon + 1 : -1]
        self._buffer += data
        return None

    def next_payload(self) -> bytes | None:
        """Return the next complete payload, ``None`` if more bytes are needed.

        Raises :class:`NetstringTooLongError` or
        :class:`MalformedNetstringError` when the stream is broken.
        """
        if self._error is not None:
            raise self._error
        try:
            return self._take()
        except NetstringError as exc:
            self._error = exc
            self._buffer.clear()
            raise

    def _take(self) -> bytes | None:
        buf = self._buffer
        colon = buf.find(b":", 0, self._max_digits + 1)
        if colon < 0:
            # Check what is buffered so far, so that garbage or an endless
            # digit string is refused without waiting for more input.
            head = bytes(buf[: self._max_digits + 1])
            self._check_prefix(head, complete=False)
            return None
        prefix = buf[:colon]
        if prefix.isdigit() and colon <= self._max_digits and (prefix[0] != 0x30 or colon == 1):
            # The common case, checked in one pass (isdigit is ASCII only on bytes);
            # anything else gets _check_prefix's exact diagnosis.
            length = int(prefix)
            if length > self.max_length:
                length = self._check_prefix(bytes(prefix), complete=True)
        else:
            length = self._check_prefix(bytes(prefix), complete=True)
        end = colon + 1 + length
        if len(buf) <= end:
            return None
        if buf[end] != ord(","):
            raise MalformedNetstringError(
                f"netstring of length {length} not terminated by ',' "
                f"(found {bytes(buf[end:end + 1])!r})"
            )
        payload = bytes(buf[colon + 1 : end])
        del buf[: end + 1]
        return payload

    def _check_prefix(self, prefix: bytes, *, complete: bool) -> int:
        """Validate a length prefix; return its value when ``complete``."""
        if not complete and not prefix:
            return 0
        bad = next((b for b in prefix if b not in _DIGITS), None)
        if bad is not None:
            raise MalformedNetstringError(
                f"netstring length prefix contains {bytes([bad])!r}, expected digits then ':'"
            )
        if complete and not prefix:
            raise MalformedNetstringError("netstring has an empty length prefix")
        if len(prefix) > 1 and prefix[0] == ord("0"):
            raise MalformedNetstringError(f"netstring length {prefix!r} has a leading zero")
        if len(prefix) > self._max_digits or int(prefix) > self.max_length:
            raise NetstringTooLongError(
                f"netstring announces {'at least ' if not complete else ''}"
                f"{int(prefix)} bytes, more than the limit of {self.max_length}",
                limit=self.max_length,
            )
        return int(prefix)
