"""Floors in resolution: effective values raised to every matching floor
(SEMANTICS section 7, "never weaker")."""

from __future__ import annotations

from ..decision import Source
from ..names import DomainPattern
from ..options import (
    OPTION_SPECS,
    UNSET,
    Tls,
    TlsProtocols,
    TlsVersion,
)
from ..scopes import FloorScope
from ..scopes.models import floor_path
from .matchcache import RegexMatchCache

__all__ = ["protocols_of", "raise_to_floors"]


class _Floors:
    """The floors of a configuration: exact and IP names by key, regexes in order."""

    __slots__ = ("any", "exact", "regexes")

    def __init__(self, floors: tuple[FloorScope, ...]) -> None:
        self.any = bool(floors)
        self.exact: dict[str, FloorScope] = {}
        regexes: list[tuple[DomainPattern, FloorScope]] = []
        for floor in floors:
            if floor.name.regex is not None:
                regexes.append((floor.name.regex, floor))
            else:
                self.exact[floor.name.key] = floor
        self.regexes = tuple(regexes)

    def matching(self, domain: str, cache: RegexMatchCache) -> tuple[FloorScope, ...]:
        found: tuple[FloorScope, ...] = ()
        if self.regexes:
            key = (id(self), domain)
            cached = cache.get(key)
            if cached is None:
                cached = tuple(f for pattern, f in self.regexes if pattern.search(domain))
                cache.put(key, cached)
            found = cached  # type: ignore[assignment]
        exact = self.exact.get(domain)
        if exact is not None:
            # Declaration order does not change the result (every floor applies);
            # exact first reads best in explanations.
            found = (exact, *found)
        return found


def protocols_of(versions: frozenset[TlsVersion]) -> TlsProtocols:
    """A ``tls_protocols`` value allowing exactly ``versions`` (possibly none)."""
    ordered = [v.value for v in TlsVersion if v in versions]
    if not ordered:
        return TlsProtocols("-ALL", frozenset())
    return TlsProtocols.parse(":".join(ordered))


def raise_to_floors(values: dict[str, object], sources: dict[str, Source],
                    floors: tuple[FloorScope, ...]) -> None:
    """Raise effective values to every floor in ``floors`` (SEMANTICS section 7).

    tls and tls_verify go to the maximum in the strictness order, fallback to
    false if any floor says false, protocols to the intersection.  Each raised
    value's source names every floor that asked for more than the chain gave.
    """
    for option in ("tls", "tls_verify"):
        chain = values[option]
        asked = [(f, getattr(f.options, option)) for f in floors
                 if getattr(f.options, option) is not UNSET]
        raisers = [f for f, v in asked if v > chain]
        if raisers:
            values[option] = max(v for _f, v in asked)
            sources[option] = _floor_source(raisers, chain, sources[option])
    if values["tls_ifavailable_fallback"] is True:
        raisers = [f for f in floors if f.options.tls_ifavailable_fallback is False]
        if raisers:
            values["tls_ifavailable_fallback"] = False
            sources["tls_ifavailable_fallback"] = _floor_source(
                raisers, True, sources["tls_ifavailable_fallback"])
    chain_protocols = values["tls_protocols"]
    assert isinstance(chain_protocols, TlsProtocols)
    allowed = chain_protocols.versions
    raisers = []
    for f in floors:
        wanted = f.options.tls_protocols
        if isinstance(wanted, TlsProtocols) and not allowed <= wanted.versions:
            raisers.append(f)
            allowed = allowed & wanted.versions
    if raisers:
        values["tls_protocols"] = protocols_of(allowed)
        sources["tls_protocols"] = _floor_source(raisers, chain_protocols,
                                                 sources["tls_protocols"])


def _floor_source(floors: list[FloorScope], old: object, old_source: Source) -> Source:
    shown = OPTION_SPECS["tls"].dump(old) if isinstance(old, Tls) else (
        "true" if old is True else str(getattr(old, "value", old)))
    return Source(", ".join(floor_path(f.name.text) for f in floors),
                  f"raised from {shown} set by {old_source}")
