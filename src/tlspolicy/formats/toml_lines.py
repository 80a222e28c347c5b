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


# What changes the scanner's state outside strings (a string, a comment, a bracket of an
# array or inline table), and inside a basic string (its end, an escape).  One character
# each, searched forward from where the scan stands: the scan is linear in the text.
_CODE_STOP: Final = re.compile(r"""["'#\[\]{}]""")
_BASIC_STOP: Final = re.compile(r'["\\]')


def _run_end(line: str, start: int, quote: str) -> int:
    """The end of the run of ``quote`` characters starting at ``start``."""
    end = start
    while end < len(line) and line[end] == quote:
        end += 1
    return end


def _basic_end(line: str, pos: int) -> int:
    """Where a one-line basic string whose text starts at ``pos`` ends (past its closing
    quote; the line's end when it has none, which the parser has refused already)."""
    while True:
        stop = _BASIC_STOP.search(line, pos)
        if stop is None:
            return len(line)
        if stop.group() == '"':
            return stop.end()
        pos = stop.end() + 1  # past the escaped character


class _Scanner:
    """TOML's string, comment and bracket state, carried from one line to the next.

    A line is a statement (a header or a key may stand there) when it starts outside
    every string and every array or inline table.  Brackets of a table header are the
    header's, not an array's.  Built for valid TOML (the parser has read the text
    first); on anything else it still ends, in time linear in the text.
    """

    __slots__ = ("closing", "depth")

    def __init__(self) -> None:
        # The delimiter of the multi-line string still open, if any: '"' * 3 or "'" * 3.
        self.closing: str | None = None
        # Arrays and inline tables still open.
        self.depth = 0

    @property
    def at_statement(self) -> bool:
        return self.closing is None and self.depth == 0

    def feed(self, line: str) -> None:
        """Advance over ``line`` (without its line break)."""
        header = self.at_statement and line.lstrip().startswith("[")
        pos, end = 0, len(line)
        while pos < end:
            if self.closing is not None:
                pos = self._in_multi_line(line, pos)
                continue
            stop = _CODE_STOP.search(line, pos)
            if stop is None:
                return
            char, start = stop.group(), stop.start()
            if char == "#":
                return  # a comment, to the line's end
            if char in "\"'":
                if line.startswith(char * 3, start):
                    self.closing = char * 3
                    pos = start + 3
                elif char == '"':
                    pos = _basic_end(line, start + 1)
                else:
                    close = line.find("'", start + 1)
                    pos = end if close < 0 else close + 1
                continue
            pos = start + 1
            if header:
                continue
            if char in "[{":
                self.depth += 1
            elif self.depth:
                self.depth -= 1

    def _in_multi_line(self, line: str, pos: int) -> int:
        """Advance inside the open multi-line string: where the scan goes on."""
        quote = "'" if self.closing == "'" * 3 else '"'
        while True:
            if quote == "'":
                # A literal string has no escapes: the first three quotes end it.
                found = line.find("'" * 3, pos)
                if found < 0:
                    return len(line)
                start = found
            else:
                stop = _BASIC_STOP.search(line, pos)
                if stop is None:
                    return len(line)
                if stop.group() == "\\":
                    # An escaped character; at the line's end, the line-ending backslash.
                    pos = stop.end() + 1
                    continue
                start = stop.start()
            run = _run_end(line, start, quote)
            if run - start >= 3:
                # Up to two more quotes belong to the string; the last three close it.
                self.closing = None
                return run
            pos = run


def code_lines(text: str) -> Iterator[tuple[int, str]]:
    """Each line of TOML ``text`` that starts a statement, with its number: the lines
    that start inside a string (basic, literal, multi-line) or inside an array or inline
    table are left out, since they hold no headers or keys whatever they look like.

    TOML breaks lines at "\\n" only (U+2028 or U+0085 in a comment is no line break), so
    the numbers are those of the parser's messages.
    """
    scanner = _Scanner()
    for number, line in enumerate(text.split("\n"), start=1):
        if scanner.at_statement:
            yield number, line
        scanner.feed(line)


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
