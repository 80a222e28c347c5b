"""Servers that put the policy engine behind an MTA's lookup protocol.

Only the Postfix socketmap server exists so far; see :mod:`.socketmap`.
"""

from __future__ import annotations

from .running import run_forever, serve
from .socketmap import (
    ListenError,
    LoadTimeoutError,
    Lookup,
    LookupFactory,
    PostfixKey,
    PostfixKeyError,
    ReplyStatus,
    SocketmapReply,
    SocketmapServer,
    parse_postfix_key,
)

__all__ = [
    "ListenError",
    "LoadTimeoutError",
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
