"""Probe names for ``tlspolicy diff``: the domains every binding is compared at.

Every exact and IP-literal stanza name, generated names for each regex stanza
and regex floor (see :mod:`tlspolicy.diff` for what they guarantee), and one
name no stanza matches.  Pure: names are built from the patterns' literal parts
and checked with RE2, as the resolver matches them.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Iterator, Sequence
from typing import Any, Final

import attrs

from ..names import DomainKind, DomainPattern, DomainPatternSet, normalise_domain
from ..options import ScopeKind
from .models import Config, DomainScope, FloorScope, floor_path, scope_path

__all__ = ["Unprobed", "containers", "probe_domains", "regex_example", "regex_examples"]


@attrs.frozen(slots=True)
class Unprobed:
    """A changed regex no useful probe name could be built for: a review item."""

    pattern: str
    old: str
    new: str
    note: str


def containers(config: Config) -> dict[tuple[str, str], tuple[DomainScope, ...]]:
    """Each domain container (global, groups, bindings) and its stanzas, in order."""
    out: dict[tuple[str, str], tuple[DomainScope, ...]] = {("global", ""): config.domains}
    for g in config.binding_groups:
        out[("group", g.name)] = g.domains
    for _g, b in config.iter_bindings():
        out[("binding", b.name)] = b.domains
    return out


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
#: Address literals tried for every pattern (RFC 5737 and RFC 3849 documentation ranges).
_ADDRESS_LITERALS: Final = ("[192.0.2.1]", "[198.51.100.7]", "[203.0.113.9]",
                            "[ipv6:2001:db8::1]", "[ipv6:2001:db8::2]")


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
    # A pattern can match address literals (a "\[" or a class holding "["): no literal
    # part of it is one, so documentation addresses of both families are tried.
    yield from found(_ADDRESS_LITERALS)
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
    every: dict[tuple[str, str], Sequence[DomainScope | FloorScope]] = dict(containers(config))
    every[("floor", "")] = config.floors
    for container, stanzas in every.items():
        if not any(d.name.kind is DomainKind.REGEX for d in stanzas):
            continue
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


def probe_domains(old: Config, new: Config) -> tuple[list[tuple[str, str]], list[Unprobed]]:
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

    findings: list[Unprobed] = []
    for pattern, sides in regexes.items():
        changed = declared.get(pattern, {}).get("old") != declared.get(pattern, {}).get("new")
        generated = regex_examples(pattern)
        own = list(itertools.islice(generated, 1))
        if not own:
            if sides["old"] != sides["new"] or changed:
                findings.append(Unprobed(
                    pattern, _sides_text(sides["old"]), _sides_text(sides["new"]),
                    f"no domain name matching /{pattern}/ could be generated; review the "
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
            findings.append(Unprobed(
                pattern, _sides_text(sides["old"]), _sides_text(sides["new"]),
                f"no name decided by /{pattern}/ could be generated (every name tried is "
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
