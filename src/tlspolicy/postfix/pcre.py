"""Regex stanzas as Postfix pcre table lines: what a pattern means there, and what can be
told about the names it matches.

tlspolicy matches a regex stanza (RE2 syntax) against the lower-case A-label name; Postfix
matches a pcre line (PCRE syntax) case-insensitively against the key it looks up.  This
module writes a pattern for PCRE (:func:`pcre_pattern`), finds the patterns the two
would read differently (:func:`case_dependent`), and reads the literal ending every name a
pattern matches must have (:func:`literal_ending`), from which :func:`disjoint` and
:func:`may_end_with` tell patterns that cannot share a name.  Every answer that cannot be
given for certain is the conservative one: a pattern not understood is case-dependent,
has no literal ending, and may share any name.  Pure.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "case_dependent",
    "disjoint",
    "literal_ending",
    "may_end_with",
    "pcre_difference",
    "pcre_pattern",
]

#: POSIX classes that match the same characters of a lower-case ASCII name whether or not
#: the match ignores case.
_CASE_SAFE_CLASSES: Final = frozenset({"alpha", "alnum", "digit", "lower", "xdigit",
                                       "punct", "space", "blank", "word"})
#: The longest name, and so the most lengths an unbounded repeat can take on one.
_NAME_LENGTH: Final = 254
#: The most ways a pattern written for Postfix may split a name between its repeats
#: (PCRE's default match limit is 10,000,000 steps; three of [a-z.]{0,60} pass).
_MAX_WAYS: Final = 2_000_000
#: Letters after a backslash that stand for what ignoring case does not change (an
#: escaped ASCII punctuation character is that character, and is safe too).
_CASE_SAFE_ESCAPES: Final = frozenset("dDwWsSbBAz")


def pcre_difference(pattern: str) -> str | None:
    """Why Postfix's PCRE may read ``pattern`` otherwise than tlspolicy's RE2 does, or
    ``None`` when the two match the same lower-case ASCII names.

    Postfix matches case-insensitively, so a capital letter outside an escape, a range
    that spans a capital (``[0-_]``), a POSIX class that is not case-safe (``[:upper:]``,
    any negated one), an escape other than a plain character class or a quoted
    punctuation character (``\\x41``, ``\\p``, ``\\Q``, octal) and any character
    outside printable ASCII (RE2 folds U+212A onto ``k``, PCRE does not) each count.
    So do what PCRE2 refuses, or reads otherwise, where RE2 does not: a quantifier on an
    assertion (``\\b?``, ``${1}``), ``{,n}``, a range from a class (``[\\d-z]``), a
    collating element (``[.a.]``) and a POSIX class outside brackets (``[:alnum:]``).
    Postfix skips a line it cannot compile.  Conservative: a pattern this does not
    read is one it gives a reason for.
    """
    if not pattern.isascii() or not pattern.isprintable():
        return "it holds a character outside printable ASCII"
    i, n = 0, len(pattern)
    after_assertion = False
    # Per open group: whether it holds a quantifier or an alternation.  Repeating such
    # a group can make PCRE backtrack past its match limit on a long name, and Postfix
    # then takes the line as not matching, where RE2 (linear) matches.
    backtracks = [False]
    # Repeats one after another backtrack too, with no group: PCRE may try every way of
    # splitting a name between them, the product of the lengths each can take.  Four of
    # [a-z.]* or of [a-z.]{0,60} on a 248-character name exceeded PCRE's match limit.
    ways = 1
    repeat_before = False
    # Per open group (the pattern itself first): how many branches it has.
    branches = [1]
    while i < n:
        char = pattern[i]
        if char in "*+?{" and after_assertion:
            return "a quantifier follows an assertion or a flag group (PCRE refuses it)"
        if char == "{" and pattern[i + 1:i + 2] == ",":
            return "'{,' is a quantifier in newer PCRE and text in RE2"
        after_assertion = False
        if char == "\\":
            escaped = pattern[i + 1:i + 2]
            if not _case_safe_escape(escaped):
                return f"it holds the escape \\{escaped}"
            after_assertion = escaped in "bBAz"
            repeat_before = False  # a "?" after an escaped atom repeats it
            i += 2
        elif char == "[":
            end = _class_end(pattern, i)
            if end is None:
                return "it holds a character class this does not read"
            why = _class_difference(pattern[i + 1:end])
            if why is not None:
                return why
            repeat_before = False  # a "?" after a class repeats it
            i = end + 1
        elif "A" <= char <= "Z":
            return "it holds a capital letter (Postfix matches case-insensitively)"
        elif char == "(" and pattern[i + 1:i + 2] == "?" and _flag_group_end(pattern, i):
            # (?i) and the like: RE2 lets a quantifier after it repeat the atom before,
            # PCRE refuses it as it does one after an assertion.
            after_assertion = True
            i = _flag_group_end(pattern, i)
        elif char == "(":
            backtracks.append(False)
            branches.append(1)
            repeat_before = False
            i += 1
            if pattern[i:i + 1] == "?":
                k = i + 1
                while k < n and pattern[k] in "imsU-":
                    k += 1
                if pattern[k:k + 1] == ":":  # (?: or (?i:
                    i = k + 1
                elif k == i + 1 and pattern[k:k + 1] in ("P", "<"):  # a named group
                    close = pattern.find(">", k)
                    if close < 0:
                        return "it holds a group this does not read"
                    i = close + 1
                else:
                    return "it holds a group this does not read"
        elif char == ")":
            inner = backtracks.pop() if len(backtracks) > 1 else False
            # Each branch of an alternation is another way to split a name.
            ways *= branches.pop() if len(branches) > 1 else 1
            repeat_before = False  # a "?" after the group repeats the group
            # "?" repeats a group once at most: no unbounded backtracking.
            if inner and pattern[i + 1:i + 2] in ("*", "+", "{"):
                return ("a repeated group holds a quantifier or an alternation: PCRE may "
                        "exceed its match limit on a long name and skip the line")
            backtracks[-1] = backtracks[-1] or inner
            i += 1
        else:
            if char in "*+?{|":
                backtracks[-1] = True
            if char == "|":
                branches[-1] += 1
            if char in "*+?{":
                if not (char == "?" and repeat_before):  # not a lazy "*?", "+?", "??"
                    ways *= _choices(pattern, i)
                    if ways > _MAX_WAYS:
                        return ("its repeats can split a long name too many ways: PCRE may "
                                "exceed its match limit and skip the line")
                repeat_before = True
            else:
                repeat_before = False
            after_assertion = char in "^$"
            i += 1
        if ways * branches[0] > _MAX_WAYS:
            return ("its repeats and alternatives can split a long name too many ways: "
                    "PCRE may exceed its match limit and skip the line")
    return None


def _choices(pattern: str, start: int) -> int:
    """How many lengths the repeat at ``start`` (``*``, ``+``, ``?``, ``{n,m}``) can take
    on a name (at most 253 characters): 1 for a ``{`` that is no repeat."""
    char = pattern[start]
    if char in "*+":
        return _NAME_LENGTH
    if char == "?":
        return 2
    end = pattern.find("}", start)
    low, comma, high = pattern[start + 1:max(end, start)].partition(",")
    if end < 0 or not low.strip().isdigit() or (high.strip() and not high.strip().isdigit()):
        return 1
    if not comma:
        return 1
    top = int(high) if high.strip() else _NAME_LENGTH
    return max(1, min(top, _NAME_LENGTH) - int(low) + 1)


def _flag_group_end(pattern: str, start: int) -> int:
    """The index after a flag group ``(?ims-U)`` opened at ``start``, else 0."""
    end = pattern.find(")", start + 2)
    body = pattern[start + 2:end]
    if end < 0 or not body or any(c not in "imsU-" for c in body):
        return 0
    return end + 1


def case_dependent(pattern: str) -> bool:
    """Whether Postfix's PCRE may match another set of lower-case ASCII names than
    tlspolicy's RE2 with ``pattern`` (see :func:`pcre_difference`)."""
    return pcre_difference(pattern) is not None


def _case_safe_escape(char: str) -> bool:
    return char in _CASE_SAFE_ESCAPES or (
        len(char) == 1 and char.isascii() and char.isprintable() and not char.isalnum())


def _class_end(pattern: str, start: int) -> int | None:
    """The index of the "]" closing the class opened at ``start``, or ``None`` when the
    class holds something this module does not read (a nested "[" other than a POSIX
    class) or is not closed."""
    i, n = start + 1, len(pattern)
    if pattern[i:i + 1] == "^":
        i += 1
    if pattern[i:i + 1] == "]":  # first, a "]" is a member (RE2 and PCRE alike)
        i += 1
    while i < n:
        char = pattern[i]
        if char == "\\":
            i += 2
        elif char == "[":
            if pattern[i + 1:i + 2] != ":":
                return None
            close = pattern.find(":]", i + 2)
            if close < 0:
                return None
            i = close + 2
        elif char == "]":
            return i
        else:
            i += 1
    return None


def _class_difference(body: str) -> str | None:
    """:func:`pcre_difference` for a class body (between "[" and its "]")."""
    if len(body) > 1 and body[0] in ":.=" and body[-1] == body[0]:
        return "a POSIX class or collating element outside brackets (PCRE refuses it)"
    i, n = 0, len(body)
    if body[:1] == "^":
        i = 1
    if body[i:i + 1] in ("]", "-"):  # first, a "]" or "-" is a member
        previous: str | None = body[i]
        i += 1
    else:
        previous = None
    class_before = False  # the last member was a class (\d, [:alpha:])
    while i < n:
        char = body[i]
        if char == "\\":
            escaped = body[i + 1:i + 2]
            if not _case_safe_escape(escaped):
                return f"it holds the escape \\{escaped}"
            class_before = escaped.isalpha()
            previous = None if class_before else escaped
            i += 2
            continue
        if char == "[":
            if body[i + 1:i + 2] != ":":
                return "a collating element in a class (PCRE reads it otherwise)"
            close = body.find(":]", i + 2)
            if close < 0 or body[i + 2:close] not in _CASE_SAFE_CLASSES:
                return "a POSIX class that is not case-safe"
            previous, class_before = None, True
            i = close + 2
            continue
        if char == "-" and i + 1 < n:
            if class_before:
                return "a range from a class (PCRE refuses it)"
            if previous is not None:
                high = body[i + 1]
                if high in "\\[":
                    return "a range this does not read"
                if previous <= "Z" and high >= "A":
                    return "a range that spans capitals (Postfix matches case-insensitively)"
                previous, class_before = None, False
                i += 2
                continue
        if "A" <= char <= "Z":
            return "it holds a capital letter (Postfix matches case-insensitively)"
        previous, class_before = char, False
        i += 1
    return None


def pcre_pattern(pattern: str) -> str:
    """``pattern`` (RE2 syntax, as a regex stanza holds it) as it stands between the
    slashes of a Postfix pcre table line, meaning the same.

    A '/' would end the pattern and white space would end the line's key: each is written
    as an escape (``\\/``, ``\\x{20}``), which PCRE reads as that character, in a class
    too; so is every control character.  Text quoted by ``\\Q...\\E`` is written as its
    characters, each escaped, since PCRE reads an escape inside such a quote as two
    characters.  An escaped character is left as it is.  Groups are written
    non-capturing (``(?:``): nothing reads what they capture, and PCRE's bookkeeping of
    captures after a repeat's every split exceeded its match limit where the same
    pattern without captures did not.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    class_end = -1  # inside a character class up to this index: "(" is a member there
    while i < n:
        char = pattern[i]
        if char == "[" and i > class_end:
            class_end = _class_end(pattern, i) or n
            out.append(char)
            i += 1
        elif char == "(" and i > class_end:
            out.append("(?:")
            i += 1
            if pattern[i:i + 2] == "?:":
                i += 2
            elif pattern[i:i + 2] in ("?P", "?<"):  # a named group: its name is dropped
                close = pattern.find(">", i)
                i = n if close < 0 else close + 1
            elif pattern[i:i + 1] == "?":  # a flag group: written as it is
                out[-1] = "("
        elif char == "\\" and pattern[i + 1:i + 2] == "Q":
            end = pattern.find("\\E", i + 2)
            quoted = pattern[i + 2:] if end < 0 else pattern[i + 2:end]
            out.extend(_literal(c) for c in quoted)
            i = n if end < 0 else end + 2
        elif char == "\\":
            escaped = pattern[i + 1:i + 2]
            # An escaped space is a space: written as the others are.
            out.append(_literal(escaped) if escaped.isspace() or not escaped.isprintable()
                       else pattern[i:i + 2])
            i += 2
        elif char == "/":
            out.append("\\/")
            i += 1
        else:
            out.append(f"\\x{{{ord(char):x}}}" if char.isspace() or not char.isprintable()
                       else char)
            i += 1
    return "".join(out)


def _literal(char: str) -> str:
    """``char`` as a PCRE pattern matching exactly it, on a pcre table line."""
    if char.isalnum() and char.isascii():
        return char
    if char.isspace() or not char.isprintable() or not char.isascii():
        return f"\\x{{{ord(char):x}}}"
    return "\\" + char  # an escaped ASCII punctuation character is that character


def literal_ending(pattern: str) -> str | None:
    """The literal text every name ``pattern`` matches ends with, when the pattern is one
    branch (no top-level '|') ending in '$' that this module reads in full; else ``None``.
    ``(^|\\.)bank\\.example$`` ends with ``bank.example``.  Only lower-case ASCII letters,
    digits, '-' and escaped '.', '-' and '/' count as literal characters; a construct
    that is not read (``\\Q``, an escape such as ``\\x2d``, a flag group, a nested class)
    gives ``None``."""
    if not pattern.isascii() or not pattern.endswith("$"):
        return None
    tokens: list[str | None] = []  # a literal character, or None for anything else
    depth = 0
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i]
        if char == "\\":
            escaped = pattern[i + 1:i + 2]
            if escaped in (".", "-", "/"):
                tokens.append(escaped)
            elif escaped in ("d", "w", "s", "D", "W", "S", "b", "B"):
                tokens.append(None)
            else:
                return None
            i += 2
            continue
        if char == "[":
            end = _class_end(pattern, i)
            if end is None:
                return None
            tokens.append(None)
            i = end + 1
            continue
        if char in "*+?{":
            if tokens:
                tokens[-1] = None  # the last token is repeated or optional
            tokens.append(None)
        elif char == "(":
            if pattern[i + 1:i + 2] == "?" and pattern[i + 2:i + 3] != ":":
                return None  # flags or a named group: not read here
            depth += 1
            tokens.append(None)
        elif char == ")":
            depth -= 1
            tokens.append(None)
        elif char == "|":
            if depth == 0:
                return None
            tokens.append(None)
        elif char.isdigit() or char == "-" or "a" <= char <= "z":
            tokens.append(char)
        else:
            tokens.append(None)  # ".", "^", "$" and the like
        i += 1
    if depth:
        return None
    ending: list[str] = []
    for token in reversed(tokens[:-1]):  # before the final "$"
        if token is None:
            break
        ending.append(token)
    return "".join(reversed(ending))


def disjoint(one: str, other: str) -> bool:
    """Whether no name can match both patterns, as their literal endings show (a
    conservative test: ``False`` when it cannot tell)."""
    a, b = literal_ending(one), literal_ending(other)
    if not a or not b:
        return False
    return not a.endswith(b) and not b.endswith(a)


def may_end_with(pattern: str, suffix: str) -> bool:
    """Whether some name ``pattern`` matches may end with ``suffix`` (a conservative
    test: ``True`` when the pattern's literal ending does not tell)."""
    ending = literal_ending(pattern)
    if not ending:
        return True
    return ending.endswith(suffix) or suffix.endswith(ending)
