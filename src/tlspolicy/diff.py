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
import importlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, overload

import attrs

from .decision import Decision
from .names import DomainKind, DomainName, DomainPattern, DomainPatternSet, normalise_domain
from .options import Options, ScopeKind, Tls, TlsVersion
from .outcomes import Verification
from .resolver import Resolver
from .scopes import Config, DomainScope, FloorScope
from .scopes.models import floor_path, scope_path

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


# ------------------------------------------------------------------ probe names

def _parser() -> Any:
    # The stdlib's regex parser is private (re._parser); a representative name is
    # a convenience, so any surprise there just means "review this regex by hand".
    return importlib.import_module("re._parser")


_LIMIT: Final = 12


def _alternatives(items: Any, p: Any) -> list[str]:
    results = [""]
    for op, arg in items:
        options = _element(op, arg, p)
        if not options:
            return []
        results = [a + b for a, b in itertools.product(results, options)][:_LIMIT]
    return results


def _element(op: Any, arg: Any, p: Any) -> list[str]:
    if op is p.LITERAL:
        return [chr(arg)]
    if op is p.NOT_LITERAL:
        return ["a" if chr(arg) != "a" else "b"]
    if op is p.ANY:
        return ["a"]
    if op is p.IN:
        return _class_member(arg, p)
    if op in (p.MAX_REPEAT, p.MIN_REPEAT, getattr(p, "POSSESSIVE_REPEAT", None)):
        low, _high, sub = arg
        inner = _alternatives(sub, p)
        if not inner:
            return [""] if low == 0 else []
        repeated = [s * max(low, 1) for s in inner]
        return [*repeated, ""] if low == 0 else repeated
    if op is p.SUBPATTERN:
        return _alternatives(arg[-1], p)
    if getattr(p, "ATOMIC_GROUP", None) is not None and op is p.ATOMIC_GROUP:
        return _alternatives(arg, p)
    if op is p.BRANCH:
        out: list[str] = []
        for alt in arg[1]:
            out.extend(_alternatives(alt, p))
        return out[:_LIMIT]
    if op in (p.AT, p.ASSERT, p.ASSERT_NOT):
        return [""]
    if op is p.CATEGORY:
        return _category(arg, p)
    return []


def _category(arg: Any, p: Any) -> list[str]:
    if arg is p.CATEGORY_DIGIT:
        return ["0"]
    if arg in (p.CATEGORY_WORD, p.CATEGORY_NOT_SPACE, p.CATEGORY_NOT_DIGIT):
        return ["a"]
    return []


def _class_member(items: Any, p: Any) -> list[str]:
    if items and items[0][0] is p.NEGATE:
        return ["a", "q", "0"]
    for op, arg in items:
        if op is p.LITERAL:
            return [chr(arg)]
        if op is p.RANGE:
            return [chr(arg[0])]
        if op is p.CATEGORY:
            found = _category(arg, p)
            if found:
                return found
    return []


def regex_example(pattern: str) -> str | None:
    """A normalised domain name that the ``/pattern/`` stanza matches, or ``None``.

    Built from the pattern's literal parts (the first branch that gives a
    valid name), tried bare and with a label added before or after, and kept
    only when the pattern (run by RE2, as the resolver does) really matches.
    The first of :func:`regex_examples`.
    """
    return next(regex_examples(pattern), None)


_MAX_EXAMPLES: Final = 48


def regex_examples(pattern: str) -> Iterator[str]:
    """Distinct normalised names that the ``/pattern/`` stanza matches, most literal first.

    :func:`regex_example`'s candidates first, then the same literal parts
    under other labels (``q9z.``) and before other endings (``.q9z``), so that
    a name can be found that another stanza does not claim.  At most
    :data:`_MAX_EXAMPLES`; nothing when no name can be built.
    """
    try:
        compiled = DomainPattern(pattern)
        p = _parser()
        cores = _alternatives(p.parse(pattern), p)
    except Exception:  # a private parser: any failure means "no example"
        return
    seen: set[str] = set()

    def found(candidates: Iterator[str] | tuple[str, ...]) -> Iterator[str]:
        for candidate in candidates:
            try:
                name = normalise_domain(candidate)
            except ValueError:
                continue
            if name not in seen and compiled.search(name):
                seen.add(name)
                yield name

    lowered = [core.lower() for core in cores]
    for core in lowered:
        head = "mail" + core if core.startswith(".") else "mail." + core
        # A pattern for A-labels needs a valid one: "xn--" + a Punycode payload.
        tail = "mnchen-3ya" if core.endswith("xn--") else "a"
        yield from found((core, _tail(core), head, _tail(head), core + tail))
    for core in lowered:
        heads = (core, "q9z" + core if core.startswith(".") else "q9z." + core)
        more = (f"{h}{t}" for h in heads
                for t in ("q9z" if h.endswith(".") else ".q9z", "q9z", "-q9z"))
        yield from found((heads[1], *more))
        if len(seen) >= _MAX_EXAMPLES:
            return


def _tail(text: str) -> str:
    return text + "example" if text.endswith(".") else text + ".example"


