"""Destination policies on top of configuration (SEMANTICS sections 5 and 6).

Every row of the section 5 tables through Resolver.resolve, then the section 6
invariants over generated combinations of configuration x MTA-STS x DANE x
REQUIRETLS x TLS-Required x remembered broken TLS x observation.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import examples
from tlspolicy import (
    Action,
    Config,
    Destination,
    MtaStsPolicy,
    Observation,
    Options,
    PolicyInputError,
    Reason,
    Resolver,
    StsMode,
    Tls,
    TlsaLookup,
    TlsaLookupStatus,
    TlsaRecord,
    Verification,
    loads_toml,
)
from tlspolicy.names import DomainName
from tlspolicy.options import TlsVerify
from tlspolicy.outcomes import CERTIFICATE_OBSERVATIONS, NEGOTIATION_OBSERVATIONS, STATUSES
from tlspolicy.policies.mtasts import FetchOutcome
from tlspolicy.scopes import DomainScope

MX = "mx1.example.net"
DOMAIN = "example.net"
USABLE = TlsaRecord.parse("3 1 1 " + "ab" * 32)
USABLE_TA = TlsaRecord.parse("2 0 1 " + "cd" * 32)
UNUSABLE = TlsaRecord.parse("1 1 1 " + "ef" * 32)  # PKIX-EE: unusable for SMTP (RFC 7672)

ENFORCE = MtaStsPolicy(StsMode.ENFORCE, ("*.example.net",), 86400)
TESTING = MtaStsPolicy(StsMode.TESTING, ("*.example.net",), 86400)
NONE_MODE = MtaStsPolicy(StsMode.NONE, (), 86400)


def resolver(tls: str = "ifavailable", verify: str = "no", *, sts: bool = True,
             dane: bool = True, fallback: bool = True, extra: str = "") -> Resolver:
    return Resolver(loads_toml(f"""
