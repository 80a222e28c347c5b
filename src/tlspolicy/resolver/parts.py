"""What the resolver's decisions are made of, besides the index: the defaults merged
under a chain's values, the value sets shared by every (domain, binding) pair they
are in force for, the explanation rendered on first read, and the reference
identities of ``host`` verification.  Pure, like the rest of the resolver."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Protocol, TypeVar

from ..decision import Decision, Source, TlsParameters, _FrozenMap, _owning, _parameters
from ..options import OPTION_SPECS, UNSET, TlsProtocols
from .index import _Contribution


class _Renders(Protocol):
    """What an explanation asks of the resolver that made it (the resolver, which
    imports this module)."""

    def _values(self, chain: list[_Contribution], domain: str
                ) -> tuple[dict[str, object], dict[str, Source]]: ...

__all__: list[str] = []

_V = TypeVar("_V")
_new_object: Final = object.__new__
_DEFAULT_SOURCE: Final = Source("default")
_DEFAULT_VALUES: Final[dict[str, object]] = {
    name: spec.default for name, spec in OPTION_SPECS.items()}
_DEFAULT_SOURCES: Final[dict[str, Source]] = dict.fromkeys(OPTION_SPECS, _DEFAULT_SOURCE)


def _with_defaults(found: dict[str, _V], defaults: dict[str, _V]) -> dict[str, _V]:
    """``found``, then every other option's default in registry order.

    The order a loop adding the missing defaults one by one gives, made by two C-level
    updates: an update keeps a key where it first went in, so the second one only puts
    the found values back over the defaults the first wrote.
    """
    merged = found.copy()
    merged.update(defaults)
    merged.update(found)
    return merged


class _Shared:
    """Effective values shared by every pair they are in force for, and the first
    decision made from them (its plan, outcomes and parameters are theirs too)."""

    __slots__ = ("effective", "heads", "proto", "values")

    def __init__(self, values: dict[str, object]) -> None:
        self.values = values
        # The resolver made values for this object alone and never changes them.
        self.effective = _owning(values)
        self.proto: Decision | None = None
        # Value sets made over these values, by the option names of the scope put
        # over them: a dict with the keys in the order such a set has (see
        # Resolver._new_shared).
        self.heads: dict[tuple[str, ...], dict[str, object]] | None = None


def _shared(values: dict[str, object]) -> _Shared:
    """``_Shared(values)``, without the call into its __init__."""
    shared: Any = _new_object(_Shared)
    shared.values = values
    # _owning(values), without the call.
    effective = shared.effective = _new_object(_FrozenMap)
    effective._data = values
    effective._hash = None
    shared.proto = None
    shared.heads = None
    return shared  # type: ignore[no-any-return]


def _merged(chain: list[_Contribution]) -> dict[str, object]:
    """Every option's value from the first scope of ``chain`` that sets it, in the order
    the chain first sets them, then the defaults of the others (no floors)."""
    values: dict[str, object] = {}
    for contribution in chain:
        for name, value in contribution.items:
            if name not in values:
                values[name] = value
    if len(values) != len(_DEFAULT_VALUES):
        # _with_defaults(values, _DEFAULT_VALUES): a dict with every option, the found
        # ones first in their order, is the same for every chain that sets the same
        # options in the same order but for their values, so a copy of one (one block
        # copy) given these values is the result, for half of what building it costs.
        found = values
        names = tuple(found)
        like = _WITH_DEFAULTS.get(names)
        if like is None:
            values = _with_defaults(found, _DEFAULT_VALUES)
            if len(_WITH_DEFAULTS) < 4096:  # a configuration uses a few orders
                _WITH_DEFAULTS[names] = values.copy()
        else:
            values = like.copy()
            values.update(found)
    return values


# Dicts with every option, the names of the key first in that order (see _merged); the
# values of those options are any, the others' their defaults.  Never changed once in.
_WITH_DEFAULTS: Final[dict[tuple[str, ...], dict[str, object]]] = {}


class _Explanation(_FrozenMap):
    """A decision's explanation, made from its chain of scopes the first time it is read.

    Equal to the mapping an eager resolution builds (it is built by the same
    code); a decision that is only acted on never pays for rendering scope paths.
    """

    __slots__ = ("_make",)

    def __init__(self, resolver: _Renders, chain: list[_Contribution], domain: str) -> None:
        self._hash = None
        self._make: tuple[_Renders, list[_Contribution], str] | None = (resolver, chain, domain)

    def __reduce__(self) -> tuple[Any, ...]:
        # Copied or pickled as the plain mapping it stands for (never the resolver).
        return (_FrozenMap, (self._data,))

    def __getattr__(self, name: str) -> Any:
        # Only reached while the _data slot is still empty.
        if name != "_data":
            raise AttributeError(name)
        made = self._make
        if made is None:
            # Another thread made it between this one's read of the empty slot and now:
            # _data is set before _make is cleared, so it is there.  (A decision is
            # shared by every thread that resolves its key.)
            return object.__getattribute__(self, "_data")
        resolver, chain, domain = made
        data = resolver._values(chain, domain)[1]
        self._data = data
        self._make = None
        return data


def _explanation(resolver: _Renders, chain: list[_Contribution], domain: str) -> _Explanation:
    """``_Explanation(resolver, chain, domain)``, without the call into its __init__."""
    explanation: Any = _new_object(_Explanation)
    explanation._hash = None
    explanation._make = (resolver, chain, domain)
    return explanation  # type: ignore[no-any-return]


def _identities(domain: str, mx_host: str | None) -> tuple[str, ...]:
    """Reference identities for ``host`` verification: the domain or the MX host."""
    # Not startswith("["): a method call costs several times this comparison.
    first = domain[1:-1].removeprefix("ipv6:") if domain[:1] == "[" else domain
    if mx_host is None or mx_host == first:
        return (first,)
    return (first, mx_host)


def _tls_parameters(values: Mapping[str, object], sni: str | None) -> TlsParameters:
    """``Resolver.parameters`` once the SNI is known."""
    protocols = values["tls_protocols"]
    assert isinstance(protocols, TlsProtocols)
    # Unset and None are "not configured"; anything else is its text (inline: a
    # helper call per field cost a noticeable share of a cold resolve).
    ca = values["tls_ca"]
    cert = values["tls_certificate"]
    key = values["tls_key"]
    ciphers = values["tls_ciphers"]
    tls13 = values["tlsv13_ciphersuites"]
    engine: Any = values["tls_engine"]
    return _parameters(
        None if ca is UNSET or ca is None else str(ca),
        None if cert is UNSET or cert is None else str(cert),
        None if key is UNSET or key is None else str(key),
        None if ciphers is UNSET or ciphers is None else str(ciphers),
        None if tls13 is UNSET or tls13 is None else str(tls13),
        protocols.versions,
        sni,
        engine,
    )
