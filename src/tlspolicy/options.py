"""Option values, the options model and the option registry (SEMANTICS section 3).

``Options`` holds every outbound TLS option of one scope.  A field that the scope
does not set holds :data:`UNSET`, which is distinct from every value, so
``tls_certificate = "none"`` (stored as ``None``: "no client certificate,
cancel the parent's") is not confused with "not set here".
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, TypeVar

import attrs

from .errors import InvalidValueError, Location, UnknownOptionError

__all__ = [
    "NEWEST_VERSION",
    "OPTION_SPECS",
    "UNSET",
    "CompatVersion",
    "OptionSpec",
    "Options",
    "ScopeKind",
    "Tls",
    "TlsEngine",
    "TlsProtocols",
    "TlsVerify",
    "TlsVersion",
    "Unset",
    "hook_overrides",
    "option_spec",
]


class Unset(enum.Enum):
    """Type of :data:`UNSET`: "this scope does not set the option"."""

    UNSET = "unset"

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Final = Unset.UNSET


class _Ordered(enum.Enum):
    """An enum whose members compare by a strictness rank (SEMANTICS section 3)."""

    @property
    def rank(self) -> int:
        return self._rank_order().index(self)

    @classmethod
    def _rank_order(cls) -> tuple[Any, ...]:
        return tuple(cls)

    def __lt__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self.rank >= other.rank


class Tls(_Ordered):
    """The ``tls`` option, in strictness order ``no < ifavailable < required``."""

    NO = "no"
    IFAVAILABLE = "ifavailable"
    REQUIRED = "required"


class TlsVerify(_Ordered):
    """The ``tls_verify`` option, in strictness order ``no < optional < ca < host``."""

    NO = "no"
    OPTIONAL = "optional"
    CA = "ca"
    HOST = "host"


class TlsEngine(enum.Enum):
    """The ``tls_engine`` option (global only)."""

    OPENSSL = "openssl"
    GNUTLS = "gnutls"


class TlsVersion(enum.Enum):
    """Protocol versions named by ``tls_protocols``, oldest first."""

    SSLv2 = "SSLv2"
    SSLv3 = "SSLv3"
    TLSv1_0 = "TLSv1.0"
    TLSv1_1 = "TLSv1.1"
    TLSv1_2 = "TLSv1.2"
    TLSv1_3 = "TLSv1.3"


class ScopeKind(enum.Enum):
    """The four kinds of container an option can be set in."""

    GLOBAL = "global"
    BINDING_GROUP = "binding_group"
    BINDING = "binding"
    DOMAIN = "domain"


ALL_SCOPES: Final = frozenset(ScopeKind)


# ASCII digits only: str.isdigit and re's \d accept full-width and other digits.
_VERSION_RE: Final = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9}){0,3}")


def _strip_zeros(parts: tuple[int, ...]) -> tuple[int, ...]:
    # 4.0 == 4 == 4.0.0.0: trailing zeros never change what a version means.
    parts = tuple(parts)
    while len(parts) > 1 and parts[-1] == 0:
        parts = parts[:-1]
    return parts


@attrs.frozen(slots=True, order=True)
class CompatVersion:
    """A Momentum version the configuration emulates, e.g. ``4.1.0.2``.

    Trailing zeros are insignificant: ``4.0``, ``4`` and ``4.0.0.0`` are equal.
    """

    parts: tuple[int, ...] = attrs.field(converter=_strip_zeros)

    @classmethod
    def parse(cls, text: str) -> CompatVersion:
        """Parse ``"4.1"`` or ``"4.1.0.2"``; raise :class:`InvalidValueError` otherwise.

        Versions older than 4.0 or newer than the newest one this library
        knows (:data:`NEWEST_VERSION`) are refused: their behaviour is unknown.
        """
        if not isinstance(text, str) or not _VERSION_RE.fullmatch(text.strip()):
            raise InvalidValueError(
                "compatibility version must look like '4.1' or '4.1.0.2'",
                Location(option="compatibility"), value=text, has_value=True,
            )
        version = cls(tuple(int(p) for p in text.strip().split(".")))
        if not OLDEST_VERSION <= version <= NEWEST_VERSION:
            raise InvalidValueError(
                f"compatibility version must be between {OLDEST_VERSION} and "
                f"{NEWEST_VERSION}", Location(option="compatibility"), value=text,
                has_value=True,
            )
        return version

    def __str__(self) -> str:
        parts = self.parts if len(self.parts) > 1 else (*self.parts, 0)
        return ".".join(str(p) for p in parts)


OLDEST_VERSION: Final = CompatVersion((4,))
NEWEST_VERSION: Final = CompatVersion((4, 8))


_PROTOCOL_TOKENS: Final[Mapping[str, tuple[TlsVersion, ...]]] = {
    "all": tuple(TlsVersion),
    "sslv2": (TlsVersion.SSLv2,),
    "sslv3": (TlsVersion.SSLv3,),
    "tlsv1.0": (TlsVersion.TLSv1_0,),
    "tlsv1": (TlsVersion.TLSv1_0,),
    "tlsv1.1": (TlsVersion.TLSv1_1,),
    "tlsv1.2": (TlsVersion.TLSv1_2,),
    "tlsv1.3": (TlsVersion.TLSv1_3,),
}


@attrs.frozen(slots=True)
class TlsProtocols:
    """A parsed ``tls_protocols`` value: the original text and the allowed versions.

    The text is a ``:``-separated list of tokens, each optionally prefixed by ``+``
    (add, the default) or ``-`` (remove), applied left to right to an empty set.
    """

    spec: str
    versions: frozenset[TlsVersion] = attrs.field(eq=False, repr=False)

    @classmethod
    def parse(cls, text: str) -> TlsProtocols:
        """Parse a ``+ALL:-SSLv3:-TLSv1.0`` list; raise :class:`InvalidValueError` if bad."""
        if not isinstance(text, str):
            raise InvalidValueError("expected a string of ':'-separated tokens, e.g. "
                                    "'+ALL:-TLSv1.0'", value=text, has_value=True)
        allowed: set[TlsVersion] = set()
        tokens = [t.strip() for t in text.split(":")]
        if not text.strip():
            raise InvalidValueError("tls_protocols is empty", value=text, has_value=True)
        for token in tokens:
            sign, name = ("-", token[1:]) if token.startswith("-") else (
                ("+", token[1:]) if token.startswith("+") else ("+", token))
            versions = _PROTOCOL_TOKENS.get(name.strip().lower())
            if versions is None:
                known = "ALL, SSLv2, SSLv3, TLSv1.0, TLSv1.1, TLSv1.2, TLSv1.3"
                raise InvalidValueError(
                    f"unknown tls_protocols token {token!r} (known: {known})",
                    value=text, has_value=True,
                )
            if sign == "+":
                allowed.update(versions)
            else:
                allowed.difference_update(versions)
        if not allowed:
            raise InvalidValueError(
                "tls_protocols leaves no protocol version enabled", value=text, has_value=True
            )
        return cls(text, frozenset(allowed))

    # Equality is on the parsed set (``+ALL`` equals ``+ALL:-SSLv2:+SSLv2``); the
    # text is kept for messages and dumps.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TlsProtocols):
            return NotImplemented
        return self.versions == other.versions

    def __hash__(self) -> int:
        return hash(self.versions)

    def __str__(self) -> str:
        return self.spec

    @property
    def ordered(self) -> tuple[TlsVersion, ...]:
        """The allowed versions, oldest first."""
        return tuple(v for v in TlsVersion if v in self.versions)


_T = TypeVar("_T")

_BOOL_WORDS: Final[Mapping[str, bool]] = {
    "true": True, "yes": True, "on": True, "1": True,
    "false": False, "no": False, "off": False, "0": False,
}


def _parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.strip().lower()]
    raise InvalidValueError(
        "expected a boolean (true/false, yes/no, on/off, 1/0)", value=value, has_value=True
    )


def _enum_parser(enum_type: type[_T]) -> Callable[[object], _T]:
    members = {m.value: m for m in enum_type}  # type: ignore[attr-defined]

    def parse(value: object) -> _T:
        if isinstance(value, enum_type):
            return value
        if isinstance(value, str) and value.strip().lower() in members:
            return members[value.strip().lower()]  # type: ignore[no-any-return]
        allowed = ", ".join(repr(k) for k in members)
        raise InvalidValueError(f"expected one of {allowed}", value=value, has_value=True)

    return parse


def _parse_text(value: object) -> str:
    if isinstance(value, str) and value.strip():
        return value
    raise InvalidValueError("expected a non-empty string", value=value, has_value=True)


def _parse_path_or_none(value: object) -> str | None:
    # "none" (any case) cancels a certificate or key inherited from a parent scope.
    if value is None:
        return None
    text = _parse_text(value)
    return None if text.strip().lower() == "none" else text


def _parse_protocols(value: object) -> TlsProtocols:
    if isinstance(value, TlsProtocols):
        return value
    return TlsProtocols.parse(value)  # type: ignore[arg-type]


def _dump_identity(value: object) -> object:
    return value


def _dump_enum(value: object) -> object:
    return value.value if isinstance(value, enum.Enum) else value


def _dump_path_or_none(value: object) -> object:
    return "none" if value is None else value


def _dump_protocols(value: object) -> object:
    return value.spec if isinstance(value, TlsProtocols) else value


@attrs.frozen(slots=True)
class OptionSpec:
    """What the library knows of one option: scopes, version, default and codec."""

    name: str
    scopes: frozenset[ScopeKind]
    since: CompatVersion
    default: object
    parse: Callable[[object], object] = attrs.field(eq=False, repr=False)
    dump: Callable[[object], object] = attrs.field(eq=False, repr=False)
    summary: str = attrs.field(eq=False)

    def parse_value(self, value: object, location: Location | None = None) -> object:
        """Parse a raw file value, re-raising errors located at this option."""
        try:
            return self.parse(value)
        except InvalidValueError as exc:
            base = location if location is not None else Location()
            raise exc.located(base.evolve(option=self.name)) from None


def _v(text: str) -> CompatVersion:
    return CompatVersion(tuple(int(p) for p in text.split(".")))


_DOMAIN_GLOBAL: Final = frozenset({ScopeKind.DOMAIN, ScopeKind.GLOBAL})

OPTION_SPECS: Final[Mapping[str, OptionSpec]] = {
    spec.name: spec
    for spec in (
        OptionSpec("tls", ALL_SCOPES, _v("4.0"), Tls.NO, _enum_parser(Tls), _dump_enum,
                   "whether to use STARTTLS: no, ifavailable, required"),
        OptionSpec("tls_ifavailable_fallback", ALL_SCOPES, _v("4.1"), True, _parse_bool,
                   _dump_identity,
                   "with tls = ifavailable, deliver in plaintext after a failed negotiation"),
        OptionSpec("tls_verify", ALL_SCOPES, _v("4.0"), TlsVerify.NO, _enum_parser(TlsVerify),
                   _dump_enum, "peer certificate check: no, optional, ca, host"),
        OptionSpec("tls_ca", ALL_SCOPES, _v("4.0"), UNSET, _parse_text, _dump_identity,
                   "path of a PEM CA bundle (unset: the system store)"),
        OptionSpec("tls_certificate", ALL_SCOPES, _v("4.0"), UNSET, _parse_path_or_none,
                   _dump_path_or_none,
                   "client certificate path; 'none' cancels a parent scope's certificate"),
        OptionSpec("tls_key", ALL_SCOPES, _v("4.0"), UNSET, _parse_path_or_none,
                   _dump_path_or_none,
                   "client private key path; 'none' cancels a parent scope's key"),
        OptionSpec("tls_ciphers", ALL_SCOPES, _v("4.0"), UNSET, _parse_text, _dump_identity,
                   "cipher list of the TLS engine (OpenSSL list or GnuTLS priority string)"),
        OptionSpec("tlsv13_ciphersuites", ALL_SCOPES, _v("4.6"), UNSET, _parse_text,
                   _dump_identity, "TLS 1.3 cipher suite list"),
        OptionSpec("tls_protocols", ALL_SCOPES, _v("4.1.0.2"), TlsProtocols.parse("+ALL"),
                   _parse_protocols, _dump_protocols,
                   "allowed protocol versions, e.g. '+ALL:-SSLv3:-TLSv1.0'"),
        OptionSpec("use_mta_sts", _DOMAIN_GLOBAL, _v("4.8"), False, _parse_bool,
                   _dump_identity, "honour the destination's MTA-STS policy (RFC 8461)"),
        OptionSpec("enable_mta_sts", ALL_SCOPES, _v("4.8"), True, _parse_bool, _dump_identity,
                   "switch MTA-STS off for a scope where use_mta_sts is on"),
        OptionSpec("use_dane", _DOMAIN_GLOBAL, _v("4.8"), False, _parse_bool, _dump_identity,
                   "honour the destination's DANE TLSA records (RFC 7672)"),
        OptionSpec("enable_dane", ALL_SCOPES, _v("4.8"), True, _parse_bool, _dump_identity,
                   "switch DANE off for a scope where use_dane is on"),
        OptionSpec("tls_engine", frozenset({ScopeKind.GLOBAL}), _v("4.0"), TlsEngine.OPENSSL,
                   _enum_parser(TlsEngine), _dump_enum, "TLS library: openssl or gnutls"),
    )
}


def option_spec(name: str, location: Location | None = None) -> OptionSpec:
    """Look an option up by name, case-insensitively; raise :class:`UnknownOptionError`."""
    spec = OPTION_SPECS.get(name.lower()) if isinstance(name, str) else None
    if spec is None:
        base = location if location is not None else Location()
        raise UnknownOptionError(
            f"unknown option {name!r}", base.evolve(option=str(name))
        )
    return spec


def _checked(spec_name: str) -> Callable[[object, attrs.Attribute[Any], object], None]:
    spec = OPTION_SPECS[spec_name]

    def check(_instance: object, _attribute: attrs.Attribute[Any], value: object) -> None:
        if value is UNSET:
            return
        parsed = spec.parse_value(value)
        if parsed != value or type(parsed) is not type(value):
            raise InvalidValueError(
                f"option {spec_name!r} must be given as a parsed value "
                f"({type(parsed).__name__}), not {type(value).__name__}",
                Location(option=spec_name), value=value, has_value=True,
            )

    return check


def _field(name: str) -> Any:
    return attrs.field(default=UNSET, validator=_checked(name), kw_only=True)


@attrs.frozen(slots=True, repr=False)
class Options:
    """The options one scope sets; every field defaults to :data:`UNSET`.

    Values are the parsed types (``Tls.REQUIRED``, ``True``,
    ``TlsProtocols.parse(...)``); ``tls_certificate=None`` / ``tls_key=None``
    mean "none": cancel the parent's client certificate.  Use
    :meth:`from_mapping` to build one from raw file values.
    """

    tls: Tls | Unset = _field("tls")
    tls_ifavailable_fallback: bool | Unset = _field("tls_ifavailable_fallback")
    tls_verify: TlsVerify | Unset = _field("tls_verify")
    tls_ca: str | Unset = _field("tls_ca")
    tls_certificate: str | Unset | None = _field("tls_certificate")
    tls_key: str | Unset | None = _field("tls_key")
    tls_ciphers: str | Unset = _field("tls_ciphers")
    tlsv13_ciphersuites: str | Unset = _field("tlsv13_ciphersuites")
    tls_protocols: TlsProtocols | Unset = _field("tls_protocols")
    use_mta_sts: bool | Unset = _field("use_mta_sts")
    enable_mta_sts: bool | Unset = _field("enable_mta_sts")
    use_dane: bool | Unset = _field("use_dane")
    enable_dane: bool | Unset = _field("enable_dane")
    tls_engine: TlsEngine | Unset = _field("tls_engine")

    @classmethod
    def from_mapping(
        cls, raw: Mapping[str, object], location: Location | None = None
    ) -> Options:
        """Build from ``{option name: raw value}`` (names case-insensitive).

        Raises the first error found; loaders that must report every error
        validate key by key with :func:`option_spec` instead.
        """
        values: dict[str, object] = {}
        for key, value in raw.items():
            spec = option_spec(key, location)
            if spec.name in values:
                base = location if location is not None else Location()
                raise InvalidValueError(
                    "option given twice (names are case-insensitive)",
                    base.evolve(option=spec.name), value=key, has_value=True,
                )
            values[spec.name] = spec.parse_value(value, location)
        return cls(**values)  # type: ignore[arg-type]

    def items(self) -> Iterator[tuple[str, object]]:
        """The options this scope sets, as ``(name, value)``, in registry order."""
        for name in OPTION_SPECS:
            value = getattr(self, name)
            if value is not UNSET:
                yield name, value

    def to_mapping(self) -> dict[str, object]:
        """The set options as raw file values (the inverse of :meth:`from_mapping`)."""
        return {name: OPTION_SPECS[name].dump(value) for name, value in self.items()}

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={value!r}" for name, value in self.items())
        return f"Options({inner})"

    def is_empty(self) -> bool:
        """True when this scope sets no option at all."""
        return next(self.items(), None) is None

    def overlay(self, newer: Options) -> Options:
        """This scope's options with every option ``newer`` sets replaced by its value."""
        changes = dict(newer.items())
        return attrs.evolve(self, **changes) if changes else self  # type: ignore[arg-type]


_USE_TLS: Final = {0: Tls.NO, 1: Tls.IFAVAILABLE, 2: Tls.REQUIRED}


def hook_overrides(
    *,
    use_tls: int | None = None,
    certificate: str | None = None,
    key: str | None = None,
    cipher_list: str | None = None,
    ca: str | None = None,
) -> Options:
    """Per-message overrides from Momentum's outbound TLS parameter hook.

    The hook sets ``use_tls`` (0 no, 1 if available, 2 required), the client
    certificate and key, the cipher list and the CA bundle for one message;
    arguments left ``None`` are not overridden.
    """
    values: dict[str, object] = {}
    if use_tls is not None:
        if isinstance(use_tls, bool) or use_tls not in _USE_TLS:
            raise InvalidValueError("use_tls must be 0, 1 or 2",
                                    Location(scope="override", option="use_tls"),
                                    value=use_tls, has_value=True)
        values["tls"] = _USE_TLS[use_tls]
    for name, value in (("tls_certificate", certificate), ("tls_key", key),
                        ("tls_ciphers", cipher_list), ("tls_ca", ca)):
        if value is not None:
            values[name] = OPTION_SPECS[name].parse_value(
                value, Location(scope="override"))
    return Options(**values)  # type: ignore[arg-type]