_DEFAULT_CANDIDATES: Final = ("unlisted.invalid", "no-stanza.invalid", "q.q", "zz9.zz9", "x",
                              "[203.0.113.254]")


def _all_domains(config: Config) -> Iterator[tuple[str, DomainScope]]:
    for d in config.domains:
        yield "global", d
    for g in config.binding_groups:
        gp = (ScopeKind.BINDING_GROUP, g.name)
        for d in g.domains:
            yield scope_path(gp), d
        for b in g.bindings:
            for d in b.domains:
                yield scope_path(gp, (ScopeKind.BINDING, b.name)), d
    for b in config.bindings:
        for d in b.domains:
            yield scope_path((ScopeKind.BINDING, b.name)), d
    for f in config.floors:
        # A floor's name is probed like a stanza's (its own DomainScope, for the walk).
        yield floor_path(f.name.text), DomainScope(f.name, f.options)


@attrs.frozen(slots=True)
class _Place:
    """One declaration of a regex stanza or floor, and what can claim a name before it.

    ``order``: every regex of the container, its position and the options it
    sets; the ones declared before this one (for floors: every other one,
    since all floors apply) and the exact and IP-literal stanzas (or floors)
    of the container, ``exact``, can claim a name's options first.
    """

    key: str
    sets: frozenset[str]
    order: dict[str, tuple[int, frozenset[str]]]
    exact: dict[str, frozenset[str]]
    floor: bool

    def decides(self, name: str, matched: frozenset[str]) -> bool:
        """Whether every option this declaration sets takes effect for ``name``."""
        claimed: set[str] = set(self.exact.get(name, ()))
        mine = self.order[self.key][0]
        for key in matched:
            place = self.order.get(key)
            if place is not None and key != self.key and (self.floor or place[0] < mine):
                claimed |= place[1]
        return not (self.sets & claimed)


def _places(config: Config) -> Iterator[tuple[str, tuple[object, ...], _Place]]:
    """(pattern, what the declaration is, where it can be claimed) for every regex."""
    containers: dict[tuple[str, str], Sequence[DomainScope | FloorScope]] = dict(
        _containers(config))
    containers[("floor", "")] = config.floors
    for container, stanzas in containers.items():
        exact = {d.name.key: frozenset(o for o, _v in d.options.items())
                 for d in stanzas if d.name.kind is not DomainKind.REGEX}
        regexes = [d for d in stanzas if d.name.kind is DomainKind.REGEX]
        order = {d.name.key: (i, frozenset(o for o, _v in d.options.items()))
                 for i, d in enumerate(regexes)}
        keys = tuple(order)
        floor = container[0] == "floor"
        for i, d in enumerate(regexes):
            key = d.name.key
            values = tuple(sorted(d.options.to_mapping().items(), key=str))
            # For floors the order does not matter, only which others are there.
            context = frozenset(keys) if floor else keys[:i]
            yield key, (container, context, values), _Place(key, order[key][1], order, exact,
                                                             floor)


