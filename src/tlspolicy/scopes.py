"""Scope models and the whole configuration (SEMANTICS section 2).

``Config`` is immutable and valid by construction: options sit only in
scopes where they are allowed, names are unique, and no option is newer than
the compatibility version.  :func:`build_config` turns a raw tree read from a
file into a ``Config`` and reports *every* problem with its location;
:func:`layer_configs` overlays several files option by option.
"""

from __future__ import annotations

import datetime as _dt
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final, TypeVar

import attrs

from ._raw import RawOption, RawScope
from .errors import (
    BindingGroupConflictError,
    ConfigError,
    ConfigErrors,
    DuplicateScopeError,
    InvalidDomainError,
    InvalidValueError,
    Location,
    OptionScopeError,
    OptionVersionError,
    RegexError,
    UnknownOptionError,
)
from .names import DomainKind, DomainName
from .options import (
    NEWEST_VERSION,
    OPTION_SPECS,
    CompatVersion,
    Options,
    ScopeKind,
    option_spec,
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
    "build_config",
    "config_at",
    "floor_path",
    "has_expiry",
    "iter_stanzas",
    "layer_configs",
    "next_expiry",
    "parse_expires",
    "scope_path",
    "without_stanza",
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
class DomainScope:
    """A ``domain`` stanza: a name (exact, ``/regex/`` or IP literal) and options.

    ``expires`` (an aware datetime) ends the stanza by itself: from that
    instant on it is ignored, as if absent (SEMANTICS section 8).
    ``expiry_weakens`` acknowledges that its expiry makes some decision
    weaker; ``reason`` says why the stanza exists.
    """

    name: DomainName
    options: Options = attrs.field(factory=Options)
    expires: _dt.datetime | None = None
    reason: str | None = None
    expiry_weakens: bool = False

    def __attrs_post_init__(self) -> None:
        path = f'domain "{self.name}"'
        _check_scope(self.options, ScopeKind.DOMAIN, path)
        _check_expiry(self.expires, self.reason, self.expiry_weakens, path)


def floor_path(name: DomainName | str) -> str:
    """The scope path of a floor: ``floor "partner.example"``."""
    return f'floor "{name}"'


@attrs.frozen(slots=True)
class FloorScope:
    """A ``floor``: minimums for a domain that no binding can weaken (SEMANTICS 7).

    ``options`` may set only :data:`FLOOR_OPTIONS`; ``tls_ifavailable_fallback``
    only to ``False``.  ``expires``, ``reason`` and ``expiry_weakens`` are as
    for :class:`DomainScope`.
    """

    name: DomainName
    options: Options = attrs.field(factory=Options)
    expires: _dt.datetime | None = None
    reason: str | None = None
    expiry_weakens: bool = False

    def __attrs_post_init__(self) -> None:
        path = floor_path(self.name)
        for option, value in self.options.items():
            _check_floor_option(option, value, Location(scope=path, option=option))
        _check_expiry(self.expires, self.reason, self.expiry_weakens, path)


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
class BindingScope:
    """A ``binding`` stanza: options and the domain stanzas nested in it."""

    name: str
    options: Options = attrs.field(factory=Options)
    domains: tuple[DomainScope, ...] = ()

    def __attrs_post_init__(self) -> None:
        _check_name(self.name, "binding")
        path = scope_path((ScopeKind.BINDING, self.name))
        _check_scope(self.options, ScopeKind.BINDING, path)
        _check_domains(self.domains, path)


@attrs.frozen(slots=True)
class BindingGroupScope:
    """A ``binding_group`` stanza: options, domain stanzas and member bindings."""

    name: str
    options: Options = attrs.field(factory=Options)
    domains: tuple[DomainScope, ...] = ()
    bindings: tuple[BindingScope, ...] = ()

    def __attrs_post_init__(self) -> None:
        _check_name(self.name, "binding_group")
        path = scope_path((ScopeKind.BINDING_GROUP, self.name))
        _check_scope(self.options, ScopeKind.BINDING_GROUP, path)
        _check_domains(self.domains, path)
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


def trusted_domain(name: DomainName, options: Options) -> DomainScope:
    """A :class:`DomainScope` built without re-checking (the caller checked)."""
    scope: DomainScope = _new(DomainScope)
    _set(scope, "name", name)
    _set(scope, "options", options)
    _set(scope, "expires", None)
    _set(scope, "reason", None)
    _set(scope, "expiry_weakens", False)
    return scope


def trusted_binding(name: str, options: Options, domains: tuple[DomainScope, ...]
                    ) -> BindingScope:
    """A :class:`BindingScope` built without re-checking (the caller checked)."""
    scope: BindingScope = _new(BindingScope)
    _set(scope, "name", name)
    _set(scope, "options", options)
    _set(scope, "domains", domains)
    return scope


def trusted_group(name: str, options: Options, domains: tuple[DomainScope, ...],
                  bindings: tuple[BindingScope, ...]) -> BindingGroupScope:
    """A :class:`BindingGroupScope` built without re-checking (the caller checked)."""
    scope: BindingGroupScope = _new(BindingGroupScope)
    _set(scope, "name", name)
    _set(scope, "options", options)
    _set(scope, "domains", domains)
    _set(scope, "bindings", bindings)
    return scope


def trusted_config(options: Options, domains: tuple[DomainScope, ...],
                   binding_groups: tuple[BindingGroupScope, ...],
                   bindings: tuple[BindingScope, ...], compatibility: CompatVersion | None,
                   match_cache_size: int | None, floors: tuple[FloorScope, ...] = ()
                   ) -> Config:
    """A :class:`Config` built without re-checking (the caller checked)."""
    config: Config = _new(Config)
    _set(config, "options", options)
    _set(config, "domains", domains)
    _set(config, "binding_groups", binding_groups)
    _set(config, "bindings", bindings)
    _set(config, "compatibility", compatibility)
    _set(config, "match_cache_size", match_cache_size)
    _set(config, "floors", floors)
    return config


# --------------------------------------------------------------------------
# Building a Config from a raw tree, collecting every located error.

_ALLOWED_CHILDREN: Final = {
    ScopeKind.GLOBAL: (ScopeKind.DOMAIN, ScopeKind.BINDING_GROUP, ScopeKind.BINDING),
    ScopeKind.BINDING_GROUP: (ScopeKind.DOMAIN, ScopeKind.BINDING),
    ScopeKind.BINDING: (ScopeKind.DOMAIN,),
    ScopeKind.DOMAIN: (),
}


class _Builder:
    def __init__(self, merge_groups: bool) -> None:
        self.errors: list[ConfigError] = []
        self.merge_groups = merge_groups
        self.compatibility: CompatVersion | None = None
        self.match_cache_size: int | None = None

    def fail(self, error: ConfigError) -> None:
        self.errors.append(error)

    def settings(self, raw: RawScope) -> None:
        seen: set[str] = set()
        for item in raw.settings:
            key = item.name.lower()
            if key in seen:
                self.fail(DuplicateScopeError(f"setting {key!r} given twice",
                                              item.location.evolve(option=key)))
                continue
            seen.add(key)
            if key == "compatibility":
                try:
                    self.compatibility = CompatVersion.parse(item.value)  # type: ignore[arg-type]
                except ConfigError as exc:
                    self.fail(exc.located(item.location))
            elif key == "match_cache_size":
                value = item.value
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    self.fail(InvalidValueError("match_cache_size must be a whole number >= 0",
                                                item.location.evolve(option=key), value=value,
                                                has_value=True))
                else:
                    self.match_cache_size = value
            else:
                self.fail(UnknownOptionError(
                    f"unknown top-level setting {item.name!r} (known: compatibility, "
                    "match_cache_size)", item.location.evolve(option=item.name)))

    def options(self, raw: Sequence[RawOption], kind: ScopeKind, path: str) -> Options:
        values: dict[str, object] = {}
        for item in raw:
            loc = item.location.evolve(scope=path)
            try:
                spec = option_spec(item.name, loc)
            except ConfigError as exc:
                self.fail(exc)
                continue
            loc = loc.evolve(option=spec.name)
            if spec.name in values:
                self.fail(DuplicateScopeError(
                    "option set twice in one scope (option names are case-insensitive)",
                    loc, value=item.name, has_value=True))
                continue
            if kind not in spec.scopes:
                allowed = ", ".join(sorted(s.value for s in spec.scopes))
                self.fail(OptionScopeError(
                    f"not valid in a {kind.value} scope (valid in: {allowed})", loc,
                    value=item.value, has_value=True))
                continue
            try:
                parsed = spec.parse_value(item.value, loc)
            except ConfigError as exc:
                self.fail(exc)
                continue
            version = self.compatibility or NEWEST_VERSION
            if spec.since > version:
                self.fail(OptionVersionError(
                    f"needs Momentum {spec.since} or newer; the "
                    f"configuration pins compatibility {version}", loc,
                    value=item.value, has_value=True))
                continue
            values[spec.name] = parsed
        return Options(**values)  # type: ignore[arg-type]

    def children(
        self, raw: RawScope, kind: ScopeKind, path_parts: tuple[tuple[ScopeKind, str], ...]
    ) -> list[RawScope]:
        out = []
        for child in raw.children:
            if child.kind not in _ALLOWED_CHILDREN[kind]:
                self.fail(ConfigError(
                    f"a {child.kind.value} cannot be nested in a {kind.value}",
                    child.location.evolve(scope=scope_path(*path_parts))))
                continue
            out.append(child)
        return out

    def name_of(self, raw: RawScope, parent: tuple[tuple[ScopeKind, str], ...]) -> str | None:
        if not isinstance(raw.name, str) or not raw.name.strip() or raw.name != raw.name.strip():
            self.fail(InvalidValueError(
                f"{raw.kind.value} needs a non-empty name without surrounding blanks",
                raw.location.evolve(scope=scope_path(*parent) if parent else "global"),
                value=raw.name, has_value=True))
            return None
        return raw.name

    def domains(
        self, raws: Iterable[RawScope], parent: tuple[tuple[ScopeKind, str], ...]
    ) -> tuple[DomainScope, ...]:
        result: list[DomainScope] = []
        seen: dict[DomainName, RawScope] = {}
        for raw in raws:
            name_text = self.name_of(raw, parent)
            if name_text is None:
                continue
            path = scope_path(*parent, (ScopeKind.DOMAIN, name_text))
            try:
                name = DomainName.parse(name_text)
            except InvalidDomainError as exc:
                cls = RegexError if name_text.strip().startswith("/") else InvalidValueError
                self.fail(cls(str(exc), raw.location.evolve(scope=path), value=name_text,
                              has_value=True))
                continue
            for child in raw.children:
                self.fail(ConfigError(f"a {child.kind.value} cannot be nested in a domain",
                                      child.location.evolve(scope=path)))
            options = self.options(raw.options, ScopeKind.DOMAIN, path)
            expires, reason, weakens = self.attributes(raw, path)
            if name in seen:
                first = seen[name].location
                where = f" (first at line {first.line})" if first.line is not None else ""
                spelled = "" if name.kind is DomainKind.REGEX else f" ({name.key})"
                self.fail(DuplicateScopeError(
                    f"domain{spelled} declared twice in the same container{where}",
                    raw.location.evolve(scope=path)))
                continue
            seen[name] = raw
            result.append(DomainScope(name, options, expires, reason, weakens))
        return tuple(result)

    def attributes(self, raw: RawScope, path: str
                   ) -> tuple[_dt.datetime | None, str | None, bool]:
        """A domain's or floor's ``expires``, ``reason`` and ``expiry_weakens``."""
        expires: _dt.datetime | None = None
        reason: str | None = None
        weakens = False
        seen: set[str] = set()
        for item in raw.settings:
            key = item.name.lower()
            loc = item.location.evolve(scope=path, option=key)
            if key in seen:
                self.fail(DuplicateScopeError(f"{key!r} given twice", loc))
                continue
            seen.add(key)
            if key == "expires":
                try:
                    expires = parse_expires(item.value)
                except ConfigError as exc:
                    self.fail(exc.located(loc))
            elif key == "reason":
                if not isinstance(item.value, str) or not item.value.strip():
                    self.fail(InvalidValueError("reason must be a non-empty string", loc,
                                                value=item.value, has_value=True))
                else:
                    reason = item.value
            elif key == "expiry_weakens":
                if not isinstance(item.value, bool):
                    self.fail(InvalidValueError("expiry_weakens must be true or false", loc,
                                                value=item.value, has_value=True))
                else:
                    weakens = item.value
            else:  # pragma: no cover - readers put only these keys here
                self.fail(UnknownOptionError(f"unknown stanza attribute {item.name!r}", loc))
        return expires, reason, weakens

    def floors(self, raws: Iterable[RawScope]) -> tuple[FloorScope, ...]:
        result: list[FloorScope] = []
        seen: dict[DomainName, RawScope] = {}
        for raw in raws:
            name_text = self.name_of(raw, ())
            if name_text is None:
                continue
            path = floor_path(name_text)
            try:
                name = DomainName.parse(name_text)
            except InvalidDomainError as exc:
                cls = RegexError if name_text.strip().startswith("/") else InvalidValueError
                self.fail(cls(str(exc), raw.location.evolve(scope=path), value=name_text,
                              has_value=True))
                continue
            for child in raw.children:
                self.fail(ConfigError(f"a {child.kind.value} cannot be nested in a floor",
                                      child.location.evolve(scope=path)))
            allowed: list[RawOption] = []
            for item in raw.options:
                loc = item.location.evolve(scope=path)
                try:
                    spec = option_spec(item.name, loc)
                except ConfigError as exc:
                    self.fail(exc)
                    continue
                if spec.name not in FLOOR_OPTIONS:
                    self.fail(OptionScopeError(
                        f"a floor cannot set {spec.name!r} (floors raise only "
                        f"{', '.join(sorted(FLOOR_OPTIONS))}: a CA bundle, certificate or "
                        "cipher string is not an order)", loc.evolve(option=spec.name),
                        value=item.value, has_value=True))
                    continue
                allowed.append(item)
            options = self.options(allowed, ScopeKind.DOMAIN, path)
            if options.tls_ifavailable_fallback is True:
                item = next(i for i in allowed if i.name.lower() == "tls_ifavailable_fallback")
                self.fail(InvalidValueError(
                    "a floor can only say tls_ifavailable_fallback = false (true would not "
                    "raise anything)", item.location.evolve(scope=path,
                                                            option="tls_ifavailable_fallback"),
                    value=item.value, has_value=True))
                continue
            expires, reason, weakens = self.attributes(raw, path)
            if name in seen:
                first = seen[name].location
                where = f" (first at line {first.line})" if first.line is not None else ""
                self.fail(DuplicateScopeError(f"floor declared twice{where}",
                                              raw.location.evolve(scope=path)))
                continue
            seen[name] = raw
            result.append(FloorScope(name, options, expires, reason, weakens))
        return tuple(result)

    def binding(
        self, raw: RawScope, parent: tuple[tuple[ScopeKind, str], ...]
    ) -> BindingScope | None:
        name = self.name_of(raw, parent)
        if name is None:
            return None
        parts = (*parent, (ScopeKind.BINDING, name))
        path = scope_path(*parts)
        options = self.options(raw.options, ScopeKind.BINDING, path)
        domains = self.domains(self.children(raw, ScopeKind.BINDING, parts), parts)
        return BindingScope(name, options, domains)

    def build(self, raw: RawScope) -> Config:
        self.settings(raw)
        options = self.options(raw.options, ScopeKind.GLOBAL, "global")
        children = self.children(raw, ScopeKind.GLOBAL, ())
        domains = self.domains((c for c in children if c.kind is ScopeKind.DOMAIN), ())
        groups: dict[str, BindingGroupScope] = {}
        group_raw: dict[str, RawScope] = {}
        bindings: list[BindingScope] = []
        owner: dict[str, tuple[str, RawScope]] = {}
        for child in children:
            if child.kind is ScopeKind.BINDING_GROUP:
                name = self.name_of(child, ())
                if name is None:
                    continue
                g = ((ScopeKind.BINDING_GROUP, name),)
                path = scope_path(*g)
                if name in groups and not self.merge_groups:
                    first = group_raw[name].location
                    where = f" (first at line {first.line})" if first.line is not None else ""
                    self.fail(DuplicateScopeError(f"binding_group declared twice{where}",
                                                  child.location.evolve(scope=path)))
                    continue
                g_children = self.children(child, ScopeKind.BINDING_GROUP, g)
                g_opts = self.options(child.options, ScopeKind.BINDING_GROUP, path)
                g_domains = self.domains(
                    (c for c in g_children if c.kind is ScopeKind.DOMAIN), g)
                g_bindings = []
                for b_raw in g_children:
                    if b_raw.kind is not ScopeKind.BINDING:
                        continue
                    binding = self.binding(b_raw, g)
                    if binding is not None and self.claim(owner, name, binding, b_raw):
                        g_bindings.append(binding)
                group = BindingGroupScope(name, g_opts, g_domains, tuple(g_bindings))
                if name in groups:
                    groups[name] = _merge_group(groups[name], group)
                else:
                    groups[name] = group
                    group_raw[name] = child
            elif child.kind is ScopeKind.BINDING:
                binding = self.binding(child, ())
                if binding is not None and self.claim(owner, DEFAULT_NAME, binding, child):
                    bindings.append(binding)
        floors = self.floors(raw.floors)
        ConfigErrors.raise_if_any(self.errors)
        try:
            return Config(options, domains, tuple(groups.values()), tuple(bindings),
                          self.compatibility, self.match_cache_size, floors)
        except ConfigError as exc:  # pragma: no cover - the builder checks all of these first
            raise exc.located(raw.location) from None

    def claim(self, owner: dict[str, tuple[str, RawScope]], group: str,
              binding: BindingScope, raw: RawScope) -> bool:
        if binding.name in owner:
            first_group, first = owner[binding.name]
            where = f" (first at line {first.location.line})" if first.location.line else ""
            if first_group == group:
                self.fail(DuplicateScopeError(
                    f"binding declared twice{where}",
                    raw.location.evolve(scope=scope_path((ScopeKind.BINDING, binding.name)))))
            else:
                self.fail(BindingGroupConflictError(
                    f"binding is already a member of "
                    f"{'no binding_group' if first_group == DEFAULT_NAME else repr(first_group)}"
                    f"{where}; a binding belongs to one group",
                    raw.location.evolve(scope=scope_path((ScopeKind.BINDING, binding.name)))))
            return False
        owner[binding.name] = (group, raw)
        return True


def _merge_domains(
    old: tuple[DomainScope, ...], new: tuple[DomainScope, ...]
) -> tuple[DomainScope, ...]:
    merged = {d.name: d for d in old}
    order = [d.name for d in old]
    for d in new:
        if d.name in merged:
            merged[d.name] = _merge_stanza(merged[d.name], d)
        else:
            merged[d.name] = d
            order.append(d.name)
    return tuple(merged[n] for n in order)


_Stanza = TypeVar("_Stanza", DomainScope, FloorScope)


def _merge_stanza(old: _Stanza, new: _Stanza) -> _Stanza:
    # A later layer restating a stanza overrides option by option; its expiry and
    # reason, when given, replace the earlier ones (the merged stanza expires as one).
    return type(old)(
        old.name, old.options.overlay(new.options),
        new.expires if new.expires is not None else old.expires,
        new.reason if new.reason is not None else old.reason,
        new.expiry_weakens or old.expiry_weakens,
    )


def _merge_floors(old: tuple[FloorScope, ...], new: tuple[FloorScope, ...]
                  ) -> tuple[FloorScope, ...]:
    merged = {f.name: f for f in old}
    order = [f.name for f in old]
    for f in new:
        if f.name in merged:
            merged[f.name] = _merge_stanza(merged[f.name], f)
        else:
            merged[f.name] = f
            order.append(f.name)
    return tuple(merged[n] for n in order)


def _merge_bindings(
    old: tuple[BindingScope, ...], new: tuple[BindingScope, ...]
) -> tuple[BindingScope, ...]:
    merged = {b.name: b for b in old}
    order = [b.name for b in old]
    for b in new:
        if b.name in merged:
            prev = merged[b.name]
            merged[b.name] = BindingScope(b.name, prev.options.overlay(b.options),
                                          _merge_domains(prev.domains, b.domains))
        else:
            merged[b.name] = b
            order.append(b.name)
    return tuple(merged[n] for n in order)


def _merge_group(old: BindingGroupScope, new: BindingGroupScope) -> BindingGroupScope:
    return BindingGroupScope(
        old.name,
        old.options.overlay(new.options),
        _merge_domains(old.domains, new.domains),
        _merge_bindings(old.bindings, new.bindings),
    )


def build_config(raw: RawScope, *, merge_groups: bool = False) -> Config:
    """Validate a raw tree into a :class:`Config`, reporting every error at once.

    ``merge_groups`` merges repeated ``binding_group`` stanzas, as Momentum
    does for its include-file idiom; otherwise a repeated group is a
    :class:`~tlspolicy.errors.DuplicateScopeError` like any repeated scope.
    Raises one :class:`~tlspolicy.errors.ConfigError`, or
    :class:`~tlspolicy.errors.ConfigErrors` listing several.
    """
    return _Builder(merge_groups).build(raw)


def layer_configs(configs: Sequence[Config]) -> Config:
    """Overlay configurations in order: later ones win option by option, scope by scope.

    Domains keep the position of their first declaration (regex order), new
    ones are appended.  A binding may not change group between layers
    (:class:`~tlspolicy.errors.BindingGroupConflictError`).
    """
    if not configs:
        return Config()
    result = configs[0]
    for newer in configs[1:]:
        groups = {g.name: g for g in result.binding_groups}
        order = [g.name for g in result.binding_groups]
        for g in newer.binding_groups:
            if g.name in groups:
                groups[g.name] = _merge_group(groups[g.name], g)
            else:
                groups[g.name] = g
                order.append(g.name)
        result = Config(
            result.options.overlay(newer.options),
            _merge_domains(result.domains, newer.domains),
            tuple(groups[n] for n in order),
            _merge_bindings(result.bindings, newer.bindings),
            newer.compatibility if newer.compatibility is not None else result.compatibility,
            newer.match_cache_size if newer.match_cache_size is not None
            else result.match_cache_size,
            _merge_floors(result.floors, newer.floors),
        )
    return result


def parse_expires(value: object) -> _dt.datetime:
    """An ``expires`` value as an aware UTC datetime (SEMANTICS section 8).

    A date means 00:00:00Z that day; a date-time must carry an offset (a
    local date-time is refused: the instant would depend on the machine).
    """
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidValueError(
                "expires is a local date-time; give an offset (e.g. 2026-12-15T00:00:00Z) or "
                "a date (which means 00:00:00Z that day)", Location(option="expires"),
                value=value, has_value=True)
        return value.astimezone(_dt.UTC)
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day, tzinfo=_dt.UTC)
    raise InvalidValueError(
        "expires must be a TOML date (2026-12-15) or an offset date-time "
        "(2026-12-15T12:00:00Z), not a string or number", Location(option="expires"),
        value=value, has_value=True)


