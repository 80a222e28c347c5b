"""Postfix ``smtp_tls_policy_maps``: the policy of each binding as Postfix table answers.

A Momentum binding corresponds to a Postfix transport (a ``master.cf`` service
with its own ``-o smtp_tls_policy_maps=...``).  For every binding and domain
this module computes the Postfix policy answer (a security level plus
``name=value`` attributes) from the effective option values, and reports,
per entry, every part of the Momentum policy Postfix cannot express instead
of dropping it silently.

Level mapping (effective ``tls`` / ``tls_verify``; see the Postfix migration
guide for the reasoning):

============  =======================  ==========================================
tls           tls_verify               Postfix level
============  =======================  ==========================================
no            any                      ``none``
ifavailable   no, optional             ``may`` (``dane`` when DANE is on)
ifavailable   no, opt. (no fallback)   ``encrypt`` (stricter, SEMANTICS 11 (e))
required      no, optional             ``encrypt``
ifavailable   ca, host                 ``verify match=hostname:nexthop`` (stricter)
required      ca, host                 ``verify match=hostname:nexthop``
============  =======================  ==========================================

``dane-only`` is never produced: no option requires DANE.  Where Postfix has
no exact equivalent the mapping is the *stricter* neighbour (it may defer
mail Momentum would deliver, never the reverse) and a :class:`PostfixWarning`
says so.

Two outputs: a static table (:func:`postfix_entries`, :func:`render_policy_table`,
:func:`render_pcre_table`, :func:`render_warnings`) and live answers for the
socketmap server (:class:`PolicyLookup`), which answers *every* domain with
its effective policy so Postfix never falls back to its own defaults.

Postfix looks its policy up by next hop: mail routed by a transport table or
relayhost is asked for as ``[host]:port``.  :func:`parse_transport_table` reads
the operator's transport table into a :class:`RouteTable`, and
:class:`PolicyLookup` answers such a key with the routed domains'
configuration at its strictest (:func:`combine_nexthop`, SEMANTICS 11).
Every warning carries a stable ``code``; :func:`behaviour_notes` adds what
comes from Postfix's behaviour at a level rather than from the mapping.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

import attrs

from ..decision import Source
from ..errors import (
    ConfigError,
    ConfigErrors,
    InvalidDomainError,
    InvalidValueError,
    Location,
    UnknownBindingError,
)
from ..floors import plan_floor_writes
from ..names import DomainKind, DomainName, normalise_domain
from ..options import (
    OPTION_SPECS,
    CompatVersion,
    Options,
    ScopeKind,
    Tls,
    TlsProtocols,
    TlsVerify,
)
from ..postfix.keys import PostfixKey, PostfixKeyError, parse_postfix_key
from ..postfix.levels import (
    PostfixLevel,
    PostfixMappingError,
    PostfixPolicy,
    PostfixVersion,
    PostfixWarning,
)
from ..postfix.mapping import (
    _ORDER,
    PROTOCOL_RANGES_SINCE,
    VERIFY_MATCH,
    behaviour_notes,
    map_values,
)
from ..postfix.replies import SocketmapReply
from ..resolver import Resolver
from ..scopes import (
    DEFAULT_NAME,
    BindingScope,
    Config,
    DomainScope,
    floor_path,
    iter_stanzas,
    scope_path,
)

__all__ = [
    "DEFAULT_ANSWER_MEMO_SIZE",
    "MAX_UNATTRIBUTED_WARNINGS",
    "PROTOCOL_RANGES_SINCE",
    "STARTTLS_STATUS_FILTER",
    "VERIFY_MATCH",
    "NextHop",
    "NextHopAnswer",
    "NextHopConflictError",
    "PolicyLookup",
    "PostfixEntry",
    "PostfixLevel",
    "PostfixMappingError",
    "PostfixPolicy",
    "PostfixVersion",
    "PostfixWarning",
    "RouteTable",
    "TransportRoute",
    "TransportTableError",
    "behaviour_notes",
    "combine_nexthop",
    "load_transport_table",
    "map_values",
    "parse_postfix_version",
    "parse_transport_table",
    "postfix_entries",
    "render_pcre_table",
    "render_policy_table",
    "render_warnings",
]

STARTTLS_STATUS_FILTER: Final = (
    r"/^5\.[0-9]+\.[0-9]+ (TLS is required, but host .* refused to start TLS: .*)$/"
    " 4.7.5 $1\n")
"""A ``regexp:`` table for ``smtp_delivery_status_filter``: a 5xx reply to STARTTLS at a
mandatory level becomes a deferral (4.7.5), as tlspolicy's decision says, instead of a bounce."""

