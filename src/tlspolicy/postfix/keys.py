"""Postfix lookup keys: the forms Postfix sends to a TLS policy (or transport) table.

Pure: parsing needs no I/O (service names for ports are listed, not looked up).
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

from ..errors import InvalidDomainError, PolicyInputError
from ..names import canonical_ip, normalise_domain

__all__ = ["PostfixKey", "PostfixKeyError", "parse_postfix_key"]


class PostfixKeyError(PolicyInputError):
    """A socketmap key that is none of the forms Postfix sends."""


class PostfixKey(NamedTuple):
    """A parsed Postfix lookup key (see :func:`parse_postfix_key`)."""

    #: Lower-case domain in IDNA A-label form without trailing dot, or an IP
    #: literal in canonical form: ``[192.0.2.1]``, ``[ipv6:2001:db8::1]``.
    domain: str
    #: The port of ``[host]:port`` / ``host:port`` next hops, else ``None``.
    port: int | None
    #: ``.example.com``: Postfix asks about any subdomain of ``example.com``.
    parent: bool
    #: ``[host]``: the next hop was given in brackets (no MX lookup).
    bracketed: bool

    @property
    def is_ip(self) -> bool:
        """Whether :attr:`domain` is an IP literal."""
        return self.domain.startswith("[")


# A plain host name (lower case ASCII, optional trailing dot) whose last label starts
# with a letter or underscore, so it is neither an address nor all-numeric:
# parse_postfix_key's answer for it is the name itself.
_PLAIN_KEY: Final = re.compile(
    r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.?")
_PORT_DIGITS: Final = re.compile(r"[0-9]{1,5}")
# Postfix accepts service names for ports; resolving them through the system's
# services database would make this function impure, so the names a mail next
# hop uses are listed here.
_SERVICE_PORTS: Final = {"smtp": 25, "submission": 587, "submissions": 465, "smtps": 465,
                         "lmtp": 24}


def _parse_port(text: str, key: str) -> int:
    if _PORT_DIGITS.fullmatch(text):
        port = int(text)
        if 1 <= port <= 65535:
            return port
        raise PostfixKeyError(f"port {text} out of range 1-65535 in key {key!r}")
    if text.lower() in _SERVICE_PORTS:
        return _SERVICE_PORTS[text.lower()]
    raise PostfixKeyError(f"invalid port {text!r} in key {key!r}")


def _ip_literal(text: str) -> str | None:
    """Canonical literal for an address spelling (never bracketed here), ``None`` when
    not an address: the same spelling rules as every other name in the library."""
    return canonical_ip(text)


def _domain(text: str, key: str) -> str:
    # The same normalisation as every other domain name in the library, so a
    # key finds exactly the stanza a resolver request with that name would.
    if text.startswith("[") or text.endswith(".."):
        raise PostfixKeyError(f"invalid domain {text!r} in key {key!r}")
    try:
        name = normalise_domain(text)
    except InvalidDomainError as exc:
        raise PostfixKeyError(f"{exc} (key {key!r})") from None
    if name.startswith("[") or name.rsplit(".", 1)[-1].isdigit():
        # An IP literal is only accepted through the IP branch of the parser,
        # and an all-numeric last label is no host name (RFC 3696 section
        # 2): it is a mistyped address such as 192.0.2.300 or 1.2.3.4.5.
        raise PostfixKeyError(f"neither a domain nor an IP address: {key!r}")
    return name


def parse_postfix_key(key: str) -> PostfixKey:
    """Parse a key as Postfix sends it to a TLS policy (or transport) table.

    Accepted forms: ``example.com``, ``example.com.``, ``[example.com]``,
    ``[example.com]:587``, ``example.com:587`` (a service name such as
    ``smtp`` or ``submission`` may stand for the port), ``.example.com``
    (the parent-domain form Postfix tries after the exact name), IP literals
    ``[192.0.2.1]``, ``[ipv6:2001:db8::1]`` (also ``[2001:db8::1]``), with or
    without ``:port``.  Domains come back lower case, without trailing dot,
    international names as IDNA A-labels; addresses in the canonical literal
    form.  Anything else raises :class:`PostfixKeyError`.
    """
    if not isinstance(key, str):
        raise PostfixKeyError(f"key must be a string, not {type(key).__name__}")
    if key.isascii():
        # The common case, a plain host name, without trying it as an address first.
        lower = key.lower()
        if _PLAIN_KEY.fullmatch(lower) and "xn--" not in lower:  # A-labels are checked
            name = lower[:-1] if lower[-1] == "." else lower
            if len(name) <= 253:
                return PostfixKey(name, None, parent=False, bracketed=False)
    return _parse_general_key(key)


def _parse_general_key(key: str) -> PostfixKey:
    if not key or key != key.strip() or any(c.isspace() for c in key):
        raise PostfixKeyError(f"key is empty or contains white space: {key!r}")

    if key.startswith("["):
        close = key.find("]")
        if close < 0:
            raise PostfixKeyError(f"unterminated '[' in key {key!r}")
        inner, rest = key[1:close], key[close + 1 :]
        port: int | None = None
        if rest:
            if not rest.startswith(":") or len(rest) == 1:
                raise PostfixKeyError(f"unexpected {rest!r} after ']' in key {key!r}")
            port = _parse_port(rest[1:], key)
        if not inner or "[" in inner or "]" in inner:
            raise PostfixKeyError(f"invalid bracketed host in key {key!r}")
        literal = _ip_literal(inner)
        if literal is not None:
            return PostfixKey(literal, port, parent=False, bracketed=True)
        if ":" in inner:
            raise PostfixKeyError(f"invalid address literal in key {key!r}")
        return PostfixKey(_domain(inner, key), port, parent=False, bracketed=True)

    if "[" in key or "]" in key:
        raise PostfixKeyError(f"misplaced bracket in key {key!r}")

    if key.startswith("."):
        # Postfix builds parent forms from domain names only, never with a port.
        if ":" in key:
            raise PostfixKeyError(f"parent-domain key with a port or address: {key!r}")
        body = key[1:]
        if not body or body.startswith("."):
            raise PostfixKeyError(f"invalid parent-domain key {key!r}")
        domain = _domain(body, key)
        if _ip_literal(domain) is not None:
            raise PostfixKeyError(f"parent-domain form of an address: {key!r}")
        return PostfixKey(domain, None, parent=True, bracketed=False)

    literal = _ip_literal(key)
    if literal is not None:
        # A bare address (unbracketed IPv6 has no room for a port).
        return PostfixKey(literal, None, parent=False, bracketed=False)
    host, sep, port_text = key.rpartition(":")
    if sep:
        if ":" in host:
            raise PostfixKeyError(f"invalid key {key!r}: IPv6 addresses need brackets "
                                  "to carry a port")
        port = _parse_port(port_text, key)
        literal = _ip_literal(host)
        if literal is not None:
            return PostfixKey(literal, port, parent=False, bracketed=False)
        return PostfixKey(_domain(host, key), port, parent=False, bracketed=False)
    return PostfixKey(_domain(key, key), None, parent=False, bracketed=False)
