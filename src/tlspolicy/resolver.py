"""Compile a configuration once; resolve (binding, domain) pairs fast (SEMANTICS 2).

:class:`Resolver` indexes a :class:`~tlspolicy.scopes.Config` into per-binding
lookup tables at construction, so :meth:`Resolver.resolve` never walks the
configuration tree.  Whole decisions are memoised per request key; both the
memo and the regex match cache are bounded and safe to share between threads.
Nothing here performs I/O or reads the clock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import Final

import attrs

from .decision import Decision, Requirements, Source, TlsParameters, Verification
from .errors import InvalidDomainError, Location, OptionScopeError, UnknownBindingError
from .names import DomainKind, DomainName, normalise_domain
from .options import (
    OPTION_SPECS,
    UNSET,
    CompatVersion,
    Options,
    ScopeKind,
    Tls,
    TlsProtocols,
    TlsVerify,
)
from .policies.destination import Destination, apply_destination
from .scopes import DEFAULT_NAME, Config, DomainScope, scope_path

__all__ = ["OVERRIDABLE_OPTIONS", "RegexMatchCache", "Resolver"]

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

# One scope's contribution: ((option, value), ...) plus where it came from.
_Items = tuple[tuple[str, object], ...]


@attrs.frozen(slots=True)
class _Contribution:
    items: _Items
    source: Source


def _contribution(options: Options, path: str) -> _Contribution | None:
    items = tuple(options.items())
    return _Contribution(items, Source(path)) if items else None


class RegexMatchCache:
    """A bounded, thread-safe LRU cache of regex-domain match results.

    In the spirit of Momentum's ``match_cache_size``: remembering which regex
    stanzas match a domain saves running every pattern on every delivery.
    A size of 0 disables caching.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[Hashable, object] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> object | None:
        """The cached value for ``key`` (refreshing its age), or ``None``."""
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Hashable, value: object) -> None:
        """Remember ``value``; evict the least recently used entry when full."""
        if self.size <= 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


@attrs.frozen(slots=True)
class _Container:
    """The domain stanzas of one container, indexed: exact dict + ordered regexes."""

    exact: Mapping[str, _Contribution | None]
    regexes: tuple[tuple[DomainName, _Contribution], ...]

    @classmethod
    def build(
        cls, domains: tuple[DomainScope, ...], parent: tuple[tuple[ScopeKind, str], ...]
    ) -> _Container:
        exact: dict[str, _Contribution | None] = {}
        regexes: list[tuple[DomainName, _Contribution]] = []
        for d in domains:
            path = scope_path(*parent, (ScopeKind.DOMAIN, d.name.text))
            contribution = _contribution(d.options, path)
            if d.name.kind is DomainKind.REGEX:
                if contribution is not None:
                    regexes.append((d.name, contribution))
            else:
                exact[d.name.key] = contribution
        return cls(exact, tuple(regexes))


@attrs.frozen(slots=True)
class _BindingIndex:
    name: str
    group: str
    domains: _Container
    group_domains: _Container
    binding: _Contribution | None
    group_options: _Contribution | None


