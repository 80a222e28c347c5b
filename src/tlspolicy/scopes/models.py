"""Scope models and the whole configuration (SEMANTICS section 2).

``Config`` is immutable and valid by construction: options sit only in
scopes where they are allowed, names are unique, and no option is newer than
the compatibility version.  The ``trusted_*`` constructors are for loaders that
have already checked everything.
"""

from __future__ import annotations

import datetime as _dt
import itertools
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final, TypeVar

import attrs

from ..errors import (
    BindingGroupConflictError,
    DuplicateScopeError,
    InvalidValueError,
    Location,
    OptionScopeError,
    OptionVersionError,
)
from ..names import DomainKind, DomainName
from ..options import (
    NEWEST_VERSION,
    OPTION_SPECS,
    CompatVersion,
    Options,
    ScopeKind,
)

__all__ = [
    "DEFAULT_MATCH_CACHE_SIZE",
    "DEFAULT_NAME",
    "FLOOR_OPTIONS",
    "BindingGroupScope",
    "BindingScope",
    "Config",
    "DomainScope",
    "FloorScope",
    "floor_path",
    "scope_path",
    "trusted_binding",
    "trusted_config",
    "trusted_domain",
    "trusted_exact_domains",
    "trusted_group",
]

DEFAULT_NAME: Final = "default"
"""Name of the implicit binding and binding group."""

DEFAULT_MATCH_CACHE_SIZE: Final = 16384


def scope_path(*parts: tuple[ScopeKind, str]) -> str:
    """Render a scope path: ``binding_group "g1" > binding "b1" > domain "x"``."""
    if not parts:
        return "global"
    return " > ".join(f'{kind.value} "{name}"' for kind, name in parts)


def _check_scope(options: Options, kind: ScopeKind, path: str) -> None:
    for name, value in options.items():
        if kind not in OPTION_SPECS[name].scopes:
            allowed = ", ".join(sorted(s.value for s in OPTION_SPECS[name].scopes))
            raise OptionScopeError(
                f"not valid in a {kind.value} scope (valid in: {allowed})",
                Location(scope=path, option=name), value=OPTION_SPECS[name].dump(value),
                has_value=True,
            )


def _unique(names: Iterable[Any], what: str, path: str) -> None:
    seen: set[Any] = set()
    for name in names:
        if name in seen:
            raise DuplicateScopeError(f"{what} {str(name)!r} declared twice", Location(scope=path))
        seen.add(name)


FLOOR_OPTIONS: Final = frozenset({"tls", "tls_verify", "tls_ifavailable_fallback",
                                  "tls_protocols"})
"""Options a floor may raise (SEMANTICS section 7).

A CA bundle, a client certificate or a cipher string is not an order: a
different one is not "stricter", so floors cannot set them.
"""


def _check_expiry(expires: object, reason: object, weakens: object, path: str) -> None:
    if expires is not None and (not isinstance(expires, _dt.datetime)
                                or expires.tzinfo is None or expires.utcoffset() is None):
        raise InvalidValueError("expires must be a timezone-aware datetime (UTC)",
                                Location(scope=path, option="expires"), value=expires,
                                has_value=True)
    if reason is not None and (not isinstance(reason, str) or not reason.strip()):
        raise InvalidValueError("reason must be a non-empty string",
                                Location(scope=path, option="reason"), value=reason,
                                has_value=True)
    if not isinstance(weakens, bool):
        raise InvalidValueError("expiry_weakens must be true or false",
                                Location(scope=path, option="expiry_weakens"), value=weakens,
                                has_value=True)


@attrs.frozen(slots=True)
class _NamedStanza:
    """What a ``domain`` and a ``floor`` stanza both hold: a name, options and the
    stanza attributes of SEMANTICS section 8."""

    name: DomainName
    options: Options = attrs.field(factory=Options)
    expires: _dt.datetime | None = None
    reason: str | None = None
    expiry_weakens: bool = False

    def _check_expiry(self, path: str) -> None:
        _check_expiry(self.expires, self.reason, self.expiry_weakens, path)


