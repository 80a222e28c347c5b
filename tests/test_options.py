"""Options, values, strictness order, tls_protocols and compatibility (SEMANTICS 3)."""

from __future__ import annotations

import pytest

from tlspolicy import ConfigError, Options, Tls
from tlspolicy.errors import InvalidValueError, UnknownOptionError, _show_value
from tlspolicy.options import (
    NEWEST_VERSION,
    OPTION_SPECS,
    UNSET,
    CompatVersion,
    ScopeKind,
    TlsEngine,
    TlsProtocols,
    TlsVerify,
    TlsVersion,
)

ALL = frozenset(ScopeKind)
DG = frozenset({ScopeKind.DOMAIN, ScopeKind.GLOBAL})

# SEMANTICS section 3: option -> (scopes, default, since).
SPEC_TABLE = {
    "tls": (ALL, Tls.NO, "4.0"),
    "tls_ifavailable_fallback": (ALL, True, "4.1"),
    "tls_verify": (ALL, TlsVerify.NO, "4.0"),
    "tls_ca": (ALL, UNSET, "4.0"),
    "tls_certificate": (ALL, UNSET, "4.0"),
    "tls_key": (ALL, UNSET, "4.0"),
    "tls_ciphers": (ALL, UNSET, "4.0"),
    "tlsv13_ciphersuites": (ALL, UNSET, "4.6"),
    "tls_protocols": (ALL, TlsProtocols.parse("+ALL"), "4.1.0.2"),
    "use_mta_sts": (DG, False, "4.8"),
    "enable_mta_sts": (ALL, True, "4.8"),
    "use_dane": (DG, False, "4.8"),
    "enable_dane": (ALL, True, "4.8"),
    "tls_engine": (frozenset({ScopeKind.GLOBAL}), TlsEngine.OPENSSL, "4.0"),
}


@pytest.mark.parametrize("name", sorted(SPEC_TABLE))
def test_option_registry_matches_section_3(name: str) -> None:
    scopes, default, since = SPEC_TABLE[name]
    spec = OPTION_SPECS[name]
    assert spec.scopes == scopes
    assert spec.default == default
    assert spec.since == CompatVersion.parse(since)


def test_registry_has_exactly_the_specified_options() -> None:
    assert set(OPTION_SPECS) == set(SPEC_TABLE)


def test_default_protocols_are_all_versions() -> None:
    default = OPTION_SPECS["tls_protocols"].default
    assert isinstance(default, TlsProtocols)
    assert default.versions == frozenset(TlsVersion)


def test_strictness_order() -> None:
    assert Tls.NO < Tls.IFAVAILABLE < Tls.REQUIRED
    assert TlsVerify.NO < TlsVerify.OPTIONAL < TlsVerify.CA < TlsVerify.HOST
    assert max(Tls) is Tls.REQUIRED and min(TlsVerify) is TlsVerify.NO
    assert sorted([TlsVerify.HOST, TlsVerify.NO, TlsVerify.CA, TlsVerify.OPTIONAL]) == [
        TlsVerify.NO, TlsVerify.OPTIONAL, TlsVerify.CA, TlsVerify.HOST]
    with pytest.raises(TypeError):
        _ = Tls.NO < TlsVerify.HOST


@pytest.mark.parametrize("key", ["tls_verify", "TLS_Verify", "TLS_VERIFY", "Tls_verify"])
def test_option_names_are_case_insensitive(key: str) -> None:
    assert Options.from_mapping({key: "host"}) == Options(tls_verify=TlsVerify.HOST)


def test_same_option_twice_in_different_case_is_an_error() -> None:
    with pytest.raises(InvalidValueError, match="tls_verify"):
        Options.from_mapping({"tls_verify": "ca", "TLS_VERIFY": "host"})


def test_unknown_option_is_named() -> None:
    with pytest.raises(UnknownOptionError, match="tls_verfy") as info:
        Options.from_mapping({"tls_verfy": "host"})
    assert info.value.location.option == "tls_verfy"


@pytest.mark.parametrize(("name", "raw", "value"), [
    ("tls", "required", Tls.REQUIRED),
    ("tls", "IfAvailable", Tls.IFAVAILABLE),
    ("tls", "no", Tls.NO),
    ("tls_verify", "optional", TlsVerify.OPTIONAL),
    ("tls_ifavailable_fallback", False, False),
    ("tls_ifavailable_fallback", "yes", True),
    ("tls_ifavailable_fallback", "off", False),
    ("use_dane", 1, True),
    ("tls_engine", "gnutls", TlsEngine.GNUTLS),
    ("tls_certificate", "none", None),
    ("tls_certificate", "NONE", None),
    ("tls_key", "none", None),
    ("tls_certificate", "/etc/ssl/client.pem", "/etc/ssl/client.pem"),
    ("tls_ca", "/etc/ssl/ca.pem", "/etc/ssl/ca.pem"),
    ("tls_ciphers", "HIGH:!aNULL", "HIGH:!aNULL"),
])
def test_values_parse(name: str, raw: object, value: object) -> None:
    assert getattr(Options.from_mapping({name: raw}), name) == value


