"""Domain names: normalisation and the three kinds of domain stanza name.

Names are compared after normalisation (SEMANTICS section 2): lower case, one
trailing dot removed, international names as IDNA A-labels under UTS #46, and
IP literals in one canonical spelling (``[192.0.2.1]``,
``[ipv6:2001:db8::1]``) whatever spelling the caller used.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from functools import lru_cache
from typing import Final

import attrs
import idna

from .errors import InvalidDomainError

__all__ = ["DomainKind", "DomainName", "normalise_domain"]

_ASCII_LABEL: Final = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


def _canonical_ip(text: str) -> str | None:
    """The canonical literal for an IP spelling, or ``None`` if ``text`` is no IP."""
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
    if not isinstance(name, str):
        raise InvalidDomainError(f"domain must be a string, not {type(name).__name__}")
    text = name.strip()
    if text.endswith(".") and not text.endswith(".."):
        text = text[:-1]
    if not text:
        raise InvalidDomainError(f"empty domain name {name!r}")
    if text[0] == "[" or text[0].isdigit() or ":" in text:
        ip = _canonical_ip(text)
        if ip is not None:
            return ip
        if text[0] == "[" or ":" in text:
            raise InvalidDomainError(f"invalid IP literal {name!r}")
    if text.isascii():
        ascii_name = text.lower()
    else:
        try:
            ascii_name = idna.encode(text, uts46=True, transitional=False).decode("ascii")
        except idna.IDNAError as exc:
            raise InvalidDomainError(f"invalid international domain name {name!r}: {exc}") from None
    if len(ascii_name) > 253:
        raise InvalidDomainError(f"domain name longer than 253 characters: {name!r}")
    for label in ascii_name.split("."):
        if not _ASCII_LABEL.fullmatch(label):
            raise InvalidDomainError(f"invalid label {label!r} in domain name {name!r}")
    return ascii_name


class DomainKind(enum.Enum):
    """How a domain stanza name matches: exactly, by regex, or as an IP literal."""

    EXACT = "exact"
    REGEX = "regex"
    IP = "ip"


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


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
    regex: re.Pattern[str] | None = attrs.field(eq=False, default=None, repr=False)

    @classmethod
    def parse(cls, text: str) -> DomainName:
        """Parse ``example.com``, ``/regex/`` or an IP literal.

        Raises :class:`~tlspolicy.errors.InvalidDomainError` for a bad name
        and :class:`re.error` (wrapped by loaders) for a bad pattern.
        """
        if not isinstance(text, str):
            raise InvalidDomainError(f"domain name must be a string, not {type(text).__name__}")
        stripped = text.strip()
        if len(stripped) >= 2 and stripped.startswith("/") and stripped.endswith("/"):
            pattern = stripped[1:-1]
            if not pattern:
                raise InvalidDomainError("empty regex domain '//'")
            try:
                compiled = _compile(pattern)
            except re.error as exc:
                raise InvalidDomainError(f"regex domain {text!r} does not compile: {exc}") from None
            return cls(DomainKind.REGEX, pattern, text, compiled)
        key = normalise_domain(stripped)
        kind = DomainKind.IP if key.startswith("[") else DomainKind.EXACT
        return cls(kind, key, text)

    def __str__(self) -> str:
        return self.text

    def matches(self, normalised: str) -> bool:
        """Whether this stanza applies to an already normalised domain."""
        if self.regex is not None:
            return self.regex.search(normalised) is not None
        return self.key == normalised