@attrs.frozen(slots=True)
class DomainScope(_NamedStanza):
    """A ``domain`` stanza: a name (exact, ``/regex/`` or IP literal) and options.

    ``expires`` (an aware datetime) ends the stanza by itself: from that
    instant on it is ignored, as if absent (SEMANTICS section 8).
    ``expiry_weakens`` acknowledges that its expiry makes some decision
    weaker; ``reason`` says why the stanza exists.
    """

    def __attrs_post_init__(self) -> None:
        path = f'domain "{self.name}"'
        _check_scope(self.options, ScopeKind.DOMAIN, path)
        self._check_expiry(path)


def floor_path(name: DomainName | str) -> str:
    """The scope path of a floor: ``floor "partner.example"``."""
    return f'floor "{name}"'


@attrs.frozen(slots=True)
class FloorScope(_NamedStanza):
    """A ``floor``: minimums for a domain that no binding can weaken (SEMANTICS 7).

    ``options`` may set only :data:`FLOOR_OPTIONS`; ``tls_ifavailable_fallback``
    only to ``False``.  ``expires``, ``reason`` and ``expiry_weakens`` are as
    for :class:`DomainScope`.
    """

    def __attrs_post_init__(self) -> None:
        path = floor_path(self.name)
        for option, value in self.options.items():
            _check_floor_option(option, value, Location(scope=path, option=option))
        self._check_expiry(path)


def _check_floor_option(option: str, value: object, location: Location) -> None:
    if option not in FLOOR_OPTIONS:
        raise OptionScopeError(
            f"a floor cannot set {option!r} (floors raise only "
            f"{', '.join(sorted(FLOOR_OPTIONS))}: a CA bundle, certificate or cipher string "
            "is not an order)", location, value=OPTION_SPECS[option].dump(value),
            has_value=True)
    if option == "tls_ifavailable_fallback" and value is not False:
        raise InvalidValueError(
            "a floor can only say tls_ifavailable_fallback = false (true would not raise "
            "anything)", location, value=value, has_value=True)


def _check_domains(domains: Sequence[DomainScope], path: str) -> None:
    _unique((d.name for d in domains), "domain", path)


@attrs.frozen(slots=True)
class _BindingStanza:
    """What a ``binding`` and a ``binding_group`` stanza both hold and check."""

    name: str
    options: Options = attrs.field(factory=Options)
    domains: tuple[DomainScope, ...] = ()

    def _check(self, kind: ScopeKind) -> str:
        """Check the name, options and domains of this ``kind`` of stanza; its path."""
        _check_name(self.name, kind.value)
        path = scope_path((kind, self.name))
        _check_scope(self.options, kind, path)
        _check_domains(self.domains, path)
        return path


@attrs.frozen(slots=True)
class BindingScope(_BindingStanza):
    """A ``binding`` stanza: options and the domain stanzas nested in it."""

    def __attrs_post_init__(self) -> None:
        self._check(ScopeKind.BINDING)


@attrs.frozen(slots=True)
class BindingGroupScope(_BindingStanza):
    """A ``binding_group`` stanza: options, domain stanzas and member bindings."""

    bindings: tuple[BindingScope, ...] = ()

    def __attrs_post_init__(self) -> None:
        path = self._check(ScopeKind.BINDING_GROUP)
        _unique((b.name for b in self.bindings), "binding", path)


def _check_name(name: object, what: str) -> None:
    if not isinstance(name, str) or not name or name != name.strip():
        raise InvalidValueError(
            f"{what} name must be a non-empty string without surrounding blanks",
            Location(scope=what), value=name, has_value=True,
        )


