"""Static Postfix tables: every binding's policy as ``smtp_tls_policy_maps`` entries.

A Momentum binding corresponds to a Postfix transport (a ``master.cf`` service with its
own ``-o smtp_tls_policy_maps=...``).  For every binding and stanza this module computes
the answer through :func:`~tlspolicy.postfix.mapping.map_values` and reports, per entry,
every part of the policy Postfix cannot express (:func:`postfix_entries`), and writes
the tables (:func:`render_policy_table`, :func:`render_pcre_table`,
:func:`render_warnings`).  Pure: the command line writes the text to files.
"""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

import attrs

from ..decision import Source
from ..errors import (
    Location,
    UnknownBindingError,
)
from ..floors import FloorExportError, plan_floor_writes
from ..names import DomainKind, DomainName, unicode_form
from ..options import (
    OPTION_SPECS,
    CompatVersion,
    Options,
    ScopeKind,
    TlsProtocols,
)
from ..resolver import Resolver
from ..resolver.floors import protocols_of, raise_to_floors
from ..scopes import DEFAULT_NAME, BindingScope, Config, DomainScope
from ..scopes.models import floor_path, scope_path
from ..scopes.stanzas import iter_stanzas
from .levels import (
    PostfixMappingError,
    PostfixPolicy,
    PostfixWarning,
)
from .mapping import (
    map_values,
)
from .pcre import disjoint, pcre_difference, pcre_pattern

_FALLBACK_SINCE: Final = CompatVersion((4, 1))

