"""Precedence, matching, normalisation, overrides and decision contents (SEMANTICS 2-4).

Every configuration here is real TOML text read with ``loads_toml`` (or files
layered with ``load_config``), resolved with ``Resolver.resolve``.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from tlspolicy import (
    Action,
    ConnectionFacts,
    Decision,
    InvalidDomainError,
    Observation,
    Options,
    PlaintextReason,
    Resolver,
    Tls,
    UnknownBindingError,
    Verification,
    load_config,
    loads_toml,
)
from tlspolicy.errors import (
    BindingGroupConflictError,
    OptionScopeError,
    OptionVersionError,
    RegexError,
)
from tlspolicy.options import TlsEngine, TlsProtocols, TlsVerify, TlsVersion
from tlspolicy.scopes import layer_configs


def resolve(toml: str, domain: str = "example.com", binding: str | None = None,
            **kwargs: object) -> Decision:
    return Resolver(loads_toml(toml, "test.toml")).resolve(domain, binding, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------- the 7-level chain

LEVEL_PATHS = {
    1: 'binding_group "g1" > binding "b1" > domain "example.com"',
    2: 'binding_group "g1" > domain "example.com"',
    3: 'binding_group "g1" > binding "b1"',
    4: 'binding_group "g1"',
    5: 'domain "example.com"',
    6: "global",
    7: "default",
}


def chain_config(levels: set[int], option: str = "tls_ciphers",
                 value: str = "L{n}") -> str:
    """A configuration that sets ``option`` at exactly the chain ``levels`` (1-6)."""
    def setting(n: int) -> str:
        return f'{option} = "{value.format(n=n)}"\n' if n in levels else ""

    return (
        "[global]\n" + setting(6)
        + '[[domain]]\nname = "example.com"\n' + setting(5)
        + '[[binding_group]]\nname = "g1"\n' + setting(4)
        + '[[binding_group.domain]]\nname = "example.com"\n' + setting(2)
        + '[[binding_group.binding]]\nname = "b1"\n' + setting(3)
        + '[[binding_group.binding.domain]]\nname = "example.com"\n' + setting(1)
    )


@pytest.mark.parametrize(("winner", "loser"), list(itertools.combinations(range(1, 8), 2)),
                         ids=lambda n: f"L{n}")
def test_each_level_wins_over_each_lower_one(winner: int, loser: int) -> None:
    levels = {n for n in (winner, loser) if n <= 6}
    decision = resolve(chain_config(levels), "example.com", "b1")
    expected = f"L{winner}" if winner <= 6 else None
    assert decision.effective["tls_ciphers"] == expected
    assert decision.parameters.ciphers == expected
    assert str(decision.explanation["tls_ciphers"]) == LEVEL_PATHS[winner]


@pytest.mark.parametrize("level", range(1, 8))
def test_full_chain_peeled_level_by_level(level: int) -> None:
    decision = resolve(chain_config(set(range(level, 7))), "example.com", "b1")
    assert str(decision.explanation["tls_ciphers"]) == LEVEL_PATHS[level]


def test_chain_with_tls_values() -> None:
    # The same chain with the option that matters most: the group's "no" beats
    # a stricter global domain stanza (group before global domain, documented).
    toml = chain_config({4, 5, 6}, "tls", "{n}").replace('"4"', '"no"').replace(
        '"5"', '"required"').replace('"6"', '"ifavailable"')
    decision = resolve(toml, "example.com", "b1")
    assert decision.tls is Tls.NO
    assert decision.plan is Action.SKIP
    assert str(decision.explanation["tls"]) == 'binding_group "g1"'


def test_other_domain_skips_domain_levels() -> None:
    decision = resolve(chain_config({1, 2, 5, 6}), "other.example", "b1")
    assert decision.effective["tls_ciphers"] == "L6"


def test_other_binding_skips_binding_levels() -> None:
    toml = chain_config({1, 2, 3, 4, 5, 6}) + '[[binding]]\nname = "b2"\n'
    decision = resolve(toml, "example.com", "b2")
    assert decision.effective["tls_ciphers"] == "L5"
    assert decision.binding_group == "default"


def test_options_resolve_independently() -> None:
    toml = """