[global]
tls = "{tls}"
tls_verify = "{verify}"
tls_ifavailable_fallback = {str(fallback).lower()}
use_mta_sts = {str(sts).lower()}
use_dane = {str(dane).lower()}
{extra}
"""))


def lookup(status: TlsaLookupStatus, *records: TlsaRecord) -> TlsaLookup:
    return TlsaLookup(status, records)


# ------------------------------------------------------------------ MTA-STS

def test_enforce_makes_tls_required_and_host_verified_against_mx_name() -> None:
    d = resolver("no", "no").resolve(DOMAIN, mx_host=MX, destination=Destination(mta_sts=ENFORCE))
    assert d.plan is Action.ATTEMPT
    assert d.tls is Tls.REQUIRED
    assert d.verification is Verification.HOST
    assert d.reference_identities == (MX,)
    assert d.fallback is False
    assert d.outcome(Observation.STARTTLS_NOT_ADVERTISED).action is Action.FAIL
    assert d.outcome(Observation.NAME_MISMATCH).action is Action.FAIL
    assert str(d.decided_by["tls"]) == "mta-sts (enforce)"


def test_enforce_rules_out_mx_not_in_policy() -> None:
    d = resolver().resolve(DOMAIN, mx_host="mx.elsewhere.org",
                           destination=Destination(mta_sts=ENFORCE))
    assert d.plan is Action.FAIL
    assert d.plan_status == STATUSES[Reason.MX_NOT_PERMITTED]
    assert (d.plan_status.code, d.plan_status.enhanced) == (451, "4.7.5")
    assert d.plan_status.tlsrpt == "validation-failure"
    assert d.outcomes == {}


def test_enforce_wildcard_matches_one_label_only() -> None:
    d = resolver().resolve(DOMAIN, mx_host="a.b.example.net",
                           destination=Destination(mta_sts=ENFORCE))
    assert d.plan is Action.FAIL


@pytest.mark.parametrize(("tls", "verify", "want_tls", "want_verify"), [
    ("no", "no", Tls.IFAVAILABLE, Verification.OPTIONAL),
    ("ifavailable", "no", Tls.IFAVAILABLE, Verification.OPTIONAL),
    ("required", "optional", Tls.REQUIRED, Verification.OPTIONAL),
    ("required", "ca", Tls.REQUIRED, Verification.CA),
    ("ifavailable", "host", Tls.IFAVAILABLE, Verification.HOST),
])
def test_testing_mode_is_max_of_configuration_and_floor(
        tls: str, verify: str, want_tls: Tls, want_verify: Verification) -> None:
    d = resolver(tls, verify).resolve(DOMAIN, mx_host=MX,
                                      destination=Destination(mta_sts=TESTING))
    assert (d.tls, d.verification) == (want_tls, want_verify)


def test_testing_mode_reports_mx_mismatch_without_enforcing() -> None:
    d = resolver().resolve(DOMAIN, mx_host="mx.elsewhere.org",
                           destination=Destination(mta_sts=TESTING))
    assert d.plan is Action.ATTEMPT
    assert [r.result_type for r in d.reports] == ["validation-failure"]


def test_mode_none_leaves_configuration() -> None:
    r = resolver("ifavailable", "no")
    plain = r.resolve(DOMAIN, mx_host=MX)
    d = r.resolve(DOMAIN, mx_host=MX, destination=Destination(mta_sts=NONE_MODE))
    assert (d.plan, d.tls, d.verification, d.fallback) == (
        plain.plan, plain.tls, plain.verification, plain.fallback)


@pytest.mark.parametrize(("use", "enable"), [(False, True), (True, False)])
def test_mta_sts_needs_use_and_enable(use: bool, enable: bool) -> None:
    r = resolver("no", sts=use, extra=f'[[domain]]\nname = "{DOMAIN}"\n'
                 f"enable_mta_sts = {str(enable).lower()}\n")
    d = r.resolve(DOMAIN, mx_host=MX, destination=Destination(mta_sts=ENFORCE))
    assert d.plan is Action.SKIP


@pytest.mark.parametrize("fetch", list(FetchOutcome)[1:])
def test_failed_fetch_keeps_policy_in_force_and_is_reported(fetch: FetchOutcome) -> None:
    d = resolver("no").resolve(DOMAIN, mx_host=MX,
                               destination=Destination(mta_sts=ENFORCE, mta_sts_fetch=fetch))
    assert d.tls is Tls.REQUIRED
    assert [r.result_type for r in d.reports] == [fetch.tlsrpt_result_type]


def test_failed_fetch_without_policy_leaves_configuration() -> None:
    d = resolver("no").resolve(DOMAIN, mx_host=MX, destination=Destination(
        mta_sts_fetch=FetchOutcome.FETCH_ERROR))
    assert d.plan is Action.SKIP
    assert [r.result_type for r in d.reports] == ["sts-policy-fetch-error"]


def test_expired_policy_is_as_good_as_none() -> None:
    from datetime import UTC, datetime, timedelta

    from tlspolicy.policies.mtasts import CachedMtaStsPolicy

    fetched = datetime(2030, 1, 1, tzinfo=UTC)
    cached = CachedMtaStsPolicy(ENFORCE, fetched)
    live = Destination.from_cache(cached, fetched + timedelta(seconds=86399),
                                  fetch=FetchOutcome.FETCH_ERROR)
    dead = Destination.from_cache(cached, fetched + timedelta(seconds=86400))
    r = resolver("no")
    assert r.resolve(DOMAIN, mx_host=MX, destination=live).tls is Tls.REQUIRED
    assert r.resolve(DOMAIN, mx_host=MX, destination=dead).plan is Action.SKIP


def test_policy_needs_mx_host() -> None:
    with pytest.raises(PolicyInputError, match="mx_host"):
        resolver().resolve(DOMAIN, destination=Destination(mta_sts=ENFORCE))


# --------------------------------------------------------------------- DANE

def test_dane_not_secure_leaves_configuration_and_mta_sts() -> None:
    r = resolver("ifavailable", "no")
    d = r.resolve(DOMAIN, mx_host=MX, destination=Destination(
        tlsa=lookup(TlsaLookupStatus.INSECURE), mta_sts=TESTING))
    assert (d.tls, d.verification) == (Tls.IFAVAILABLE, Verification.OPTIONAL)


def test_dane_usable_records() -> None:
    d = resolver("no", "no").resolve(DOMAIN, mx_host=MX, destination=Destination(
        tlsa=lookup(TlsaLookupStatus.RECORDS, USABLE, UNUSABLE)))
    assert d.plan is Action.ATTEMPT
    assert (d.tls, d.verification, d.fallback) == (Tls.REQUIRED, Verification.DANE, False)
    assert d.tlsa_records == (USABLE,)
    assert d.reference_identities == (MX,)
    assert d.parameters.sni == MX
    assert d.outcome(Observation.TLSA_MISMATCH).action is Action.FAIL
    assert d.outcome(Observation.TLSA_MISMATCH).status == STATUSES[Reason.TLSA_MISMATCH]
    # DANE replaces PKIX: chain trust is not required.
    assert d.outcome(Observation.CHAIN_NOT_TRUSTED).action is Action.PROCEED
    for obs in NEGOTIATION_OBSERVATIONS:
        assert d.outcome(obs).action is Action.FAIL


def test_dane_base_domain_is_sni_and_identity() -> None:
    tlsa = TlsaLookup(TlsaLookupStatus.RECORDS, (USABLE_TA,), base_domain="mx.cdn.example.org")
    d = resolver().resolve(DOMAIN, mx_host=MX, destination=Destination(tlsa=tlsa))
    assert d.parameters.sni == "mx.cdn.example.org"
    assert d.reference_identities == ("mx.cdn.example.org",)


def test_dane_wins_over_mta_sts_certificate_rules_but_sts_filters_mx() -> None:
    r = resolver()
    dest = Destination(mta_sts=ENFORCE, tlsa=lookup(TlsaLookupStatus.RECORDS, USABLE))
    d = r.resolve(DOMAIN, mx_host=MX, destination=dest)
    assert d.verification is Verification.DANE
    d = r.resolve(DOMAIN, mx_host="mx.elsewhere.org", destination=dest)
    assert d.plan is Action.FAIL
    assert d.plan_status == STATUSES[Reason.MX_NOT_PERMITTED]


@pytest.mark.parametrize(("verify", "sts", "want"), [
    ("no", None, Verification.NO),
    ("ca", None, Verification.CA),
    ("no", ENFORCE, Verification.HOST),
])
def test_dane_unusable_records_require_tls_verification_from_elsewhere(
        verify: str, sts: MtaStsPolicy | None, want: Verification) -> None:
    d = resolver("no", verify).resolve(DOMAIN, mx_host=MX, destination=Destination(
        mta_sts=sts, tlsa=lookup(TlsaLookupStatus.RECORDS, UNUSABLE)))
    assert d.tls is Tls.REQUIRED
    assert d.verification is want
    assert d.fallback is False
    assert Observation.TLSA_MISMATCH not in d.outcomes


@pytest.mark.parametrize("status", [TlsaLookupStatus.NODATA, TlsaLookupStatus.NXDOMAIN])
def test_dane_secure_denial_leaves_configuration(status: TlsaLookupStatus) -> None:
    d = resolver("ifavailable", "no").resolve(DOMAIN, mx_host=MX, destination=Destination(
        tlsa=lookup(status)))
    assert (d.tls, d.verification, d.fallback) == (Tls.IFAVAILABLE, Verification.NO, True)


@pytest.mark.parametrize("status", [TlsaLookupStatus.FAILED, TlsaLookupStatus.BOGUS])
def test_dane_failed_lookup_rules_host_out(status: TlsaLookupStatus) -> None:
    d = resolver("no").resolve(DOMAIN, mx_host=MX, destination=Destination(tlsa=lookup(status)))
    assert d.plan is Action.FAIL
    assert d.plan_status == STATUSES[Reason.TLSA_LOOKUP_FAILED]
    assert (d.plan_status.code, d.plan_status.enhanced, d.plan_status.tlsrpt) == (
        451, "4.7.5", "dnssec-invalid")
    assert not d.required_security.plaintext


@pytest.mark.parametrize(("use", "enable"), [(False, True), (True, False)])
def test_dane_needs_use_and_enable(use: bool, enable: bool) -> None:
    r = resolver("no", dane=use, extra=f'[[domain]]\nname = "{DOMAIN}"\n'
                 f"enable_dane = {str(enable).lower()}\n")
    d = r.resolve(DOMAIN, mx_host=MX, destination=Destination(
        tlsa=lookup(TlsaLookupStatus.RECORDS, USABLE)))
    assert d.plan is Action.SKIP


# --------------------------------------------------------------- REQUIRETLS

def test_requiretls_needs_secure_or_policy_matched_mx() -> None:
    r = resolver("no")
    d = r.resolve(DOMAIN, mx_host=MX, destination=Destination(requiretls=True))
    assert d.plan is Action.FAIL
    assert (d.plan_status.code, d.plan_status.enhanced) == (451, "4.7.30")
    for dest in (Destination(requiretls=True, mx_dnssec=True),
                 Destination(requiretls=True, mta_sts=TESTING)):
        d = r.resolve(DOMAIN, mx_host=MX, destination=dest)
        assert d.plan is Action.ATTEMPT
        assert d.tls is Tls.REQUIRED
        assert d.verification is Verification.HOST
        assert d.reference_identities == (MX,)
        assert d.requiretls
        out = d.outcome(Observation.REQUIRETLS_NOT_ADVERTISED)
        assert (out.action, out.status.code, out.status.enhanced) == (Action.FAIL, 451, "4.7.30")


def test_requiretls_final_bounce_status() -> None:
    from tlspolicy.outcomes import REQUIRETLS_BOUNCE

    assert (REQUIRETLS_BOUNCE.code, REQUIRETLS_BOUNCE.enhanced) == (550, "5.7.30")
    assert REQUIRETLS_BOUNCE.permanent


def test_requiretls_with_dane_keeps_dane_authentication() -> None:
    d = resolver().resolve(DOMAIN, mx_host=MX, destination=Destination(
        requiretls=True, mx_dnssec=True, tlsa=lookup(TlsaLookupStatus.RECORDS, USABLE)))
    assert d.verification is Verification.DANE


def test_tls_required_no_drops_mta_sts_and_dane_but_not_operator_required() -> None:
    r = resolver("ifavailable")
    dest = Destination(tls_required_no=True, mta_sts=ENFORCE,
                       tlsa=lookup(TlsaLookupStatus.RECORDS, USABLE))
    d = r.resolve(DOMAIN, mx_host=MX, destination=dest)
    assert (d.tls, d.verification) == (Tls.IFAVAILABLE, Verification.NO)
    d = resolver("required").resolve(DOMAIN, mx_host=MX, destination=dest)
    assert d.tls is Tls.REQUIRED


def test_requiretls_parameter_wins_over_tls_required_no() -> None:
    d = resolver("no").resolve(DOMAIN, mx_host=MX, destination=Destination(
        tls_required_no=True, requiretls=True, mx_dnssec=True, mta_sts=ENFORCE))
    assert d.tls is Tls.REQUIRED
    assert d.requiretls


# ------------------------------------------------------ remembered broken TLS

@pytest.mark.parametrize("verify", ["no", "optional"])
def test_broken_tls_skips_unverified_opportunistic(verify: str) -> None:
    d = resolver("ifavailable", verify).resolve(DOMAIN, mx_host=MX,
                                                destination=Destination(tls_broken=True))
    assert d.plan is Action.SKIP


@pytest.mark.parametrize(("tls", "verify", "dest"), [
    ("required", "no", Destination(tls_broken=True)),
    ("ifavailable", "ca", Destination(tls_broken=True)),
    ("ifavailable", "host", Destination(tls_broken=True)),
    ("ifavailable", "no", Destination(tls_broken=True, mta_sts=ENFORCE)),
    ("ifavailable", "no", Destination(tls_broken=True, requiretls=True, mx_dnssec=True)),
    ("ifavailable", "no", Destination(tls_broken=True,
                                      tlsa=lookup(TlsaLookupStatus.RECORDS, USABLE))),
    ("ifavailable", "no", Destination(tls_broken=True,
                                      tlsa=lookup(TlsaLookupStatus.RECORDS, UNUSABLE))),
])
def test_broken_tls_fails_when_tls_is_required(tls: str, verify: str, dest: Destination) -> None:
    d = resolver(tls, verify).resolve(DOMAIN, mx_host=MX, destination=dest)
    assert d.plan is Action.FAIL
    assert d.plan_status == STATUSES[Reason.TLS_REMEMBERED_BROKEN]
    assert (d.plan_status.code, d.plan_status.enhanced) == (451, "4.7.5")


def test_broken_tls_irrelevant_when_tls_is_off() -> None:
    d = resolver("no").resolve(DOMAIN, mx_host=MX, destination=Destination(tls_broken=True))
    assert d.plan is Action.SKIP


def test_overrides_never_relax_destination_policy() -> None:
    r = resolver("required", "host")
    d = r.resolve(DOMAIN, mx_host=MX, overrides=Options(tls=Tls.NO, tls_verify=TlsVerify.NO),
                  destination=Destination(mta_sts=ENFORCE))
    assert (d.tls, d.verification) == (Tls.REQUIRED, Verification.HOST)


# ------------------------------------------------- section 6, generated inputs


tlsa_lookups = st.one_of(
    st.none(),
    st.sampled_from([TlsaLookupStatus.INSECURE, TlsaLookupStatus.NODATA,
                     TlsaLookupStatus.NXDOMAIN, TlsaLookupStatus.FAILED,
                     TlsaLookupStatus.BOGUS]).map(lookup),
    st.lists(st.sampled_from([USABLE, USABLE_TA, UNUSABLE]), min_size=1, max_size=3).map(
        lambda rs: lookup(TlsaLookupStatus.RECORDS, *rs)),
)
destinations = st.builds(
    Destination,
    mta_sts=st.sampled_from([None, ENFORCE, TESTING, NONE_MODE]),
    mta_sts_fetch=st.sampled_from(list(FetchOutcome)),
    tlsa=tlsa_lookups,
    mx_dnssec=st.booleans(),
    requiretls=st.booleans(),
    tls_required_no=st.booleans(),
    tls_broken=st.booleans(),
)
option_sets = st.builds(
    Options,
    tls=st.sampled_from(list(Tls)),
    tls_verify=st.sampled_from(list(TlsVerify)),
    tls_ifavailable_fallback=st.booleans(),
    use_mta_sts=st.booleans(),
    use_dane=st.booleans(),
)
domain_options = st.builds(
    Options,
    tls=st.sampled_from(list(Tls)),
    tls_verify=st.sampled_from(list(TlsVerify)),
    enable_mta_sts=st.booleans(),
    enable_dane=st.booleans(),
)
overrides = st.one_of(st.none(), st.builds(
    Options, tls=st.sampled_from(list(Tls)), tls_verify=st.sampled_from(list(TlsVerify)),
    tls_ifavailable_fallback=st.booleans()))


def _rank(v: Verification) -> int:
    return [Verification.NO, Verification.OPTIONAL, Verification.CA, Verification.HOST,
            Verification.DANE].index(v)


@settings(max_examples=examples(ci=20_000, default=800), deadline=None)
@given(global_opts=option_sets, dom_opts=domain_options, dest=destinations,
       over=overrides, mx=st.sampled_from([MX, "mx.elsewhere.org"]))
def test_section6_invariants(global_opts: Options, dom_opts: Options, dest: Destination,
                             over: Options | None, mx: str) -> None:
    config = Config(options=global_opts,
                    domains=(DomainScope(DomainName.parse(DOMAIN), dom_opts),))
    r = Resolver(config, decision_cache_size=0)
    d = r.resolve(DOMAIN, mx_host=mx, overrides=over, destination=dest)
    base = r.resolve(DOMAIN, mx_host=mx, overrides=over)
    values = d.effective
    ignore = dest.tls_required_no and not dest.requiretls
    sts_on = bool(values["use_mta_sts"]) and bool(values["enable_mta_sts"]) and not ignore
    dane_on = bool(values["use_dane"]) and bool(values["enable_dane"]) and not ignore
    enforce = sts_on and dest.mta_sts is not None and dest.mta_sts.mode is StsMode.ENFORCE
    dane_class = dest.tlsa.classify().value if (dane_on and dest.tlsa is not None) else None
    dane_secure = dane_class in ("usable", "unusable-only", "failed")
    strict = (d.effective["tls"] is Tls.REQUIRED or enforce or dane_secure or dest.requiretls)

    actions = {o.action for o in d.outcomes.values()}
    # Never SKIP or FALLBACK when TLS is required by anything.
    if strict:
        assert d.plan is not Action.SKIP
        assert Action.SKIP not in actions
        assert Action.FALLBACK not in actions
        assert not d.required_security.plaintext
    # Never proceed after a certificate failure under ca/host, enforce, or usable DANE.
    if d.plan is Action.ATTEMPT:
        fail_on_trust = (d.verification in (Verification.CA, Verification.HOST))
        if fail_on_trust:
            assert d.outcome(Observation.CHAIN_NOT_TRUSTED).action is Action.FAIL
            assert d.outcome(Observation.CERTIFICATE_EXPIRED).action is Action.FAIL
        if enforce and dane_class != "usable":
            assert d.verification is Verification.HOST
            assert d.outcome(Observation.NAME_MISMATCH).action is Action.FAIL
        if dane_class == "usable":
            assert d.verification is Verification.DANE
            assert d.outcome(Observation.TLSA_MISMATCH).action is Action.FAIL
        # A certificate problem never leads to FALLBACK.
        for obs in CERTIFICATE_OBSERVATIONS:
            if obs in d.outcomes:
                assert d.outcomes[obs].action in (Action.PROCEED, Action.FAIL)
    # Destination policy only makes the decision stricter than configuration alone.
    assert d.tls >= base.tls or d.plan is Action.FAIL or (d.plan is Action.SKIP and
                                                          base.plan is Action.SKIP)
    if d.plan is Action.ATTEMPT and base.plan is Action.ATTEMPT:
        assert d.tls >= base.tls
        assert _rank(d.verification) >= _rank(base.verification)
        assert d.fallback <= base.fallback
    if base.plan is Action.FAIL:
        assert d.plan is Action.FAIL
    if d.plan is Action.SKIP and base.plan is Action.ATTEMPT:
        # Only remembered broken TLS may skip, and only for unverified opportunistic TLS.
        assert dest.tls_broken and d.tls is Tls.IFAVAILABLE
        assert d.verification in (Verification.NO, Verification.OPTIONAL)
    # Deterministic: resolving again (and through the memo) gives an equal decision.
    assert Resolver(config).resolve(DOMAIN, mx_host=mx, overrides=over,
                                    destination=dest) == d


def test_momentum_hook_overrides_map_use_tls() -> None:
    from tlspolicy.errors import InvalidValueError
    from tlspolicy.options import hook_overrides

    r = resolver("no")
    assert r.resolve(DOMAIN, overrides=hook_overrides(use_tls=2)).tls is Tls.REQUIRED
    assert r.resolve(DOMAIN, overrides=hook_overrides(use_tls=1)).tls is Tls.IFAVAILABLE
    d = r.resolve(DOMAIN, overrides=hook_overrides(use_tls=0, certificate="/c.pem",
                                                    key="/k.pem", cipher_list="HIGH",
                                                    ca="/ca.pem"))
    assert d.plan is Action.SKIP
    assert (d.parameters.certificate_file, d.parameters.key_file, d.parameters.ciphers,
            d.parameters.ca_file) == ("/c.pem", "/k.pem", "HIGH", "/ca.pem")
    assert str(d.explanation["tls_ca"]) == "override"
    with pytest.raises(InvalidValueError, match="use_tls"):
        hook_overrides(use_tls=3)


def test_dane_reference_names_follow_the_base_domain() -> None:
    """RFC 7672 section 3.2.2: a DANE-TA certificate may name the base domain, the CNAME
    target or the original MX host name; the base domain stays first and is the SNI."""
    tlsa = TlsaLookup(TlsaLookupStatus.RECORDS, (USABLE_TA,), base_domain="mx.cdn.example.org",
                      reference_names=("mx.cdn.example.org", MX))
    d = resolver().resolve(DOMAIN, mx_host=MX, destination=Destination(tlsa=tlsa))
    assert d.reference_identities == ("mx.cdn.example.org", MX)
    assert d.parameters.sni == "mx.cdn.example.org"
