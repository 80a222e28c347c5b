"""Compile a configuration once; resolve (binding, domain) pairs fast (SEMANTICS 2).

:class:`Resolver` indexes a :class:`~tlspolicy.scopes.Config` into per-binding
lookup tables at construction, so :meth:`Resolver.resolve` never walks the
configuration tree.  Whole decisions are memoised per request key; both the
memo and the regex match cache are bounded LRU caches whose reads take no
lock, and both are safe to share between threads.  Nothing here performs I/O
or reads the clock.

Compiling is cheap on purpose: a domain stanza is indexed by reference and
its contribution (options in registry order plus the scope path that
explains them) is built the first time a request needs it, so a configuration
with a hundred thousand domains compiles in the time of one dictionary pass.
"""

from __future__ import annotations

import datetime as _dt
import operator
from collections.abc import Mapping
from typing import Any, Final

from ..decision import (
    _NOTHING,
    Decision,
    Requirements,
    Source,
    TlsParameters,
    _configured_shape,
    _decision,
    _like,
)
from ..errors import (
    InvalidDomainError,
    Location,
    OptionScopeError,
    OptionVersionError,
    UnknownBindingError,
)
from ..names import MAX_NAME_OCTETS, _plain_name, normalise_domain
from ..options import (
    OPTION_SPECS,
    CompatVersion,
    Options,
    ScopeKind,
    Tls,
    TlsVerify,
)
from ..outcomes import Verification
from ..policies.destination import Destination, apply_destination
from ..scopes import DEFAULT_NAME, BindingScope, Config, FloorScope, config_at
from ..scopes.models import scope_path
from .floors import _Floors, raise_to_floors
from .index import (
    _DOMAIN,
    _EMPTY,
    _UNMADE,
    _BindingIndex,
    _Container,
    _Contribution,
    _contribution,
    _Interner,
    _Parent,
)
from .matchcache import RegexMatchCache
from .parts import (
    _DEFAULT_SOURCES,
    _DEFAULT_VALUES,
    _Explanation,
    _explanation,
    _identities,
    _merged,
    _Shared,
    _shared,
    _tls_parameters,
    _with_defaults,
)

__all__ = ["OVERRIDABLE_OPTIONS", "Resolver"]

OVERRIDABLE_OPTIONS: Final = frozenset({
    "tls", "tls_ifavailable_fallback", "tls_verify", "tls_ca", "tls_certificate", "tls_key",
    "tls_ciphers", "tlsv13_ciphersuites", "tls_protocols",
})
"""Options a per-message override may set (Momentum's per-message TLS hook).

The MTA-STS and DANE switches are left out on purpose: an override must never
relax a destination policy (SEMANTICS section 3).
"""

_FALLBACK_SINCE: Final = CompatVersion((4, 1))
_OPTION_NAMES: Final = tuple(OPTION_SPECS)
_ITEMS: Final = operator.attrgetter("items")
# Verification per tls_verify member, keyed by identity: members are singletons, and an
# Enum's own __hash__ is a Python-level call.
_VERIFICATION_OF: Final = {id(v): Verification.of(v) for v in TlsVerify}
_new_object: Final = object.__new__
# _configured_shape by the identities of its arguments, looked up here with no call: a
# value set's first decision pays for every call it makes (decision._SHAPES, behind it,
# is keyed by the six fields any requirements have).
_CONFIGURED_SHAPES: Final[dict[tuple[int, int, bool], tuple[Any, ...]]] = {}