[global]
tls = "required"
tls_verify = "host"
tls_ca = "/global.pem"
[[binding]]
name = "b1"
tls_verify = "ca"
[[binding.domain]]
name = "example.com"
tls_ca = "/domain.pem"
"""
    d = resolve(toml, "example.com", "b1")
    assert (d.tls, d.verification, d.parameters.ca_file) == (
        Tls.REQUIRED, Verification.CA, "/domain.pem")
    assert {k: str(v) for k, v in d.explanation.items() if k in ("tls", "tls_verify", "tls_ca")} \
        == {"tls": "global", "tls_verify": 'binding "b1"',
            "tls_ca": 'binding "b1" > domain "example.com"'}


# ----------------------------------------------------------- regex domains

def test_regex_option_by_option_in_declaration_order() -> None:
    toml = r"""
[[domain]]
name = "/example/"
tls = "ifavailable"
[[domain]]
name = '/\.com$/'
tls = "required"
tls_verify = "host"
[[domain]]
name = "/^mail/"
tls_verify = "ca"
tls_ca = "/third.pem"
"""
    d = resolve(toml, "mail.example.com")
    assert d.tls is Tls.IFAVAILABLE
    assert d.verification is Verification.HOST
    assert d.parameters.ca_file == "/third.pem"
    assert str(d.explanation["tls"]) == 'domain "/example/"'
    assert str(d.explanation["tls_verify"]) == r'domain "/\.com$/"'
    assert str(d.explanation["tls_ca"]) == 'domain "/^mail/"'


def test_regex_declaration_order_decides_not_specificity() -> None:
    toml = r"""
[[domain]]
name = "/e/"
tls = "no"
[[domain]]
name = '/^mail\.example\.com$/'
tls = "required"
"""
    assert resolve(toml, "mail.example.com").tls is Tls.NO


@pytest.mark.parametrize(("pattern", "domain", "matches"), [
    ("/example/", "example.com", True),
    ("/example/", "mail.example.com", True),
    ("/example/", "example.org", True),
    ("/example/", "EXAMPLE.NET.", True),
    ("/^example/", "mail.example.com", False),
    (r"/\.com$/", "example.com", True),
    (r"/\.com$/", "example.com.", True),
    (r"/\.com$/", "example.community", False),
    ("/^xn--bcher/", "bücher.de", True),
    (r"/^\[192\.0\.2\./", "192.0.2.9", True),
    ("/ipv6/", "2001:db8::1", True),
])
def test_regex_uses_re_search_on_the_normalised_name(pattern: str, domain: str,
                                                     matches: bool) -> None:
    toml = f'[[domain]]\nname = "{pattern}"\ntls = "required"\n'.replace("\\", "\\\\")
    assert (resolve(toml, domain).tls is Tls.REQUIRED) is matches


def test_a_u_label_pattern_that_could_never_match_is_refused() -> None:
    # Names are matched as A-labels: /bücher/ never matched bücher.de; it is now refused.
    with pytest.raises(RegexError, match="can never match"):
        resolve('[[domain]]\nname = "/bücher/"\ntls = "required"\n', "bücher.de")


def test_exact_beats_regex_in_the_same_container_even_when_declared_later() -> None:
    toml = """
[[domain]]
name = "/example/"
tls = "required"
tls_verify = "host"
[[domain]]
name = "example.com"
tls = "ifavailable"
"""
    d = resolve(toml, "example.com")
    assert d.tls is Tls.IFAVAILABLE
    # The exact stanza does not set tls_verify: the regex still supplies it.
    assert d.verification is Verification.HOST
    assert resolve(toml, "mail.example.com").tls is Tls.REQUIRED


def test_regex_in_inner_container_beats_exact_in_outer() -> None:
    toml = """
