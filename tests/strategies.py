"""Hypothesis strategies for valid configurations and resolution requests.

Reusable by any test file: :func:`configs` draws a :class:`~tlspolicy.Config`
with binding groups, bindings and domain stanzas at every level (exact, regex
and IP-literal names), each scope setting a random subset of the options valid
there and under the drawn compatibility version; :func:`requests` draws a
request that fits a given configuration.

Names come from small pools so that requests hit stanzas often.  Every name
spelling carries its normalised form, written out by hand here, so that tests
can check the library's normalisation instead of reusing it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, Final

import attrs
from hypothesis import strategies as st

from tlspolicy import Config, Options, Tls
from tlspolicy.names import DomainName
from tlspolicy.options import (
    NEWEST_VERSION,
    OPTION_SPECS,
    CompatVersion,
    ScopeKind,
    TlsEngine,
    TlsProtocols,
    TlsVerify,
)
from tlspolicy.resolver import OVERRIDABLE_OPTIONS
from tlspolicy.scopes import BindingGroupScope, BindingScope, DomainScope

PROFILE: Final = os.environ.get("HYPOTHESIS_PROFILE", "default")
"""The hypothesis profile in force (see ``tests/conftest.py``)."""



def examples(*, ci: int, default: int) -> int:
    """A property test's example budget under the hypothesis profile in force: ``ci``
    (``HYPOTHESIS_PROFILE=ci``, what CI runs) keeps the suite's reach, ``default`` keeps
    local runs quick.  Every property test states its two budgets through this function
    or the two constants below; CONTRIBUTING.md lists them all."""
    return ci if PROFILE == "ci" else default


CONFIG_EXAMPLES: Final = examples(ci=10_000, default=300)
"""Generated configurations for the core resolver invariants (SEMANTICS section 6)."""

PROPERTY_EXAMPLES: Final = examples(ci=1_000, default=100)
"""Generated configurations for the heavier property tests built on the core
(diff classification, format round trips), which check their own rules, not
the section 6 invariants."""

# Domain stanza names as written -> normalised comparison key (hand-written).
EXACT_NAMES: Final[Mapping[str, str]] = {
    "example.com": "example.com",
    "Mail.Example.COM.": "mail.example.com",
    "a.example.org": "a.example.org",
    "bücher.de": "xn--bcher-kva.de",
    "faß.de": "xn--fa-hia.de",
    "_srv.example.net": "_srv.example.net",
    "192.0.2.1": "[192.0.2.1]",
    "[198.51.100.7]": "[198.51.100.7]",
    "[IPv6:2001:db8::1]": "[ipv6:2001:db8::1]",
    "2001:db8::2": "[ipv6:2001:db8::2]",
}

REGEX_NAMES: Final[Sequence[str]] = (
    "/example/",
    r"/\.com$/",
    r"/^mail\./",
    "/org/",
    "/^xn--/",
    "/192/",
    "/ipv6/",
    r"/\[/",
    "/e/",
    "/(?i)EXAMPLE/",
    "/net$/",
)

# Request spellings -> normalised key (hand-written).
REQUEST_NAMES: Final[Mapping[str, str]] = {
    **EXACT_NAMES,
    "EXAMPLE.com.": "example.com",
    "mail.example.com": "mail.example.com",
    "xn--bcher-kva.de": "xn--bcher-kva.de",
    "BÜCHER.de": "xn--bcher-kva.de",
    "xn--fa-hia.de": "xn--fa-hia.de",
    "[192.0.2.1]": "[192.0.2.1]",
    "198.51.100.7": "[198.51.100.7]",
    "2001:db8::1": "[ipv6:2001:db8::1]",
    "[IPv6:2001:DB8:0:0::1]": "[ipv6:2001:db8::1]",
    "[ipv6:2001:db8::2]": "[ipv6:2001:db8::2]",
    "other.example": "other.example",
    "sub.a.example.org": "sub.a.example.org",
    "plain.test": "plain.test",
}

MX_NAMES: Final[Mapping[str, str]] = {
    "mx1.example.com": "mx1.example.com",
    "MX.Example.ORG.": "mx.example.org",
}

BINDING_NAMES: Final = ("b1", "b2", "B1", "tx-1", "bulk 2", "default")
GROUP_NAMES: Final = ("g1", "g2", "Gx", "default")
VERSIONS: Final = ("4.0", "4.1", "4.1.0.2", "4.6", "4.8")

_PATHS: Final = ("/etc/ssl/a.pem", "/etc/ssl/b.pem", "certs/c.pem")
_PROTOCOLS: Final = ("+ALL", "+ALL:-SSLv2:-SSLv3", "TLSv1.2:TLSv1.3", "-ALL:+TLSv1.3",
                     "+ALL:-TLSv1.0:-TLSv1.1", "tlsv1.2")

OPTION_VALUES: Final[Mapping[str, st.SearchStrategy[Any]]] = {
    "tls": st.sampled_from(list(Tls)),
    "tls_ifavailable_fallback": st.booleans(),
    "tls_verify": st.sampled_from(list(TlsVerify)),
    "tls_ca": st.sampled_from(_PATHS),
    "tls_certificate": st.sampled_from((*_PATHS, None)),
    "tls_key": st.sampled_from((*_PATHS, None)),
    "tls_ciphers": st.sampled_from(("HIGH:!aNULL", "DEFAULT", "NORMAL:-VERS-TLS1.0")),
    "tlsv13_ciphersuites": st.sampled_from(("TLS_AES_256_GCM_SHA384",
                                            "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256")),
    "tls_protocols": st.sampled_from([TlsProtocols.parse(p) for p in _PROTOCOLS]),
    "use_mta_sts": st.booleans(),
    "enable_mta_sts": st.booleans(),
    "use_dane": st.booleans(),
    "enable_dane": st.booleans(),
    "tls_engine": st.sampled_from(list(TlsEngine)),
}
"""A value strategy (parsed values) for every option."""


# SEMANTICS section 3, "since" column, written out here rather than read from
# the registry so that a wrong comparison there cannot shrink what is generated.
SINCE: Final[Mapping[str, str]] = {
    "tls": "4.0", "tls_ifavailable_fallback": "4.1", "tls_verify": "4.0", "tls_ca": "4.0",
    "tls_certificate": "4.0", "tls_key": "4.0", "tls_ciphers": "4.0",
    "tlsv13_ciphersuites": "4.6", "tls_protocols": "4.1.0.2", "use_mta_sts": "4.8",
    "enable_mta_sts": "4.8", "use_dane": "4.8", "enable_dane": "4.8", "tls_engine": "4.0",
}


def version_key(text: str) -> tuple[int, int, int, int]:
    """A Momentum version as a zero-padded tuple (``4.0`` == ``4`` == ``4.0.0.0``)."""
    parts = [int(p) for p in text.split(".")]
    return tuple(([*parts, 0, 0, 0, 0])[:4])  # type: ignore[return-value]


def allowed_options(kind: ScopeKind, version: CompatVersion,
                    only: frozenset[str] | None = None) -> list[str]:
    """Options valid in ``kind`` under ``version`` (optionally limited to ``only``)."""
    pinned = version_key(".".join(str(p) for p in version.parts))
    return [name for name, spec in OPTION_SPECS.items()
            if kind in spec.scopes and version_key(SINCE[name]) <= pinned
            and (only is None or name in only)]


@cache
def options(kind: ScopeKind, version: CompatVersion = NEWEST_VERSION,
            only: frozenset[str] | None = None) -> st.SearchStrategy[Options]:
    """Options for one scope: a random subset of the options valid there."""
    names = allowed_options(kind, version, only)
    return st.fixed_dictionaries({}, optional={n: OPTION_VALUES[n] for n in names}).map(
        lambda values: Options(**values))


@cache
def domain_names() -> st.SearchStrategy[DomainName]:
    """A stanza name: exact, IP literal (any spelling) or regex."""
    return st.sampled_from([*EXACT_NAMES, *REGEX_NAMES]).map(DomainName.parse)


@cache
def domains(version: CompatVersion, max_size: int = 4) -> st.SearchStrategy[
        tuple[DomainScope, ...]]:
    """The domain stanzas of one container: distinct names, declaration order kept."""
    return st.lists(
        st.builds(DomainScope, domain_names(), options(ScopeKind.DOMAIN, version)),
        max_size=max_size, unique_by=lambda d: d.name,
    ).map(tuple)


@st.composite
def configs(draw: st.DrawFn, versions: tuple[str | None, ...] | None = None) -> Config:
    """A random valid configuration.

    ``versions`` limits the pinned compatibility versions drawn (``None`` in
    it means "not pinned"); by default every known version and no pin.
    """
    text = draw(st.sampled_from(versions if versions is not None else (None, *VERSIONS)))
    compatibility = CompatVersion.parse(text) if text is not None else None
    version = compatibility if compatibility is not None else NEWEST_VERSION
    binding_names = draw(st.lists(st.sampled_from(BINDING_NAMES), unique=True, max_size=4))
    group_names = draw(st.lists(st.sampled_from(GROUP_NAMES), unique=True, max_size=3))
    members: dict[str | None, list[BindingScope]] = {g: [] for g in group_names}
    members[None] = []
    for name in binding_names:
        group = draw(st.sampled_from([None, *group_names]))
        members[group].append(BindingScope(
            name, draw(options(ScopeKind.BINDING, version)), draw(domains(version, 3))))
    groups = tuple(
        BindingGroupScope(g, draw(options(ScopeKind.BINDING_GROUP, version)),
                          draw(domains(version, 3)), tuple(members[g]))
        for g in group_names)
    return Config(
        options=draw(options(ScopeKind.GLOBAL, version)),
        domains=draw(domains(version, 5)),
        binding_groups=groups,
        bindings=tuple(members[None]),
        compatibility=compatibility,
        match_cache_size=draw(st.sampled_from((None, 0, 1, 64))),
    )


@attrs.frozen
class Request:
    """One resolution request (the arguments of ``Resolver.resolve``)."""

    domain: str
    binding: str | None
    mx_host: str | None
    overrides: Options | None

    @property
    def normalised_domain(self) -> str:
        """The hand-written normalised form of ``domain``."""
        return REQUEST_NAMES[self.domain]

    def call(self) -> dict[str, Any]:
        """Keyword arguments for ``Resolver.resolve``."""
        return {"binding": self.binding, "mx_host": self.mx_host, "overrides": self.overrides}


def declared_bindings(config: Config) -> list[str]:
    """Every binding name a request may use (declared ones and ``default``)."""
    return sorted({b.name for _g, b in config.iter_bindings()} | {"default"})


@cache
def _requests(names: tuple[str | None, ...], version: CompatVersion) -> st.SearchStrategy[Request]:
    return st.builds(
        Request,
        st.sampled_from(sorted(REQUEST_NAMES)),
        st.sampled_from(names),
        st.sampled_from([None, *MX_NAMES]),
        st.one_of(st.none(), options(ScopeKind.GLOBAL, version, OVERRIDABLE_OPTIONS)),
    )


def requests(config: Config, *, unknown_bindings: bool = False) -> st.SearchStrategy[Request]:
    """A request that fits ``config`` (optionally naming undeclared bindings too)."""
    names: list[str | None] = [None, *declared_bindings(config)]
    if unknown_bindings:
        names.extend(("nope", "B2", "DEFAULT"))
    return _requests(tuple(names), config.effective_compatibility)
