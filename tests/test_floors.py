"""Floors (SEMANTICS section 7): minimums that no binding can weaken."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategies import PROPERTY_EXAMPLES, configs, domain_names, options, requests
from tlspolicy import (
    Config,
    ConfigError,
    Destination,
    Options,
    Resolver,
    Tls,
    TlsaLookup,
    TlsaLookupStatus,
    TlsaRecord,
    Verification,
    loads_toml,
)
from tlspolicy.diff import ChangeClass, diff_configs
from tlspolicy.errors import InvalidValueError
from tlspolicy.names import DomainName
from tlspolicy.options import ScopeKind, TlsProtocols, TlsVerify, TlsVersion
from tlspolicy.scopes import DomainScope, FloorScope

BASE = """
[global]
tls = "ifavailable"
tls_verify = "optional"

[[binding]]
name = "plain"
tls = "no"

[[binding]]
name = "loose"
tls_verify = "no"
tls_protocols = "+ALL"
"""


def load(extra: str) -> Resolver:
    return Resolver(loads_toml(BASE + extra, "floors.toml"))


# ------------------------------------------------------------------ the file format

@pytest.mark.parametrize("option, value", [
    ("tls_ca", '"/etc/ca.pem"'), ("tls_certificate", '"/c.pem"'), ("tls_key", '"/k.pem"'),
    ("tls_ciphers", '"HIGH"'), ("tlsv13_ciphersuites", '"TLS_AES_256_GCM_SHA384"'),
    ("use_dane", "true"), ("tls_engine", '"openssl"'),
])
def test_floor_refuses_options_that_are_not_orders(option: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        loads_toml(f'[[floor]]\nname = "p.example"\ntls = "required"\n{option} = {value}\n',
                   "f.toml")
    text = str(info.value)
    assert "f.toml:4" in text and 'floor "p.example"' in text and option in text


def test_floor_fallback_true_and_duplicates_are_located_errors() -> None:
    with pytest.raises(ConfigError, match=r"f.toml:3: floor \"p.example\".*only say"):
        loads_toml('[[floor]]\nname = "p.example"\ntls_ifavailable_fallback = true\n',
                   "f.toml")
    with pytest.raises(ConfigError, match=r"f.toml:3: floor \"P.example\".*declared twice"):
        loads_toml('[[floor]]\nname = "p.example"\n[[floor]]\nname = "P.example"\n', "f.toml")
    with pytest.raises(ConfigError, match=r"floor \"/\(/\""):
        loads_toml('[[floor]]\nname = "/(/"\ntls = "required"\n', "f.toml")


def test_floor_round_trips_through_toml() -> None:
    from tlspolicy.formats.toml import dumps_toml

    config = loads_toml(BASE + '[[floor]]\nname = "/partner/"\ntls = "required"\n'
                        'tls_protocols = "TLSv1.3"\nreason = "contract"\n')
    assert loads_toml(dumps_toml(config)) == config
    assert config.floors[0].reason == "contract"


def test_floor_model_checks_its_options() -> None:
    from tlspolicy.names import DomainName

    with pytest.raises(ConfigError, match="tls_ca"):
        FloorScope(DomainName.parse("p.example"), Options(tls_ca="/x"))
    with pytest.raises(ConfigError, match="only say"):
        FloorScope(DomainName.parse("p.example"), Options(tls_ifavailable_fallback=True))


# ------------------------------------------------------------------ the raise rule

def test_floor_raises_tls_and_verification_through_a_binding_that_sets_no() -> None:
    r = load('[[floor]]\nname = "payroll.example"\ntls = "required"\ntls_verify = "host"\n')
    d = r.resolve("payroll.example", "plain")
    assert (d.tls, d.verification) == (Tls.REQUIRED, Verification.HOST)
    assert str(d.explanation["tls"]) == \
        'floor "payroll.example" (raised from no set by binding "plain")'
    # Other domains are untouched.
    assert r.resolve("other.example", "plain").tls is Tls.NO


def test_floor_never_lowers_a_stricter_chain() -> None:
    r = load('[[floor]]\nname = "p.example"\ntls = "ifavailable"\ntls_verify = "ca"\n'
             '[[domain]]\nname = "p.example"\ntls = "required"\ntls_verify = "host"\n')
    d = r.resolve("p.example")
    assert (d.tls, d.verification) == (Tls.REQUIRED, Verification.HOST)
    assert str(d.explanation["tls"]) == 'domain "p.example"'


def test_every_matching_floor_applies_max_false_and_intersection() -> None:
    r = load('[[floor]]\nname = "/example$/"\ntls = "ifavailable"\ntls_verify = "ca"\n'
             'tls_protocols = "TLSv1.2:TLSv1.3"\n'
             '[[floor]]\nname = "/^mx/"\ntls_protocols = "TLSv1.3"\n'
             'tls_ifavailable_fallback = false\n'
             '[[floor]]\nname = "mx.example"\ntls = "required"\n')
    d = r.resolve("mx.example", "plain")
    assert d.tls is Tls.REQUIRED and d.verification is Verification.CA
    assert d.fallback is False
    assert d.parameters.protocols == frozenset({TlsVersion.TLSv1_3})
    assert str(d.explanation["tls"]).startswith('floor "mx.example", floor "/example$/"')
    assert str(d.explanation["tls_protocols"]).startswith(
        'floor "/example$/", floor "/^mx/"')
    assert d.effective["tls_protocols"] == TlsProtocols.parse("TLSv1.3")


def test_floor_applies_after_per_message_overrides() -> None:
    r = load('[[floor]]\nname = "p.example"\ntls = "required"\n')
    d = r.resolve("p.example", overrides=Options(tls=Tls.NO))
    assert d.tls is Tls.REQUIRED
    assert "raised from no set by override" in str(d.explanation["tls"])


def test_dane_with_usable_records_meets_a_host_floor() -> None:
    r = Resolver(loads_toml('[global]\nuse_dane = true\n[[floor]]\nname = "p.example"\n'
                            'tls_verify = "host"\ntls = "required"\n'))
    usable = TlsaLookup(TlsaLookupStatus.RECORDS, (TlsaRecord.parse("3 1 1 " + "ab" * 32),))
    d = r.resolve("p.example", mx_host="mx.p.example", destination=Destination(tlsa=usable))
    assert d.verification is Verification.DANE
    # Records, none usable: the floor's host check stands.
    unusable = TlsaLookup(TlsaLookupStatus.RECORDS, (TlsaRecord.parse("1 1 1 " + "ef" * 32),))
    d = r.resolve("p.example", mx_host="mx.p.example", destination=Destination(tlsa=unusable))
    assert d.verification is Verification.HOST


def test_floor_under_mta_sts_enforce_still_stricter_or_equal() -> None:
    from tlspolicy import MtaStsPolicy, StsMode

    r = Resolver(loads_toml('[global]\nuse_mta_sts = true\n[[floor]]\nname = "p.example"\n'
                            'tls_ifavailable_fallback = false\n'))
    policy = MtaStsPolicy(StsMode.TESTING, ("*.p.example",), 86400)
    d = r.resolve("p.example", mx_host="mx.p.example", destination=Destination(mta_sts=policy))
    assert d.fallback is False and d.tls is Tls.IFAVAILABLE


def test_exactly_empty_protocol_intersection_allows_nothing() -> None:
    # The resolver intersects as it always did; the loaders refuse such a file (below).
    config = Config(domains=(DomainScope(DomainName.parse("p.example"),
                                         Options(tls_protocols=TlsProtocols.parse("TLSv1.2"))),),
                    floors=(FloorScope(DomainName.parse("p.example"),
                                       Options(tls_protocols=TlsProtocols.parse("TLSv1.3"))),))
    assert Resolver(config).resolve("p.example").parameters.protocols == frozenset()
    with pytest.raises(InvalidValueError, match="no protocol version in common"):
        load('[[floor]]\nname = "p.example"\ntls_protocols = "TLSv1.3"\n'
             '[[domain]]\nname = "p.example"\ntls_protocols = "TLSv1.2"\n')


# ------------------------------------------------------------------ property: only raises

def floors() -> st.SearchStrategy[tuple[FloorScope, ...]]:
    floor_options = options(ScopeKind.DOMAIN, only=frozenset(
        {"tls", "tls_verify", "tls_protocols"}))
    one = st.builds(
        lambda name, opts, no_fallback: FloorScope(
            name, attrs.evolve(opts, tls_ifavailable_fallback=False) if no_fallback else opts),
        domain_names(), floor_options, st.booleans())
    return st.lists(one, max_size=3, unique_by=lambda f: f.name).map(tuple)


_VERIFY = {Verification.NO: 0, Verification.OPTIONAL: 1, Verification.CA: 2,
           Verification.HOST: 3, Verification.DANE: 4}


# Two resolvers per example: the heavier budget, with several requests per example.
@settings(max_examples=PROPERTY_EXAMPLES, suppress_health_check=[HealthCheck.too_slow],
          deadline=None)
@given(configs(), floors(), st.data())
def test_no_floor_makes_any_decision_weaker(config: Config, extra: tuple[FloorScope, ...],
                                            data: st.DataObject) -> None:
    if config.effective_compatibility.parts < (4, 1, 0, 2):
        extra = tuple(attrs.evolve(f, options=Options(
            tls=f.options.tls, tls_verify=f.options.tls_verify)) for f in extra)
    floored = attrs.evolve(config, floors=extra)
    before, after = Resolver(config), Resolver(floored)
    for request in data.draw(st.lists(requests(config), min_size=1, max_size=8)):
        _check_raised(before, after, request)


def _check_raised(before: Resolver, after: Resolver, request: object) -> None:
    a = before.resolve(request.domain, **request.call())  # type: ignore[attr-defined]
    b = after.resolve(request.domain, **request.call())  # type: ignore[attr-defined]
    assert b.tls >= a.tls
    assert _VERIFY[b.verification] >= _VERIFY[a.verification]
    assert b.fallback <= a.fallback
    assert b.parameters.protocols <= a.parameters.protocols
    # Each floor that matches is met.
    for floor in after.floors_for(b.domain):
        if floor.options.tls is not None and isinstance(floor.options.tls, Tls):
            assert b.tls >= floor.options.tls
        if isinstance(floor.options.tls_verify, TlsVerify):
            assert _VERIFY[b.verification] >= _VERIFY[Verification.of(floor.options.tls_verify)]
        if floor.options.tls_ifavailable_fallback is False:
            assert b.fallback is False


@settings(max_examples=PROPERTY_EXAMPLES, suppress_health_check=[HealthCheck.too_slow],
          deadline=None)
@given(configs(versions=(None,)), floors())
def test_diff_never_classes_adding_floors_as_a_downgrade(
        config: Config, extra: tuple[FloorScope, ...]) -> None:
    floored = attrs.evolve(config, floors=extra)
    assert not diff_configs(config, floored).of(ChangeClass.DOWNGRADE)


# ------------------------------------------------------------------ never-weaker exports

_FLOORED = ("tls", "tls_verify", "tls_ifavailable_fallback", "tls_protocols")


def _probe_names(config: Config) -> list[str]:
    from strategies import REQUEST_NAMES

    return sorted(set(REQUEST_NAMES.values()))


@settings(max_examples=PROPERTY_EXAMPLES, suppress_health_check=[HealthCheck.too_slow],
          deadline=None)
@given(configs(versions=(None,)), floors())
def test_ecelerity_export_of_floors_is_exact_on_floor_options(
        config: Config, extra: tuple[FloorScope, ...]) -> None:
    from hypothesis import assume

    from tlspolicy.floors import FloorExportError
    from tlspolicy.formats.ecelerity import dumps_ecelerity, loads_ecelerity_config

    floored = attrs.evolve(config, floors=extra)
    try:
        text = dumps_ecelerity(floored)
    except FloorExportError:
        assume(False)
        return
    back = Resolver(loads_ecelerity_config(text))
    want = Resolver(floored)
    for binding in want.bindings:
        for name in _probe_names(config):
            got, _s = back.effective(name, binding)
            expected, _s = want.effective(name, binding)
            for option in _FLOORED:
                assert got[option] == expected[option], (binding, name, option)
            for option in set(expected) - set(_FLOORED):
                assert got[option] == expected[option], (binding, name, option)


def test_example_exports_never_weaker_to_ecelerity() -> None:
    from tlspolicy.formats.bundled import example_config
    from tlspolicy.formats.ecelerity import dumps_ecelerity, loads_ecelerity_config

    config = example_config()
    back = Resolver(loads_ecelerity_config(dumps_ecelerity(config)))
    want = Resolver(config)
    for binding in want.bindings:
        for name in ("payroll-partner.example", "bank.example", "mail.bank.example",
                     "ordinary.example", "[192.0.2.25]"):
            assert back.effective(name, binding)[0] == want.effective(name, binding)[0]


def test_regex_floor_that_no_constant_carries_is_a_located_export_error() -> None:
    from tlspolicy.floors import FloorExportError
    from tlspolicy.formats.ecelerity import dumps_ecelerity
    from tlspolicy.postfix.tables import postfix_entries

    config = loads_toml(
        '[[domain]]\nname = "/^strict/"\ntls_verify = "host"\n'
        '[[floor]]\nname = "/example$/"\ntls_verify = "ca"\n')
    for export in (dumps_ecelerity, postfix_entries):
        with pytest.raises(FloorExportError) as info:
            export(config)
        assert 'floor "/example$/"' in str(info.value) and "tls_verify" in str(info.value)
    # At the top of the order the same floor exports: a constant "host" is never weaker.
    top = loads_toml('[[domain]]\nname = "/^strict/"\ntls_verify = "host"\n'
                     '[[floor]]\nname = "/example$/"\ntls_verify = "host"\n')
    assert 'domain "/example$/"' in dumps_ecelerity(top)


def test_postfix_tables_carry_floors() -> None:
    from tlspolicy.formats.bundled import example_config
    from tlspolicy.postfix.tables import (
        EntryKind,
        postfix_entries,
        render_pcre_table,
        render_policy_table,
    )

    config = example_config()
    entries, _warnings = postfix_entries(config, "relay-internal")
    table = render_policy_table(entries)
    assert "payroll-partner.example\tverify match=hostname:nexthop" in table
    pcre = render_pcre_table(entries).splitlines()
    assert pcre[1] == "if !/^\\./"  # the guard against Postfix's ".parent" lookups
    assert pcre[2].startswith("/(?:^|\\.)bank\\.example$/\tverify")
    entries, _w = postfix_entries(config, "bulk-1")
    first = next(e for e in entries if e.kind is EntryKind.REGEX)
    assert first.policy.level.value == "verify" and first.source.startswith("floor ")
    # An exact floor naming a domain no stanza names gets its own entry.
    only = loads_toml('[[binding]]\nname = "b"\ntls = "no"\n'
                      '[[floor]]\nname = "x.example"\ntls = "required"\n')
    entries, _w = postfix_entries(only, "b")
    assert any(e.key == "x.example" and e.policy.level.value == "encrypt" for e in entries)
