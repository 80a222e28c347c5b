"""Next hops: the operator's transport routes and the answer for a ``[host]:port`` key.

Postfix looks its policy up by next hop: mail routed by a transport table or relayhost is
asked for as ``[host]:port``.  :func:`parse_transport_table` reads a transport table's
text into a :class:`RouteTable`; :func:`combine_nexthop` gives a next-hop key the routed
domains' configuration at its strictest (SEMANTICS 11).  Pure: reading the table's file
is :func:`tlspolicy.formats.postfix.load_transport_table`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

import attrs

from ..decision import Source
from ..errors import (
    ConfigError,
    InvalidDomainError,
    Location,
)
from ..names import DomainKind, normalise_domain
from ..options import (
    OPTION_SPECS,
    Tls,
    TlsProtocols,
    TlsVerify,
)
from ..resolver import Resolver
from ..resolver.floors import raise_to_floors
from ..scopes.models import floor_path
from .keys import PostfixKeyError, parse_postfix_key
from .levels import (
    PostfixWarning,
)
from .mapping import (
    _ORDER,
    VERIFY_MATCH,
)
from .pcre import may_end_with
from .tables import UNORDERED_OPTIONS, _base_layers, _binding_scopes, _chain, _regex_chain

__all__ = [
    "NextHop",
    "NextHopAnswer",
    "NextHopConflictError",
    "RouteTable",
    "TransportRoute",
    "TransportTableError",
    "catch_all_routes",
    "combine_nexthop",
    "parse_inline_map",
    "parse_transport_table",
    "split_map_list",
    "split_nexthop_list",
    "table_entries",
    "unwrap_map",
]

# ----------------------------------------------------------------- next-hop routes


class TransportTableError(ConfigError):
    """A line of a Postfix transport table that cannot be read (file and line named)."""


class NextHopConflictError(ConfigError):
    """Domains routed through one next hop whose unordered options differ.

    A next-hop key (``[relay.example]:587``) gets one answer for every domain
    routed through it; options that have no strictness order (``tls_ca``,
    ciphers, client certificates) cannot be combined, so this is a load-time
    error naming the transport table lines and the option (SEMANTICS 11).
    """


# Transports that never run the SMTP client (or are not looked up in
# smtp_tls_policy_maps): their entries route nothing this table answers.
_NON_SMTP_TRANSPORTS: Final = frozenset({"error", "retry", "discard", "local", "virtual",
                                         "lmtp", "pipe", "hold"})
# Destination policies of a next-hop key come from the host itself (SEMANTICS 11).
_FROM_HOST: Final = ("use_mta_sts", "enable_mta_sts", "use_dane", "enable_dane")

NextHop = tuple[str, int | None, bool]
"""A next hop as :func:`~tlspolicy.servers.socketmap.parse_postfix_key` reads it:
``(host, port, bracketed)``."""


@attrs.frozen(slots=True)
class TransportRoute:
    """One entry of a Postfix transport table that sends mail to an SMTP next hop.

    ``domain`` is the normalised recipient domain; ``parent`` marks a
    ``.domain`` entry (every subdomain), ``domain`` ``"*"`` the catch-all.
    ``nexthop`` is the next hop as Postfix writes it into the policy lookup
    key; ``file`` and ``line`` say where the entry is.
    """

    domain: str
    parent: bool
    nexthop: NextHop
    nexthop_text: str
    file: str
    line: int
    #: A ``user@domain`` entry: it routes that recipient only, so the domain's other
    #: mail still takes the catch-all routes.
    recipient: bool = False
    #: A route every destination can take whatever else routes it
    #: (``smtp_fallback_relay``): never displaced by a more specific route.
    fallback: bool = False

    @property
    def pattern(self) -> str:
        """The table key as an operator reads it (``.example.com``, ``*``)."""
        return f".{self.domain}" if self.parent else self.domain

    def location(self) -> str:
        """``file:line`` (``file`` alone for a setting or a listed table, line 0)."""
        return f"{self.file}:{self.line}" if self.line else self.file


@attrs.frozen(slots=True)
class RouteTable:
    """Which recipient domains reach which next hop (from transport tables).

    ``direct`` are domains whose whole-domain entry routes no SMTP next hop but
    still takes their mail away from the catch-all routes: ``example.com smtp:``
    (the recipient domain as next hop), ``local:``, ``error:`` and the like.
    """

    routes: tuple[TransportRoute, ...] = ()
    direct: frozenset[str] = frozenset()

    def by_nexthop(self) -> dict[NextHop, tuple[TransportRoute, ...]]:
        """The routes grouped by next hop, in table order."""
        grouped: dict[NextHop, list[TransportRoute]] = {}
        for route in self.routes:
            grouped.setdefault(route.nexthop, []).append(route)
        return {hop: tuple(found) for hop, found in grouped.items()}

    def __add__(self, other: RouteTable) -> RouteTable:
        return RouteTable(self.routes + other.routes, self.direct | other.direct)

    def exact_domains(self) -> frozenset[str]:
        """Domains a whole-domain entry routes to an SMTP next hop: Postfix sends their
        mail there, never through a catch-all (``*``, a parent entry, relayhost)."""
        return self.direct | frozenset(r.domain for r in self.routes
                                       if not r.parent and r.domain != "*"
                                       and not r.recipient and not r.fallback)


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """Postfix table lines: ``#`` comments and blank lines skipped, indented lines continue."""
    current: tuple[int, str] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if raw[:1].isspace() and current is not None:
            current = (current[0], f"{current[1]} {stripped}")
            continue
        if current is not None:
            yield current
        current = (number, stripped)
    if current is not None:
        yield current