DEFAULT_ANSWER_MEMO_SIZE: Final = 65536
"""Answers :class:`PolicyLookup` keeps per map name and key (the resolver's memo size)."""

_FALLBACK_SINCE: Final = CompatVersion((4, 1))
# Longer keys are answered but not kept: a Postfix key is a domain and a port, so
# only a client sending junk has longer ones, and it should not fill the memo.
_MEMO_KEY_CHARS: Final = 300
_NOT_PCRE_LINE: Final = re.compile(r"[\s/]")
_UNESCAPED_UPPER: Final = re.compile(r"(?<!\\)[A-Z]")



class EntryKind(enum.Enum):
    """Which table an entry belongs to."""

    EXACT = "exact"
    REGEX = "regex"
    DEFAULT = "default"


@attrs.frozen(slots=True)
class PostfixEntry:
    """One table line for a binding: key, policy and the stanza it comes from."""

    binding: str
    kind: EntryKind
    key: str | None
    policy: PostfixPolicy
    source: str


# ------------------------------------------------------------------------ the table


def _binding_scopes(
    config: Config, binding: str, resolver: Resolver
) -> tuple[str, BindingScope | None, Options, Options,
           list[tuple[tuple[tuple[ScopeKind, str], ...], DomainScope]]]:
    """(group name, binding scope, binding options, group options, domain stanzas in
    chain order: the binding's, the group's, then global ones)."""
    group_name = resolver.binding_group_of(binding)
    groups = {g.name: g for g in config.binding_groups}
    group = groups.get(group_name)
    scope: BindingScope | None = None
    parent: tuple[tuple[ScopeKind, str], ...] = ()
    for g_name, b in config.iter_bindings():
        if b.name == binding:
            scope = b
            if g_name in groups and any(x is b for x in groups[g_name].bindings):
                parent = ((ScopeKind.BINDING_GROUP, g_name),)
    stanzas: list[tuple[tuple[tuple[ScopeKind, str], ...], DomainScope]] = []
    if scope is not None:
        b_path = (*parent, (ScopeKind.BINDING, binding))
        stanzas += [(b_path, d) for d in scope.domains]
    if group is not None:
        stanzas += [(((ScopeKind.BINDING_GROUP, group.name),), d) for d in group.domains]
    stanzas += [((), d) for d in config.domains]
    return (group_name, scope,
            scope.options if scope is not None else Options(),
            group.options if group is not None else Options(), stanzas)


def _chain(layers: Sequence[tuple[Options, str]]) -> tuple[dict[str, object], dict[str, Source]]:
    values: dict[str, object] = {}
    sources: dict[str, Source] = {}
    for options, path in layers:
        for name, value in options.items():
            if name not in values:
                values[name] = value
                sources[name] = Source(path)
    for name, spec in OPTION_SPECS.items():
        if name not in values:
            values[name] = spec.default
            sources[name] = Source("default")
    return values, sources