def _probe_domains(old: Config, new: Config) -> tuple[list[tuple[str, str]], list[Change]]:
    """The probe names and the findings about regexes no name could be found for.

    Every exact and IP-literal name; for each regex stanza or floor its first
    example, a name it decides (every option it sets takes effect: no exact
    stanza of its container and no earlier regex there matching the name
    sets that option), preferring one no other stanza claims at all, and for
    a changed regex up to eight more names it shares with other regexes;
    and one name that nothing matches.  A changed regex without a name it
    decides is a review item.
    """
    domains: dict[str, str] = {}
    regexes: dict[str, dict[str, set[tuple[str, object]]]] = {}
    patterns: dict[str, DomainPattern] = {}
    for side, config in (("old", old), ("new", new)):
        for path, d in _all_domains(config):
            if d.name.kind is DomainKind.REGEX:
                regexes.setdefault(d.name.key, {"old": set(), "new": set()})[side].add(
                    (path, tuple(d.options.to_mapping().items())))
                if d.name.regex is not None:
                    patterns.setdefault(d.name.key, d.name.regex)
            else:
                kind = "IP-literal stanza" if d.name.kind is DomainKind.IP else "exact stanza"
                domains.setdefault(d.name.key, kind)
    places: dict[str, list[_Place]] = {}
    declared: dict[str, dict[str, set[tuple[object, ...]]]] = {}
    for side, config in (("old", old), ("new", new)):
        for key, what, place in _places(config):
            places.setdefault(key, []).append(place)
            declared.setdefault(key, {"old": set(), "new": set()})[side].add(what)
    keys = list(patterns)
    pattern_set = DomainPatternSet([patterns[k] for k in keys]) if keys else None
    exact_names = frozenset(domains)

    def matched(name: str) -> frozenset[str]:
        return frozenset(keys[i] for i in pattern_set.matching(name)) if pattern_set else \
            frozenset()

    under_exact: dict[str, list[str]] | None = None

    def subdomains(key: str) -> list[str]:
        # "mail.<exact name>": an exact stanza claims only its own name, never the one below.
        nonlocal under_exact
        if under_exact is None:
            under_exact = {}
            for name in sorted(exact_names):
                if name.startswith("["):
                    continue
                try:
                    sub = normalise_domain("mail." + name)
                except ValueError:
                    continue
                for k in matched(sub):
                    under_exact.setdefault(k, []).append(sub)
        return under_exact.get(key, [])

    examples: dict[str, list[str]] = {}
    sharing: dict[str, set[str]] = {}
    for side_places in (_places(old), _places(new)):
        by_container: dict[object, list[str]] = {}
        for key, what, _place in side_places:
            by_container.setdefault(what[0], []).append(key)
        for members in by_container.values():
            for key in members:
                sharing.setdefault(key, set()).update(members)

    def neighbours(key: str) -> Iterator[tuple[str, list[str]]]:
        # The other regexes, those declared beside this one first: their examples.
        near = sharing.get(key, set())
        for other in sorted(patterns, key=lambda k: (k not in near, k)):
            if other != key:
                if other not in examples:
                    examples[other] = list(itertools.islice(regex_examples(other), 2))
                yield other, examples[other]

    findings: list[Change] = []
    for pattern, sides in regexes.items():
        changed = declared.get(pattern, {}).get("old") != declared.get(pattern, {}).get("new")
        generated = regex_examples(pattern)
        own = list(itertools.islice(generated, 1))
        if not own:
            if sides["old"] != sides["new"] or changed:
                findings.append(Change(
                    ChangeClass.REVIEW, "regex", _sides_text(sides["old"]),
                    _sides_text(sides["new"]),
                    note=f"no domain name matching /{pattern}/ could be generated; review the "
                         "stanza by hand"))
            continue
        domains.setdefault(own[0], f"generated to match regex stanza /{pattern}/")
        decided: str | None = None
        private = False
        seen = {_signature(own[0], matched(own[0]), exact_names)}
        overlaps: list[str] = []

        def below(key: str = pattern, own: list[str] = own,
                  changed: bool = changed) -> Iterator[str]:
            # Beyond the regex's own examples: names it shares with other regexes (for a
            # changed regex), then "mail." under exact stanza names it matches.
            if changed:
                yield from _joined(own, neighbours(key))
            yield from subdomains(key)

        for name in itertools.chain(own, generated, below()):
            hits = matched(name)
            if pattern not in hits:
                continue
            if not private and all(pl.decides(name, hits) for pl in places.get(pattern, ())):
                private = hits == {pattern} and name not in exact_names
                if decided is None or private:
                    decided = name
                    seen.add(_signature(name, hits, exact_names))
            if changed and len(overlaps) < _OVERLAPS and name != decided and len(hits) > 1 and \
                    name not in exact_names:
                signature = _signature(name, hits, exact_names)
                if signature not in seen:
                    seen.add(signature)
                    overlaps.append(name)
            if private and (not changed or len(overlaps) >= _OVERLAPS):
                break
        if decided is not None:
            domains.setdefault(decided, f"generated to be decided by regex stanza /{pattern}/")
        elif changed:
            findings.append(Change(
                ChangeClass.REVIEW, "regex", _sides_text(sides["old"]),
                _sides_text(sides["new"]),
                note=f"no name decided by /{pattern}/ could be generated (every name tried is "
                     "claimed, for an option it sets, by an exact stanza or an earlier regex); "
                     "review the stanza by hand"))
        for name in overlaps:
            domains.setdefault(name, f"generated to match regex stanza /{pattern}/ and others")
    for candidate in _DEFAULT_CANDIDATES:
        name = normalise_domain(candidate)
        if name not in domains and not matched(name):
            domains[name] = "matched by no stanza (the binding's default)"
            break
    return list(domains.items()), findings


_OVERLAPS: Final = 8
"""Names a changed regex shares with other regexes, probed besides the one it decides."""


def _joined(own: list[str], others: Iterator[tuple[str, list[str]]]) -> Iterator[str]:
    """Names in the overlap of a regex with others: their examples, bare and joined with
    this regex's first example before or after them."""
    mine = own[:1]
    for _key, theirs in others:
        for name in theirs:
            yield name
            for m in mine:
                for joined in (f"{m}.{name}", f"{name}.{m}"):
                    try:
                        yield normalise_domain(joined)
                    except ValueError:
                        continue


def _signature(name: str, hits: frozenset[str], exact: frozenset[str]) -> tuple[object, ...]:
    return hits, name in exact


def _sides_text(entries: set[tuple[str, object]]) -> str:
    if not entries:
        return "absent"
    return "; ".join(f"in {path}: {dict(opts)}" for path, opts in sorted(entries, key=str))  # type: ignore[call-overload]


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
    domains, changes = _probe_domains(old, new)
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


def _containers(config: Config) -> dict[tuple[str, str], tuple[DomainScope, ...]]:
    out: dict[tuple[str, str], tuple[DomainScope, ...]] = {("global", ""): config.domains}
    for g in config.binding_groups:
        out[("group", g.name)] = g.domains
    for _g, b in config.iter_bindings():
        out[("binding", b.name)] = b.domains
    return out


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

    old_c, new_c = _containers(old), _containers(new)
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