def table_entries(text: str) -> list[tuple[int, str, str]]:
    """``(line, key, value)`` of a Postfix lookup table's source text (``key value``
    lines, ``#`` comments, indented continuation lines); a line without a value has
    ``""``."""
    found = []
    for number, line in _logical_lines(text):
        fields = line.split(None, 1)
        found.append((number, fields[0], fields[1].strip() if len(fields) > 1 else ""))
    return found


def parse_transport_table(text: str, *, file: str = "<transport>") -> RouteTable:
    """Read a Postfix ``transport_maps`` source file (transport(5)).

    Entries ``pattern  transport:nexthop``: ``domain``, ``.domain`` (its
    subdomains), ``user@domain`` (counts for the domain) and ``*``.  Entries
    with an empty next hop (the recipient domain is looked up as usual), and
    those of transports that never run the SMTP client (``error``, ``local``,
    ``discard``, ...) route nothing and are skipped.  Raises
    :class:`TransportTableError` with the file and line for anything else it
    cannot read, such as a next-hop list or a malformed host.
    """
    routes: list[TransportRoute] = []
    direct: set[str] = set()
    for number, line in _logical_lines(text):
        where = Location(file=file, line=number)
        fields = line.split(None, 1)
        if len(fields) != 2:
            raise TransportTableError(f"expected 'pattern transport:nexthop', got {line!r}",
                                      where)
        pattern, result = fields[0], fields[1].strip()
        transport, sep, nexthop = result.partition(":")
        if not sep:
            raise TransportTableError(f"the result {result!r} has no ':' (transport:nexthop)",
                                      where)
        if any(c.isspace() for c in transport):
            raise TransportTableError(f"white space in the transport name of {result!r}; "
                                      "expected 'pattern transport:nexthop'", where)
        if transport.lower() in _NON_SMTP_TRANSPORTS or not nexthop.strip():
            # "domain smtp:" sends to the recipient domain, "domain local:" elsewhere:
            # either way not through a catch-all ("domain :" changes nothing).
            if transport and "@" not in pattern and not pattern.startswith(".") \
                    and pattern != "*":
                with contextlib.suppress(InvalidDomainError):
                    direct.add(normalise_domain(pattern))
            continue
        hops = [_nexthop(text, where) for text in split_nexthop_list(nexthop)]
        parent = False
        recipient = False
        if pattern == "*":
            domain = "*"
        else:
            local, at, name = pattern.rpartition("@")
            recipient = bool(at and local)
            if not name:
                # 'user@' entries route by local part, for any domain.
                domain = "*"
            else:
                parent = name.startswith(".")
                try:
                    domain = normalise_domain(name[1:] if parent else name)
                except InvalidDomainError as exc:
                    raise TransportTableError(f"pattern {pattern!r}: {exc}", where) from None
        for hop, text in hops:
            routes.append(TransportRoute(domain, parent, hop, text, file, number,
                                         recipient=recipient))
    return RouteTable(tuple(routes), frozenset(direct))


def split_nexthop_list(text: str) -> list[str]:
    """The elements of a next-hop list (``[a]:25, [b]:587``; comma or white space
    separated, Postfix 3.5 and later): each is its own policy lookup key."""
    return [part for part in text.replace(",", " ").split() if part]