def postfix_entries(
    config: Config, binding: str | None = None
) -> tuple[tuple[PostfixEntry, ...], tuple[PostfixWarning, ...]]:
    """Every policy table entry of one binding (Postfix transport) and the losses.

    Entries: the binding's default (what applies to a domain no stanza names;
    put it in ``smtp_tls_security_level`` and friends, or rely on the
    socketmap), one exact entry per domain or IP-literal stanza that can
    apply through the binding (computed exactly, regex stanzas included), and
    one regex entry per regex stanza, computed as if that regex were the only
    stanza matching.  Raises :class:`~tlspolicy.errors.UnknownBindingError`
    for an undeclared binding.
    """
    name = DEFAULT_NAME if binding is None else binding
    resolver = Resolver(config, decision_cache_size=0)
    if name not in resolver.bindings:
        raise UnknownBindingError(
            f"unknown binding {name!r}; declared bindings: {', '.join(sorted(resolver.bindings))}")
    fallback_exists = config.effective_compatibility >= _FALLBACK_SINCE
    group_name, _scope, b_opts, g_opts, stanzas = _binding_scopes(config, name, resolver)
    binding_path = scope_path(*_group_prefix(config, name), (ScopeKind.BINDING, name))
    group_path = scope_path((ScopeKind.BINDING_GROUP, group_name))
    base = [(b_opts, binding_path), (g_opts, group_path)]
    entries: list[PostfixEntry] = []
    warnings: list[PostfixWarning] = []

    values, sources = _chain([*base, (config.options, "global")])
    policy, found = map_values(values, sources, binding=name, key=None,
                               fallback_exists=fallback_exists)
    entries.append(PostfixEntry(name, EntryKind.DEFAULT, None, policy, "no domain stanza"))
    warnings.extend(found)

    # Floors (SEMANTICS 7): exact names get the resolver's raised values below; a
    # regex floor is written as a pcre line ahead of the others, never weaker.
    floor_lines = _floor_regex_lines(config, name)
    for floor_name, floor_opts, floor_source in floor_lines:
        f_layers = [(floor_opts, floor_source)]
        own = [(p, d) for p, d in stanzas if d.name == floor_name]
        if own:
            o_path, o_stanza = own[0]
            o_spath = scope_path(*o_path, (ScopeKind.DOMAIN, o_stanza.name.text))
            if o_path and o_path[-1][0] in (ScopeKind.BINDING, ScopeKind.BINDING_GROUP):
                f_layers.append((o_stanza.options, o_spath))
                f_layers += base
            else:
                f_layers += base
                f_layers.append((o_stanza.options, o_spath))
        else:
            f_layers += base
        f_layers.append((config.options, "global"))
        values, sources = _chain(f_layers)
        f_key = f"/{floor_name.key}/"
        policy, found = map_values(values, sources, binding=name, key=f_key,
                                   fallback_exists=fallback_exists)
        entries.append(PostfixEntry(name, EntryKind.REGEX, f_key, policy, floor_source))
        for f in config.floors:
            if f.name == floor_name and f.expires is not None:
                warnings.append(_expiry_note(name, f_key, f.expires.isoformat(), floor_source))
        warnings.extend(found)
        warnings.extend(_regex_notes(name, f_key, floor_name, floor_source, 2))
    floor_patterns = {n for n, _o, _s in floor_lines}

    seen: set[str] = set()
    regexes: list[tuple[tuple[tuple[ScopeKind, str], ...], DomainScope]] = []
    floor_names = [((), DomainScope(f.name)) for f in config.floors
                   if f.name.kind is not DomainKind.REGEX]
    for path, stanza in [*stanzas, *floor_names]:
        if stanza.name.kind is DomainKind.REGEX:
            regexes.append((path, stanza))
            continue
        key = stanza.name.key
        if key in seen:
            continue
        seen.add(key)
        values, sources = resolver.effective(key, name)
        policy, found = map_values(values, sources, binding=name, key=key,
                                   fallback_exists=fallback_exists)
        origin = (scope_path(*path, (ScopeKind.DOMAIN, stanza.name.text))
                  if (path, stanza) in stanzas else floor_path(stanza.name.text))
        entries.append(PostfixEntry(name, EntryKind.EXACT, key, policy, origin))
        warnings.extend(_expiry_notes(config, name, key, resolver))
        warnings.extend(found)

    contributing = [r for r in regexes if not r[1].options.is_empty()]
    for path, stanza in contributing:
        if stanza.name in floor_patterns:
            continue  # written (raised) ahead of the other pcre lines above
        spath = scope_path(*path, (ScopeKind.DOMAIN, stanza.name.text))
        key = f"/{stanza.name.key}/"
        layers: list[tuple[Options, str]] = []
        container = path[-1][0] if path else None
        if container is ScopeKind.BINDING:
            layers.append((stanza.options, spath))
        if container is ScopeKind.BINDING_GROUP:
            layers.append((stanza.options, spath))
        layers += base
        if container is None:
            layers.append((stanza.options, spath))
        layers.append((config.options, "global"))
        values, sources = _chain(layers)
        policy, found = map_values(values, sources, binding=name, key=key,
                                   fallback_exists=fallback_exists)
        entries.append(PostfixEntry(name, EntryKind.REGEX, key, policy, spath))
        warnings.extend(found)
        if stanza.expires is not None:
            warnings.append(_expiry_note(name, key, stanza.expires.isoformat(), spath))
        warnings.extend(_regex_notes(name, key, stanza.name, spath, len(contributing)))
    return tuple(entries), tuple(warnings)


