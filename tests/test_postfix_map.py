"""The Postfix policy mapping: levels, attributes and every reported loss."""

from __future__ import annotations

import pytest

from tlspolicy import Config, Options, Resolver, Tls, UnknownBindingError
from tlspolicy.names import DomainName
from tlspolicy.options import OPTION_SPECS, TlsProtocols, TlsVerify
from tlspolicy.postfix.levels import PostfixLevel, PostfixMappingError
from tlspolicy.postfix.lookup import PolicyLookup
from tlspolicy.postfix.mapping import map_values
from tlspolicy.postfix.tables import (
    EntryKind,
    postfix_entries,
    render_pcre_table,
    render_policy_table,
    render_warnings,
)
from tlspolicy.scopes import BindingGroupScope, BindingScope, DomainScope
from tlspolicy.servers.socketmap import ReplyStatus


def values(**given: object) -> dict[str, object]:
    out = {name: spec.default for name, spec in OPTION_SPECS.items()}
    out.update(given)
    return out


@pytest.mark.parametrize(("tls", "verify", "level"), [
    (Tls.NO, TlsVerify.NO, "none"),
    (Tls.NO, TlsVerify.HOST, "none"),
    (Tls.IFAVAILABLE, TlsVerify.NO, "may"),
    (Tls.IFAVAILABLE, TlsVerify.OPTIONAL, "may"),
    (Tls.IFAVAILABLE, TlsVerify.CA, "verify match=hostname:nexthop"),
    (Tls.IFAVAILABLE, TlsVerify.HOST, "verify match=hostname:nexthop"),
    (Tls.REQUIRED, TlsVerify.NO, "encrypt"),
    (Tls.REQUIRED, TlsVerify.OPTIONAL, "encrypt"),
    (Tls.REQUIRED, TlsVerify.CA, "verify match=hostname:nexthop"),
    (Tls.REQUIRED, TlsVerify.HOST, "verify match=hostname:nexthop"),
])
def test_levels(tls: Tls, verify: TlsVerify, level: str) -> None:
    policy, _warnings = map_values(values(tls=tls, tls_verify=verify))
    assert policy.text() == level


def _options(warnings: tuple[object, ...]) -> list[str]:
    return [w.option for w in warnings]  # type: ignore[attr-defined]


def test_losses_are_reported() -> None:
    _p, w = map_values(values(tls=Tls.REQUIRED, tls_verify=TlsVerify.CA))
    assert _options(w) == ["tls_verify"]
    _p, w = map_values(values(tls=Tls.IFAVAILABLE, tls_verify=TlsVerify.HOST))
    assert _options(w) == ["tls"]
    _p, w = map_values(values(tls=Tls.IFAVAILABLE, tls_verify=TlsVerify.OPTIONAL))
    assert _options(w) == ["tls_verify"]
    _p, w = map_values(values(tls=Tls.IFAVAILABLE, tls_ifavailable_fallback=False))
    assert _options(w) == ["tls_ifavailable_fallback"]
    # Under 4.0 the option does not exist: Momentum always defers.
    _p, w = map_values(values(tls=Tls.IFAVAILABLE), fallback_exists=False)
    assert _options(w) == ["tls_ifavailable_fallback"]
    _p, w = map_values(values(tls=Tls.REQUIRED, tls_certificate="/c.pem", tls_key="/k.pem",
                              tlsv13_ciphersuites="TLS_AES_128_GCM_SHA256",
                              use_mta_sts=True))
    assert sorted(_options(w)) == ["tls_certificate", "tls_key", "tlsv13_ciphersuites",
                                   "use_mta_sts"]
    # With tls = no nothing of the TLS parameters matters, so nothing is lost.
    _p, w = map_values(values(tls=Tls.NO, tls_certificate="/c.pem", tls_verify=TlsVerify.CA))
    assert w == ()


def test_ca_becomes_tafile_only_when_verifying() -> None:
    p, _w = map_values(values(tls=Tls.REQUIRED, tls_verify=TlsVerify.HOST, tls_ca="/ca.pem"))
    assert p.text() == "verify match=hostname:nexthop tafile=/ca.pem"
    p, w = map_values(values(tls=Tls.REQUIRED, tls_verify=TlsVerify.OPTIONAL, tls_ca="/ca.pem"))
    assert p.text() == "encrypt"
    assert "tls_ca" in _options(w)
    with pytest.raises(PostfixMappingError, match="white space or commas"):
        map_values(values(tls=Tls.REQUIRED, tls_verify=TlsVerify.HOST, tls_ca="/my ca.pem"))


@pytest.mark.parametrize(("spec", "attr", "lossy"), [
    ("+ALL", None, False),
    ("+ALL:-SSLv2:-SSLv3", None, False),
    ("+ALL:-SSLv2:-SSLv3:-TLSv1.0:-TLSv1.1", "protocols=>=TLSv1.2", False),
    ("-ALL:+TLSv1.3", "protocols=>=TLSv1.3", False),
    ("TLSv1.0:TLSv1.1:TLSv1.2", "protocols=>=TLSv1:<=TLSv1.2", False),
    # A gap at may: the whole range (Postfix's default here), never plaintext where the
    # decision encrypts with a version below the gap (the Postfix model's counterexample).
    ("TLSv1.0:TLSv1.2:TLSv1.3", None, True),
])
def test_protocols(spec: str, attr: str | None, lossy: bool) -> None:
    p, w = map_values(values(tls=Tls.IFAVAILABLE, tls_protocols=TlsProtocols.parse(spec)))
    assert p.attributes == (() if attr is None else (tuple(attr.split("=", 1)),))
    assert ("tls_protocols" in _options(w)) is lossy