def _nexthop(text: str, where: Location) -> tuple[NextHop, str]:
    try:
        hop = parse_postfix_key(text)
    except PostfixKeyError as exc:
        raise TransportTableError(f"next hop {text!r}: {exc}", where) from None
    if hop.parent:
        raise TransportTableError(f"next hop {text!r} is not a host", where)
    return (hop.domain, hop.port, hop.bracketed), text


def catch_all_routes(value: str, *, file: str, line: int | None = None,
                     transport_form: bool = False, fallback: bool = False) -> RouteTable:
    """Routes for every domain (``*``) from one setting's value: a next-hop list
    (``relayhost``, ``smtp_fallback_relay``, a ``sender_dependent_relayhost_maps``
    result) or, with ``transport_form``, ``transport:nexthop-list``
    (``default_transport``, ``sender_dependent_default_transport_maps``).  A
    transport without a next hop, a transport that never runs the SMTP client, and
    ``DUNNO`` route nothing.  ``file`` names the setting (and its table) in errors.
    """
    value = value.strip()
    where = Location(file=file, line=line)
    if not value or value.upper() == "DUNNO":
        return RouteTable()
    if transport_form:
        transport, sep, nexthop = value.partition(":")
        if not sep or transport.lower() in _NON_SMTP_TRANSPORTS:
            return RouteTable()
        value = nexthop
    return RouteTable(tuple(
        TransportRoute("*", False, hop, text, file, line or 0, fallback=fallback)
        for hop, text in (_nexthop(t, where) for t in split_nexthop_list(value))))


def split_map_list(text: str) -> list[str]:
    """The tables of a ``*_maps`` setting: comma or white space separated, where
    ``{ ... }`` (``inline:{...}``, ``unionmap:{...}``) is one unit."""
    found: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if depth == 0 and (char == "," or char.isspace()):
            if current:
                found.append("".join(current))
                current = []
            continue
        if char == "{":
            depth += 1
        elif char == "}" and depth:
            depth -= 1
        current.append(char)
    if current:
        found.append("".join(current))
    return found


def _braced_body(text: str) -> str | None:
    text = text.strip()
    if text.startswith("{") and text.endswith("}"):
        return text[1:-1]
    return None


def parse_inline_map(spec: str) -> list[tuple[str, str]]:
    """The entries of an ``inline:{ key=value, { key = value with spaces } }`` body
    (the text after ``inline:``), in order; raises :class:`ValueError` naming what
    cannot be read."""
    body = _braced_body(spec)
    if body is None:
        raise ValueError(f"expected inline:{{ key=value, ... }}, got inline:{spec}")
    entries: list[tuple[str, str]] = []
    for item in split_map_list(body):
        inner = _braced_body(item)
        text = inner.strip() if inner is not None else item
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"inline entry {item!r} is not key=value")
        entries.append((key.strip(), value.strip()))
    return entries


def unwrap_map(spec: str) -> list[str]:
    """The tables Postfix reads for one ``type:name``: ``proxy:`` removed,
    ``unionmap:{a, b}`` (and ``pipemap`` is not unwrapped: its result is not
    any one table's) split into its members, recursively."""
    kind, _sep, name = spec.partition(":")
    kind = kind.lower()
    if kind == "proxy":
        return unwrap_map(name)
    if kind == "unionmap":
        body = _braced_body(name)
        if body is not None:
            return [t for member in split_map_list(body) for t in unwrap_map(member)]
    return [spec]