def _expiry_note(binding: str, key: str, when: str, source: str) -> PostfixWarning:
    return PostfixWarning(binding, key, "expires", f"expires {when}: Postfix tables cannot "
                          "carry expiry; the entry stays until the table is rebuilt (the "
                          "socketmap drops it on time)", source)


def _expiry_notes(config: Config, binding: str, key: str, resolver: Resolver
                  ) -> list[PostfixWarning]:
    """A loss note for each expiring stanza or floor that shapes an exact entry."""
    _values, sources = resolver.effective(key, binding)
    used = {str(s.scope) for s in sources.values()}
    notes = []
    for path, stanza in iter_stanzas(config):
        if stanza.expires is not None and stanza.name.matches(key) and any(
                path == u or (path.startswith("floor ") and path in u) for u in used):
            notes.append(_expiry_note(binding, key, stanza.expires.isoformat(), path))
    return notes


def _floor_regex_lines(config: Config, binding: str
                       ) -> list[tuple[DomainName, Options, str]]:
    """The regex floors to write for ``binding``: pattern, raised options, floor path.

    Raises :class:`~tlspolicy.floors.FloorExportError` for a regex floor that no
    constant answer can carry (see :mod:`tlspolicy.floors`).
    """
    if not any(f.name.kind is DomainKind.REGEX for f in config.floors):
        return []
    plan = plan_floor_writes(config, what="a Postfix pcre table")
    return [(n, o, floor_path(n.text)) for n, o in plan.regex.get(binding, ())]


def _group_prefix(config: Config, binding: str) -> tuple[tuple[ScopeKind, str], ...]:
    for g in config.binding_groups:
        if any(b.name == binding for b in g.bindings):
            return ((ScopeKind.BINDING_GROUP, g.name),)
    return ()


def _regex_notes(binding: str, key: str, name: DomainName, source: str,
                 count: int) -> list[PostfixWarning]:
    notes = []
    pattern = name.key
    if _NOT_PCRE_LINE.search(pattern):
        notes.append(PostfixWarning(binding, key, "domain", "the pattern holds white space or "
                                    "'/', which a Postfix pcre table line cannot carry: entry "
                                    "not written", source))
    if _UNESCAPED_UPPER.search(pattern):
        notes.append(PostfixWarning(binding, key, "domain", "the pattern has upper-case "
                                    "letters: tlspolicy matches it against the lower-case "
                                    "name, Postfix pcre tables match case-insensitively",
                                    source))
    if count > 1:
        notes.append(PostfixWarning(binding, key, "domain", "computed as if this were the only "
                                    "regex stanza matching: Postfix takes the first matching "
                                    "pcre line, tlspolicy merges matching stanzas option by "
                                    "option (use the socketmap for exact answers)", source))
    return notes


def _writable_regex(entry: PostfixEntry) -> bool:
    assert entry.key is not None
    return not _NOT_PCRE_LINE.search(entry.key[1:-1])


def render_policy_table(entries: Iterable[PostfixEntry]) -> str:
    """The exact entries as a ``hash:``/``lmdb:`` table source (``key<TAB>policy``).

    The binding's default is written as a comment naming the ``main.cf`` /
    ``master.cf`` setting it corresponds to; regex entries go to
    :func:`render_pcre_table`.
    """
    lines: list[str] = []
    for entry in entries:
        if entry.kind is EntryKind.DEFAULT:
            lines.append(f'# binding "{entry.binding}": domains without an entry get '
                         f"{entry.policy.text()!r}")
            lines.append(f"#   (smtp_tls_security_level = {entry.policy.level.value} for this "
                         "transport, or use the socketmap, which answers every domain)")
        elif entry.kind is EntryKind.EXACT:
            assert entry.key is not None
            lines.append(f"{entry.key}\t{entry.policy.text()}")
    return "\n".join(lines) + "\n"


def render_pcre_table(entries: Iterable[PostfixEntry]) -> str:
    """The regex entries as a ``pcre:`` table source, in precedence order.

    Entries whose pattern cannot be written (see the warnings) are left out.
    """
    lines = [f"/{e.key[1:-1]}/\t{e.policy.text()}" for e in entries  # type: ignore[index]
             if e.kind is EntryKind.REGEX and _writable_regex(e)]
    return "\n".join(lines) + ("\n" if lines else "")