def test_protocols_with_a_gap_at_a_mandatory_level_keep_the_highest_range() -> None:
    # Mandatory TLS: dropping the versions below the gap only defers (stricter).
    p, w = map_values(values(tls=Tls.REQUIRED,
                             tls_protocols=TlsProtocols.parse("TLSv1.0:TLSv1.2:TLSv1.3")))
    assert p.text() == "encrypt protocols=>=TLSv1.2"
    assert "protocols-not-contiguous" in {x.code for x in w}


@pytest.mark.parametrize(("ciphers", "attrs"), [
    ("HIGH", "ciphers=high"),
    ("HIGH:!aNULL:!MD5", "ciphers=high exclude=aNULL:MD5"),
    ("MEDIUM", "ciphers=medium"),
    ("ECDHE+AESGCM", None),
    ("NORMAL:-VERS-TLS1.0", None),
])
def test_ciphers(ciphers: str, attrs: str | None) -> None:
    p, w = map_values(values(tls=Tls.REQUIRED, tls_ciphers=ciphers))
    if attrs is None:
        assert p.text() == "encrypt"
        assert _options(w) == ["tls_ciphers"]
    else:
        assert p.text() == f"encrypt {attrs}"
        assert w == ()


def test_dane() -> None:
    p, w = map_values(values(tls=Tls.IFAVAILABLE, use_dane=True))
    assert p.level is PostfixLevel.DANE and w == ()
    p, w = map_values(values(tls=Tls.IFAVAILABLE, use_dane=True, enable_dane=False))
    assert p.level is PostfixLevel.MAY
    p, w = map_values(values(tls=Tls.NO, use_dane=True))
    assert p.level is PostfixLevel.DANE and _options(w) == ["use_dane"]
    p, w = map_values(values(tls=Tls.REQUIRED, use_dane=True))
    assert p.level is PostfixLevel.ENCRYPT and _options(w) == ["use_dane"]
    # dane-only exists for answers with discovery only (SEMANTICS 11): no combination of
    # options makes the static mapping produce it.
    for tls in Tls:
        for verify in TlsVerify:
            for dane in (False, True):
                for fallback in (False, True):
                    p, _w = map_values(values(tls=tls, tls_verify=verify, use_dane=dane,
                                              tls_ifavailable_fallback=fallback))
                    assert p.level is not PostfixLevel.DANE_ONLY


CONFIG = Config(
    options=Options(tls=Tls.IFAVAILABLE),
    domains=(
        DomainScope(DomainName.parse("partner.example"),
                    Options(tls=Tls.REQUIRED, tls_verify=TlsVerify.HOST)),
        DomainScope(DomainName.parse(r"/\.bank\.example$/"), Options(tls=Tls.REQUIRED)),
        DomainScope(DomainName.parse("/example/"), Options(tls_verify=TlsVerify.OPTIONAL)),
        DomainScope(DomainName.parse("[192.0.2.1]"), Options(tls=Tls.NO)),
    ),
    binding_groups=(BindingGroupScope("g", Options(tls_verify=TlsVerify.NO), bindings=(
        BindingScope("b1", domains=(DomainScope(DomainName.parse("own.example"),
                                                Options(tls=Tls.REQUIRED)),)),)),),
)


def test_entries_of_a_binding() -> None:
    entries, warnings = postfix_entries(CONFIG, "b1")
    by_key = {e.key: e for e in entries}
    assert by_key[None].kind is EntryKind.DEFAULT and by_key[None].policy.text() == "may"
    assert by_key["own.example"].policy.text() == "encrypt"
    # The group's tls_verify = no beats the global domain stanza's host.
    assert by_key["partner.example"].policy.text() == "encrypt"
    assert by_key["[192.0.2.1]"].policy.text() == "none"
    assert by_key[r"/\.bank\.example$/"].policy.text() == "encrypt"
    assert [e.kind for e in entries].count(EntryKind.REGEX) == 2
    table = render_policy_table(entries)
    assert "own.example\tencrypt\n" in table and "/" not in table.split("\n", 2)[2]
    pcre = render_pcre_table(entries)
    assert pcre.splitlines()[1] == "if !/^\\./"  # the guard against ".parent" lookups
    assert pcre.splitlines()[2] == "/\\.bank\\.example$/\tencrypt"
    text = render_warnings(warnings)
    assert "only regex stanza matching" in text


def test_entries_errors() -> None:
    with pytest.raises(UnknownBindingError):
        postfix_entries(CONFIG, "nope")
    entries, _w = postfix_entries(CONFIG)
    assert entries[0].binding == "default"


def test_lookup_answers() -> None:
    lookup = PolicyLookup(Resolver(CONFIG))
    assert lookup("b1", "own.example").to_text() == "OK encrypt"
    assert lookup("b1", "[own.example]:587").to_text() == "OK encrypt"
    assert lookup("default", "partner.example").to_text() == \
        "OK verify match=hostname:nexthop"
    assert lookup("default", "x.bank.example").to_text() == "OK encrypt"
    assert lookup("default", "192.0.2.1").to_text() == "OK none"
    assert lookup("default", "unlisted.test").to_text() == "OK may"
    assert lookup("default", ".partner.example").status is ReplyStatus.NOTFOUND
    assert lookup("B1", "own.example").text.startswith("unknown binding 'B1'")
    assert lookup("b1", "bad..name").status is ReplyStatus.PERM
    bad = PolicyLookup(Resolver(Config(options=Options(
        tls=Tls.REQUIRED, tls_verify=TlsVerify.HOST, tls_ca="/a b.pem"))))
    assert bad("default", "x.test").status is ReplyStatus.PERM