class Resolver:
    """A configuration compiled for fast, repeated resolution.

    >>> from tlspolicy import Config, Resolver
    >>> Resolver(Config()).resolve("example.com").plan.value
    'skip'

    ``decision_cache_size`` bounds the memo of whole decisions (0 disables it);
    the regex match cache size comes from the configuration's
    ``match_cache_size``.
    """

    def __init__(self, config: Config, *, decision_cache_size: int = 65536) -> None:
        self.config = config
        self.compatibility = config.effective_compatibility
        self._fallback_exists = self.compatibility >= _FALLBACK_SINCE
        self._global_domains = _Container.build(config.domains, ())
        self._global = _contribution(config.options, "global")
        self._regex_cache = RegexMatchCache(config.effective_match_cache_size)
        self._decisions = RegexMatchCache(decision_cache_size)
        groups = {g.name: g for g in config.binding_groups}
        group_index: dict[str, tuple[_Container, _Contribution | None]] = {}
        for name, group in groups.items():
            g = (ScopeKind.BINDING_GROUP, name)
            group_index[name] = (_Container.build(group.domains, (g,)),
                                 _contribution(group.options, scope_path(g)))
        empty = _Container({}, ())
        default_group = group_index.get(DEFAULT_NAME, (empty, None))
        self._bindings: dict[str, _BindingIndex] = {}
        for group_name, binding in config.iter_bindings():
            parent: tuple[tuple[ScopeKind, str], ...] = (
                ((ScopeKind.BINDING_GROUP, group_name),) if group_name in groups
                and any(b is binding for b in groups[group_name].bindings) else ())
            b = (ScopeKind.BINDING, binding.name)
            g_container, g_options = group_index.get(group_name, default_group)
            self._bindings[binding.name] = _BindingIndex(
                binding.name, group_name,
                _Container.build(binding.domains, (*parent, b)),
                g_container,
                _contribution(binding.options, scope_path(*parent, b)),
                g_options,
            )
        if DEFAULT_NAME not in self._bindings:
            self._bindings[DEFAULT_NAME] = _BindingIndex(
                DEFAULT_NAME, DEFAULT_NAME, empty, default_group[0], None, default_group[1])

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

    def _lookup(self, container: _Container, domain: str) -> list[_Contribution]:
        found: list[_Contribution] = []
        exact = container.exact.get(domain)
        if exact is not None:
            found.append(exact)
        if container.regexes:
            # Containers live as long as the resolver, so their id is a stable key.
            key = (id(container), domain)
            cached = self._regex_cache.get(key)
            if cached is None:
                cached = tuple(c for name, c in container.regexes
                               if name.regex is not None and name.regex.search(domain))
                self._regex_cache.put(key, cached)
            found.extend(cached)  # type: ignore[arg-type]
        return found

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
        chain.extend(self._lookup(index.domains, domain))
        chain.extend(self._lookup(index.group_domains, domain))
        if index.binding is not None:
            chain.append(index.binding)
        if index.group_options is not None:
            chain.append(index.group_options)
        chain.extend(self._lookup(self._global_domains, domain))
        if self._global is not None:
            chain.append(self._global)
        values: dict[str, object] = {}
        sources: dict[str, Source] = {}
        for contribution in chain:
            for name, value in contribution.items:
                if name not in values:
                    values[name] = value
                    sources[name] = contribution.source
        for name in _OPTION_NAMES:
            if name not in values:
                values[name] = OPTION_SPECS[name].default
                sources[name] = _DEFAULT_SOURCE
        return values, sources

    def _check_overrides(self, overrides: Options) -> None:
        for name, _value in overrides.items():
            if name not in OVERRIDABLE_OPTIONS:
                raise OptionScopeError(
                    f"option {name!r} cannot be overridden per message "
                    f"(allowed: {', '.join(sorted(OVERRIDABLE_OPTIONS))})",
                    Location(scope="override", option=name))
            if OPTION_SPECS[name].since > self.compatibility:
                raise OptionScopeError(
                    f"option {name!r} needs Momentum {OPTION_SPECS[name].since} or newer; the "
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
        key = (domain, binding, mx_host, overrides, destination)
        cached = self._decisions.get(key)
        if cached is not None:
            return cached  # type: ignore[return-value]
        decision = self._resolve(domain, binding, mx_host, overrides, destination)
        self._decisions.put(key, decision)
        return decision

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
        values, sources = self.effective(name, index.name, overrides=overrides)
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
        )

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
            verification=Verification.of(verify),
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
        protocols = values["tls_protocols"]
        assert isinstance(protocols, TlsProtocols)
        if sni is None:
            sni = mx_host if mx_host is not None else (
                None if domain.startswith("[") else domain)

        def text(name: str) -> str | None:
            value = values[name]
            return None if value is UNSET or value is None else str(value)

        return TlsParameters(
            ca_file=text("tls_ca"),
            certificate_file=text("tls_certificate"),
            key_file=text("tls_key"),
            ciphers=text("tls_ciphers"),
            tls13_ciphersuites=text("tlsv13_ciphersuites"),
            protocols=protocols.versions,
            sni=sni,
            engine=values["tls_engine"],  # type: ignore[arg-type]
        )


_DEFAULT_SOURCE: Final = Source("default")


def _identities(domain: str, mx_host: str | None) -> tuple[str, ...]:
    """Reference identities for ``host`` verification: the domain or the MX host."""
    first = domain[1:-1].removeprefix("ipv6:") if domain.startswith("[") else domain
    if mx_host is None or mx_host == first:
        return (first,)
    return (first, mx_host)
