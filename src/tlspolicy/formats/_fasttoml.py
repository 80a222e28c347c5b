"""A fast reader for the plain subset of TOML that large configurations are written in.

A configuration with a hundred thousand domain stanzas is almost all lines like
``[[domain]]`` and ``name = "example.com"``; ``tomllib`` spent most of a start
parsing them.  :func:`loads_plain` reads, one regular expression per line:

- blank and comment lines;
- table and array-of-tables headers of bare keys, ``[a.b]`` and ``[[a.b]]``;
- ``key = value`` with a bare key and a one-line basic string without escapes, a
  literal string, ``true``, ``false`` or a decimal integer; a comment may follow.

It returns exactly what ``tomllib.loads`` returns for such a text, or ``None`` when
the text holds anything else, or anything ``tomllib`` might refuse (a key or table
defined twice, a header over a value, ...): the caller then reads it with
``tomllib``, which also reports the mistakes.  ``tests/test_fasttoml.py`` compares
the two on generated texts.
"""

from __future__ import annotations

import re
from typing import Any, Final

__all__ = ["loads_plain"]

# TOML forbids the ASCII control characters but tab in strings and comments.
_TEXT: Final = r"[^\x00-\x08\x0a-\x1f\x7f"
_TAIL: Final = rf"[ \t]*(?:#{_TEXT}]*)?"
_BLANK: Final = re.compile(_TAIL)
_HEADER: Final = re.compile(
    rf"[ \t]*(\[\[?)([A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*)(\]\]?){_TAIL}")
_PAIR: Final = re.compile(
    r"[ \t]*([A-Za-z0-9_-]+)[ \t]*=[ \t]*"
    rf"""(?:"({_TEXT}"\\]*)"|'({_TEXT}']*)'|(true|false)|([+-]?(?:0|[1-9][0-9]{{0,17}})))"""
    + _TAIL)


def loads_plain(text: str) -> dict[str, Any] | None:
    """``tomllib.loads(text)`` for a text in the plain subset, else ``None``."""
    root: dict[str, Any] = {}
    table = root
    lines = text.split("\n")
    last = len(lines) - 1
    pair = _PAIR.fullmatch
    for i, line in enumerate(lines):
        if line.endswith("\r"):
            if i == last:
                return None  # a carriage return not followed by a line feed
            line = line[:-1]
        m = pair(line)
        if m is not None:
            key, basic, literal, boolean, integer = m.groups()
            if key in table:
                return None
            if basic is not None:
                table[key] = basic
            elif literal is not None:
                table[key] = literal
            elif boolean is not None:
                table[key] = boolean == "true"
            else:
                table[key] = int(integer)
            continue
        if _BLANK.fullmatch(line):
            continue
        h = _HEADER.fullmatch(line)
        if h is None:
            return None
        opening, path, closing = h.groups()
        if len(opening) != len(closing):
            return None
        found = _header(root, path.split("."), len(opening) == 2)
        if found is None:
            return None
        table = found
    return root


def _header(root: dict[str, Any], keys: list[str], array: bool) -> dict[str, Any] | None:
    """The table a header opens, made as ``tomllib`` makes it; ``None`` where the
    header meets anything but tables on its way, or its table exists already (which
    TOML allows in some cases, left to ``tomllib``)."""
    node = root
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        elif isinstance(child, list):
            # Only arrays of tables are ever made here: the last table of the array.
            child = child[-1]
        elif not isinstance(child, dict):
            return None
        node = child
    name = keys[-1]
    existing = node.get(name)
    table: dict[str, Any] = {}
    if array:
        if existing is None:
            node[name] = [table]
        elif isinstance(existing, list):
            existing.append(table)
        else:
            return None
    elif existing is None:
        node[name] = table
    else:
        return None
    return table
