"""Compare two configurations decision by decision and class every change.

The probes are every binding declared in either configuration (plus the
implicit ``default``) crossed with every domain named in either: exact and
IP-literal stanza names, generated names for each regex stanza and regex
floor (below), and one name that no stanza matches, so the per-binding
default is compared too.

For each regex, names are built from the pattern's literal parts (bare, under
another label, before another ending) and, failing those, as ``mail.`` under
the exact stanza names it matches.  The first is always probed; so is a name
the regex *decides*: in every container where it is declared, no exact stanza
and no earlier regex matching the name sets an option it sets (for floors: no
other floor), preferring a name that no other stanza matches at all.  For a
regex that changed (options, container or place in the order), up to eight
more names it shares with other regexes are probed, each matched by a
different set of them.  A changed regex for which no name it decides can be
built is a review item naming it.  This guarantees a probe where every option
of each regex takes effect, or a review; it cannot guarantee a probe in every
overlap of regex languages (they are not intersected), so a change that only
shows for names several regexes match, none of them generated, can be missed.

Each probe is resolved with both configurations (no MX host, no destination
inputs) and each facet of the two decisions is compared:

========================  ==================================================
facet                     class of a change
========================  ==================================================
tls                       ``no < ifavailable < required``: lower is a downgrade
verification              ``no < optional < ca < host``: lower is a downgrade
fallback                  on is weaker than off
mta-sts, dane             turned off (``use_*`` or ``enable_*``) is a downgrade
tls_protocols             a newly allowed version older than the newest one
                          allowed before is a downgrade; dropping an older
                          version is an upgrade
tls_ca, tls_ciphers,      any change needs review (a different CA bundle or
tlsv13_ciphersuites,      cipher string can be stronger or weaker)
tls_engine
client certificate/key    cancelled (``none``) needs review; added is neutral
========================  ==================================================

A facet that cannot matter for a probe (TLS parameters when neither side
ever attempts TLS: ``tls = no`` with MTA-STS and DANE off) is reported as
neutral with a note, never as a downgrade.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Any, Final, overload

import attrs

from .decision import Decision
from .names import DomainKind, DomainName, DomainPattern, DomainPatternSet
from .options import Options, Tls, TlsVersion
from .outcomes import Verification
from .resolver import Resolver
from .scopes import Config, DomainScope, FloorScope
from .scopes.probes import containers, probe_domains, regex_example, regex_examples

__all__ = [
    "Change",
    "ChangeClass",
    "ConfigDiff",
    "Probe",
    "diff_configs",
    "format_diff",
    "regex_example",
    "regex_examples",
]


class ChangeClass(enum.Enum):
    """How a change of decision affects security."""

    DOWNGRADE = "downgrade"
    """Some delivery is less strict than before."""
    REVIEW = "review"
    """Cannot be ranked automatically (a different CA bundle, cipher string, regex)."""
    UPGRADE = "upgrade"
    """Some delivery is stricter than before."""
    NEUTRAL = "neutral"
    """A change without a security direction, or one that cannot take effect."""


_CLASS_ORDER: Final = (ChangeClass.DOWNGRADE, ChangeClass.REVIEW, ChangeClass.UPGRADE,
                       ChangeClass.NEUTRAL)


@attrs.frozen(slots=True)
class Probe:
    """One (binding, domain) request compared; ``origin`` says why the domain was chosen."""

    binding: str
    domain: str
    origin: str


@attrs.frozen(slots=True)
class Change:
    """One facet of one probe's decision that differs between the configurations.

    ``probe`` is ``None`` for findings about the configuration itself (a
    binding that exists on one side only, a regex without a probe name).
    ``old_source`` / ``new_source`` say which scopes supplied the values.
    """

    cls: ChangeClass
    facet: str
    old: str
    new: str
    probe: Probe | None = None
    old_source: str | None = None
    new_source: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain builtins for ``--json``."""
        return {
            "class": self.cls.value,
            "facet": self.facet,
            "binding": self.probe.binding if self.probe else None,
            "domain": self.probe.domain if self.probe else None,
            "domain_origin": self.probe.origin if self.probe else None,
            "old": self.old,
            "new": self.new,
            "old_source": self.old_source,
            "new_source": self.new_source,
            "note": self.note,
        }


@attrs.frozen(slots=True)
class ConfigDiff:
    """Every change found, and the probes that were compared."""

    changes: tuple[Change, ...]
    probes: Sequence[Probe]

    def count(self, cls: ChangeClass) -> int:
        """How many changes are of class ``cls``."""
        return sum(1 for c in self.changes if c.cls is cls)

    def of(self, cls: ChangeClass) -> tuple[Change, ...]:
        """The changes of class ``cls``."""
        return tuple(c for c in self.changes if c.cls is cls)

    def to_dict(self) -> dict[str, Any]:
        """Plain builtins for ``--json``: summary counts, changes, probes."""
        return {
            "summary": {cls.value: self.count(cls) for cls in _CLASS_ORDER},
            "changes": [c.to_dict() for c in self.changes],
            "probes": [attrs.asdict(p) for p in self.probes],
        }



