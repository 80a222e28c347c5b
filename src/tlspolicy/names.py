"""Domain names: normalisation and the three kinds of domain stanza name.

Names are compared after normalisation (SEMANTICS section 2): lower case, one
trailing dot removed, international names as IDNA A-labels under UTS #46, and
IP literals in one canonical spelling (``[192.0.2.1]``,
``[ipv6:2001:db8::1]``) whatever spelling the caller used.
"""

from __future__ import annotations

import enum
import importlib
import ipaddress
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Final

import attrs
import idna
import re2  # type: ignore[import-untyped]

from .errors import InvalidDomainError, excerpt

__all__ = [
    "MAX_NAME_OCTETS",
    "MAX_PATTERN_MEMORY",
    "DomainKind",
    "DomainName",
    "DomainPattern",
    "DomainPatternSet",
    "canonical_ip",
    "never_matching_char",
    "normalise_domain",
    "unicode_form",
]

MAX_NAME_OCTETS: Final = 253
"""The longest domain name (RFC 1035, without the trailing dot); longer names are invalid."""

MAX_PATTERN_MEMORY: Final = 2 << 20
"""RE2's memory budget for one regex domain (bytes): a pattern needing more is refused."""

_LABEL: Final = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_ASCII_LABEL: Final = re.compile(_LABEL)
# A name normalise_domain returns unchanged, matched in one pass: lower-case ASCII labels
# the label rule accepts, no trailing dot, and nothing an IP literal starts with or holds
# (the first character is no digit, no '[', no ':' anywhere).  Callers also check the
# length (at most MAX_NAME_OCTETS) and that no "xn--" is in it: A-labels are validated.
_plain_name: Final = re.compile(
    rf"[a-z_](?:[a-z0-9_-]{{0,61}}[a-z0-9_])?(?:\.{_LABEL})*").fullmatch


def canonical_ip(text: str) -> str | None:
    """The canonical literal for an IP spelling (``[192.0.2.1]``, ``[ipv6:2001:db8::1]``,
    brackets optional, an ``IPv6:`` tag honoured), or ``None`` if ``text`` is no IP."""
    inner = text
    if inner.startswith("[") and inner.endswith("]"):
        inner = inner[1:-1]
    if inner[:5].lower() == "ipv6:":
        try:
            tagged = ipaddress.IPv6Address(inner[5:])
        except ValueError:
            return None
        if tagged.ipv4_mapped is not None:
            return f"[{tagged.ipv4_mapped}]"
        return f"[ipv6:{tagged.compressed}]"
    try:
        address = ipaddress.ip_address(inner)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return f"[{address.ipv4_mapped}]"
        return f"[ipv6:{address.compressed}]"
    return f"[{address}]"


@lru_cache(maxsize=65536)
def normalise_domain(name: str) -> str:
    """Return the comparison form of a domain name or IP literal.

    Raises :class:`~tlspolicy.errors.InvalidDomainError` for anything that is
    neither a valid host name (letters, digits, hyphens and, as DNS allows,
    underscores) nor an IP address.
    """
    return _normalise(name, True)


def unicode_form(name: str) -> str | None:
    """The U-label spelling of a name in comparison form that holds A-labels
    (``xn--bcher-kva.example`` is ``bücher.example``), else ``None``: what a mail system
    that keeps addresses in UTF-8 (SMTPUTF8) looks up for the same domain."""
    if "xn--" not in name or name.startswith("["):
        return None
    try:
        text: str = idna.decode(name)
    except (idna.IDNAError, UnicodeError):
        return None
    return text if text != name else None