def sets_no_option(config: Config) -> bool:
    """Whether ``config`` sets no option in any scope and has no floor.

    Such a configuration means plaintext for every domain (every option at its
    built-in default); the loaders refuse it rather than imply that policy
    (:class:`~tlspolicy.errors.EmptyPolicyError`).  Declared scopes without
    options, ``compatibility`` and ``match_cache_size`` do not count: none of
    them changes a decision.
    """
    if any(not f.options.is_empty() for f in config.floors):
        return False
    return all(options.is_empty() for _path, options in config.iter_options())


def has_expiry(config: Config) -> bool:
    """Whether any domain stanza or floor of ``config`` carries ``expires``."""
    return any(s.expires is not None for _p, s in iter_stanzas(config))


def iter_stanzas(config: Config) -> Iterator[tuple[str, DomainScope | FloorScope]]:
    """Every domain stanza (at any level) and floor, with its scope path."""
    for d in config.domains:
        yield scope_path((ScopeKind.DOMAIN, d.name.text)), d
    for group in config.binding_groups:
        g = (ScopeKind.BINDING_GROUP, group.name)
        for d in group.domains:
            yield scope_path(g, (ScopeKind.DOMAIN, d.name.text)), d
        for binding in group.bindings:
            b = (ScopeKind.BINDING, binding.name)
            for d in binding.domains:
                yield scope_path(g, b, (ScopeKind.DOMAIN, d.name.text)), d
    for binding in config.bindings:
        b = (ScopeKind.BINDING, binding.name)
        for d in binding.domains:
            yield scope_path(b, (ScopeKind.DOMAIN, d.name.text)), d
    for f in config.floors:
        yield floor_path(f.name.text), f


