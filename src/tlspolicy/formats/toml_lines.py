"""Where tables and keys stand in TOML text, for messages: the parser gives no positions
(:class:`Lines`)."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["Lines", "TablePath"]

#: A table's place: each name, with its index in an array of tables (else None).
TablePath = tuple[tuple[str, int | None], ...]
_Path = TablePath

# Linear: each part's characters exclude the next part's first character, so the
# engine never tries more than one split of a line (the spaces around the name are
# kept in group 2 and stripped by the caller).
_HEADER: Final = re.compile(r"^\s*(\[\[?)([^\[\]#]*)(\]\]?)\s*(?:#.*)?$")
# A key's first part, before "=" or, in a dotted key, before its first dot.
_KEY: Final = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*[.=]""")


#: Parts of a table header past which its tables are not located.
_MAX_HEADER_PARTS: Final = 32


class Lines:
    """Maps table paths and keys of TOML text to line numbers by scanning it.

    ``tomllib`` gives no positions, so headers are replayed: the n-th
    ``[[binding_group.binding]]`` after the m-th ``[[binding_group]]`` is
    ``(("binding_group", m), ("binding", n))``.
    """

    def __init__(self, text: str) -> None:
        self.tables: dict[_Path, int] = {}
        self.keys: dict[tuple[_Path, str], int] = {}
        # The same, and the sub-tables', under their names in lower case (keys are
        # case-insensitive): looked at only when no exact spelling is found.
        self.folded: dict[tuple[_Path, str], int] = {}
        # First header line of a sub-table written as its own [section].
        self.subtables: dict[tuple[_Path, str], int] = {}
        counters: dict[tuple[_Path, str], int] = {}
        current: _Path = ()
        # The delimiter of a multi-line string still open: its lines hold no keys.
        open_string: str | None = None
        # TOML breaks lines at "\n" only (U+2028 or U+0085 in a comment is no line break).
        for number, line in enumerate(text.split("\n"), start=1):
            if open_string is not None:
                if line.count(open_string) % 2:
                    open_string = None
                continue
            header = _HEADER.match(line)
            if header:
                names = [n.strip().strip("\"'") for n in header.group(2).split(".")]
                if len(names) > _MAX_HEADER_PARTS:
                    # No configuration nests so deep; replaying each part's path would
                    # cost the square of their number.
                    current = ((header.group(2), None),)
                    continue
                is_array = header.group(1) == "[["
                path: list[tuple[str, int | None]] = []
                for i, name in enumerate(names):
                    parent = tuple(path)
                    self.subtables.setdefault((parent, name), number)
                    self.folded.setdefault((parent, name.lower()), number)
                    if i == len(names) - 1:
                        if is_array:
                            idx = counters.get((parent, name), -1) + 1
                            counters[(parent, name)] = idx
                            path.append((name, idx))
                        else:
                            path.append((name, None))
                    else:
                        last = counters.get((parent, name))
                        path.append((name, last))
                current = tuple(path)
                self.tables.setdefault(current, number)
                continue
            key = _KEY.match(line)
            if key:
                name = key.group(1).strip("\"'")
                self.keys.setdefault((current, name), number)
                self.folded.setdefault((current, name.lower()), number)
                for delimiter in ('"""', "'''"):
                    if line.count(delimiter) % 2:  # a multi-line string opens here
                        open_string = delimiter
                        break

    def table(self, path: _Path) -> int | None:
        """The header line of the table at ``path``."""
        return self.tables.get(path)

    def key(self, path: _Path, key: str) -> int | None:
        """The line of ``key`` (or of its sub-table's header) in the table at ``path``:
        the exact spelling first ("tls" and "TLS" in one table are two lines)."""
        for table in (self.keys, self.subtables):
            line = table.get((path, key))
            if line is not None:
                return line
        return self.folded.get((path, key.lower()))