@pytest.mark.parametrize(("name", "raw"), [
    ("tls", "requried"),
    ("tls", "yes"),
    ("tls", True),
    ("tls", ""),
    ("tls_verify", "strict"),
    ("tls_verify", 1),
    ("tls_ifavailable_fallback", "maybe"),
    ("tls_ifavailable_fallback", 2),
    ("tls_ifavailable_fallback", ""),
    ("use_mta_sts", "enabled"),
    ("tls_engine", "boringssl"),
    ("tls_ca", ""),
    ("tls_ca", "   "),
    ("tls_ca", 5),
    ("tls_ciphers", ["HIGH"]),
    ("tls_protocols", "TLSv1.4"),
    ("tls_protocols", 12),
])
def test_bad_values_are_errors_naming_the_option(name: str, raw: object) -> None:
    with pytest.raises(InvalidValueError) as info:
        Options.from_mapping({name: raw})
    assert info.value.location.option == name
    assert name in str(info.value)
    # The value as a configuration file writes it (true, 'x', ['HIGH']), not a Python repr.
    assert f"(value {_show_value(raw)})" in str(info.value)
    assert "True" not in str(info.value)


def test_options_model_accepts_only_parsed_values() -> None:
    with pytest.raises(InvalidValueError):
        Options(tls="required")  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError):
        Options(tls_ifavailable_fallback="true")  # type: ignore[arg-type]


def test_unset_is_distinct_from_none_certificate() -> None:
    assert Options().tls_certificate is UNSET
    assert Options(tls_certificate=None).tls_certificate is None
    assert not Options(tls_certificate=None).is_empty()
    assert Options(tls_certificate=None).to_mapping() == {"tls_certificate": "none"}


def test_overlay_replaces_option_by_option() -> None:
    old = Options(tls=Tls.REQUIRED, tls_verify=TlsVerify.CA)
    new = Options(tls_verify=TlsVerify.HOST, tls_ca="/x.pem")
    assert old.overlay(new) == Options(tls=Tls.REQUIRED, tls_verify=TlsVerify.HOST,
                                       tls_ca="/x.pem")


@pytest.mark.parametrize(("text", "versions"), [
    ("+ALL", set(TlsVersion)),
    ("ALL", set(TlsVersion)),
    ("+ALL:-SSLv2:-SSLv3:-TLSv1.0", {TlsVersion.TLSv1_1, TlsVersion.TLSv1_2,
                                     TlsVersion.TLSv1_3}),
    ("TLSv1.2:TLSv1.3", {TlsVersion.TLSv1_2, TlsVersion.TLSv1_3}),
    ("-ALL:+TLSv1.3", {TlsVersion.TLSv1_3}),
    ("tlsv1.2", {TlsVersion.TLSv1_2}),
    ("+ALL:-TLSv1", set(TlsVersion) - {TlsVersion.TLSv1_0}),
    (" +ALL : -SSLv2 ", set(TlsVersion) - {TlsVersion.SSLv2}),
])
def test_tls_protocols_parse(text: str, versions: set[TlsVersion]) -> None:
    parsed = TlsProtocols.parse(text)
    assert parsed.versions == frozenset(versions)
    assert str(parsed) == text
    assert parsed.ordered == tuple(v for v in TlsVersion if v in versions)


@pytest.mark.parametrize("text", ["", "   ", "TLSv1.4", "+ALL:-TLS1.2", "SSL", "+ALL:foo",
                                  "-ALL", "+TLSv1.2:-TLSv1.2", "+ALL:-ALL", ":", "++ALL"])
def test_tls_protocols_bad_tokens_or_empty_result(text: str) -> None:
    with pytest.raises(InvalidValueError):
        TlsProtocols.parse(text)


def test_tls_protocols_equality_is_on_versions() -> None:
    assert TlsProtocols.parse("+ALL") == TlsProtocols.parse("+ALL:-SSLv2:+SSLv2")
    assert hash(TlsProtocols.parse("+ALL")) == hash(TlsProtocols.parse("ALL"))
    assert TlsProtocols.parse("TLSv1.3") != TlsProtocols.parse("TLSv1.2")


@pytest.mark.parametrize(("a", "b"), [("4.0", "4"), ("4.0", "4.0.0.0"), ("4.1", "4.1.0"),
                                      ("4.8", "4.8.0.0")])
def test_compatibility_versions_compare_with_trailing_zeros(a: str, b: str) -> None:
    assert CompatVersion.parse(a) == CompatVersion.parse(b)


def test_compatibility_order() -> None:
    v = [CompatVersion.parse(t) for t in ("4.0", "4.1", "4.1.0.2", "4.6", "4.8")]
    assert v == sorted(v)
    assert v[-1] == NEWEST_VERSION
    assert CompatVersion.parse("4.1") < CompatVersion.parse("4.1.0.2")


@pytest.mark.parametrize("since", sorted({s for _o, _d, s in SPEC_TABLE.values()}))
def test_option_since_a_version_is_available_at_that_version(since: str) -> None:
    # An option introduced in version X must be usable when compatibility pins X.
    for name, (_scopes, _default, version) in SPEC_TABLE.items():
        if version == since:
            assert OPTION_SPECS[name].since <= CompatVersion.parse(since), name


@pytest.mark.parametrize("text", ["", "4.x", "four", "3.9", "4.1.0.2.5", "-4", "4..1"])
def test_bad_compatibility_versions(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        CompatVersion.parse(text)
    assert info.value.location.option == "compatibility"