class Resolver:
    """A configuration compiled for fast, repeated resolution.

    >>> from tlspolicy import Config, Resolver
    >>> Resolver(Config()).resolve("example.com").plan.value
    'skip'

    ``decision_cache_size`` bounds the memo of whole decisions (0 disables it);
    the regex match cache size comes from the configuration's
    ``match_cache_size``.  ``at`` is the evaluation time (an aware datetime):
    every stanza whose ``expires`` is at or before it is ignored.  The
    resolver never reads the clock; without ``at`` no stanza is treated as
    expired.  ``active`` is the configuration in force at ``at``.
    """

    def __init__(self, config: Config, *, decision_cache_size: int = 65536,
                 at: _dt.datetime | None = None) -> None:
        self.config = config
        self.at = at
        if at is not None:
            # Expired stanzas are gone, as if never written (SEMANTICS section 8).
            config = config_at(config, at)
        self.active = config
        self.compatibility = config.effective_compatibility
        self._floors = _Floors(config.floors)
        self._fallback_exists = self.compatibility >= _FALLBACK_SINCE
        interner = _Interner()
        self._names = interner.names
        self._global_domains = _Container(config.domains, (), interner)
        self._global = _contribution(config.options, "global", interner)
        self._regex_cache = RegexMatchCache(config.effective_match_cache_size)
        self._decisions = RegexMatchCache(decision_cache_size)
        # Shared parts of decisions, per chain of option sets: a configuration has
        # far fewer of them than (binding, domain) pairs; bounded all the same.
        self._by_values = RegexMatchCache(max(decision_cache_size, 1024))
        group_index: dict[str, tuple[_Container, _Contribution | None]] = {}
        for group in config.binding_groups:
            g = (ScopeKind.BINDING_GROUP, group.name)
            group_index[group.name] = (_Container(group.domains, (g,), interner),
                                       _contribution(group.options, scope_path(g), interner))
        default_group = group_index.get(DEFAULT_NAME, (_EMPTY, None))
        self._bindings: dict[str, _BindingIndex] = {}
        members: list[tuple[str, _Parent, BindingScope]] = [
            (group.name, ((ScopeKind.BINDING_GROUP, group.name),), binding)
            for group in config.binding_groups for binding in group.bindings]
        members.extend((DEFAULT_NAME, (), binding) for binding in config.bindings)
        for group_name, parent, binding in members:
            b = (ScopeKind.BINDING, binding.name)
            g_container, g_options = group_index.get(group_name, default_group)
            self._bindings[binding.name] = _BindingIndex(
                binding.name, group_name,
                _Container(binding.domains, (*parent, b), interner),
                g_container,
                _contribution(binding.options, scope_path(*parent, b), interner),
                g_options,
            )
        if DEFAULT_NAME not in self._bindings:
            self._bindings[DEFAULT_NAME] = _BindingIndex(
                DEFAULT_NAME, DEFAULT_NAME, _EMPTY, default_group[0], None, default_group[1])
        # What _chain walks for each binding (None standing for the default one), laid
        # out for the cold path: each container with the scopes' options that follow it.
        self._steps: dict[str | None, tuple[_BindingIndex, _Steps]] = {}
        for name, index in self._bindings.items():
            following = (
                (),
                tuple(c for c in (index.binding, index.group_options) if c is not None),
                () if self._global is None else (self._global,),
            )
            self._steps[name] = (index, tuple(
                (container, after, tuple(id(c.items) for c in after))
                for container, after in zip(
                    (index.domains, index.group_domains, self._global_domains), following,
                    strict=True)))
        self._steps[None] = self._steps[DEFAULT_NAME]

    @property
    def bindings(self) -> tuple[str, ...]:
        """Every binding name a request may use, the implicit ``default`` included."""
        return tuple(self._bindings)

    @property
    def regex_cache(self) -> RegexMatchCache:
        """The regex match cache (exposed for statistics)."""
        return self._regex_cache

    def binding_group_of(self, binding: str) -> str:
        """The group a binding belongs to (``default`` for ungrouped ones)."""
        return self._index(binding).group

    def _index(self, binding: str | None) -> _BindingIndex:
        name = DEFAULT_NAME if binding is None else binding
        try:
            return self._bindings[name]
        except (KeyError, TypeError):
            raise UnknownBindingError(
                f"unknown binding {name!r}; declared bindings: "
                f"{', '.join(sorted(self._bindings))}"
            ) from None

    def _lookup(self, container: _Container, domain: str, found: list[_Contribution]) -> None:
        if domain in container.exact:
            # Container.exact_contribution, its common case inlined: the stanza's
            # contribution is made already.
            exact = container._made.get(domain, _UNMADE)
            if exact is _UNMADE:
                exact = container.exact_contribution(domain)
            if exact is not None:
                found.append(exact)  # type: ignore[arg-type]
        if container.regexes is not None:
            self._lookup_regexes(container, domain, found)

    def _lookup_regexes(self, container: _Container, domain: str,
                        found: list[_Contribution]) -> None:
        regexes = container.regexes
        assert regexes is not None
        # Containers live as long as the resolver, so their id is a stable key.
        key = (id(container), domain)
        cached = self._regex_cache.get(key)
        if cached is None:
            contributions = container.regex_contributions
            cached = tuple(contributions[i] for i in regexes.matching(domain))
            self._regex_cache.put(key, cached)
        found.extend(cached)  # type: ignore[arg-type]

    def _chain(self, index: _BindingIndex, domain: str, chain: list[_Contribution]) -> None:
        """Append the contributions deciding (binding, normalised domain), innermost first."""
        self._lookup(index.domains, domain, chain)
        self._lookup(index.group_domains, domain, chain)
        if index.binding is not None:
            chain.append(index.binding)
        if index.group_options is not None:
            chain.append(index.group_options)
        self._lookup(self._global_domains, domain, chain)
        if self._global is not None:
            chain.append(self._global)

    def _values(self, chain: list[_Contribution], domain: str
                ) -> tuple[dict[str, object], dict[str, Source]]:
        values: dict[str, object] = {}
        sources: dict[str, Source] = {}
        for contribution in chain:
            source = None
            for name, value in contribution.items:
                if name not in values:
                    values[name] = value
                    if source is None:
                        source = contribution.source
                    sources[name] = source
        if len(values) != len(_OPTION_NAMES):
            values = _with_defaults(values, _DEFAULT_VALUES)
            sources = _with_defaults(sources, _DEFAULT_SOURCES)
        floors = self._floors
        if floors.any:
            matching = floors.matching(domain, self._regex_cache)
            if matching:
                raise_to_floors(values, sources, matching)
        return values, sources

    def _values_only(self, chain: list[_Contribution], domain: str) -> dict[str, object]:
        """What :meth:`_values` gives as values, without making the sources."""
        floors = self._floors
        if floors.any and floors.matching(domain, self._regex_cache):
            return self._values(chain, domain)[0]
        return _merged(chain)

    def _new_shared(self, chain: list[_Contribution], key: tuple[int, ...], domain: str,
                    floored: bool) -> _Shared:
        """The value set of a chain met for the first time, remembered under its ``key``.

        A new chain mostly differs from chains met before in its first, innermost
        scope only (another binding, another domain stanza), so its values are that
        scope's over the values of the rest of the chain: those are the value set of
        ``key[1:]``, the rest's own key, made once and shared like any other (a
        chain's values are a function of its key).  Floors are raised over the
        whole chain, so a floored chain is merged in full.
        """
        by_values = self._by_values
        if floored or not chain:
            values = self._values_only(chain, domain)
        else:
            rest_key = key[1:]
            # Looked at without noting a read: a read would make the put below take
            # the lock.
            rest: _Shared | None = by_values._data.get(rest_key)  # type: ignore[assignment]
            if rest is None:
                rest = _shared(_merged(chain[1:]))
                by_values.put(rest_key, rest)
            # _merged(chain): the first scope's options go first, in their order,
            # then the rest's in theirs (each name where it first occurs), each with
            # the first scope's value if it has one.  A set made over the same rest
            # by a scope setting the same options has exactly these keys in this
            # order, and the rest's values but for those options: a copy of it (one
            # block copy) given the scope's values is this set, for a tenth of
            # what inserting the keys one by one costs.
            first = chain[0].items
            names = self._names.get(id(first))
            if names is None:  # not interned through this resolver (never so far)
                names = tuple(name for name, _value in first)
            heads = rest.heads
            if heads is None:
                heads = rest.heads = {}
            like = heads.get(names)
            if like is None:
                values = dict(first)
                values.update(rest.values)
                values.update(first)
                heads[names] = values
            else:
                values = like.copy()
                for name, value in first:  # fewer instructions than update() of pairs
                    values[name] = value
        shared = _shared(values)
        by_values.put(key, shared)
        return shared

    def _shared(self, index: _BindingIndex, domain: str
                ) -> tuple[_Shared, list[_Contribution]]:
        """The effective values for (binding, normalised domain), shared by value.

        Pairs whose chains hold the same sets of options (and meet the same
        floors) have equal effective values, so those, and the parts of a
        decision made from them alone, are built once per such chain; returns
        them with the chain, from which the explanation is made when read.
        """
        chain: list[_Contribution] = []
        self._chain(index, domain, chain)
        key: tuple[int, ...] = tuple(map(id, map(_ITEMS, chain)))
        floored = False
        if self._floors.any:
            matching = self._floors.matching(domain, self._regex_cache)
            floored = bool(matching)
            key = (*key, 0, *map(id, matching))
        shared = self._by_values.get(key)
        if shared is None:
            # The key holds ids of interned items tuples and of floors, which the
            # resolver keeps alive as long as itself: an id is never reused meanwhile.
            shared = self._new_shared(chain, key, domain, floored)
        return shared, chain  # type: ignore[return-value]

    def effective(
        self, domain: str, binding: str | None = None, *, overrides: Options | None = None
    ) -> tuple[dict[str, object], dict[str, Source]]:
        """Every option's effective value for (binding, domain) and its source.

        ``domain`` must already be normalised (see
        :func:`~tlspolicy.names.normalise_domain`).
        """
        index = self._index(binding)
        chain: list[_Contribution] = []
        if overrides is not None:
            over = _contribution(overrides, "override")
            if over is not None:
                chain.append(over)
        self._chain(index, domain, chain)
        return self._values(chain, domain)

    def effective_values(self, domain: str, binding: str | None = None) -> Mapping[str, object]:
        """The effective values of :meth:`effective`, without their sources.

        A read-only, hashable mapping shared by every pair with the same
        values' scopes (so cheap to get and to use as a memo key).  ``domain``
        must already be normalised.
        """
        return self._shared(self._index(binding), domain)[0].effective

    def chain_key(self, domain: str, binding: str | None = None) -> tuple[int, ...]:
        """An identity of the scopes that decide (binding, normalised domain).

        Two pairs with equal keys get their effective values from the same
        scope contributions and floors, so they have the same effective values
        and explanations (``diff`` compares such pairs once).  Valid for the
        life of this resolver only.
        """
        chain: list[_Contribution] = []
        self._chain(self._index(binding), domain, chain)
        key = [id(c) for c in chain]
        if self._floors.any:
            key.append(0)
            key.extend(id(f) for f in self._floors.matching(domain, self._regex_cache))
        return tuple(key)

    def floors_for(self, domain: str) -> tuple[FloorScope, ...]:
        """The floors that match a normalised domain, in declaration order."""
        return self._floors.matching(domain, self._regex_cache) if self._floors.any else ()

    def _check_overrides(self, overrides: Options) -> None:
        for name, _value in overrides.items():
            if name not in OVERRIDABLE_OPTIONS:
                raise OptionScopeError(
                    f"cannot be overridden per message "
                    f"(allowed: {', '.join(sorted(OVERRIDABLE_OPTIONS))})",
                    Location(scope="override", option=name))
            if OPTION_SPECS[name].since > self.compatibility:
                raise OptionVersionError(
                    f"needs Momentum {OPTION_SPECS[name].since} or newer; the "
                    f"configuration pins compatibility {self.compatibility}",
                    Location(scope="override", option=name))

    def resolve(
        self,
        domain: str,
        binding: str | None = None,
        *,
        mx_host: str | None = None,
        overrides: Options | None = None,
        destination: Destination | None = None,
    ) -> Decision:
        """The decision for delivering to ``domain`` through ``binding``.

        ``binding`` ``None`` means the implicit ``default`` binding; an
        undeclared binding raises :class:`~tlspolicy.errors.UnknownBindingError`.
        ``mx_host`` is the MX host name being connected to (SNI and a reference
        identity).  ``overrides`` are per-message options above every scope.
        ``destination`` carries what the caller found about the destination
        (MTA-STS policy in force, TLSA lookup, DNSSEC) and the message
        (REQUIRETLS, ``TLS-Required: No``), and remembered broken TLS.
        """
        # The memo read is inlined (no call into the cache) because a warm
        # resolve is the hot path of every delivery; see RegexMatchCache.get.
        if mx_host is None and overrides is None and destination is None:
            key: tuple[object, ...] = (domain, binding)
        else:
            key = (domain, binding, mx_host, overrides, destination)
        memo = self._decisions
        cached = memo._data.get(key)
        if cached is not None:
            reads = memo._reads
            reads.append(key)
            if len(reads) > memo._drain_at:
                memo.drain()
            return cached  # type: ignore[return-value]
        memo._misses += 1
        if len(key) == 2:
            decision = self._cold(domain, binding)
        else:
            decision = self._resolve(domain, binding, mx_host, overrides, destination)
        # memo.put(key, decision), its lock-free case inlined: no read to replay first,
        # and room for the key (put evicts if other threads took the room).  The key
        # was just missed; if another thread put it meanwhile, it keeps its place.
        data = memo._data
        if memo._reads or len(data) >= memo.size:
            memo.put(key, decision)
        else:
            data[key] = decision
            if len(data) > memo.size:
                memo.put(key, decision)
        return decision

    def _cold(self, domain: str, binding: str | None) -> Decision:
        """:meth:`_resolve` for a key with no MX host, overrides or destination.

        The same steps as :meth:`_shared` and :meth:`_decide` through :meth:`_chain`,
        written out in one frame: a cold resolve is mostly the fixed cost of Python
        calls, so each call left out here is a noticeable share of it.
        """
        found = self._steps.get(binding)
        if found is None:
            self._index(binding)  # raises UnknownBindingError
            raise AssertionError(binding)  # pragma: no cover
        index, steps = found
        if (type(domain) is str and len(domain) <= MAX_NAME_OCTETS
                and _plain_name(domain) is not None and "xn--" not in domain):
            # What normalise_domain gives such a name back unchanged (its fast path).
            name = domain
        else:
            name = normalise_domain(domain)
        chain: list[_Contribution] = []
        # The key _shared makes, tuple(map(id, map(_ITEMS, chain))), built alongside.
        ids: list[int] = []
        for container, following, following_ids in steps:
            if name in container.exact:
                exact: Any = container._made.get(name, _UNMADE)
                if exact is _UNMADE:
                    # Container.exact_contribution(name), inlined: in a cold resolve
                    # the stanza is more often than not met for the first time.
                    stanza = container.exact[name]
                    options = stanza.options
                    items = container._interner._by_id.get(id(options))
                    if items is None:
                        items = container._interner.items(options)
                    if items:
                        exact = _new_object(_Contribution)
                        exact.items = items
                        exact._parts = (*container.parent, (_DOMAIN, stanza.name.text))
                        exact._source = None
                    else:
                        exact = None
                    # The one contribution kept, as in exact_contribution (why there).
                    exact = container._made.setdefault(name, exact)
                if exact is not None:
                    chain.append(exact)
                    ids.append(id(exact.items))
            if container.regexes is not None:
                before = len(chain)
                self._lookup_regexes(container, name, chain)
                ids += map(id, map(_ITEMS, chain[before:]))
            if following:
                chain += following
                ids += following_ids
        key: tuple[int, ...] = tuple(ids)
        floors = self._floors
        floored = False
        if floors.any:
            matching = floors.matching(name, self._regex_cache)
            floored = bool(matching)
            key = (*key, 0, *map(id, matching))
        # RegexMatchCache.get and the read's bookkeeping, inlined.
        by_values = self._by_values
        shared: _Shared | None = by_values._data.get(key)  # type: ignore[assignment]
        if shared is None:
            by_values._misses += 1
            shared = self._new_shared(chain, key, name, floored)
        else:
            reads = by_values._reads
            reads.append(key)
            if len(reads) > by_values._drain_at:
                by_values.drain()
        proto = shared.proto
        if proto is None:
            return self._decide(shared, chain, index, name, None)
        if name[0] == "[":
            sni = None
            identities = _identities(name, None)
        else:
            sni = name
            identities = (name,)
        # _Explanation(self, chain, name), without the call into its __init__.
        explanation = _new_object(_Explanation)
        explanation._hash = None
        explanation._make = (self, chain, name)
        return _like(proto, name, index.name, index.group, None, sni, identities, explanation)

    def _resolve(self, domain: str, binding: str | None, mx_host: str | None,
                 overrides: Options | None, destination: Destination | None) -> Decision:
        index = self._index(binding)
        name = normalise_domain(domain)
        mx = normalise_domain(mx_host) if mx_host is not None else None
        if mx is not None and mx.startswith("["):
            raise InvalidDomainError(f"mx_host must be a host name, not an IP literal: {mx_host!r}")
        if overrides is not None:
            if not isinstance(overrides, Options):
                raise TypeError("overrides must be a tlspolicy.Options instance")
            self._check_overrides(overrides)
        if overrides is None and destination is None:
            shared, chain = self._shared(index, name)
            return self._decide(shared, chain, index, name, mx)
        values, sources = self.effective(name, index.name, overrides=overrides)
        return self._build(values, sources, index, name, mx, destination)

    def decide(
        self,
        values: Mapping[str, object],
        sources: Mapping[str, Source],
        domain: str,
        binding: str | None = None,
        *,
        mx_host: str | None = None,
        destination: Destination | None = None,
    ) -> Decision:
        """The decision for explicitly given effective ``values`` (with their ``sources``).

        For callers whose configuration is not one scope chain: a Postfix next hop
        that carries several routed domains is decided on their values combined at
        their strictest.  Every rule after the scope chain (section 4, destination
        policies, ``mx_host``) applies as in :meth:`resolve`; nothing is memoised.
        """
        index = self._index(binding)
        name = normalise_domain(domain)
        mx = normalise_domain(mx_host) if mx_host is not None else None
        return self._build(values, sources, index, name, mx, destination)

    def _build(self, values: Mapping[str, object], sources: Mapping[str, Source],
               index: _BindingIndex, name: str, mx: str | None,
               destination: Destination | None) -> Decision:
        requirements = self.requirements(name, mx, values)
        if destination is None:
            return Decision.build(
                requirements,
                domain=name,
                binding=index.name,
                binding_group=index.group,
                mx_host=mx,
                parameters=self.parameters(name, mx, values),
                effective=values,
                explanation=sources,
            )
        if not isinstance(destination, Destination):
            raise TypeError("destination must be a tlspolicy.Destination instance")
        result = apply_destination(requirements, values, destination, mx_host=mx)
        return Decision.build(
            result.requirements,
            domain=name,
            binding=index.name,
            binding_group=index.group,
            mx_host=mx,
            parameters=self.parameters(name, mx, values, sni=result.sni),
            effective=values,
            explanation=sources,
            decided_by=result.sources,
            tlsa_records=result.tlsa_records,
            reports=result.reports,
            notes=result.notes,
            mta_sts=result.mta_sts,
            dane=result.dane,
        )

    def _decide(self, shared: _Shared, chain: list[_Contribution], index: _BindingIndex,
                name: str, mx: str | None) -> Decision:
        """The decision from configuration alone, sharing what equal values give alike."""
        proto = shared.proto
        if proto is None:
            # The first pair of these values gets a decision built as every decision
            # is built; later pairs take everything but their names and explanation
            # from it.
            # What Decision.build gives requirements() and parameters() of these values,
            # without the Requirements object: its shape is looked up from the fields.
            # The calls into _configured_shape, parameters(), _identities and
            # _explanation are written out for the common case (a fifth of the cost of
            # a new value set's first decision was those calls).
            values = shared.values
            tls = values["tls"]
            verify = values["tls_verify"]
            assert isinstance(tls, Tls) and isinstance(verify, TlsVerify)
            fallback = bool(values["tls_ifavailable_fallback"]) and self._fallback_exists
            verification = _VERIFICATION_OF[id(verify)]
            shape = _CONFIGURED_SHAPES.get((id(tls), id(verification), fallback))
            if shape is None:
                shape = _CONFIGURED_SHAPES[id(tls), id(verification), fallback] = (
                    _configured_shape(tls, verification, fallback))
            if mx is None and name[0] != "[":
                sni: str | None = name
                identities: tuple[str, ...] = (name,)
            else:
                sni = mx  # the MX host, or None for an IP literal
                identities = _identities(name, mx)
            explanation: Any = _new_object(_Explanation)
            explanation._hash = None
            explanation._make = (self, chain, name)
            proto = shared.proto = _decision(
                name, index.name, index.group, mx, shape[0], shape[1], tls, verification,
                fallback, False, shape[2], _tls_parameters(values, sni), identities,
                shared.effective, explanation, _NOTHING, (), (), (), None, None)
            return proto
        # SNI and reference identities come from the names exactly as parameters()
        # and requirements() make them.
        sni = mx if mx is not None else (None if name[0] == "[" else name)
        return _like(proto, name, index.name, index.group, mx, sni, _identities(name, mx),
                     _explanation(self, chain, name))

    def requirements(
        self, domain: str, mx_host: str | None, values: Mapping[str, object]
    ) -> Requirements:
        """What configuration alone demands (before destination policies)."""
        tls = values["tls"]
        verify = values["tls_verify"]
        assert isinstance(tls, Tls) and isinstance(verify, TlsVerify)
        fallback = bool(values["tls_ifavailable_fallback"]) and self._fallback_exists
        return Requirements(
            tls=tls,
            verification=_VERIFICATION_OF[id(verify)],
            fallback=fallback,
            reference_identities=_identities(domain, mx_host),
        )

    @staticmethod
    def parameters(domain: str, mx_host: str | None, values: Mapping[str, object], *,
                   sni: str | None = None) -> TlsParameters:
        """The TLS client parameters from effective values.

        SNI is ``sni`` when a policy names it (the TLSA base domain under DANE),
        else the MX host, else the domain; never an IP literal.
        """
        if sni is None:
            sni = mx_host if mx_host is not None else (
                None if domain[:1] == "[" else domain)
        return _tls_parameters(values, sni)


# Each container of a binding's chain, innermost first, with the scope contributions
# that come after it and the ids of their items.
_Steps = tuple[tuple[_Container, tuple[_Contribution, ...], tuple[int, ...]], ...]