def config_at(config: Config, at: _dt.datetime) -> Config:
    """``config`` as it is at instant ``at``: every stanza expired by then removed.

    A stanza whose ``expires`` is at or before ``at`` is gone, as if never
    written (SEMANTICS section 8).  Pure: the caller supplies the time.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("the evaluation time must be timezone-aware")

    if not has_expiry(config):
        return config
    return _kept(config, lambda s: s.expires is None or s.expires > at)


def without_stanza(config: Config, stanza: DomainScope | FloorScope) -> Config:
    """``config`` with one domain stanza or floor (this very object) left out."""
    return _kept(config, lambda s: s is not stanza)


def next_expiry(config: Config, after: _dt.datetime) -> _dt.datetime | None:
    """The earliest ``expires`` later than ``after``, or ``None``."""
    times = [s.expires for _p, s in iter_stanzas(config)
             if s.expires is not None and s.expires > after]
    return min(times) if times else None


def _kept(config: Config, keep: Callable[[DomainScope | FloorScope], bool]) -> Config:
    def live(stanzas: tuple[_Stanza, ...]) -> tuple[_Stanza, ...]:
        return tuple(s for s in stanzas if keep(s))

    return trusted_config(
        config.options, live(config.domains),
        tuple(trusted_group(g.name, g.options, live(g.domains),
                            tuple(trusted_binding(b.name, b.options, live(b.domains))
                                  for b in g.bindings))
              for g in config.binding_groups),
        tuple(trusted_binding(b.name, b.options, live(b.domains)) for b in config.bindings),
        config.compatibility, config.match_cache_size, live(config.floors))

