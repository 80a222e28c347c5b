"""The resolver's per-binding index: each scope's contribution, built on first use.

A domain stanza is indexed by reference; its contribution (options in registry order
plus the scope path that explains them) is built the first time a request needs it.
"""

from __future__ import annotations

from typing import Final

import attrs

from ..decision import Source
from ..names import DomainKind, DomainPattern, DomainPatternSet
from ..options import (
    Options,
    ScopeKind,
)
from ..scopes import DomainScope
from ..scopes.models import scope_path

# One scope's contribution: ((option, value), ...) plus where it came from.
_Items = tuple[tuple[str, object], ...]
_Parent = tuple[tuple[ScopeKind, str], ...]


class _Contribution:
    """One scope's options, ``((option, value), ...)``, and where they came from.

    The scope path is rendered on first use: only explanations read it, and
    rendering it for every stanza a resolution meets cost more than the rest
    of a cold resolution.
    """

    __slots__ = ("_parts", "_source", "items")

    def __init__(self, items: _Items, parts: _Parent | str) -> None:
        self.items = items
        self._parts = parts
        self._source: Source | None = None

    @property
    def source(self) -> Source:
        """The scope that set these options."""
        source = self._source
        if source is None:
            parts = self._parts
            source = self._source = Source(
                parts if isinstance(parts, str) else scope_path(*parts))
        return source


class _Interner:
    """One items tuple per distinct set of options, so equal sets have one identity.

    Keyed by the ``Options`` object's id: the configuration, which the resolver
    holds, keeps every such object alive, so an id is never reused meanwhile.
    """

    __slots__ = ("_by_id", "_by_value", "names")

    def __init__(self) -> None:
        self._by_id: dict[int, _Items] = {}
        self._by_value: dict[_Items, _Items] = {}
        # The option names of each interned items tuple, in order, by the tuple's id.
        self.names: dict[int, tuple[str, ...]] = {}

    def items(self, options: Options) -> _Items:
        found = self._by_id.get(id(options))
        if found is None:
            items = tuple(options.items())
            found = self._by_value.setdefault(items, items)
            # Names only of tuples kept here (their ids are never reused), and before
            # any caller can have the tuple.
            if id(found) not in self.names:
                self.names[id(found)] = tuple(name for name, _value in found)
            self._by_id[id(options)] = found
        return found


def _contribution(options: Options, parts: _Parent | str,
                  interner: _Interner | None = None) -> _Contribution | None:
    items = interner.items(options) if interner is not None else tuple(options.items())
    return _Contribution(items, parts) if items else None


_DOMAIN: Final = ScopeKind.DOMAIN
# Not yet made (a stanza with no options is made as None).
_UNMADE: Final = object()


class _Container:
    """The domain stanzas of one container: exact names by key, regexes in order.

    Exact stanzas are indexed by reference; their contributions are made on
    first use (at most one per stanza, so the memo is bounded by the
    configuration) because building a scope path for every stanza up front
    dominated compiling large configurations.
    """

    __slots__ = ("_interner", "_made", "exact", "parent", "regex_contributions", "regexes")

    def __init__(self, domains: tuple[DomainScope, ...], parent: _Parent,
                 interner: _Interner | None = None) -> None:
        regex = DomainKind.REGEX
        self.parent = parent
        self._interner = interner if interner is not None else _Interner()
        self.exact: dict[str, DomainScope] = {
            d.name.key: d for d in domains if d.name.kind is not regex}
        patterns: list[DomainPattern] = []
        contributions: list[_Contribution] = []
        if len(self.exact) != len(domains):
            for d in domains:
                if d.name.kind is regex and d.name.regex is not None:
                    contribution = _contribution(d.options, self._path(d), self._interner)
                    if contribution is not None:
                        patterns.append(d.name.regex)
                        contributions.append(contribution)
        # One RE2 set runs every pattern of the container in a single linear pass.
        self.regexes: DomainPatternSet | None = (
            DomainPatternSet(patterns) if patterns else None)
        self.regex_contributions: tuple[_Contribution, ...] = tuple(contributions)
        self._made: dict[str, _Contribution | None] = {}

    def _path(self, d: DomainScope) -> _Parent:
        return (*self.parent, (ScopeKind.DOMAIN, d.name.text))

    def exact_contribution(self, domain: str) -> _Contribution | None:
        """The exact stanza's contribution for a normalised domain, if any."""
        stanza = self.exact.get(domain)
        if stanza is None:
            return None
        made = self._made.get(domain, _UNMADE)
        if made is _UNMADE:
            # What _contribution(stanza.options, self._path(stanza), interner) makes,
            # written out: a cold resolve meets a stanza for the first time more often
            # than not.
            options = stanza.options
            interner = self._interner
            items = interner._by_id.get(id(options))
            if items is None:
                items = interner.items(options)
            # setdefault, not a store: threads meeting the stanza first at once all get
            # the one contribution kept (one atomic step under the GIL, the key being a
            # str).  chain_key is made of contributions' identities: with each thread
            # keeping its own, a pair had several keys, and the identity of one dropped
            # could be taken by another scope's (two pairs of other scopes, one key).
            made = self._made.setdefault(domain, _Contribution(
                items, (*self.parent, (_DOMAIN, stanza.name.text))) if items else None)
        return made  # type: ignore[return-value]


_EMPTY: Final = _Container((), ())


@attrs.frozen(slots=True)
class _BindingIndex:
    name: str
    group: str
    domains: _Container
    group_domains: _Container
    binding: _Contribution | None
    group_options: _Contribution | None
