"""Socketmap replies (socketmap_table(5)): a status word and its text, framed as a netstring.

Pure values: the server (:mod:`tlspolicy.servers.socketmap`) sends them, the Postfix
answers (:mod:`tlspolicy.postfix.answers`) and lookups return them.
"""

from __future__ import annotations

import enum
import re
from typing import Final

import attrs

from .netstring import encode_netstring

__all__ = ["MAX_REPLY_CHARS", "ReplyStatus", "SocketmapReply", "one_line"]

#: Postfix's socketmap client refuses replies longer than this (socketmap_table(5)).
MAX_REPLY_CHARS: Final = 100_000


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
    # The framed bytes, made on the first encode(): a memoised reply is sent many times.
    _wire: bytes | None = attrs.field(default=None, init=False, eq=False, repr=False)

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
        wire = self._wire
        if wire is None:
            wire = encode_netstring(self.to_text().encode("utf-8"))
            object.__setattr__(self, "_wire", wire)
        return wire


def one_line(text: str) -> str:
    """``text`` with NUL, CR and LF replaced by spaces: fit for a reply's reason."""
    return _FORBIDDEN_IN_TEXT.sub(" ", text)