def _route_candidates(resolver: Resolver, binding: str, route: TransportRoute,
                      displaced: frozenset[str] = frozenset()
                      ) -> list[tuple[str, dict[str, object], dict[str, Source]]]:
    """Every set of effective values mail of ``route`` can get through ``binding``.

    An exact domain has one; a parent route or ``*`` has one per exact stanza
    or floor it covers, one for any other name, and one per regex stanza or
    floor (whether a pattern matches some covered name is not decided, so each
    counts, but for one whose literal ending shows it matches no name under a
    parent route).  Exact
    stanzas in ``displaced`` (domains a whole-domain route sends elsewhere) are
    not covered by a parent route or ``*``, unless the route is a fallback relay.
    """
    if route.domain != "*" and not route.parent:
        values, sources = resolver.effective(route.domain, binding)
        return [(route.domain, values, sources)]
    config = resolver.config
    found = []
    group_name, _s, b_opts, g_opts, stanzas = _binding_scopes(config, binding, resolver)
    # Any other name: the binding's, its group's and the global values, as for a name no
    # stanza matches (a made-up name could match a regex stanza, and then no candidate
    # would stand for the names that match none).
    layers = _base_layers(config, binding, group_name, b_opts, g_opts)
    base = _chain([*layers, (config.options, "global")])
    found.append((route.pattern, *base))
    exact: list[str] = []
    for path, stanza in stanzas:
        if stanza.name.kind is not DomainKind.REGEX:
            exact.append(stanza.name.key)
        elif not stanza.options.is_empty() and (
                route.domain == "*" or may_end_with(stanza.name.key, f".{route.domain}")):
            spath, (values, sources) = _regex_chain(config, path, stanza, layers)
            found.append((spath, values, sources))
    # Floors raise names no stanza names (SEMANTICS 7: no binding can weaken them), so
    # each floor the route may carry counts too: an exact one as that name's values, a
    # regex one as any other name's raised to it (whether its pattern matches a routed
    # name is not decided, as for regex stanzas).
    for floor in config.floors:
        if floor.name.kind is not DomainKind.REGEX:
            exact.append(floor.name.key)
            continue
        if route.domain != "*" and not may_end_with(floor.name.key, f".{route.domain}"):
            continue  # its literal ending shows it matches no name under the route
        values, sources = dict(base[0]), dict(base[1])
        raise_to_floors(values, sources, (floor,))
        found.append((floor_path(floor.name.text), values, sources))
    for key in dict.fromkeys(exact):
        if key in displaced and not route.fallback:
            continue
        if route.domain == "*" or key.endswith(f".{route.domain}"):
            values, sources = resolver.effective(key, binding)
            found.append((key, values, sources))
    return found


@attrs.frozen(slots=True)
class NextHopAnswer:
    """What a next-hop key is answered with: combined values and where they come from."""

    values: Mapping[str, object]
    sources: Mapping[str, Source]
    #: The routed names or patterns, for notes.
    routed: tuple[str, ...]
    routes: tuple[TransportRoute, ...]
    #: ``match=`` of verified levels; ``None`` when no list is never weaker (then a
    #: verified answer is refused with ``PERM``).
    match: str | None
    notes: tuple[PostfixWarning, ...]


def _strictest_protocols(found: Sequence[TlsProtocols]) -> TlsProtocols:
    versions = frozenset.intersection(*(p.versions for p in found))
    spec = ":".join(["-ALL", *(f"+{v.value}" for v in _ORDER if v in versions)])
    return TlsProtocols(spec, versions)