# ------------------------------------------------------------------ comparing

_VERIFY_RANK: Final = {Verification.NO: 0, Verification.OPTIONAL: 1, Verification.CA: 2,
                       Verification.HOST: 3, Verification.DANE: 4}


def _sts_on(d: Decision) -> bool:
    return bool(d.effective["use_mta_sts"]) and bool(d.effective["enable_mta_sts"])


def _dane_on(d: Decision) -> bool:
    return bool(d.effective["use_dane"]) and bool(d.effective["enable_dane"])


def _tls_possible(d: Decision) -> bool:
    return d.tls is not Tls.NO or _sts_on(d) or _dane_on(d)


def _ranked(old: int, new: int) -> ChangeClass:
    if new < old:
        return ChangeClass.DOWNGRADE
    return ChangeClass.UPGRADE if new > old else ChangeClass.NEUTRAL


def _protocols_class(old: frozenset[TlsVersion], new: frozenset[TlsVersion]) -> ChangeClass:
    order = list(TlsVersion)
    rank = order.index
    added, removed = new - old, old - new
    if old and any(rank(v) < max(map(rank, old)) for v in added):
        return ChangeClass.DOWNGRADE
    if new and any(rank(v) < max(map(rank, new)) for v in removed):
        return ChangeClass.UPGRADE
    return ChangeClass.NEUTRAL


def _show(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, frozenset):
        return ",".join(v.value for v in TlsVersion if v in value) or "none"
    return str(value)


_INACTIVE: Final = ("inactive: neither side ever attempts TLS here (tls = no, MTA-STS and "
                    "DANE off)")


