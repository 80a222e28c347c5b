"""Reading Postfix's files: a transport table from disk.

The Postfix dialect itself (keys, levels, the value mapping, static tables, transport
routes, the static and discovery answers) is the pure :mod:`tlspolicy.postfix` package.
"""

from __future__ import annotations

import os

from ..errors import ConfigError, Location
from ..postfix.transport import RouteTable, TransportTableError, parse_transport_table
from .files import read_regular_text

__all__ = ["load_transport_table"]


def load_transport_table(path: str | os.PathLike[str]) -> RouteTable:
    """:func:`parse_transport_table` of a file; an unreadable file is a located error."""
    name = os.fspath(path)
    try:
        # A regular file of bounded size: a FIFO would hang the load, /dev/zero fill memory.
        text = read_regular_text(name, what="transport table")
    except ConfigError as exc:
        raise TransportTableError(exc.message, Location(file=name)) from None
    return parse_transport_table(text, file=name)