def _normalise(name: str, fast: bool) -> str:
    """:func:`normalise_domain`; ``fast`` false runs UTS #46 on ASCII names too."""
    if (fast and type(name) is str and len(name) <= MAX_NAME_OCTETS
            and _plain_name(name) is not None and "xn--" not in name):
        # Already in comparison form, which is most names a resolver is asked about;
        # every step below would give it back unchanged (tests/test_names_fast_path.py).
        return name
    if not isinstance(name, str):
        raise InvalidDomainError(f"domain must be a string, not {type(name).__name__}")
    if len(name) > 4 * MAX_NAME_OCTETS:
        # Far too long whatever its spelling: refuse before any per-label work.
        raise InvalidDomainError(
            f"domain name longer than {MAX_NAME_OCTETS} octets: {excerpt(name)}")
    text = name.strip()
    if text.endswith(".") and not text.endswith(".."):
        text = text[:-1]
    if not text:
        raise InvalidDomainError(f"empty domain name {excerpt(name)}")
    if text[0] == "[" or text[0].isdigit() or ":" in text:
        ip = canonical_ip(text)
        if ip is not None:
            return ip
        if text[0] == "[" or ":" in text:
            raise InvalidDomainError(f"invalid IP literal {excerpt(name)}")
    ascii_name = text.lower() if fast and text.isascii() else ""
    if not ascii_name or "xn--" in ascii_name:
        # International names and A-labels: the full UTS #46 path.  The common
        # case, plain ASCII, is only lower-cased, which is what that path does to
        # it (tests/test_names_fast_path.py checks the two agree).
        ascii_name = _uts46(text, name)
    return _checked(ascii_name, name)


def _uts46(text: str, name: str) -> str:
    """UTS #46 processing (non-transitional) of a stripped name: its A-label form.

    A non-ASCII name goes through ``idna`` whole.  An ASCII name is mapped by
    UTS #46 (which only lower-cases ASCII) and each ``xn--`` label must be a
    valid A-label: it decodes to a valid U-label whose A-label it is.  Other
    ASCII labels are left to the host-label rule of :func:`normalise_domain`
    (underscores allowed, as DNS allows).
    """
    try:
        if not text.isascii():
            return idna.encode(text, uts46=True, transitional=False).decode("ascii")
        mapped: str = idna.uts46_remap(text, std3_rules=False, transitional=False)
        for label in mapped.split("."):
            if label.startswith("xn--") and idna.alabel(idna.ulabel(label)).decode() != label:
                raise idna.IDNAError(f"{label!r} is not the A-label of its U-label")
        return mapped
    except (idna.IDNAError, UnicodeError) as exc:
        raise InvalidDomainError(
            f"invalid international domain name {excerpt(name)}: {exc}") from None


def _checked(ascii_name: str, name: str) -> str:
    if len(ascii_name) > MAX_NAME_OCTETS:
        raise InvalidDomainError(
            f"domain name longer than {MAX_NAME_OCTETS} octets: {excerpt(name)}")
    for label in ascii_name.split("."):
        if not _ASCII_LABEL.fullmatch(label):
            raise InvalidDomainError(
                f"invalid label {excerpt(label)} in domain name {excerpt(name)}")
    return ascii_name


class DomainKind(enum.Enum):
    """How a domain stanza name matches: exactly, by regex, or as an IP literal."""

    EXACT = "exact"
    REGEX = "regex"
    IP = "ip"


def _options(max_mem: int) -> Any:
    options = re2.Options()
    # Errors are reported as exceptions; RE2 would also print them on stderr.
    options.log_errors = False
    options.max_mem = max_mem
    return options


_PATTERN_OPTIONS: Final = _options(MAX_PATTERN_MEMORY)
# A set's DFA state grows with the instructions of its patterns; keeping each set
# small (and its memory budget large) keeps a search from ever running out of DFA
# memory on a name of at most 253 octets, which RE2::Set would report as no match.
_SET_OPTIONS: Final = _options(64 << 20)
_SET_PROGRAM_BUDGET: Final = 20_000


