"""Servers that put the policy engine behind an MTA's lookup protocol.

Only the Postfix socketmap server exists so far; see :mod:`.socketmap`.  The package
re-exports the server, the lookup it calls and the reply it sends, its errors, and
running it; the Postfix keys and reply statuses are :mod:`tlspolicy.postfix`'s, and
everything else is imported from the module that defines it.
"""

from __future__ import annotations

from ..postfix.replies import SocketmapReply
from .running import run_forever, serve
from .socketmap import ListenError, LoadTimeoutError, Lookup, LookupFactory, SocketmapServer

__all__ = [
    "ListenError",
    "LoadTimeoutError",
    "Lookup",
    "LookupFactory",
    "SocketmapReply",
    "SocketmapServer",
    "run_forever",
    "serve",
]