def render_warnings(warnings: Iterable[PostfixWarning]) -> str:
    """One line per warning (see :meth:`PostfixWarning.describe`)."""
    return "".join(f"{w.describe()}\n" for w in warnings)


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
_UNORDERED: Final = ("tls_ca", "tls_certificate", "tls_key", "tls_ciphers",
                     "tlsv13_ciphersuites", "tls_engine")
# Destination policies of a next-hop key come from the host itself (SEMANTICS 11).
_FROM_HOST: Final = ("use_mta_sts", "enable_mta_sts", "use_dane", "enable_dane")
# A label no configuration names: stands for "any other subdomain" of a parent route.
_ANY_LABEL: Final = "tlspolicy-any-subdomain"

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

    @property
    def pattern(self) -> str:
        """The table key as an operator reads it (``.example.com``, ``*``)."""
        return f".{self.domain}" if self.parent else self.domain

    def location(self) -> str:
        """``file:line``."""
        return f"{self.file}:{self.line}"


@attrs.frozen(slots=True)
class RouteTable:
    """Which recipient domains reach which next hop (from transport tables)."""

    routes: tuple[TransportRoute, ...] = ()

    def by_nexthop(self) -> dict[NextHop, tuple[TransportRoute, ...]]:
        """The routes grouped by next hop, in table order."""
        grouped: dict[NextHop, list[TransportRoute]] = {}
        for route in self.routes:
            grouped.setdefault(route.nexthop, []).append(route)
        return {hop: tuple(found) for hop, found in grouped.items()}

    def __add__(self, other: RouteTable) -> RouteTable:
        return RouteTable(self.routes + other.routes)


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
            continue
        nexthop = nexthop.strip()
        if any(c in nexthop for c in ", \t"):
            raise TransportTableError(f"next-hop lists ({nexthop!r}) are not supported: give "
                                      "one next hop per entry", where)
        try:
            hop = parse_postfix_key(nexthop)
        except PostfixKeyError as exc:
            raise TransportTableError(f"next hop {nexthop!r}: {exc}", where) from None
        if hop.parent:
            raise TransportTableError(f"next hop {nexthop!r} is not a host", where)
        parent = False
        if pattern == "*":
            domain = "*"
        else:
            name = pattern.rpartition("@")[2]
            if not name:
                # 'user@' entries route by local part, for any domain.
                domain = "*"
            else:
                parent = name.startswith(".")
                try:
                    domain = normalise_domain(name[1:] if parent else name)
                except InvalidDomainError as exc:
                    raise TransportTableError(f"pattern {pattern!r}: {exc}", where) from None
        routes.append(TransportRoute(domain, parent, (hop.domain, hop.port, hop.bracketed),
                                     nexthop, file, number))
    return RouteTable(tuple(routes))


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


def _route_candidates(resolver: Resolver, binding: str, route: TransportRoute
                      ) -> list[tuple[str, dict[str, object], dict[str, Source]]]:
    """Every set of effective values mail of ``route`` can get through ``binding``.

    An exact domain has one; a parent route or ``*`` has one per exact stanza
    it covers, one for any other name, and one per regex stanza (whether a
    pattern matches some covered name is not decided, so each counts).
    """
    if route.domain != "*" and not route.parent:
        values, sources = resolver.effective(route.domain, binding)
        return [(route.domain, values, sources)]
    config = resolver.config
    found = []
    any_name = _ANY_LABEL if route.domain == "*" else f"{_ANY_LABEL}.{route.domain}"
    values, sources = resolver.effective(any_name, binding)
    found.append((route.pattern, values, sources))
    group_name, _s, b_opts, g_opts, stanzas = _binding_scopes(config, binding, resolver)
    for path, stanza in stanzas:
        if stanza.name.kind is DomainKind.REGEX:
            if stanza.options.is_empty():
                continue
            spath = scope_path(*path, (ScopeKind.DOMAIN, stanza.name.text))
            values, sources = _regex_values(config, binding, group_name, path, stanza,
                                            b_opts, g_opts)
            found.append((spath, values, sources))
            continue
        key = stanza.name.key
        if route.domain == "*" or key.endswith(f".{route.domain}"):
            values, sources = resolver.effective(key, binding)
            found.append((key, values, sources))
    return found