@attrs.frozen(slots=True)
class Config:
    """A whole outbound TLS configuration.

    ``bindings`` are the bindings outside any group (members of the implicit
    group ``default``).  ``compatibility`` is the Momentum version emulated
    (``None``: the newest).  The implicit ``default`` binding and group need
    not be declared.
    """

    options: Options = attrs.field(factory=Options)
    domains: tuple[DomainScope, ...] = ()
    binding_groups: tuple[BindingGroupScope, ...] = ()
    bindings: tuple[BindingScope, ...] = ()
    compatibility: CompatVersion | None = None
    match_cache_size: int | None = None
    floors: tuple[FloorScope, ...] = ()

    def __attrs_post_init__(self) -> None:
        _check_scope(self.options, ScopeKind.GLOBAL, "global")
        _check_domains(self.domains, "global")
        _unique((f.name for f in self.floors), "floor", "global")
        _unique((g.name for g in self.binding_groups), "binding_group", "global")
        owner: dict[str, str] = {}
        for group_name, binding in self.iter_bindings():
            if binding.name in owner:
                first = owner[binding.name]
                raise BindingGroupConflictError(
                    f"binding {binding.name!r} is declared in binding_group {first!r} and in "
                    f"binding_group {group_name!r}" if first != group_name else
                    f"binding {binding.name!r} declared twice",
                    Location(scope=scope_path((ScopeKind.BINDING, binding.name))),
                )
            owner[binding.name] = group_name
        if self.match_cache_size is not None and (
            not isinstance(self.match_cache_size, int) or isinstance(self.match_cache_size, bool)
            or self.match_cache_size < 0
        ):
            raise InvalidValueError("match_cache_size must be a whole number >= 0",
                                    Location(option="match_cache_size"),
                                    value=self.match_cache_size, has_value=True)
        version = self.effective_compatibility
        floors = ((floor_path(f.name), f.options) for f in self.floors)
        for path, options in itertools.chain(self.iter_options(), floors):
            for name, _value in options.items():
                spec = OPTION_SPECS[name]
                if spec.since > version:
                    raise OptionVersionError(
                        f"needs Momentum {spec.since} or newer; the "
                        f"configuration pins compatibility {version}",
                        Location(scope=path, option=name),
                    )

    @property
    def effective_compatibility(self) -> CompatVersion:
        """The compatibility version in force (the newest when not pinned)."""
        return self.compatibility if self.compatibility is not None else NEWEST_VERSION

    @property
    def effective_match_cache_size(self) -> int:
        """The regex match cache size in force."""
        if self.match_cache_size is None:
            return DEFAULT_MATCH_CACHE_SIZE
        return self.match_cache_size

    def iter_bindings(self) -> Iterator[tuple[str, BindingScope]]:
        """Every declared binding with the name of its group (``default`` if none)."""
        for group in self.binding_groups:
            for binding in group.bindings:
                yield group.name, binding
        for binding in self.bindings:
            yield DEFAULT_NAME, binding

    def iter_options(self) -> Iterator[tuple[str, Options]]:
        """Every scope's path and options, global first, in declaration order."""
        yield "global", self.options
        for d in self.domains:
            yield scope_path((ScopeKind.DOMAIN, d.name.text)), d.options
        for group in self.binding_groups:
            g = (ScopeKind.BINDING_GROUP, group.name)
            yield scope_path(g), group.options
            for d in group.domains:
                yield scope_path(g, (ScopeKind.DOMAIN, d.name.text)), d.options
            for binding in group.bindings:
                b = (ScopeKind.BINDING, binding.name)
                yield scope_path(g, b), binding.options
                for d in binding.domains:
                    yield scope_path(g, b, (ScopeKind.DOMAIN, d.name.text)), d.options
        for binding in self.bindings:
            b = (ScopeKind.BINDING, binding.name)
            yield scope_path(b), binding.options
            for d in binding.domains:
                yield scope_path(b, (ScopeKind.DOMAIN, d.name.text)), d.options


# --------------------------------------------------------------------------
# Trusted construction, for loaders that have already checked everything the
# constructors check.  The public constructors keep validating; these skip the
# re-walk of every scope, which costs as much as the loading itself on large
# files.  Callers must guarantee what ``__attrs_post_init__`` would verify.

_new: Final = object.__new__
_set: Final = object.__setattr__
_Scope = TypeVar("_Scope")