[[domain]]
name = "example.com"
tls = "no"
[[binding]]
name = "b1"
[[binding.domain]]
name = "/example/"
tls = "required"
"""
    assert resolve(toml, "example.com", "b1").tls is Tls.REQUIRED
    assert resolve(toml, "example.com").tls is Tls.NO


def test_regex_stanza_setting_nothing_does_not_stop_the_search() -> None:
    toml = """
[[domain]]
name = "/example/"
[[domain]]
name = "/com/"
tls = "required"
"""
    assert resolve(toml, "example.com").tls is Tls.REQUIRED


# ------------------------------------------------------------ normalisation

@pytest.mark.parametrize(("stanza", "request_name"), [
    ("Example.COM", "example.com"),
    ("example.com", "EXAMPLE.COM."),
    ("example.com.", "Example.Com"),
    ("bücher.de", "xn--bcher-kva.de"),
    ("bücher.de", "BÜCHER.DE."),
    ("xn--bcher-kva.de", "bücher.de"),
    ("faß.de", "xn--fa-hia.de"),
    ("faß.de", "FAß.de"),
])
def test_names_match_after_normalisation(stanza: str, request_name: str) -> None:
    toml = f'[[domain]]\nname = "{stanza}"\ntls = "required"\n'
    assert resolve(toml, request_name).tls is Tls.REQUIRED


def test_non_transitional_sharp_s() -> None:
    toml = '[[domain]]\nname = "faß.de"\ntls = "required"\n'
    assert resolve(toml, "fass.de").tls is Tls.NO
    assert resolve(toml, "faß.de").domain == "xn--fa-hia.de"


IPV4 = ["192.0.2.1", "[192.0.2.1]", "[IPv6:::ffff:192.0.2.1]"]
IPV6 = ["[IPv6:2001:db8::1]", "2001:db8::1", "[ipv6:2001:DB8:0:0::1]", "2001:0db8::0001"]


@pytest.mark.parametrize(("stanza", "request_name"),
                         [*itertools.product(IPV4, IPV4), *itertools.product(IPV6, IPV6)])
def test_ip_literals_match_in_every_spelling(stanza: str, request_name: str) -> None:
    toml = f'[[domain]]\nname = "{stanza}"\ntls = "required"\n'
    assert resolve(toml, request_name).tls is Tls.REQUIRED


def test_ip_literal_does_not_match_other_address() -> None:
    toml = '[[domain]]\nname = "[192.0.2.1]"\ntls = "required"\n'
    assert resolve(toml, "192.0.2.10").tls is Tls.NO
    assert resolve(toml, "[IPv6:2001:db8::1]").tls is Tls.NO


@pytest.mark.parametrize("bad", ["", "exa mple.com", "[192.0.2.1", "example..com", "[IPv6:zz]"])
def test_bad_request_domain_is_a_typed_error(bad: str) -> None:
    with pytest.raises(InvalidDomainError):
        resolve("", bad)


# --------------------------------------------------- bindings and groups

def test_implicit_default_binding_and_group_undeclared() -> None:
    d = resolve('[global]\ntls = "ifavailable"\n')
    assert (d.binding, d.binding_group, d.tls) == ("default", "default", Tls.IFAVAILABLE)
    d2 = resolve('[global]\ntls = "ifavailable"\n', binding="default")
    assert d2 == d


def test_declared_default_binding_sets_options() -> None:
    toml = '[global]\ntls = "no"\n[[binding]]\nname = "default"\ntls = "required"\n'
    d = resolve(toml)
    assert d.tls is Tls.REQUIRED
    assert str(d.explanation["tls"]) == 'binding "default"'


def test_declared_default_group_applies_to_ungrouped_and_implicit_bindings() -> None:
    toml = """