def _regex_values(config: Config, binding: str, group_name: str,
                  path: tuple[tuple[ScopeKind, str], ...], stanza: DomainScope,
                  b_opts: Options, g_opts: Options
                  ) -> tuple[dict[str, object], dict[str, Source]]:
    """Effective values of a name only this regex stanza matches (as the pcre export)."""
    spath = scope_path(*path, (ScopeKind.DOMAIN, stanza.name.text))
    binding_path = scope_path(*_group_prefix(config, binding), (ScopeKind.BINDING, binding))
    group_path = scope_path((ScopeKind.BINDING_GROUP, group_name))
    layers: list[tuple[Options, str]] = []
    container = path[-1][0] if path else None
    if container is not None:
        layers.append((stanza.options, spath))
    layers += [(b_opts, binding_path), (g_opts, group_path)]
    if container is None:
        layers.append((stanza.options, spath))
    layers.append((config.options, "global"))
    return _chain(layers)


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
                    routes: Sequence[TransportRoute]) -> NextHopAnswer:
    """The answer for a next-hop key: the routed domains' configuration at its strictest.

    ``tls`` and ``tls_verify`` take the strictest value, fallback is false
    when any routed domain says false, ``tls_protocols`` the intersection;
    destination-policy switches (DANE, MTA-STS) come from the host itself.
    Raises :class:`NextHopConflictError` when the routed domains' unordered
    options differ, or their protocol sets do not intersect.
    """
    host, port, bracketed = hop
    parts: list[tuple[str, dict[str, object], dict[str, Source]]] = []
    for route in routes:
        parts.extend(_route_candidates(resolver, binding, route))
    own_values, own_sources = resolver.effective(host, binding)
    plain_host = not bracketed and port is None
    if plain_host:
        # Postfix uses the same key for mail to the host's own domain.
        parts.append((host, own_values, own_sources))
    where = Location(file=routes[0].file, line=routes[0].line,
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
    for name in _UNORDERED:
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


# ---------------------------------------------------------------------- socketmap


log = logging.getLogger(__name__)

#: Distinct unattributed next-hop keys warned about per lookup (then counted only).
MAX_UNATTRIBUTED_WARNINGS: Final = 1000


class PolicyLookup:
    """A socketmap lookup answering Postfix's ``smtp_tls_policy_maps`` queries.

    The map name selects the binding (``socketmap:inet:127.0.0.1:PORT:bulk-1``).
    Answers: ``OK <policy>`` for every domain, IP literal and next-hop form
    (``[host]``, ``[host]:port``, ``host:port``); ``NOTFOUND`` for the
    parent-domain form ``.example.com`` (never needed: the full name was
    already answered); ``PERM unknown binding ...`` for an undeclared binding;
    ``PERM malformed key ...`` for a key that is no next hop; ``PERM`` for a
    policy Postfix cannot be given (:class:`PostfixMappingError`).
    Unexpected errors propagate so the server answers ``TEMP``.

    ``routes`` (from the operator's transport tables) say which domains reach
    which next hop: a next-hop key is answered with those domains'
    configuration at its strictest (:func:`combine_nexthop`, computed here, so
    a conflict is a load-time :class:`NextHopConflictError`).  A bracketed or
    ported key no route names is answered for the host itself and logged as
    unattributed.  ``postfix_version`` selects the attribute syntax
    (``None``: Postfix 3.6 or newer).
    """

    def __init__(self, resolver: Resolver, *, memo_size: int = DEFAULT_ANSWER_MEMO_SIZE,
                 routes: RouteTable | None = None,
                 postfix_version: PostfixVersion | None = None) -> None:
        if isinstance(memo_size, bool) or not isinstance(memo_size, int) or memo_size < 0:
            raise ValueError(f"memo_size must be a whole number >= 0, got {memo_size!r}")
        self.resolver = resolver
        self.postfix_version = postfix_version
        self.routes = routes if routes is not None else RouteTable()
        self._bindings = frozenset(resolver.bindings)
        self._fallback_exists = resolver.compatibility >= _FALLBACK_SINCE
        # Answers are pure functions of (map name, key) for one resolver, and a
        # reload builds a new PolicyLookup, so these memos never go stale.  Both are
        # bounded: answers by memo_size (oldest entry out first), replies per set of
        # effective values by the same bound (a configuration has few such sets).
        self._memo_size = memo_size
        self._answers: OrderedDict[tuple[str, str], SocketmapReply] = OrderedDict()
        self._by_values: dict[Mapping[str, object], SocketmapReply] = {}
        self._nexthops: dict[tuple[str, NextHop], NextHopAnswer] = {}
        errors: list[ConfigError] = []
        for hop, found in self.routes.by_nexthop().items():
            for binding in sorted(self._bindings):
                try:
                    self._nexthops[(binding, hop)] = combine_nexthop(resolver, binding, hop,
                                                                     found)
                except NextHopConflictError as exc:
                    # The same conflict usually shows through every binding: once each.
                    if all(str(exc) != str(e) for e in errors):
                        errors.append(exc)
        ConfigErrors.raise_if_any(errors)
        self._unattributed: set[str] = set()
        self.unattributed_count = 0

    def policy(self, binding: str, domain: str) -> PostfixPolicy:
        """The policy for an already normalised ``domain`` through ``binding``."""
        values, sources = self.resolver.effective(domain, binding)
        policy, _warnings = map_values(values, sources, binding=binding, key=domain,
                                       fallback_exists=self._fallback_exists,
                                       postfix_version=self.postfix_version)
        return policy

    @property
    def fallback_exists(self) -> bool:
        """Whether a failed negotiation may fall back (false under compatibility 4.0)."""
        return self._fallback_exists

    def operator_values(self, binding: str, parsed: PostfixKey
                        ) -> tuple[Mapping[str, object], Mapping[str, Source], str | None,
                                   tuple[PostfixWarning, ...]]:
        """The configuration behind the answer to ``parsed`` through ``binding``: the
        effective values (a routed next hop's combined at their strictest), their
        sources, the ``match=`` list of verified levels (``None``: a shared next hop no
        list serves) and the next-hop notes.  Raises for an unknown binding.
        """
        if binding not in self._bindings:
            raise UnknownBindingError(f"unknown binding {binding!r}")
        answer = self._nexthops.get((binding, (parsed.domain, parsed.port, parsed.bracketed)))
        if answer is not None:
            return answer.values, answer.sources, answer.match, answer.notes
        values, sources = self.resolver.effective(parsed.domain, binding)
        return values, sources, VERIFY_MATCH, ()

    def nexthop_routed(self, binding: str, parsed: PostfixKey) -> bool:
        """Whether a transport route names the next hop ``parsed`` through ``binding`` (its
        answer then combines the routed domains' values)."""
        return (binding, (parsed.domain, parsed.port, parsed.bracketed)) in self._nexthops

    def nexthop(self, binding: str, key: str) -> NextHopAnswer | None:
        """The route-derived answer for a next-hop ``key`` (``None``: no route names it)."""
        parsed = parse_postfix_key(key)
        return self._nexthops.get((binding, (parsed.domain, parsed.port, parsed.bracketed)))

    def notes(self, binding: str, key: str) -> tuple[PostfixWarning, ...]:
        """Every loss of the answer to ``key`` through ``binding``: the mapping's
        warnings, the next-hop notes and Postfix's behaviour at the level
        (:func:`behaviour_notes`).  Raises for a malformed key or unknown binding."""
        if binding not in self._bindings:
            raise UnknownBindingError(f"unknown binding {binding!r}")
        parsed = parse_postfix_key(key)
        policy, warnings, extra = self._compute(binding, key, parsed)
        return (*warnings, *extra, *behaviour_notes(policy, binding=binding, key=key))

    def _compute(self, binding: str, key: str, parsed: PostfixKey
                 ) -> tuple[PostfixPolicy, tuple[PostfixWarning, ...],
                            tuple[PostfixWarning, ...]]:
        answer = self._nexthops.get((binding, (parsed.domain, parsed.port, parsed.bracketed)))
        if answer is not None:
            policy, warnings = map_values(answer.values, answer.sources, binding=binding,
                                          key=key, fallback_exists=self._fallback_exists,
                                          postfix_version=self.postfix_version,
                                          match=answer.match or VERIFY_MATCH)
            return policy, warnings, answer.notes
        values, sources = self.resolver.effective(parsed.domain, binding)
        policy, warnings = map_values(values, sources, binding=binding, key=key,
                                      fallback_exists=self._fallback_exists,
                                      postfix_version=self.postfix_version)
        extra: tuple[PostfixWarning, ...] = ()
        if parsed.bracketed or parsed.port is not None:
            extra = (PostfixWarning(
                binding, key, "domain", "no transport route names this next hop: answered "
                "with the host's own policy, not that of the domains routed through it "
                "(give serve the transport table)", None, "nexthop-unattributed"),)
            if parsed.is_ip and policy.level is PostfixLevel.VERIFY:
                extra += (PostfixWarning(
                    binding, key, "tls_verify", f"match={VERIFY_MATCH} at an address next hop "
                    "compares the address with the certificate's names, so a verified "
                    "delivery defers unless the certificate names the address (stricter)",
                    None, "nexthop-match"),)
        return policy, warnings, extra

    def __call__(self, map_name: str, key: str) -> SocketmapReply:
        memo_key = (map_name, key)
        reply = self._answers.get(memo_key)
        if reply is None:
            reply = self._answer(map_name, key)
            if self._memo_size and len(key) <= _MEMO_KEY_CHARS:
                answers = self._answers
                if len(answers) >= self._memo_size:
                    # Oldest first; a concurrent caller may have emptied it already.
                    with contextlib.suppress(KeyError):
                        answers.popitem(last=False)
                answers[memo_key] = reply
        return reply

    def _warn_unattributed(self, map_name: str, key: str) -> None:
        self.unattributed_count += 1
        if len(self._unattributed) < MAX_UNATTRIBUTED_WARNINGS and key not in self._unattributed:
            self._unattributed.add(key)
            log.warning("socketmap: next hop %r (map %r) is named by no transport route: "
                        "answered with the host's own policy, not that of the domains routed "
                        "through it", key, map_name)

    def _answer(self, map_name: str, key: str) -> SocketmapReply:
        if map_name not in self._bindings:
            return SocketmapReply.perm(
                f"unknown binding {map_name!r} (declared: {', '.join(sorted(self._bindings))})"
                [:1000])
        try:
            parsed = parse_postfix_key(key)
        except PostfixKeyError as exc:
            return SocketmapReply.perm(f"malformed key: {exc}")
        if parsed.parent:
            return SocketmapReply.notfound()
        hop = (parsed.domain, parsed.port, parsed.bracketed)
        if self._nexthops:
            answer = self._nexthops.get((map_name, hop))
            if answer is not None:
                try:
                    policy, _w = map_values(answer.values, answer.sources, binding=map_name,
                                            key=key, fallback_exists=self._fallback_exists,
                                            postfix_version=self.postfix_version,
                                            match=answer.match or VERIFY_MATCH)
                except PostfixMappingError as exc:
                    return SocketmapReply.perm(str(exc))
                if answer.match is None and policy.level is PostfixLevel.VERIFY:
                    return SocketmapReply.perm(
                        f"next hop {key} carries several domains and needs a verified "
                        "level: no match= list is never weaker for all of them")
                return SocketmapReply.ok(policy.text())
        if parsed.bracketed or parsed.port is not None:
            self._warn_unattributed(map_name, key)
        # The values alone decide the answer: the sources are made only on a miss.
        values_key = self.resolver.effective_values(parsed.domain, map_name)
        reply = self._by_values.get(values_key)
        if reply is not None:
            return reply
        values, sources = self.resolver.effective(parsed.domain, map_name)
        try:
            policy, _warnings = map_values(values, sources, binding=map_name, key=parsed.domain,
                                           fallback_exists=self._fallback_exists,
                                           postfix_version=self.postfix_version)
            reply = SocketmapReply.ok(policy.text())
        except PostfixMappingError as exc:
            # The message names the offending value only, so it too depends on the
            # values alone; keep it out of the memo all the same (errors are rare).
            return SocketmapReply.perm(str(exc))
        if self._memo_size:
            if len(self._by_values) >= self._memo_size:
                self._by_values.clear()
            self._by_values[values_key] = reply
        return reply


def parse_postfix_version(text: str) -> PostfixVersion:
    """``3.7.11`` (``postconf -h mail_version``) as numbers; a located error when it is not."""
    parts = text.strip().split(".")
    if len(parts) < 2 or not all(part.isdigit() for part in parts):
        raise InvalidValueError(f"not a Postfix version: {text!r} (expected e.g. 3.7.11)",
                                Location(option="postfix-version"), value=text,
                                has_value=True)
    return tuple(int(part) for part in parts)