def _facets(probe: Probe, old: Decision, new: Decision) -> list[Change]:
    changes: list[Change] = []
    live = _tls_possible(old) or _tls_possible(new)

    def src(d: Decision, *options: str) -> str:
        return ", ".join(f"{o} from {d.explanation[o]}" if len(options) > 1
                         else str(d.explanation[o]) for o in options)

    def add(facet: str, cls: ChangeClass, o: object, n: object, options: Sequence[str],
            note: str | None = None, active: bool = True) -> None:
        if not active:
            cls, note = ChangeClass.NEUTRAL, _INACTIVE
        changes.append(Change(cls, facet, _show(o), _show(n), probe, src(old, *options),
                              src(new, *options), note))

    if old.tls is not new.tls:
        add("tls", _ranked(old.tls.rank, new.tls.rank), old.tls, new.tls, ("tls",))
    if old.verification is not new.verification:
        add("verification", _ranked(_VERIFY_RANK[old.verification],
                                    _VERIFY_RANK[new.verification]),
            old.verification, new.verification, ("tls_verify",), active=live)
    if old.fallback != new.fallback:
        cls = ChangeClass.DOWNGRADE if new.fallback else ChangeClass.UPGRADE
        note = None
        if old.tls is Tls.REQUIRED and new.tls is Tls.REQUIRED:
            cls, note = ChangeClass.NEUTRAL, "no effect while tls = required on both sides"
        add("fallback", cls, old.fallback, new.fallback, ("tls_ifavailable_fallback",), note,
            active=live)
    for facet, on, options in (("mta-sts", _sts_on, ("use_mta_sts", "enable_mta_sts")),
                               ("dane", _dane_on, ("use_dane", "enable_dane"))):
        if on(old) != on(new):
            add(facet, ChangeClass.DOWNGRADE if on(old) else ChangeClass.UPGRADE,
                on(old), on(new), options)
    po, pn = old.parameters, new.parameters
    if po.protocols != pn.protocols:
        add("tls_protocols", _protocols_class(po.protocols, pn.protocols), po.protocols,
            pn.protocols, ("tls_protocols",), active=live)
    for facet, o, n in (("tls_ca", po.ca_file, pn.ca_file),
                        ("tls_ciphers", po.ciphers, pn.ciphers),
                        ("tlsv13_ciphersuites", po.tls13_ciphersuites, pn.tls13_ciphersuites),
                        ("tls_engine", po.engine, pn.engine)):
        if o != n:
            add(facet, ChangeClass.REVIEW, o, n, (facet,), active=live)
    for facet, o, n in (("tls_certificate", po.certificate_file, pn.certificate_file),
                        ("tls_key", po.key_file, pn.key_file)):
        if o != n:
            if n is None:
                cls, note = ChangeClass.REVIEW, "client certificate cancelled"
            elif o is None:
                cls, note = ChangeClass.NEUTRAL, "client certificate added"
            else:
                cls, note = ChangeClass.REVIEW, None
            add(facet, cls, o, n, (facet,), note, active=live)
    return changes


Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` while pairs are compared."""


class _ProbeGrid(Sequence[Probe]):
    """Every (binding, domain) probe, made on demand: a large diff holds no list of them."""

    def __init__(self, bindings: Sequence[str], domains: Sequence[tuple[str, str]]) -> None:
        self._bindings = tuple(bindings)
        self._domains = tuple(domains)

    def __len__(self) -> int:
        return len(self._bindings) * len(self._domains)

    @overload
    def __getitem__(self, index: int) -> Probe: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Probe]: ...

    def __getitem__(self, index: int | slice) -> Probe | Sequence[Probe]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        b, d = divmod(index, len(self._domains))
        domain, origin = self._domains[d]
        return Probe(self._bindings[b], domain, origin)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self._bindings, self._domains))


def diff_configs(old: Config, new: Config, *, exhaustive: bool = False,
                 progress: Progress | None = None) -> ConfigDiff:
    """Compare ``old`` and ``new`` over every probe; see the module docs for the classes.

    Only the (binding, domain) pairs whose scope chain touches a scope that
    differs between the two are resolved (every other pair has the same
    decision on both sides), and pairs whose chains are made of the same
    scopes on both sides are compared once.  ``exhaustive`` resolves every
    probe instead (the reference the fast path is tested against).
    ``progress`` is called now and then with ``(pairs done, pairs to do)``.
    """
    old_r, new_r = Resolver(old), Resolver(new)
    bindings = list(old_r.bindings)
    bindings.extend(b for b in new_r.bindings if b not in bindings)
    domains, unprobed = probe_domains(old, new)
    changes = [Change(ChangeClass.REVIEW, "regex", u.old, u.new, note=u.note) for u in unprobed]
    common: list[str] = []
    for binding in bindings:
        in_old, in_new = binding in old_r.bindings, binding in new_r.bindings
        if not (in_old and in_new):
            changes.append(Change(
                ChangeClass.REVIEW, "binding", "declared" if in_old else "not declared",
                "declared" if in_new else "not declared",
                Probe(binding, "*", "every domain"),
                note=("mail assigned to this binding is refused with an unknown-binding error"
                      if in_old else "a new binding: check its decisions with "
                      "'tlspolicy resolve' or an expectation file")))
            continue
        common.append(binding)
    if exhaustive:
        touched: dict[str, list[int] | None] = {b: None for b in common}
    else:
        touched = _touched(old, new, old_r, new_r, common, domains)
    everything = range(len(domains))
    total = sum(len(domains) if v is None else len(v) for v in touched.values())
    done = 0
    for binding in common:
        indices = touched.get(binding, [])
        if indices is None:
            indices = everything  # type: ignore[assignment]
        assert indices is not None
        groups: dict[tuple[object, object], list[Change]] = {}
        for i in indices:
            domain, origin = domains[i]
            probe = Probe(binding, domain, origin)
            if not exhaustive:
                key = (old_r.chain_key(domain, binding), new_r.chain_key(domain, binding))
                found = groups.get(key)
                if found is not None:
                    # Same scopes on both sides: the same facets, for this probe.
                    changes.extend(attrs.evolve(c, probe=probe) for c in found)
                    done += 1
                    continue
            a = old_r.resolve(domain, binding)
            b = new_r.resolve(domain, binding)
            facets = _facets(probe, a, b)
            if not exhaustive:
                groups[key] = facets
            changes.extend(facets)
            done += 1
            if progress is not None and done % 2048 == 0:
                progress(done, total)
    if progress is not None:
        progress(done, total)
    changes.sort(key=lambda c: _CLASS_ORDER.index(c.cls))
    return ConfigDiff(tuple(changes), _ProbeGrid(common, domains))


def _options_of(config: Config) -> tuple[dict[str, tuple[str, Options]], dict[str, Options]]:
    """binding -> (group, options) and group -> options, the implicit ones included."""
    bindings = {b.name: (g, b.options) for g, b in config.iter_bindings()}
    groups = {g.name: g.options for g in config.binding_groups}
    return bindings, groups


def _changed_names(old: Sequence[DomainScope | FloorScope],
                   new: Sequence[DomainScope | FloorScope]) -> list[DomainName]:
    """Stanza names whose options differ (or that exist on one side), regex order included."""
    changed: list[DomainName] = []
    old_exact = {d.name: d.options for d in old if d.name.kind is not DomainKind.REGEX}
    new_exact = {d.name: d.options for d in new if d.name.kind is not DomainKind.REGEX}
    for name in old_exact.keys() | new_exact.keys():
        if old_exact.get(name) != new_exact.get(name):
            changed.append(name)
    old_rx = [(d.name, d.options) for d in old if d.name.kind is DomainKind.REGEX]
    new_rx = [(d.name, d.options) for d in new if d.name.kind is DomainKind.REGEX]
    if old_rx != new_rx:
        # First match wins among regexes, so everything from the first difference on
        # may decide differently.
        first = next((i for i, (a, b) in enumerate(zip(old_rx, new_rx, strict=False)) if a != b),
                     min(len(old_rx), len(new_rx)))
        changed.extend(n for n, _o in old_rx[first:])
        changed.extend(n for n, _o in new_rx[first:])
    return changed


def _touched(old: Config, new: Config, old_r: Resolver, new_r: Resolver,
             common: Sequence[str], domains: Sequence[tuple[str, str]]
             ) -> dict[str, list[int] | None]:
    """For each binding, the probe domains (indices) whose chain touches a changed scope;
    ``None`` means every domain."""
    every: set[str] = set()
    some: dict[str, set[int]] = {}
    if old.effective_compatibility != new.effective_compatibility or old.options != new.options:
        return {b: None for b in common}
    old_b, old_g = _options_of(old)
    new_b, new_g = _options_of(new)
    for binding in common:
        og, ng = old_r.binding_group_of(binding), new_r.binding_group_of(binding)
        if (og != ng or old_b.get(binding, (og, Options()))[1]
                != new_b.get(binding, (ng, Options()))[1]
                or old_g.get(og, Options()) != new_g.get(ng, Options())):
            every.add(binding)
    index = {name: i for i, (name, _origin) in enumerate(domains)}

    def matching(names: Sequence[DomainName]) -> set[int]:
        found: set[int] = set()
        regexes: dict[str, DomainPattern] = {}
        for name in names:
            if name.regex is not None:
                regexes.setdefault(name.key, name.regex)
            elif name.key in index:
                found.add(index[name.key])
        if regexes:
            # One pass of all the changed patterns over each probe name.
            together = DomainPatternSet(list(regexes.values()))
            found.update(i for i, (d, _o) in enumerate(domains) if together.matching(d))
        return found

    old_c, new_c = containers(old), containers(new)
    for container in old_c.keys() | new_c.keys():
        names = _changed_names(old_c.get(container, ()), new_c.get(container, ()))
        if not names:
            continue
        hit = matching(names)
        kind, name = container
        for binding in common:
            if binding in every:
                continue
            if (kind == "global" or (kind == "binding" and binding == name) or (
                    kind == "group" and name in (old_r.binding_group_of(binding),
                                                 new_r.binding_group_of(binding)))):
                some.setdefault(binding, set()).update(hit)
    floors = matching(_changed_names(old.floors, new.floors))
    if floors:
        for binding in common:
            some.setdefault(binding, set()).update(floors)
    return {b: None if b in every else sorted(some.get(b, ())) for b in common}


def format_diff(result: ConfigDiff, *, old_name: str = "old", new_name: str = "new",
                max_probes: int = 6) -> str:
    """A readable report: identical changes grouped, downgrades first, then a summary."""
    lines = [f"comparing {old_name} -> {new_name}: {len(result.probes)} binding x domain "
             "decisions"]
    groups: dict[tuple[Any, ...], list[Change]] = {}
    for c in result.changes:
        key = (c.cls, c.facet, c.old, c.new, c.old_source, c.new_source, c.note)
        groups.setdefault(key, []).append(c)
    for (cls, facet, o, n, os_, ns, note), members in groups.items():
        lines.append("")
        lines.append(f"{cls.value.upper():<9} {facet}: {o} -> {n}")
        if os_ is not None or ns is not None:
            lines.append(f"          old from: {os_}")
            lines.append(f"          new from: {ns}")
        if note:
            lines.append(f"          note: {note}")
        shown = [m.probe for m in members if m.probe is not None]
        if shown:
            where = ", ".join(f'binding "{p.binding}" -> {p.domain}' for p in shown[:max_probes])
            more = f" and {len(shown) - max_probes} more" if len(shown) > max_probes else ""
            lines.append(f"          for: {where}{more}")
    lines.append("")
    summary = ", ".join(f"{result.count(cls)} {cls.value}{'s' if result.count(cls) != 1 else ''}"
                        for cls in _CLASS_ORDER)
    lines.append(f"{summary}" if result.changes else "no decision changed")
    return "\n".join(lines) + "\n"