[[binding_group]]
name = "default"
tls = "required"
[[binding]]
name = "b1"
"""
    for binding in (None, "b1"):
        d = resolve(toml, binding=binding)
        assert d.tls is Tls.REQUIRED
        assert d.binding_group == "default"
        assert str(d.explanation["tls"]) == 'binding_group "default"'


def test_default_binding_placed_in_a_group_uses_that_group() -> None:
    toml = """
[[binding_group]]
name = "g1"
tls_verify = "ca"
[[binding_group.binding]]
name = "default"
"""
    d = resolve(toml)
    assert (d.binding_group, d.verification) == ("g1", Verification.CA)


def test_group_domain_applies_to_member_bindings_only() -> None:
    toml = """
[[binding_group]]
name = "g1"
[[binding_group.domain]]
name = "example.com"
tls = "required"
[[binding_group.binding]]
name = "b1"
[[binding]]
name = "b2"
"""
    assert resolve(toml, binding="b1").tls is Tls.REQUIRED
    assert resolve(toml, binding="b2").tls is Tls.NO
    assert resolve(toml).tls is Tls.NO


@pytest.mark.parametrize("name", ["b2", "B1", "b1 ", "", "DEFAULT"])
def test_unknown_binding_is_an_error(name: str) -> None:
    toml = '[global]\ntls = "required"\n[[binding]]\nname = "b1"\n'
    resolver = Resolver(loads_toml(toml))
    with pytest.raises(UnknownBindingError, match="unknown binding"):
        resolver.resolve("example.com", name)
    assert isinstance(UnknownBindingError("x"), LookupError)


# ----------------------------------------------------------- overrides

def test_overrides_sit_above_every_scope() -> None:
    toml = chain_config(set(range(1, 7)))
    over = Options(tls_ciphers="OVERRIDE", tls=Tls.REQUIRED)
    d = resolve(toml, "example.com", "b1", overrides=over)
    assert d.parameters.ciphers == "OVERRIDE"
    assert str(d.explanation["tls_ciphers"]) == "override"
    assert d.tls is Tls.REQUIRED and str(d.explanation["tls"]) == "override"


def test_overrides_may_relax_configuration() -> None:
    # Overrides replace configuration (only destination policy may not be relaxed).
    d = resolve('[global]\ntls = "required"\ntls_verify = "host"\n',
                overrides=Options(tls=Tls.NO))
    assert d.plan is Action.SKIP


def test_empty_overrides_change_nothing() -> None:
    toml = '[global]\ntls = "required"\n'
    assert resolve(toml, overrides=Options()) == resolve(toml)


@pytest.mark.parametrize("option", [
    Options(use_mta_sts=False), Options(enable_mta_sts=False), Options(use_dane=False),
    Options(enable_dane=False), Options(tls_engine=TlsEngine.GNUTLS)])
def test_overrides_may_not_touch_policy_switches_or_engine(option: Options) -> None:
    name = next(option.items())[0]
    with pytest.raises(OptionScopeError, match=name) as info:
        resolve("", overrides=option)
    assert info.value.location.scope == "override"


def test_override_newer_than_compatibility_is_rejected() -> None:
    with pytest.raises(OptionVersionError, match="tls_protocols"):
        resolve('compatibility = "4.1"\n', overrides=Options(tls_protocols=TlsProtocols.parse(
            "TLSv1.2")))
    with pytest.raises(OptionVersionError, match="tls_ifavailable_fallback"):
        resolve('compatibility = "4.0"\n', overrides=Options(tls_ifavailable_fallback=False))


def test_overrides_must_be_options() -> None:
    with pytest.raises(TypeError):
        resolve("", overrides={"tls": "required"})


# -------------------------------------------------------------- layering

def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_layering_later_file_wins_option_by_option(tmp_path: Path) -> None:
    a = _write(tmp_path, "a.toml", """
[global]
tls = "ifavailable"
tls_verify = "ca"
[[binding]]
name = "b1"
tls_ca = "/a.pem"
tls_ciphers = "A"
""")
    b = _write(tmp_path, "b.toml", """