def combine_nexthop(resolver: Resolver, binding: str, hop: NextHop,
                    routes: Sequence[TransportRoute], *,
                    displaced: frozenset[str] = frozenset()) -> NextHopAnswer:
    """The answer for a next-hop key: the routed domains' configuration at its strictest.

    ``tls`` and ``tls_verify`` take the strictest value, fallback is false
    when any routed domain says false, ``tls_protocols`` the intersection;
    destination-policy switches (DANE, MTA-STS) come from the host itself.
    Raises :class:`NextHopConflictError` when the routed domains' unordered
    options differ, or their protocol sets do not intersect.  ``displaced``
    (:meth:`RouteTable.exact_domains`) are the domains a whole-domain route sends
    to their own next hop: a catch-all route does not carry them.
    """
    host, port, bracketed = hop
    parts: list[tuple[str, dict[str, object], dict[str, Source]]] = []
    for route in routes:
        parts.extend(_route_candidates(resolver, binding, route, displaced))
    own_values, own_sources = resolver.effective(host, binding)
    plain_host = not bracketed and port is None
    if plain_host or (host.startswith("[") and port is None):
        # Postfix uses the same key for mail to the host's own domain, and for mail to
        # an address literal (user@[192.0.2.1]) the same key as for that address.
        parts.append((host, own_values, own_sources))
    where = Location(file=routes[0].file, line=routes[0].line or None,
                     scope=f'binding "{binding}" > next hop {routes[0].nexthop_text}')
    values: dict[str, object] = {}
    sources: dict[str, Source] = {}
    tls_rank = [Tls.NO, Tls.IFAVAILABLE, Tls.REQUIRED]
    verify_rank = [TlsVerify.NO, TlsVerify.OPTIONAL, TlsVerify.CA, TlsVerify.HOST]
    best_tls = max(parts, key=lambda p: tls_rank.index(p[1]["tls"]))  # type: ignore[arg-type]
    best_verify = max(parts, key=lambda p: verify_rank.index(p[1]["tls_verify"]))  # type: ignore[arg-type]
    values["tls"], sources["tls"] = best_tls[1]["tls"], best_tls[2]["tls"]
    values["tls_verify"] = best_verify[1]["tls_verify"]
    sources["tls_verify"] = best_verify[2]["tls_verify"]
    no_fallback = [p for p in parts if not p[1]["tls_ifavailable_fallback"]]
    chosen = no_fallback[0] if no_fallback else parts[0]
    values["tls_ifavailable_fallback"] = chosen[1]["tls_ifavailable_fallback"]
    sources["tls_ifavailable_fallback"] = chosen[2]["tls_ifavailable_fallback"]
    protocols = [p[1]["tls_protocols"] for p in parts]
    assert all(isinstance(x, TlsProtocols) for x in protocols)
    combined = _strictest_protocols(protocols)  # type: ignore[arg-type]
    if not combined.versions:
        raise NextHopConflictError(
            "the domains routed through this next hop allow no protocol version in common: "
            + "; ".join(f"{p[0]}: {p[1]['tls_protocols']}" for p in parts),
            where.evolve(option="tls_protocols"))
    values["tls_protocols"] = combined
    sources["tls_protocols"] = Source("strictest of the routed domains")
    for name in UNORDERED_OPTIONS:
        seen = {repr(p[1][name]): p for p in parts}
        if len(seen) > 1:
            detail = "; ".join(f"{p[0]} has {p[1][name]!s} (from {p[2][name]})"
                               for p in seen.values())
            raise NextHopConflictError(
                f"domains routed through next hop {routes[0].nexthop_text} differ in {name}, "
                f"which has no strictness order to combine: {detail}",
                where.evolve(option=name))
        values[name], sources[name] = parts[0][1][name], parts[0][2][name]
    for name in _FROM_HOST:
        values[name], sources[name] = own_values[name], own_sources[name]
    for name, spec in OPTION_SPECS.items():
        if name not in values:
            values[name], sources[name] = spec.default, Source("default")
    routed = tuple(dict.fromkeys(p[0] for p in parts))
    exact = [r for r in routes if not r.parent and r.domain != "*"]
    notes: list[PostfixWarning] = []
    hop_key = routes[0].nexthop_text
    is_ip = host.startswith("[")
    match: str | None = VERIFY_MATCH
    if len(exact) == 1 and len(routes) == 1 and not plain_host:
        # The decision for the one routed domain accepts its own name or the host's.
        # At an address only the name: Postfix (OpenSSL) checks an address as an IP
        # identity and fails the whole verification when it does not match.
        match = exact[0].domain if is_ip else f"{exact[0].domain}:{VERIFY_MATCH}"
        if is_ip:
            notes.append(PostfixWarning(
                binding, hop_key, "tls_verify", f"one domain ({exact[0].domain}) is routed "
                "through this address: a verified answer names it alone in match=, since "
                "Postfix (OpenSSL) checks an address match name as an IP identity and fails "
                "the whole check when the certificate lacks it; a certificate naming only "
                "the address defers, where tlspolicy accepts it (stricter)",
                None, "nexthop-match"))
    elif is_ip:
        match = None
        notes.append(PostfixWarning(
            binding, hop_key, "tls_verify", "several domains are routed through this address "
            "and no name is accepted by every one of them: a verified answer cannot be "
            "written, so verified levels are answered PERM and Postfix defers (stricter)",
            None, "nexthop-match"))
    else:
        notes.append(PostfixWarning(
            binding, hop_key, "tls_verify", "several domains are routed through this host: "
            "match= names only the host, so a certificate naming a routed domain but not the "
            "host defers (stricter)", None, "nexthop-match"))
    if len(routed) > 1:
        notes.append(PostfixWarning(
            binding, hop_key, "tls", "the answer combines the domains routed through this "
            f"next hop ({', '.join(routed[:10])}{', ...' if len(routed) > 10 else ''}) at "
            "their strictest: mail of a less strict domain gets the stricter policy",
            None, "nexthop-strictest"))
    return NextHopAnswer(values, sources, routed, tuple(routes), match, tuple(notes))


