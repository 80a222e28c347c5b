"""Walking, filtering and dating the stanzas of a configuration (SEMANTICS section 8).

Every domain stanza and floor with its scope path (:func:`iter_stanzas`), a
configuration as it is at an instant (:func:`config_at`), the next expiry, and the
``expires`` value as an instant (:func:`parse_expires`).  Pure: time comes in.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterator
from typing import TypeVar

from ..errors import (
    InvalidValueError,
    Location,
)
from ..options import (
    ScopeKind,
)
from .models import (
    Config,
    DomainScope,
    FloorScope,
    floor_path,
    scope_path,
    trusted_binding,
    trusted_config,
    trusted_group,
)

__all__ = ["config_at", "has_expiry", "iter_stanzas", "next_expiry", "parse_expires",
           "sets_no_option", "without_stanza"]

_Stanza = TypeVar("_Stanza", DomainScope, FloorScope)


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
        try:
            return value.astimezone(_dt.UTC)
        except OverflowError:  # 9999-12-31T23:59:59-23:59 is past the last UTC instant
            raise InvalidValueError(
                "expires is outside the instants a date-time can hold in UTC (years 1 to "
                "9999)", Location(option="expires"), value=value, has_value=True) from None
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
    # No scope paths: rendering one per stanza cost more than the rest of a large load.
    for group in config.binding_groups:
        if any(d.expires is not None for d in group.domains) or any(
                d.expires is not None for b in group.bindings for d in b.domains):
            return True
    return any(d.expires is not None for d in config.domains) or any(
        d.expires is not None for b in config.bindings for d in b.domains) or any(
        f.expires is not None for f in config.floors)


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