[global]
tls = "required"
[[binding]]
name = "b1"
tls_ciphers = "B"
""")
    d = Resolver(load_config(a, b)).resolve("example.com", "b1")
    assert (d.tls, d.verification) == (Tls.REQUIRED, Verification.CA)
    assert (d.parameters.ca_file, d.parameters.ciphers) == ("/a.pem", "B")
    # The reverse order gives the reverse answer.
    d2 = Resolver(load_config(b, a)).resolve("example.com", "b1")
    assert (d2.tls, d2.parameters.ciphers) == (Tls.IFAVAILABLE, "A")


def test_layering_scope_by_scope_and_regex_order_kept(tmp_path: Path) -> None:
    a = _write(tmp_path, "a.toml", """
[[domain]]
name = "/mail/"
tls = "ifavailable"
[[domain]]
name = "/example/"
tls = "required"
tls_verify = "host"
""")
    b = _write(tmp_path, "b.toml", """
[[domain]]
name = "/com/"
tls = "no"
tls_ca = "/b.pem"
[[domain]]
name = "/example/"
tls_verify = "ca"
""")
    config = load_config(a, b)
    assert [d.name.text for d in config.domains] == ["/mail/", "/example/", "/com/"]
    d = Resolver(config).resolve("mail.example.com")
    assert d.tls is Tls.IFAVAILABLE          # first regex in the first file's order
    assert d.verification is Verification.CA  # /example/ overlaid by file b
    assert d.parameters.ca_file == "/b.pem"   # new stanza appended after the others
    d2 = Resolver(config).resolve("example.com")
    assert d2.tls is Tls.REQUIRED


def test_layering_groups_and_nested_scopes(tmp_path: Path) -> None:
    a = _write(tmp_path, "a.toml", """
[[binding_group]]
name = "g1"
tls = "ifavailable"
[[binding_group.binding]]
name = "b1"
[[binding_group.binding.domain]]
name = "example.com"
tls_verify = "optional"
""")
    b = _write(tmp_path, "b.toml", """
[[binding_group]]
name = "g1"
[[binding_group.binding]]
name = "b1"
[[binding_group.binding.domain]]
name = "EXAMPLE.com."
tls_ca = "/b.pem"
""")
    d = Resolver(load_config(a, b)).resolve("example.com", "b1")
    assert (d.tls, d.verification, d.parameters.ca_file) == (
        Tls.IFAVAILABLE, Verification.OPTIONAL, "/b.pem")


def test_layering_binding_may_not_change_group(tmp_path: Path) -> None:
    a = _write(tmp_path, "a.toml",
               '[[binding_group]]\nname = "g1"\n[[binding_group.binding]]\nname = "b1"\n')
    b = _write(tmp_path, "b.toml", '[[binding]]\nname = "b1"\n')
    with pytest.raises(BindingGroupConflictError, match="b1"):
        load_config(a, b)


def test_layer_configs_of_nothing_is_the_empty_config() -> None:
    assert Resolver(layer_configs([])).resolve("example.com").plan is Action.SKIP


def test_layering_compatibility_later_wins() -> None:
    a = loads_toml('compatibility = "4.1"\n')
    b = loads_toml('compatibility = "4.8"\n')
    assert str(layer_configs([a, b]).compatibility) == "4.8"
    assert str(layer_configs([b, loads_toml("")]).compatibility) == "4.8"


# ------------------------------------------------ certificates and 4.0

def test_tls_certificate_none_cancels_a_parents_certificate() -> None:
    toml = """
