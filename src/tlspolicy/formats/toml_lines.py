"""Where tables and keys stand in TOML text, for messages: the parser gives no positions
(:class:`Lines`)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

__all__ = ["Lines", "TablePath", "code_lines"]

#: A table's place: each name, with its index in an array of tables (else None).
TablePath = tuple[tuple[str, int | None], ...]
_Path = TablePath

# Linear: each part's characters exclude the next part's first character, so the
# engine never tries more than one split of a line (the spaces around the name are
# kept in group 2 and stripped by the caller).
_HEADER: Final = re.compile(r"^\s*(\[\[?)([^\[\]#]*)(\]\]?)\s*(?:#.*)?$")
# A key's first part, before "=" or, in a dotted key, before its first dot.
_KEY: Final = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*[.=]""")


#: Parts of a table header (or a dotted key) past which it is not located.
MAX_LOCATED_PARTS: Final = 32


def code_lines(text: str) -> Iterator[tuple[int, str]]:
    """Each line of TOML ``text`` with its number, but for the lines inside a multi-line
    string opened on a key's line: those hold no headers or keys, whatever they look like.

    TOML breaks lines at "\\n" only (U+2028 or U+0085 in a comment is no line break), so
    the numbers are those of the parser's messages.
    """
    # The delimiter of a multi-line string still open.
    open_string: str | None = None
    for number, line in enumerate(text.split("\n"), start=1):
        if open_string is not None:
            if line.count(open_string) % 2:
                open_string = None
            continue
        yield number, line
        if _KEY.match(line):
            for delimiter in ('"""', "'''"):
                if line.count(delimiter) % 2:  # a multi-line string opens here
                    open_string = delimiter
                    break


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
        for number, line in code_lines(text):
            header = _HEADER.match(line)
            if header:
                names = [n.strip().strip("\"'") for n in header.group(2).split(".")]
                if len(names) > MAX_LOCATED_PARTS:
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