__all__ = [
    "PCRE_LOSS",
    "STARTTLS_STATUS_FILTER",
    "UNORDERED_OPTIONS",
    "EntryKind",
    "PostfixEntry",
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

_PARENT_KEYS_COMMENT: Final = ("# Postfix looks up a name's parent domains too (.parent); "
                                "regex stanzas match whole names only.")
#: The loss code of a regex entry left out of the pcre table: Postfix's PCRE would read
#: its pattern otherwise (see :func:`~tlspolicy.postfix.pcre.pcre_difference`).
PCRE_LOSS: Final = "pcre-differs"
#: Options without a strictness order: entries that combine values cannot take the
#: strictest of them.
UNORDERED_OPTIONS: Final = ("tls_ca", "tls_certificate", "tls_key", "tls_ciphers",
                            "tlsv13_ciphersuites", "tls_engine")



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
    base = _base_layers(config, name, group_name, b_opts, g_opts)
    entries: list[PostfixEntry] = []
    warnings: list[PostfixWarning] = []

    def mapped(values: Mapping[str, object], sources: Mapping[str, Source], key: str | None
               ) -> tuple[PostfixPolicy, tuple[PostfixWarning, ...]]:
        try:
            return map_values(values, sources, binding=name, key=key,
                              fallback_exists=fallback_exists)
        except PostfixMappingError as exc:  # said with the entry it concerns
            where = "default (no entry)" if key is None else key
            raise PostfixMappingError(f'binding "{name}" > {where}: {exc}') from None

    values, sources = _chain([*base, (config.options, "global")])
    policy, found = mapped(values, sources, None)
    entries.append(PostfixEntry(name, EntryKind.DEFAULT, None, policy, "no domain stanza"))
    warnings.extend(found)

    # Floors (SEMANTICS 7): exact names get the resolver's raised values below; a
    # regex floor is written as a pcre line ahead of the others, never weaker.
    floor_lines = _floor_regex_lines(config, name, stanzas)
    first: list[tuple[str, tuple[dict[str, object], dict[str, Source]]]] = []
    for floor_name, floor_opts, floor_source in floor_lines:
        why = pcre_difference(floor_name.key)
        if why is not None:
            # Postfix would match other names than the floor does: no line is never
            # weaker, and a floor is not left out (SEMANTICS 7).
            raise FloorExportError(
                f"a Postfix pcre table would read this regex floor otherwise: {why}; "
                "rewrite the pattern, or serve Postfix from the socketmap",
                Location(scope=floor_source, option="name"))
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
        f_values, f_sources = _chain(f_layers)
        # The floor raises the chain (a floor the plan does not write comes with no
        # options of its own: its line is the chain's values raised to it).
        raise_to_floors(f_values, f_sources,
                        tuple(f for f in config.floors if f.name == floor_name))
        first.append((floor_name.key, (f_values, f_sources)))
    # Postfix answers a name with the first pcre line that matches: a floor's, for a name
    # another regex floor or stanza matches too, where tlspolicy gives that one's values
    # raised by every floor matching.  Whether two patterns share a name is not decided,
    # so each floor line takes each ordered option at its strictest over the other floors
    # and the regex stanzas (but those whose literal endings show they cannot: disjoint).
    others = [(floor_path(n.text), key, chained)
              for (n, _o, _s), (key, chained) in zip(floor_lines, first, strict=True)]
    for path, stanza in stanzas:
        if stanza.name.kind is DomainKind.REGEX and not stanza.options.is_empty():
            spath, chained = _regex_chain(config, path, stanza, base, stanzas)
            others.append((spath, stanza.name.key, chained))
    floored = {n for n, _o, _s in floor_lines}
    regex_lines = len(floor_lines) + sum(
        1 for _p, d in stanzas if d.name.kind is DomainKind.REGEX
        and not d.options.is_empty() and d.name not in floored)
    for index, ((floor_name, _opts, floor_source), (f_pattern, chained)) in enumerate(zip(
            floor_lines, first, strict=True)):
        values, sources = dict(chained[0]), dict(chained[1])
        f_key = f"/{floor_name.key}/"
        raisers, differing = [], []
        # Every other line counts, a stanza of this floor's own pattern in another scope
        # too; only the floor itself is left out.
        for o_index, (o_source, o_pattern, (o_values, o_sources)) in enumerate(others):
            if o_index == index or disjoint(o_pattern, f_pattern):
                continue
            if _raise_to(values, sources, o_values, o_sources):
                raisers.append(o_source)
            if any(o_values[n] != values[n] for n in UNORDERED_OPTIONS):
                differing.append(o_source)
        if raisers:
            warnings.append(PostfixWarning(
                name, f_key, "domain", f"raised to the values of {', '.join(raisers)}, which "
                "may match names this floor matches (Postfix takes the first matching pcre "
                "line): a name only the floor matches gets a stricter answer", floor_source))
        if differing:
            warnings.append(PostfixWarning(
                name, f_key, "tls_ca", f"{', '.join(differing)} may match names this floor "
                "matches and set another CA file, certificate or ciphers, which a name "
                "matching both gets from tlspolicy; Postfix answers it with this line's",
                floor_source))
        policy, found = mapped(values, sources, f_key)
        entries.append(PostfixEntry(name, EntryKind.REGEX, f_key, policy, floor_source))
        for f in config.floors:
            if f.name == floor_name and f.expires is not None:
                warnings.append(_expiry_note(name, f_key, f.expires.isoformat(), floor_source))
        warnings.extend(found)
        warnings.extend(_regex_notes(name, f_key, floor_name, floor_source, regex_lines))
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
        policy, found = mapped(values, sources, key)
        origin = (scope_path(*path, (ScopeKind.DOMAIN, stanza.name.text))
                  if (path, stanza) in stanzas else floor_path(stanza.name.text))
        entries.append(PostfixEntry(name, EntryKind.EXACT, key, policy, origin))
        unicode_key = unicode_form(key)
        if unicode_key is not None and unicode_key not in seen:
            # Postfix looks up a domain as the address spells it: in UTF-8 for an
            # SMTPUTF8 address, so the name's U-label form gets the same answer.
            seen.add(unicode_key)
            entries.append(PostfixEntry(name, EntryKind.EXACT, unicode_key, policy, origin))
        warnings.extend(_expiry_notes(config, name, key, resolver))
        warnings.extend(found)

    contributing = [r for r in regexes if not r[1].options.is_empty()]
    written: set[DomainName] = set(floor_patterns)
    for path, stanza in contributing:
        if stanza.name in written:
            # Written (raised) ahead of the other pcre lines above, or one line already
            # stands for every stanza of this pattern (Postfix reads the first only).
            continue
        written.add(stanza.name)
        key = f"/{stanza.name.key}/"
        spath, (values, sources) = _regex_chain(config, path, stanza, base, stanzas)
        policy, found = mapped(values, sources, key)
        entries.append(PostfixEntry(name, EntryKind.REGEX, key, policy, spath))
        warnings.extend(found)
        if stanza.expires is not None:
            warnings.append(_expiry_note(name, key, stanza.expires.isoformat(), spath))
        warnings.extend(_regex_notes(name, key, stanza.name, spath, len(contributing)))
    return tuple(entries), tuple(warnings)


def _base_layers(config: Config, binding: str, group_name: str, b_opts: Options,
                 g_opts: Options) -> list[tuple[Options, str]]:
    """The binding's and its group's options with their scope paths, in chain order."""
    return [(b_opts, scope_path(*_group_prefix(config, binding), (ScopeKind.BINDING, binding))),
            (g_opts, scope_path((ScopeKind.BINDING_GROUP, group_name)))]


def _regex_chain(config: Config, path: tuple[tuple[ScopeKind, str], ...],
                 stanza: DomainScope, base: list[tuple[Options, str]],
                 stanzas: Sequence[tuple[tuple[tuple[ScopeKind, str], ...], DomainScope]] = ()
                 ) -> tuple[str, tuple[dict[str, object], dict[str, Source]]]:
    """A regex stanza's path and the values of a name only its pattern matches: each
    stanza of ``stanzas`` (the binding's, in chain order) with that pattern in its place
    in the chain (inside its binding or group, else after them), then global."""
    spath = scope_path(*path, (ScopeKind.DOMAIN, stanza.name.text))
    same = [(p, d) for p, d in stanzas if d.name == stanza.name] or [(path, stanza)]
    layers: list[tuple[Options, str]] = [
        (d.options, scope_path(*p, (ScopeKind.DOMAIN, d.name.text))) for p, d in same if p]
    layers += base
    layers += [(d.options, scope_path(*p, (ScopeKind.DOMAIN, d.name.text)))
               for p, d in same if not p]
    layers.append((config.options, "global"))
    return spath, _chain(layers)


def _raise_to(values: dict[str, object], sources: dict[str, Source],
              other: dict[str, object], other_sources: dict[str, Source]) -> bool:
    """Raise the ordered options of ``values`` to ``other`` where it is stricter (tls and
    tls_verify up, fallback off, protocols to the intersection when it is not empty);
    returns whether anything was raised."""
    raised = False
    for option in ("tls", "tls_verify"):
        if other[option] > values[option]:  # type: ignore[operator]
            values[option], sources[option] = other[option], other_sources[option]
            raised = True
    if values["tls_ifavailable_fallback"] and not other["tls_ifavailable_fallback"]:
        values["tls_ifavailable_fallback"] = False
        sources["tls_ifavailable_fallback"] = other_sources["tls_ifavailable_fallback"]
        raised = True
    mine, theirs = values["tls_protocols"], other["tls_protocols"]
    assert isinstance(mine, TlsProtocols) and isinstance(theirs, TlsProtocols)
    both = mine.versions & theirs.versions
    if both and both != mine.versions:
        values["tls_protocols"] = protocols_of(both)
        sources["tls_protocols"] = other_sources["tls_protocols"]
        raised = True
    return raised


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


def _floor_regex_lines(config: Config, binding: str,
                       stanzas: Sequence[tuple[tuple[tuple[ScopeKind, str], ...],
                                               DomainScope]]
                       ) -> list[tuple[DomainName, Options, str]]:
    """The regex floors to write for ``binding``: pattern, raised options, floor path.

    Those the floor plan writes (:mod:`tlspolicy.floors`: the chain, merged option by
    option, does not meet them everywhere), and those it does not but a regex stanza
    line of the binding may answer first for a name they match: Postfix takes one line,
    where tlspolicy merges the stanzas, so a stanza line that leaves an option to the
    binding would answer below the floor.  Raises
    :class:`~tlspolicy.floors.FloorExportError` for a regex floor that no constant answer
    can carry.
    """
    if not any(f.name.kind is DomainKind.REGEX for f in config.floors):
        return []
    plan = dict(plan_floor_writes(config, what="a Postfix pcre table").regex.get(binding, ()))
    patterns = [d.name.key for _p, d in stanzas
                if d.name.kind is DomainKind.REGEX and not d.options.is_empty()]
    lines = []
    for floor in config.floors:
        name = floor.name
        if name.kind is not DomainKind.REGEX:
            continue
        if name in plan:
            lines.append((name, plan[name], floor_path(name.text)))
        elif any(p != name.key and not disjoint(p, name.key) for p in patterns):
            lines.append((name, Options(), floor_path(name.text)))
    return lines


def _group_prefix(config: Config, binding: str) -> tuple[tuple[ScopeKind, str], ...]:
    for g in config.binding_groups:
        if any(b.name == binding for b in g.bindings):
            return ((ScopeKind.BINDING_GROUP, g.name),)
    return ()


def _regex_notes(binding: str, key: str, name: DomainName, source: str,
                 count: int) -> list[PostfixWarning]:
    notes = []
    pattern = name.key
    why = pcre_difference(pattern)
    if why is not None:
        notes.append(PostfixWarning(binding, key, "domain", "a Postfix pcre table would read "
                                    f"this pattern otherwise ({why}), so the two would match "
                                    "different names: entry not written", source, PCRE_LOSS))
    if "xn--" in pattern:
        notes.append(PostfixWarning(binding, key, "domain", "the pattern names A-labels: "
                                    "Postfix may look up an SMTPUTF8 address's domain in "
                                    "UTF-8, which it does not match (the socketmap "
                                    "normalises every name)", source))
    if count > 1:
        notes.append(PostfixWarning(binding, key, "domain", "computed as if this were the only "
                                    "regex stanza matching: Postfix takes the first matching "
                                    "pcre line, tlspolicy merges matching stanzas option by "
                                    "option (use the socketmap for exact answers)", source))
    return notes


def _control_escaped(text: str) -> str:
    # A name in a comment line: a line break in it would start a table line of its own.
    return "".join(f"\\x{ord(c):02x}" if unicodedata.category(c) == "Cc" else c
                   for c in text)


def render_policy_table(entries: Iterable[PostfixEntry]) -> str:
    """The exact entries as a ``hash:``/``lmdb:`` table source (``key<TAB>policy``).

    The binding's default is written as a comment naming the ``main.cf`` /
    ``master.cf`` setting it corresponds to; regex entries go to
    :func:`render_pcre_table`.
    """
    lines: list[str] = []
    for entry in entries:
        if entry.kind is EntryKind.DEFAULT:
            lines.append(f'# binding "{_control_escaped(entry.binding)}": domains without '
                         f"an entry get {entry.policy.text()!r}")
            extra = (" with the attributes above as their smtp_tls_* settings"
                     if entry.policy.attributes else "")
            lines.append(f"#   (smtp_tls_security_level = {entry.policy.level.value}{extra} for "
                         "this transport, or use the socketmap, which answers every domain)")
        elif entry.kind is EntryKind.EXACT:
            assert entry.key is not None
            lines.append(f"{entry.key}\t{entry.policy.text()}")
    return "\n".join(lines) + "\n"


def render_pcre_table(entries: Iterable[PostfixEntry]) -> str:
    """The regex entries as a ``pcre:`` table source, in precedence order.

    Entries whose pattern Postfix would read otherwise are left out (each has a
    :data:`PCRE_LOSS` warning).  Postfix looks a name up, then its parent domains as
    ``.parent`` keys; a regex
    stanza matches whole names only, so the lines are inside ``if !/^\\./``.  A '$' in
    an answer is written '$$' (Postfix would substitute a match group for '$1').
    """
    patterns = [(e.key[1:-1], e) for e in entries
                if e.kind is EntryKind.REGEX and e.key is not None]
    lines = [f"/{pcre_pattern(p)}/\t{e.policy.text().replace('$', '$$')}"
             for p, e in patterns if pcre_difference(p) is None]
    if not lines:
        return ""
    return "\n".join([_PARENT_KEYS_COMMENT, "if !/^\\./", *lines, "endif"]) + "\n"


def render_warnings(warnings: Iterable[PostfixWarning]) -> str:
    """One line per warning (see :meth:`PostfixWarning.describe`)."""
    return "".join(f"{w.describe()}\n" for w in warnings)