[global]
tls = "required"
tls_certificate = "/client.pem"
tls_key = "/client.key"
[[domain]]
name = "example.com"
tls_certificate = "none"
tls_key = "NONE"
"""
    d = resolve(toml)
    assert d.parameters.certificate_file is None and d.parameters.key_file is None
    assert d.effective["tls_certificate"] is None
    assert str(d.explanation["tls_certificate"]) == 'domain "example.com"'
    other = resolve(toml, "other.example")
    assert (other.parameters.certificate_file, other.parameters.key_file) == (
        "/client.pem", "/client.key")


def test_compatibility_4_0_rejects_tls_ifavailable_fallback() -> None:
    with pytest.raises(OptionVersionError, match="tls_ifavailable_fallback") as info:
        loads_toml('compatibility = "4.0"\n[global]\ntls_ifavailable_fallback = true\n', "c.toml")
    assert info.value.location.line == 3


def test_compatibility_4_0_ifavailable_failure_always_defers() -> None:
    d = resolve('compatibility = "4.0"\n[global]\ntls = "ifavailable"\n')
    assert d.fallback is False
    assert d.outcome(Observation.HANDSHAKE_FAILED).action is Action.DEFER
    assert PlaintextReason.HANDSHAKE_FAILED not in d.required_security.plaintext
    assert PlaintextReason.REFUSED not in d.required_security.plaintext


# ------------------------------------------------- required security

_TRIED = {PlaintextReason.NOT_ADVERTISED, PlaintextReason.REFUSED,
          PlaintextReason.HANDSHAKE_FAILED}


def _no_judge(decision: Decision, facts: ConnectionFacts) -> tuple[Observation, ...]:
    raise AssertionError("a plaintext connection has no chain to judge")


@pytest.mark.parametrize(("toml", "plaintext", "check"), [
    ('tls = "no"', set(PlaintextReason), Verification.NO),
    ('tls = "ifavailable"', _TRIED, Verification.NO),
    ('tls = "ifavailable"\ntls_ifavailable_fallback = false', {PlaintextReason.NOT_ADVERTISED},
     Verification.NO),
    ('tls = "ifavailable"\ntls_verify = "optional"', _TRIED, Verification.OPTIONAL),
    ('tls = "ifavailable"\ntls_verify = "ca"', _TRIED, Verification.CA),
    ('tls = "required"', set(), Verification.NO),
    ('tls = "required"\ntls_verify = "ca"', set(), Verification.CA),
    ('tls = "required"\ntls_verify = "host"', set(), Verification.HOST),
])
def test_required_security(toml: str, plaintext: set[PlaintextReason],
                           check: Verification) -> None:
    decision = resolve(f"[global]\n{toml}\n")
    req = decision.required_security
    assert req.plaintext == frozenset(plaintext)
    assert req.tls_check is check
    for reason in PlaintextReason:
        facts = ConnectionFacts(decision.mx_host, decision.binding, reason)
        assert req.permits(facts, judge=_no_judge) is (reason in plaintext)
        # The same connection from another binding never fits.
        other = ConnectionFacts(decision.mx_host, "elsewhere", reason)
        assert not req.permits(other, judge=_no_judge)


# ------------------------------------------------------- parameters

def test_parameters_from_effective_values() -> None:
    toml = """
