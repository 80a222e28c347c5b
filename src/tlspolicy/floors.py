"""Writing floors into formats that have none (SEMANTICS section 7, "never weaker").

``ecelerity.conf`` and Postfix tables cannot say "at least": every value a
floor raises has to be written where the chain alone is weaker.  This module
works out, purely from a configuration, what to write:

- for every name the configuration knows exactly (exact and IP-literal
  stanzas, exact floors) and every binding, the raised values wherever they
  differ from the chain's (written as a ``domain`` stanza inside the binding);
- for a regex floor and a binding, the values the chain can give a name the
  regex matches and no exact stanza names.  When the floor's value is the
  result for every such name (it is at the top of the strictness order, or
  every value the chain can give is weaker), it is written as a regex stanza
  placed before every other regex of the binding.  When some names would keep
  a stricter chain value and others need raising, no constant can be written
  and the export fails with a :class:`FloorExportError` naming the floor, the
  binding and the option.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs

from .errors import ConfigError, InvalidValueError, Location
from .names import DomainKind, DomainName
from .options import OPTION_SPECS, UNSET, Options, TlsProtocols
from .resolver import Resolver
from .scopes import DEFAULT_NAME, BindingScope, Config, DomainScope, FloorScope
from .scopes.models import floor_path
from .scopes.stanzas import iter_stanzas

__all__ = ["FloorExportError", "FloorWrites", "below", "floor_comments", "floor_protocol_errors",
           "plan_floor_writes", "regex_chain_values", "written_config"]


class FloorExportError(ConfigError):
    """A floor that a format without floors cannot carry without weakening a decision."""


def below(option: str, value: object, wanted: object) -> bool:
    """Whether ``value`` is weaker than the floor value ``wanted`` for ``option``."""
    if option in ("tls", "tls_verify"):
        return value < wanted  # type: ignore[operator,no-any-return]
    if option == "tls_ifavailable_fallback":
        return value is True and wanted is False
    if option == "tls_protocols":
        assert isinstance(value, TlsProtocols) and isinstance(wanted, TlsProtocols)
        return not value.versions <= wanted.versions
    return False


def _constant(option: str, value: object, wanted: object) -> bool:
    """Whether raising ``value`` to the floor ``wanted`` gives exactly ``wanted``."""
    if option in ("tls", "tls_verify"):
        return value <= wanted  # type: ignore[operator,no-any-return]
    if option == "tls_ifavailable_fallback":
        return True
    assert isinstance(value, TlsProtocols) and isinstance(wanted, TlsProtocols)
    return wanted.versions <= value.versions


def _containers(config: Config, binding: str, group: str
                ) -> tuple[tuple[DomainScope, ...], tuple[DomainScope, ...], Options, Options]:
    b_domains: tuple[DomainScope, ...] = ()
    b_options = Options()
    for _g, b in config.iter_bindings():
        if b.name == binding:
            b_domains, b_options = b.domains, b.options
    g_domains: tuple[DomainScope, ...] = ()
    g_options = Options()
    for g in config.binding_groups:
        if g.name == group:
            g_domains, g_options = g.domains, g.options
    return b_domains, g_domains, b_options, g_options


def regex_chain_values(config: Config, resolver: Resolver, binding: str, name: DomainName,
                       option: str) -> set[object]:
    """Every value the chain (no floors) can give ``option`` through ``binding`` for a
    name the regex ``name`` matches and no exact stanza names.

    Other regex stanzas may or may not match such a name, so their values are
    possible; a stanza with the same pattern matches every such name and ends
    the walk at its position, as a set binding or group option does.
    """
    b_domains, g_domains, b_options, g_options = _containers(
        config, binding, resolver.binding_group_of(binding))
    found: set[object] = set()

    def regexes(domains: tuple[DomainScope, ...]) -> bool:
        for d in domains:
            if d.name.kind is not DomainKind.REGEX:
                continue
            value = getattr(d.options, option)
            if value is UNSET:
                continue
            found.add(value)
            if d.name == name:
                return True
        return False

    def options(opts: Options) -> bool:
        value = getattr(opts, option)
        if value is UNSET:
            return False
        found.add(value)
        return True

    if (regexes(b_domains) or regexes(g_domains) or options(b_options)
            or options(g_options) or regexes(config.domains) or options(config.options)):
        return found
    found.add(OPTION_SPECS[option].default)
    return found


@attrs.frozen(slots=True)
class FloorWrites:
    """What to write so that a format without floors is never weaker.

    ``exact``: ``(binding, domain key) -> options`` for a ``domain`` stanza
    inside the binding (raised values only).  ``regex``: ``binding -> ((name,
    options), ...)`` regex stanzas to put before the binding's other regexes.
    ``sources``: for each write, the floors that caused it (for comments).
    """

    exact: dict[tuple[str, str], Options]
    regex: dict[str, tuple[tuple[DomainName, Options], ...]]
    sources: dict[tuple[str, str], tuple[str, ...]]

    def is_empty(self) -> bool:
        """True when the chain alone already meets every floor."""
        return not self.exact and not self.regex


def _exact_names(config: Config) -> Iterator[str]:
    seen: set[str] = set()
    for _path, s in iter_stanzas(config):
        if s.name.kind is not DomainKind.REGEX and s.name.key not in seen:
            seen.add(s.name.key)
            yield s.name.key


def _versions(value: object) -> frozenset[object]:
    assert isinstance(value, TlsProtocols)
    return frozenset(value.versions)


def floor_protocol_errors(config: Config) -> list[ConfigError]:
    """Floors whose ``tls_protocols`` leave a (binding, domain) no protocol version at all.

    Floors raise protocols to the intersection with the chain's value, so a
    floor ``+ALL:-SSLv2:-SSLv3:-TLSv1.0:-TLSv1.1`` meeting a binding's
    ``-ALL:+TLSv1.0`` would ask for TLS with no version to offer.  Judged for
    every binding: exactly for every name an exact floor or exact stanza gives
    that a floor matches (all the floors matching it together), and for a
    regex floor against every value the chain can give a name it matches.
    One error per floor, located at its scope path and option; empty when no
    floor sets ``tls_protocols``.
    """
    floors = [f for f in config.floors if f.options.tls_protocols is not UNSET]
    if not floors:
        return []
    plain = Resolver(attrs.evolve(config, floors=()), decision_cache_size=0)
    errors: dict[str, ConfigError] = {}

    def refuse(floor: FloorScope, detail: str) -> None:
        path = floor_path(floor.name.text)
        errors.setdefault(path, InvalidValueError(
            f"has no protocol version in common with {detail}: TLS would be attempted "
            "with no protocol version to offer; widen one of the two (the floor raises "
            "protocols to the intersection)", Location(scope=path, option="tls_protocols"),
            value=OPTION_SPECS["tls_protocols"].dump(floor.options.tls_protocols),
            has_value=True))

    for key in _exact_names(config):
        matching = [f for f in floors if f.name.matches(key)]
        if not matching:
            continue
        wanted = frozenset.intersection(*(_versions(f.options.tls_protocols)
                                          for f in matching))
        if not wanted:
            others = ", ".join(f.name.text for f in matching[1:])
            refuse(matching[0], f"the floor{'s' if len(matching) > 2 else ''} {others}, "
                                f"which also match{'es' if len(matching) == 2 else ''} {key}")
            continue
        for binding in plain.bindings:
            values, sources = plain.effective(key, binding)
            if not _versions(values["tls_protocols"]) & wanted:
                culprit = next((f for f in matching
                                if not _versions(f.options.tls_protocols)
                                & _versions(values["tls_protocols"])), matching[0])
                refuse(culprit, f"{sources['tls_protocols'].scope} "
                                f"({OPTION_SPECS['tls_protocols'].dump(values['tls_protocols'])})"
                                f" for {key} through binding {binding!r}")
                break
    for floor in floors:
        if floor.name.kind is not DomainKind.REGEX:
            continue
        wanted = _versions(floor.options.tls_protocols)
        for binding in plain.bindings:
            possible = regex_chain_values(config, plain, binding, floor.name, "tls_protocols")
            empty = sorted(str(OPTION_SPECS["tls_protocols"].dump(v)) for v in possible
                           if not _versions(v) & wanted)
            if empty:
                refuse(floor, f"the value {' or '.join(empty)} the chain can give a name it "
                              f"matches through binding {binding!r}")
                break
    return list(errors.values())


def plan_floor_writes(config: Config, *, what: str = "this format") -> FloorWrites:
    """Work out the writes for ``config``'s floors (see the module docs).

    Raises :class:`FloorExportError` for a regex floor value that no constant
    can carry through some binding.
    """
    if not config.floors:
        return FloorWrites({}, {}, {})
    floored = Resolver(config, decision_cache_size=0)
    plain = Resolver(attrs.evolve(config, floors=()), decision_cache_size=0)
    regex_writes: dict[str, list[tuple[DomainName, dict[str, object]]]] = {}
    sources: dict[tuple[str, str], tuple[str, ...]] = {}
    for floor in config.floors:
        if floor.name.kind is not DomainKind.REGEX:
            continue
        for binding in floored.bindings:
            wanted_options: dict[str, object] = {}
            for option, wanted in floor.options.items():
                values = regex_chain_values(config, plain, binding, floor.name, option)
                if not any(below(option, v, wanted) for v in values):
                    continue
                if all(_constant(option, v, wanted) for v in values):
                    wanted_options[option] = wanted
                    continue
                shown = ", ".join(sorted(str(OPTION_SPECS[option].dump(v)) for v in values))
                raise FloorExportError(
                    f"{what} cannot carry this regex floor: through binding {binding!r} the "
                    f"chain gives {option} one of {shown} for names it matches, so some need "
                    f"raising to {OPTION_SPECS[option].dump(wanted)!r} and others keep a "
                    "stricter value; no single regex entry says that (name the domains "
                    "concerned in exact floors, or use the socketmap, which applies floors "
                    "exactly)", Location(scope=floor_path(floor.name.text), option=option))
            if wanted_options:
                regex_writes.setdefault(binding, []).append((floor.name, wanted_options))
                sources[(binding, f"/{floor.name.key}/")] = (floor_path(floor.name.text),)
    for binding, writes in regex_writes.items():
        for i, (name, opts) in enumerate(writes):
            for other, other_opts in writes[i + 1:]:
                clash = [o for o in opts if o in other_opts and opts[o] != other_opts[o]]
                if clash:
                    raise FloorExportError(
                        f"{what} cannot order the regex floors {name.text} and "
                        f"{other.text} through binding {binding!r}: both must be written for "
                        f"{', '.join(clash)} with different values, and the first matching "
                        "regex wins", Location(scope=floor_path(name.text), option=clash[0]))
    exact: dict[tuple[str, str], Options] = {}
    for key in _exact_names(config):
        for binding in floored.bindings:
            before, _s = plain.effective(key, binding)
            after, after_sources = floored.effective(key, binding)
            prepended = [opts for name, opts in regex_writes.get(binding, ())
                         if name.matches(key)]
            raised: dict[str, object] = {}
            for option in ("tls", "tls_ifavailable_fallback", "tls_verify", "tls_protocols"):
                differs = before[option] != after[option]
                shadowed = any(option in opts and opts[option] != after[option]
                               for opts in prepended)
                if differs or shadowed:
                    raised[option] = after[option]
            protocols = raised.get("tls_protocols")
            if isinstance(protocols, TlsProtocols) and not protocols.versions:
                raise FloorExportError(
                    f"{what} cannot carry the floors for {key} through binding {binding!r}: "
                    "the chain's tls_protocols and the floors' allow no version in common",
                    Location(scope=str(after_sources["tls_protocols"].scope),
                             option="tls_protocols"))
            if raised:
                exact[(binding, key)] = Options(**raised)  # type: ignore[arg-type]
                sources[(binding, key)] = tuple(sorted({
                    str(after_sources[o].scope) for o in raised
                    if str(after_sources[o].scope).startswith("floor ")}))
    regex = {b: tuple((n, Options(**o)) for n, o in w)  # type: ignore[arg-type]
             for b, w in regex_writes.items()}
    return FloorWrites(exact, regex, sources)


def written_config(config: Config, writes: FloorWrites) -> Config:
    """``config`` without floors, with ``writes`` put into its bindings.

    The implicit ``default`` binding is declared when something must be
    written for it.  Read back, it gives every (binding, domain) at least the
    decision ``config`` gives, for every floor option.
    """
    per_binding: dict[str, list[tuple[str, Options]]] = {}
    for (binding, key), opts in writes.exact.items():
        per_binding.setdefault(binding, []).append((key, opts))

    def domains(binding: str, current: tuple[DomainScope, ...]) -> tuple[DomainScope, ...]:
        merged = list(current)
        front = []
        for name, opts in writes.regex.get(binding, ()):
            same = [i for i, d in enumerate(merged) if d.name == name]
            if not same:
                front.append(DomainScope(name, opts))
                continue
            # The binding already has a stanza with this pattern: raise it in place,
            # which is the same as writing it first only if no earlier regex of the
            # binding sets one of these options.
            at = same[0]
            earlier = [d for d in merged[:at] if d.name.kind is DomainKind.REGEX
                       and any(getattr(d.options, o) is not UNSET for o, _v in opts.items())]
            if earlier:
                raise FloorExportError(
                    f"cannot write the floor into binding {binding!r}: its own stanza "
                    f"{name.text} comes after {earlier[0].name.text}, which sets the same "
                    "options", Location(scope=floor_path(name.text)))
            merged[at] = attrs.evolve(merged[at], options=merged[at].options.overlay(opts))
        index = {d.name.key: i for i, d in enumerate(merged)
                 if d.name.kind is not DomainKind.REGEX}
        for key, opts in per_binding.get(binding, ()):
            if key in index:
                old = merged[index[key]]
                merged[index[key]] = attrs.evolve(old, options=old.options.overlay(opts))
            else:
                index[key] = len(merged)
                merged.append(DomainScope(DomainName.parse(key), opts))
        return (*front, *merged)

    groups = tuple(
        attrs.evolve(g, bindings=tuple(attrs.evolve(b, domains=domains(b.name, b.domains))
                                       for b in g.bindings))
        for g in config.binding_groups)
    bindings = [attrs.evolve(b, domains=domains(b.name, b.domains)) for b in config.bindings]
    declared = {b.name for _g, b in config.iter_bindings()}
    if DEFAULT_NAME not in declared and (DEFAULT_NAME in writes.regex or any(
            b == DEFAULT_NAME for b, _k in writes.exact)):
        bindings.append(BindingScope(DEFAULT_NAME, Options(), domains(DEFAULT_NAME, ())))
    return attrs.evolve(config, binding_groups=groups, bindings=tuple(bindings), floors=())



def floor_comments(config: Config, writes: FloorWrites) -> list[str]:
    """Comment lines saying where each floor was written (formats without floors)."""
    lines = []
    for floor in config.floors:
        path = floor_path(floor.name.text)
        where = sorted({f'binding "{b}" > domain "{k}"' for (b, k), src in
                        writes.sources.items() if path in src})
        reason = f" ({floor.reason})" if floor.reason else ""
        if where:
            lines.append(f"# {path}{reason}: raised values written into " + ", ".join(where))
        else:
            lines.append(f"# {path}{reason}: the chain alone already meets it everywhere")
    return lines
