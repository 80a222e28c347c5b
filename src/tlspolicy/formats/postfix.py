"""Reading Postfix's files: a transport table from disk.

The Postfix dialect itself (keys, levels, the value mapping, static tables, transport
routes, the static and discovery answers) is the pure :mod:`tlspolicy.postfix` package.
"""

from __future__ import annotations

import os

from ..errors import Location
from ..postfix.transport import RouteTable, TransportTableError, parse_transport_table

__all__ = ["load_transport_table"]


def load_transport_table(path: str | os.PathLike[str]) -> RouteTable:
    """:func:`parse_transport_table` of a file; an unreadable file is a located error."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise TransportTableError(f"cannot read the transport table: {exc}",
                                  Location(file=name)) from None
    return parse_transport_table(text, file=name)