[global]
tls = "required"
tls_engine = "gnutls"
tls_ca = "/ca.pem"
tls_certificate = "/c.pem"
tls_key = "/c.key"
tls_ciphers = "NORMAL"
tlsv13_ciphersuites = "TLS_AES_256_GCM_SHA384"
tls_protocols = "+ALL:-SSLv2:-SSLv3:-TLSv1.0"
"""
    p = resolve(toml, mx_host="MX1.Example.COM.").parameters
    assert (p.ca_file, p.certificate_file, p.key_file) == ("/ca.pem", "/c.pem", "/c.key")
    assert (p.ciphers, p.tls13_ciphersuites, p.engine) == (
        "NORMAL", "TLS_AES_256_GCM_SHA384", TlsEngine.GNUTLS)
    assert p.ordered_protocols == (TlsVersion.TLSv1_1, TlsVersion.TLSv1_2, TlsVersion.TLSv1_3)
    assert p.is_contiguous
    assert p.sni == "mx1.example.com"


def test_default_parameters() -> None:
    p = resolve("").parameters
    assert (p.ca_file, p.certificate_file, p.key_file, p.ciphers, p.tls13_ciphersuites) == (
        None, None, None, None, None)
    assert p.protocols == frozenset(TlsVersion)
    assert p.engine is TlsEngine.OPENSSL
    assert p.sni == "example.com"


def test_protocol_hole_is_not_contiguous() -> None:
    p = resolve('[global]\ntls_protocols = "TLSv1.0:TLSv1.2"\n').parameters
    assert not p.is_contiguous


@pytest.mark.parametrize(("domain", "mx", "sni", "identities"), [
    ("Example.COM.", None, "example.com", ("example.com",)),
    ("example.com", "MX.example.net.", "mx.example.net", ("example.com", "mx.example.net")),
    ("example.com", "example.com", "example.com", ("example.com",)),
    ("bücher.de", "mx.bücher.de", "mx.xn--bcher-kva.de",
     ("xn--bcher-kva.de", "mx.xn--bcher-kva.de")),
    ("192.0.2.1", None, None, ("192.0.2.1",)),
    ("[IPv6:2001:db8::1]", "mx.example.net", "mx.example.net",
     ("2001:db8::1", "mx.example.net")),
])
def test_sni_is_the_mx_host_and_identities_are_domain_and_mx(
    domain: str, mx: str | None, sni: str | None, identities: tuple[str, ...]
) -> None:
    d = resolve('[global]\ntls = "required"\ntls_verify = "host"\n', domain, mx_host=mx)
    assert d.parameters.sni == sni
    assert d.reference_identities == identities


def test_mx_host_may_not_be_an_ip_literal() -> None:
    with pytest.raises(InvalidDomainError):
        resolve("", mx_host="192.0.2.1")


# --------------------------------------------------------- to_dict

def test_to_dict_is_json_serialisable() -> None:
    toml = """
[global]
tls = "ifavailable"
tls_verify = "optional"
tls_certificate = "/c.pem"
tls_protocols = "TLSv1.2:TLSv1.3"
[[domain]]
name = "bücher.de"
tls_certificate = "none"
[[binding]]
name = "b1"
"""
    for domain, binding in (("bücher.de", None), ("[IPv6:2001:db8::1]", "b1"), ("x.y", "b1")):
        d = resolve(toml, domain, binding, mx_host="mx.example.com")
        data = d.to_dict()
        assert json.loads(json.dumps(data)) == data
        assert data["domain"] == d.domain and data["binding"] == d.binding
        assert data["parameters"]["protocols"] == ["TLSv1.2", "TLSv1.3"]
        assert set(data["explanation"]) == set(data["effective"])
    data = resolve(toml, "bücher.de").to_dict()
    assert data["effective"]["tls_certificate"] is None
    assert data["explanation"]["tls_certificate"] == 'domain "bücher.de"'
    assert data["required_security"] == {
        "plaintext_allowed_when": ["handshake-failed", "not-advertised", "refused"],
        "min_tls_verification": "none"}


def test_decisions_are_immutable_and_hashable() -> None:
    d = resolve('[global]\ntls = "required"\n')
    assert hash(d) == hash(resolve('[global]\ntls = "required"\n'))
    with pytest.raises(AttributeError):
        d.tls = Tls.NO  # type: ignore[misc]
    with pytest.raises(TypeError):
        d.effective["tls"] = Tls.NO  # type: ignore[index]


def test_resolver_lists_bindings() -> None:
    resolver = Resolver(loads_toml('[[binding_group]]\nname = "g"\n[[binding_group.binding]]\n'
                                   'name = "b1"\n[[binding]]\nname = "b2"\n'))
    assert set(resolver.bindings) == {"b1", "b2", "default"}
    assert resolver.binding_group_of("b1") == "g"
    assert resolver.binding_group_of("b2") == "default"


def test_verify_values_map_to_verification() -> None:
    for verify in TlsVerify:
        d = resolve(f'[global]\ntls = "required"\ntls_verify = "{verify.value}"\n')
        assert d.verification is Verification(verify.value)