def _message(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else exc
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


# Python's own regex parser reads the pattern's structure for the check below; it
# is only ever given patterns RE2 has already compiled (so bounded in size).
_sre: Final[Any] = importlib.import_module("re._parser")
_sre_c: Final[Any] = importlib.import_module("re._constants")
# Every character a normalised name holds: lower-case A-labels and IP literals.
_NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_[]:")
# A run of letters, digits and hyphens around a character: the label to suggest as an A-label.
_LABEL_RUN: Final = re.compile(r"[^\W_]+(?:-[^\W_]+)*")


def _may_hold(char: str, ignore_case: bool) -> bool:
    if char.isascii():
        # ASCII is judged by lint (upper-case literals), not refused here.
        return True
    # RE2 folds some non-ASCII letters onto ASCII ones (the Kelvin sign, the long s).
    return ignore_case and any(c in _NAME_CHARS for c in (char.casefold(), char.upper(),
                                                          char.lower()))


def _blocking_char(items: Any, ignore_case: bool) -> str | None:
    """A non-ASCII character every match of ``items`` must contain, or ``None``.

    Conservative: whatever the walk does not understand may match.
    """
    c = _sre_c
    for op, arg in items:
        found: str | None = None
        if op is c.LITERAL:
            char = chr(arg)
            found = None if _may_hold(char, ignore_case) else char
        elif op is c.IN:
            if any(o is c.NEGATE or o is c.CATEGORY for o, _a in arg):
                continue
            members = [chr(a) if o is c.LITERAL else chr(a[0]) if o is c.RANGE else None
                       for o, a in arg]
            # A range is given the benefit of the doubt under (?i) or when it reaches ASCII.
            if all(m is not None and not _may_hold(m, ignore_case)
                   and (o is c.LITERAL or not ignore_case)
                   for (o, _a), m in zip(arg, members, strict=True)):
                found = members[0]
        elif op is c.BRANCH:
            blocked = [_blocking_char(seq, ignore_case) for seq in arg[1]]
            found = blocked[0] if all(b is not None for b in blocked) else None
        elif op is c.SUBPATTERN:
            _group, add, remove, seq = arg
            case = (ignore_case or bool(add & c.SRE_FLAG_IGNORECASE)) and \
                not (remove & c.SRE_FLAG_IGNORECASE)
            found = _blocking_char(seq, case)
        elif op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
            low, _high, seq = arg
            found = _blocking_char(seq, ignore_case) if low > 0 else None
        elif op is c.ATOMIC_GROUP:
            found = _blocking_char(arg, ignore_case)
        if found is not None:
            return found
    return None


def never_matching_char(pattern: str) -> str | None:
    """A character every match of ``pattern`` needs that no normalised name holds.

    Names are matched in their normalised form (lower-case A-labels, IP
    literals: ASCII only), so a pattern that needs a non-ASCII character, as
    a U-label like ``/^bücher\\./`` does, can never match.  ``None`` when the
    pattern may match (or its structure is not understood: RE2 syntax Python's
    parser does not read is given the benefit of the doubt).
    """
    if pattern.isascii():
        return None
    try:
        parsed = _sre.parse(pattern)
        ignore_case = bool(parsed.state.flags & _sre_c.SRE_FLAG_IGNORECASE)
        return _blocking_char(parsed, ignore_case)
    except (re.error, RecursionError, OverflowError, ValueError):
        return None


def _a_label_hint(pattern: str, char: str) -> str:
    index = pattern.find(char)
    for run in _LABEL_RUN.finditer(pattern):
        if run.start() <= index < run.end():
            try:
                a_label = idna.encode(run.group(), uts46=True).decode("ascii")
            except (idna.IDNAError, UnicodeError, ValueError):
                break
            return f", here {excerpt(a_label)} for {excerpt(run.group())}"
    return ""


class DomainPattern:
    """A regex domain compiled with RE2 (the ``google-re2`` package).

    RE2 matches in time linear in the name's length whatever the pattern
    (SEMANTICS section 2), so a recipient domain chosen by a stranger cannot
    make a configured pattern run for long.  There is no fallback to Python's
    ``re``: a pattern RE2 cannot compile (backreferences, lookaround) or that
    needs more than :data:`MAX_PATTERN_MEMORY` raises
    :class:`~tlspolicy.errors.InvalidDomainError`.
    """

    __slots__ = ("_compiled", "pattern", "program_size")

    def __init__(self, pattern: str) -> None:
        try:
            compiled = re2.compile(pattern, _PATTERN_OPTIONS)
        except re2.error as exc:
            raise InvalidDomainError(
                f"regex domain {excerpt('/' + pattern + '/')} is not a pattern RE2 can run: "
                f"{_message(exc)} (RE2 syntax: no backreferences, no lookaround)") from None
        except UnicodeError:
            # RE2 takes UTF-8: a lone surrogate cannot be encoded.
            raise InvalidDomainError(
                f"regex domain {excerpt('/' + pattern + '/')} is not valid Unicode text "
                "(it holds a lone surrogate)") from None
        blocking = never_matching_char(pattern)
        if blocking is not None:
            raise InvalidDomainError(
                f"regex domain {excerpt('/' + pattern + '/')} can never match: names are "
                f"matched as A-labels (ASCII), and every match needs {blocking!r}; write "
                f"international labels in their xn-- form{_a_label_hint(pattern, blocking)}")
        self.pattern = pattern
        self._compiled = compiled
        # The program size bounds a set's DFA memory (see DomainPatternSet).
        self.program_size: int = int(compiled._regexp.ProgramSize())

    def search(self, normalised: str) -> bool:
        """Whether the pattern matches anywhere in a normalised name (``re.search`` style).

        A name longer than :data:`MAX_NAME_OCTETS` octets is invalid input and
        never matches.
        """
        if _too_long(normalised):
            return False
        return self._compiled.search(normalised) is not None

    def __repr__(self) -> str:
        return f"DomainPattern({self.pattern!r})"


@lru_cache(maxsize=65536)
def _pattern(pattern: str) -> DomainPattern:
    # A compiled pattern is immutable, so stanzas with the same text share one
    # (compiling through google-re2's wrapper costs tens of microseconds).
    return DomainPattern(pattern)


def _too_long(name: str) -> bool:
    return len(name) > MAX_NAME_OCTETS or (
        not name.isascii() and len(name.encode("utf-8")) > MAX_NAME_OCTETS)


class DomainPatternSet:
    """Several regex domains matched together in one linear pass (``RE2::Set``).

    :meth:`matching` returns the indices of the patterns that match, in
    declaration order, so the resolver keeps SEMANTICS' "first matching
    regex in declaration order" while running one automaton instead of one
    search per stanza.
    """

    __slots__ = ("_sets", "size")

    def __init__(self, patterns: Sequence[DomainPattern]) -> None:
        self.size = len(patterns)
        self._sets: list[tuple[int, Any]] = []
        start = 0
        while start < len(patterns):
            end, budget = start, 0
            while end < len(patterns) and (end == start or
                                           budget + patterns[end].program_size
                                           <= _SET_PROGRAM_BUDGET):
                budget += patterns[end].program_size
                end += 1
            chunk = re2.Set.SearchSet(_SET_OPTIONS)
            for p in patterns[start:end]:
                chunk.Add(p.pattern)
            chunk.Compile()
            self._sets.append((start, chunk))
            start = end

    def matching(self, normalised: str) -> list[int]:
        """Indices of the patterns matching a normalised name, ascending."""
        if _too_long(normalised):
            return []
        found: list[int] = []
        for offset, chunk in self._sets:
            hits = chunk.Match(normalised)
            if hits:
                found.extend(offset + i for i in hits)
        found.sort()
        return found


@attrs.frozen(slots=True)
class DomainName:
    """The name of a domain stanza.

    ``key`` is the normalised name for exact and IP names and the pattern
    text for regex names.  Build one with :meth:`parse`; ``text`` keeps the
    spelling used in the file for messages and dumps.
    """

    kind: DomainKind
    key: str
    text: str = attrs.field(eq=False)
    regex: DomainPattern | None = attrs.field(eq=False, default=None, repr=False)

    @classmethod
    def parse(cls, text: str) -> DomainName:
        """Parse ``example.com``, ``/regex/`` or an IP literal.

        Raises :class:`~tlspolicy.errors.InvalidDomainError` for a bad name
        and for a pattern RE2 cannot run (loaders locate it as a
        :class:`~tlspolicy.errors.RegexError`).
        """
        if not isinstance(text, str):
            raise InvalidDomainError(f"domain name must be a string, not {type(text).__name__}")
        stripped = text.strip()
        if len(stripped) >= 2 and stripped.startswith("/") and stripped.endswith("/"):
            pattern = stripped[1:-1]
            if not pattern:
                raise InvalidDomainError("empty regex domain '//'")
            return cls(DomainKind.REGEX, pattern, text, _pattern(pattern))
        key = normalise_domain(stripped)
        kind = DomainKind.IP if key.startswith("[") else DomainKind.EXACT
        return cls(kind, key, text)

    def __str__(self) -> str:
        return self.text

    def matches(self, normalised: str) -> bool:
        """Whether this stanza applies to an already normalised domain."""
        if self.regex is not None:
            return self.regex.search(normalised)
        return self.key == normalised