def _trusted(cls: type[_Scope], **fields: object) -> _Scope:
    """``cls`` with ``fields`` set and nothing checked."""
    scope: _Scope = _new(cls)
    for name, value in fields.items():
        _set(scope, name, value)
    return scope


def _setters(cls: type, *fields: str) -> tuple[Any, ...]:
    # The slot descriptors' own setters, looked up once: object.__setattr__ (which a
    # frozen class leaves as the only way in) finds the same descriptor by name on
    # every call, and for one object per stanza that lookup is half the cost.
    return tuple(getattr(cls, field).__set__ for field in fields)


(_domain_name, _domain_options, _domain_expires, _domain_reason,
 _domain_weakens) = _setters(DomainScope, "name", "options", "expires", "reason",
                             "expiry_weakens")
_name_kind, _name_key, _name_text, _name_regex = _setters(DomainName, "kind", "key", "text",
                                                          "regex")
_EXACT: Final = DomainKind.EXACT


def trusted_domain(name: DomainName, options: Options) -> DomainScope:
    """A :class:`DomainScope` built without re-checking (the caller checked)."""
    scope: DomainScope = _new(DomainScope)
    _domain_name(scope, name)
    _domain_options(scope, options)
    _domain_expires(scope, None)
    _domain_reason(scope, None)
    _domain_weakens(scope, False)
    return scope


def trusted_exact_domains(texts: Sequence[str], options: Sequence[Options],
                          keys: Sequence[str] | None = None) -> list[DomainScope]:
    """Domain stanzas of exact names, built without re-checking (the caller checked):
    the name spelt ``texts[i]``, its normalised key ``keys[i]`` (without ``keys``, the
    text is already normalised and is its own key), with ``options[i]``, no expiry and
    no reason.

    The same objects as ``trusted_domain(DomainName(DomainKind.EXACT, key, text),
    options)``, for the hundred thousand stanzas of a large configuration, where the
    two constructor calls per stanza were most of the building.
    """
    count = len(texts)
    if len(options) != count or (keys is not None and len(keys) != count):
        raise ValueError(f"{count} names but {len(options)} options or keys")
    same = itertools.repeat
    # One field of every object at a time, each a map of a C setter drained by a
    # zero-length deque: no Python bytecode runs per stanza.
    values: Iterable[object]
    names: list[DomainName] = list(map(_new, same(DomainName, count)))
    for setter, values in ((_name_kind, same(_EXACT)), (_name_key, texts if keys is None else keys),
                           (_name_text, texts), (_name_regex, same(None))):
        deque(map(setter, names, values), 0)
    scopes: list[DomainScope] = list(map(_new, same(DomainScope, count)))
    for setter, values in ((_domain_name, names), (_domain_options, options),
                           (_domain_expires, same(None)), (_domain_reason, same(None)),
                           (_domain_weakens, same(False))):
        deque(map(setter, scopes, values), 0)
    return scopes


def trusted_binding(name: str, options: Options, domains: tuple[DomainScope, ...]
                    ) -> BindingScope:
    """A :class:`BindingScope` built without re-checking (the caller checked)."""
    return _trusted(BindingScope, name=name, options=options, domains=domains)


def trusted_group(name: str, options: Options, domains: tuple[DomainScope, ...],
                  bindings: tuple[BindingScope, ...]) -> BindingGroupScope:
    """A :class:`BindingGroupScope` built without re-checking (the caller checked)."""
    return _trusted(BindingGroupScope, name=name, options=options, domains=domains,
                    bindings=bindings)


def trusted_config(options: Options, domains: tuple[DomainScope, ...],
                   binding_groups: tuple[BindingGroupScope, ...],
                   bindings: tuple[BindingScope, ...], compatibility: CompatVersion | None,
                   match_cache_size: int | None, floors: tuple[FloorScope, ...] = ()
                   ) -> Config:
    """A :class:`Config` built without re-checking (the caller checked)."""
    return _trusted(Config, options=options, domains=domains, binding_groups=binding_groups,
                    bindings=bindings, compatibility=compatibility,
                    match_cache_size=match_cache_size, floors=floors)
