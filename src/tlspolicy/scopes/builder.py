"""Building a :class:`~tlspolicy.scopes.Config` from a raw tree (SEMANTICS section 2).

:func:`build_config` turns a raw tree read from a file into a ``Config`` and reports
*every* problem with its location; :func:`layer_configs` overlays several files option
by option.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable, Sequence
from typing import Final, TypeVar

from .._raw import RawOption, RawScope
from ..errors import (
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
from ..names import DomainKind, DomainName
from ..options import (
    NEWEST_VERSION,
    CompatVersion,
    Options,
    OptionSpec,
    ScopeKind,
    option_spec,
)

# --------------------------------------------------------------------------
# Building a Config from a raw tree, collecting every located error.
from .models import (
    DEFAULT_NAME,
    FLOOR_OPTIONS,
    BindingGroupScope,
    BindingScope,
    Config,
    DomainScope,
    FloorScope,
    floor_path,
    scope_path,
)
from .stanzas import parse_expires

__all__ = ["build_config", "layer_configs"]

def _first_at(first: RawScope) -> str:
    """Where a stanza declared twice was first declared, for the message."""
    line = first.location.line
    return f" (first at line {line})" if line is not None else ""


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

    def spec_of(self, item: RawOption, path: str) -> tuple[OptionSpec, Location] | None:
        """The option ``item`` names and where it is, or ``None`` after failing on a name
        that is no option."""
        loc = item.location.evolve(scope=path)
        try:
            return option_spec(item.name, loc), loc
        except ConfigError as exc:
            self.fail(exc)
            return None

    def options(self, raw: Sequence[RawOption], kind: ScopeKind, path: str) -> Options:
        values: dict[str, object] = {}
        for item in raw:
            known = self.spec_of(item, path)
            if known is None:
                continue
            spec, loc = known
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
            name = self.stanza_name(raw, name_text, path, "domain")
            if name is None:
                continue
            options = self.options(raw.options, ScopeKind.DOMAIN, path)
            expires, reason, weakens = self.attributes(raw, path)
            if name in seen:
                spelled = "" if name.kind is DomainKind.REGEX else f" ({name.key})"
                self.fail(DuplicateScopeError(
                    f"domain{spelled} declared twice in the same container"
                    f"{_first_at(seen[name])}",
                    raw.location.evolve(scope=path)))
                continue
            seen[name] = raw
            result.append(DomainScope(name, options, expires, reason, weakens))
        return tuple(result)

    def stanza_name(self, raw: RawScope, name_text: str, path: str,
                    kind: str) -> DomainName | None:
        """The name a domain or floor stanza (``kind``) is for, or ``None`` when it is not
        a domain name or pattern; a stanza nested in it is an error."""
        try:
            name = DomainName.parse(name_text)
        except InvalidDomainError as exc:
            cls = RegexError if name_text.strip().startswith("/") else InvalidValueError
            self.fail(cls(str(exc), raw.location.evolve(scope=path), value=name_text,
                          has_value=True))
            return None
        for child in raw.children:
            self.fail(ConfigError(f"a {child.kind.value} cannot be nested in a {kind}",
                                  child.location.evolve(scope=path)))
        return name

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
            name = self.stanza_name(raw, name_text, path, "floor")
            if name is None:
                continue
            allowed: list[RawOption] = []
            for item in raw.options:
                known = self.spec_of(item, path)
                if known is None:
                    continue
                spec, loc = known
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
                self.fail(DuplicateScopeError(f"floor declared twice{_first_at(seen[name])}",
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
                    self.fail(DuplicateScopeError(
                        f"binding_group declared twice{_first_at(group_raw[name])}",
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


_Stanza = TypeVar("_Stanza", DomainScope, FloorScope)
_Named = TypeVar("_Named", DomainScope, FloorScope, BindingScope)


def _merge_named(old: tuple[_Named, ...], new: tuple[_Named, ...],
                 merge: Callable[[_Named, _Named], _Named]) -> tuple[_Named, ...]:
    """``old`` with ``new`` layered on: a name in both is ``merge``d in its first place,
    a new name comes after."""
    merged: dict[object, _Named] = {s.name: s for s in old}
    order: list[object] = [s.name for s in old]
    for s in new:
        if s.name in merged:
            merged[s.name] = merge(merged[s.name], s)
        else:
            merged[s.name] = s
            order.append(s.name)
    return tuple(merged[n] for n in order)


def _merge_stanza(old: _Stanza, new: _Stanza) -> _Stanza:
    # A later layer restating a stanza overrides option by option; its expiry and
    # reason, when given, replace the earlier ones (the merged stanza expires as one).
    return type(old)(
        old.name, old.options.overlay(new.options),
        new.expires if new.expires is not None else old.expires,
        new.reason if new.reason is not None else old.reason,
        new.expiry_weakens or old.expiry_weakens,
    )


def _merge_domains(old: tuple[DomainScope, ...], new: tuple[DomainScope, ...]
                   ) -> tuple[DomainScope, ...]:
    return _merge_named(old, new, _merge_stanza)


def _merge_floors(old: tuple[FloorScope, ...], new: tuple[FloorScope, ...]
                  ) -> tuple[FloorScope, ...]:
    return _merge_named(old, new, _merge_stanza)


def _merge_binding(old: BindingScope, new: BindingScope) -> BindingScope:
    return BindingScope(new.name, old.options.overlay(new.options),
                        _merge_domains(old.domains, new.domains))


def _merge_bindings(old: tuple[BindingScope, ...], new: tuple[BindingScope, ...]
                    ) -> tuple[BindingScope, ...]:
    return _merge_named(old, new, _merge_binding)


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
