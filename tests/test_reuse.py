"""Connection reuse (SEMANTICS 4.2): a connection may carry a message if and only
if re-running that message's decision on the connection's recorded facts gives
what a fresh connection with those facts would reach.

The fresh connection is simulated with the drivers' own state machine
(:class:`tlspolicy.adapters.Progress`) and peer check (``evaluate_peer``), the
code path a real STARTTLS run takes; the reuse answer comes from
:meth:`tlspolicy.RequiredSecurity.check`.  Certificates are real, made once per
module under a test CA; TLSA records are computed from them, so DANE matches
and mismatches are real too.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from certs_support import TestCA, make_self_signed
from strategies import examples
from tlspolicy import (
    Action,
    ConnectionFacts,
    Decision,
    Destination,
    MtaStsPolicy,
    Observation,
    PlaintextReason,
    Resolver,
    StsMode,
    TlsaLookup,
    TlsaLookupStatus,
    TlsaRecord,
    Verification,
    loads_toml,
)
from tlspolicy.adapters import Progress, check_reuse
from tlspolicy.adapters.peer import evaluate_peer
from tlspolicy.options import TlsVersion
from tlspolicy.policies.mtasts import FetchOutcome

MX = "mx1.example.net"
OTHER_MX = "mx.elsewhere.org"
DOMAIN_A = "example.net"
DOMAIN_B = "example.org"
NOW = datetime.datetime.now(datetime.UTC)

ENFORCE = MtaStsPolicy(StsMode.ENFORCE, ("*.example.net",), 86400)
ENFORCE_ELSEWHERE = MtaStsPolicy(StsMode.ENFORCE, ("*.elsewhere.org",), 86400)
TESTING = MtaStsPolicy(StsMode.TESTING, ("*.example.net",), 86400)


class Pki:
    """The CA, the presented chains and the TLSA records of the tests."""

    def __init__(self, directory: Path) -> None:
        self.ca = TestCA(directory / "ca")
        ca_der = self.ca.cert.public_bytes(Encoding.DER)

        def chain(files: object) -> tuple[bytes, ...]:
            leaf = files.cert.public_bytes(Encoding.DER)  # type: ignore[attr-defined]
            return (leaf, ca_der)

        self.chains: dict[str, tuple[bytes, ...]] = {
            "mx": chain(self.ca.valid(MX, stem="mx")),
            "domain-a": chain(self.ca.issue([DOMAIN_A], stem="domain-a")),
            "domain-b": chain(self.ca.issue([DOMAIN_B], stem="domain-b")),
            "wrong-name": chain(self.ca.wrong_name(MX, stem="wrong")),
            "expired": chain(self.ca.expired(MX, stem="expired")),
            "self-signed": (make_self_signed(directory, MX).cert.public_bytes(Encoding.DER),),
            "self-signed-other": (make_self_signed(
                directory, "elsewhere.test", stem="other").cert.public_bytes(Encoding.DER),),
            "none": (),
        }
        # DANE-EE for the self-signed certificate (names and dates ignored),
        # DANE-TA for the test CA, and a record matching nothing presented.
        self.dane_ee = TlsaRecord.for_certificate(self.chains["self-signed"][0], 3, 1, 1)
        self.dane_ta = TlsaRecord.for_certificate(ca_der, 2, 0, 1)
        self.dane_none = TlsaRecord.parse("3 1 1 " + "ab" * 32)
        self.unusable = TlsaRecord.parse("1 1 1 " + "ef" * 32)

    def config(self, *, tls: str, verify: str, fallback: bool, sts: bool, dane: bool,
               protocols: str | None = None) -> str:
        lines = ["[global]", f'tls = "{tls}"', f'tls_verify = "{verify}"',
                 f"tls_ifavailable_fallback = {str(fallback).lower()}",
                 f"use_mta_sts = {str(sts).lower()}", f"use_dane = {str(dane).lower()}",
                 f'tls_ca = "{self.ca.cert_path}"']
        if protocols is not None:
            lines.append(f'tls_protocols = "{protocols}"')
        return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("reuse-pki"))


def _resolve(text: str, domain: str, mx: str | None,
             destination: Destination | None = None) -> Decision:
    resolver = Resolver(loads_toml(text, "reuse.toml"), decision_cache_size=0)
    return resolver.resolve(domain, mx_host=mx, destination=destination)


def _tls_facts(decision: Decision, chain: tuple[bytes, ...], **changes: object) -> ConnectionFacts:
    """The facts a driver records for ``decision`` on a TLS connection showing ``chain``."""
    p = decision.parameters
    values: dict[str, object] = dict(
        mx_host=decision.mx_host, binding=decision.binding, plaintext=None, sni=p.sni,
        chain=chain, tls_version=TlsVersion.TLSv1_3, certificate_file=p.certificate_file,
        key_file=p.key_file, ciphers=p.ciphers, tls13_ciphersuites=p.tls13_ciphersuites,
        ehlo_keywords=frozenset({"8BITMIME", "REQUIRETLS"}))
    values.update(changes)
    return ConnectionFacts(**values)  # type: ignore[arg-type]


# ----------------------------------------------------------- the oracle

_PLAINTEXT_OBSERVATION = {
    PlaintextReason.NOT_ADVERTISED: Observation.STARTTLS_NOT_ADVERTISED,
    PlaintextReason.REFUSED: Observation.STARTTLS_REJECTED,
    PlaintextReason.HANDSHAKE_FAILED: Observation.HANDSHAKE_FAILED,
}


def fresh_connection(decision: Decision, facts: ConnectionFacts) -> Action | None:
    """What a fresh connection for ``decision`` reaches against a server that
    behaves as ``facts`` record; ``None`` when a fresh connection for this
    decision could not have these facts at all (other host, binding, SNI,
    client certificate, cipher list or a version the decision forbids).

    Follows the drivers step by step: the plan, then the negotiation
    observation (plaintext facts), or the peer check of the chain and the
    REQUIRETLS keyword (TLS facts).
    """
    if decision.plan is not Action.SKIP and decision.plan is not Action.ATTEMPT:
        return decision.plan  # the drivers raise before connecting
    if facts.binding != decision.binding:
        return None
    if decision.mx_host is not None and facts.mx_host != decision.mx_host:
        return None
    if decision.plan is Action.SKIP:
        return Action.SKIP  # STARTTLS is never issued
    progress = Progress(decision, facts.mx_host or "127.0.0.1", 25)
    if facts.plaintext is PlaintextReason.NOT_ATTEMPTED:
        return Action.ATTEMPT  # a fresh connection would try; nothing recorded says how it ends
    if facts.plaintext is not None:
        return progress.observe(_PLAINTEXT_OBSERVATION[facts.plaintext]).action
    p = decision.parameters
    configured = (facts.sni, facts.certificate_file, facts.key_file, facts.ciphers,
                  facts.tls13_ciphersuites)
    if configured != (p.sni, p.certificate_file, p.key_file, p.ciphers, p.tls13_ciphersuites):
        return None
    if facts.tls_version not in p.protocols:
        return None  # the handshake would not have negotiated this version
    step = progress.certificate(evaluate_peer(decision, facts.chain, now=NOW,
                                              chain_complete=facts.chain_complete))
    if step.action is not Action.PROCEED:
        return step.action
    if decision.requiretls and "REQUIRETLS" not in facts.ehlo_keywords:
        return progress.observe(Observation.REQUIRETLS_NOT_ADVERTISED).action
    return Action.PROCEED


def expected_permitted(decision: Decision, facts: ConnectionFacts,
                       fresh: Action | None) -> bool:
    if fresh is None:
        return False
    if facts.plaintext is not None:
        return fresh in (Action.SKIP, Action.FALLBACK)
    # A TLS connection is accepted where the plan is SKIP (the decision runs no
    # check and allows plaintext; docs/choices.md), else only after PROCEED.
    return fresh is Action.PROCEED or fresh is Action.SKIP


# ------------------------------------------------------ generated inputs

tls_values = st.sampled_from(["no", "ifavailable", "required"])
verify_values = st.sampled_from(["no", "optional", "ca", "host"])


def _lookups(pki: Pki) -> st.SearchStrategy[TlsaLookup | None]:
    records = [pki.dane_ee, pki.dane_ta, pki.dane_none, pki.unusable]
    return st.one_of(
        st.none(),
        st.sampled_from([TlsaLookupStatus.INSECURE, TlsaLookupStatus.NODATA,
                         TlsaLookupStatus.NXDOMAIN, TlsaLookupStatus.FAILED,
                         TlsaLookupStatus.BOGUS]).map(lambda s: TlsaLookup(s, ())),
        st.lists(st.sampled_from(records), min_size=1, max_size=2, unique=True).map(
            lambda rs: TlsaLookup(TlsaLookupStatus.RECORDS, tuple(rs))))


@st.composite
def decisions(draw: st.DrawFn, pki: Pki) -> Decision:
    text = pki.config(tls=draw(tls_values), verify=draw(verify_values),
                      fallback=draw(st.booleans()), sts=draw(st.booleans()),
                      dane=draw(st.booleans()),
                      protocols=draw(st.sampled_from([None, "+ALL:-TLSv1.0:-TLSv1.1"])))
    destination = draw(st.one_of(st.none(), st.builds(
        Destination,
        mta_sts=st.sampled_from([None, ENFORCE, ENFORCE_ELSEWHERE, TESTING]),
        mta_sts_fetch=st.sampled_from([FetchOutcome.OK, FetchOutcome.FETCH_ERROR]),
        tlsa=_lookups(pki),
        mx_dnssec=st.booleans(),
        requiretls=st.sampled_from([False, False, True]),
        tls_broken=st.sampled_from([False, False, False, True]),
    )))
    mx = draw(st.sampled_from([MX, OTHER_MX, None] if destination is None else [MX, OTHER_MX]))
    return _resolve(text, draw(st.sampled_from([DOMAIN_A, DOMAIN_B])), mx, destination)


@st.composite
def facts_for(draw: st.DrawFn, decision: Decision, pki: Pki) -> ConnectionFacts:
    """Facts near the decision (so many connections fit), every field varied at times."""
    p = decision.parameters
    vary = draw(st.sampled_from([False, False, True]))

    def pick(fitting: object, *others: object) -> object:
        return draw(st.sampled_from([fitting, *others])) if vary else fitting

    mx_host = pick(decision.mx_host or MX, MX, OTHER_MX)
    binding = pick(decision.binding, "other-binding")
    plaintext = draw(st.sampled_from([None, None, None, *PlaintextReason]))
    if plaintext is not None:
        return ConnectionFacts(mx_host, binding, plaintext)  # type: ignore[arg-type]
    chains = sorted(pki.chains.values())
    return ConnectionFacts(
        mx_host, binding, None,  # type: ignore[arg-type]
        sni=pick(p.sni, MX, DOMAIN_B, None),  # type: ignore[arg-type]
        chain=draw(st.sampled_from([pki.chains["mx"], pki.chains["self-signed"], *chains])),
        chain_complete=draw(st.booleans()),
        tls_version=draw(st.sampled_from([TlsVersion.TLSv1_3, TlsVersion.TLSv1_2,
                                          *([TlsVersion.TLSv1_0, None] if vary else [])])),
        certificate_file=pick(p.certificate_file, "/etc/client.pem"),  # type: ignore[arg-type]
        key_file=p.key_file,
        ciphers=pick(p.ciphers, "HIGH:!aNULL"),  # type: ignore[arg-type]
        tls13_ciphersuites=p.tls13_ciphersuites,
        ehlo_keywords=draw(st.sets(st.sampled_from(["REQUIRETLS", "8BITMIME", "SIZE"]))),
    )


@settings(max_examples=examples(ci=3000, default=500), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_may_reuse_iff_a_fresh_connection_would_reach_the_same(
        pki: Pki, data: st.DataObject) -> None:
    decision = data.draw(decisions(pki), label="decision")
    facts = data.draw(facts_for(decision, pki), label="facts")
    fresh = fresh_connection(decision, facts)
    verdict = check_reuse(decision, facts, now=NOW)
    event(f"plan {decision.plan.value}, verification {decision.verification.value}, "
          f"{'tls' if facts.encrypted else 'plaintext'}: "
          f"{'permitted' if verdict.permitted else 'refused'}")
    assert verdict.permitted is expected_permitted(decision, facts, fresh), (verdict, fresh)
    if fresh is not None and not (facts.encrypted and decision.plan is Action.SKIP):
        assert verdict.reached is fresh, (verdict, fresh)
    if decision.plan not in (Action.SKIP, Action.ATTEMPT):
        assert not verdict.permitted and verdict.status == decision.plan_status


# ----------------------------------------- the downgrades of the old scale


def _dane_decision(pki: Pki, destination_changes: dict[str, object] | None = None,
                   *, mx: str = MX, domain: str = DOMAIN_A, tls: str = "ifavailable") -> Decision:
    values: dict[str, object] = dict(
        tlsa=TlsaLookup(TlsaLookupStatus.RECORDS, (pki.dane_ee,)), mx_dnssec=True)
    values.update(destination_changes or {})
    text = pki.config(tls=tls, verify="no", fallback=True, sts=True, dane=True)
    return _resolve(text, domain, mx, Destination(**values))  # type: ignore[arg-type]


@pytest.mark.parametrize("cause", ["mta-sts-forbids-mx", "bogus-tlsa", "requiretls-unauthenticated",
                                   "tls-remembered-broken"])
def test_plan_fail_permits_even_a_dane_verified_connection(pki: Pki, cause: str) -> None:
    verified = _dane_decision(pki)
    facts = _tls_facts(verified, pki.chains["self-signed"])
    assert check_reuse(verified, facts, now=NOW).permitted, "the DANE connection itself is good"
    changes: dict[str, object] = {
        "mta-sts-forbids-mx": {"mta_sts": ENFORCE_ELSEWHERE},
        "bogus-tlsa": {"tlsa": TlsaLookup(TlsaLookupStatus.BOGUS, ())},
        "requiretls-unauthenticated": {"requiretls": True, "mx_dnssec": False,
                                       "tlsa": None},
        "tls-remembered-broken": {"tls_broken": True},
    }[cause]
    tls = "required" if cause == "tls-remembered-broken" else "ifavailable"
    failing = _dane_decision(pki, changes, tls=tls)
    assert failing.plan is Action.FAIL
    verdict = check_reuse(failing, facts, now=NOW)
    assert not verdict.permitted
    assert verdict.reached is Action.FAIL and verdict.status == failing.plan_status
    # Nothing at all may be reused under a plan FAIL, plaintext included.
    for reason in PlaintextReason:
        plain = ConnectionFacts(MX, failing.binding, reason)
        assert not check_reuse(failing, plain, now=NOW).permitted


def test_dane_ee_facts_never_satisfy_a_pkix_host_decision(pki: Pki) -> None:
    dane = _dane_decision(pki)
    facts = _tls_facts(dane, pki.chains["self-signed"])
    assert check_reuse(dane, facts, now=NOW).permitted
    # A domain without DANE whose configuration asks for host verification.
    text = pki.config(tls="required", verify="host", fallback=False, sts=False, dane=False)
    pkix = _resolve(text, DOMAIN_B, MX)
    assert pkix.verification is Verification.HOST
    verdict = check_reuse(pkix, _tls_facts(pkix, pki.chains["self-signed"]), now=NOW)
    assert not verdict.permitted and verdict.reached is Action.FAIL
    assert verdict.status is not None and verdict.status.tlsrpt == "certificate-not-trusted"


def test_a_connection_verified_for_one_domain_passes_another_only_on_its_own_check(
        pki: Pki) -> None:
    text = pki.config(tls="required", verify="host", fallback=False, sts=False, dane=False)
    for_a, for_b = _resolve(text, DOMAIN_A, MX), _resolve(text, DOMAIN_B, MX)
    named_a = _tls_facts(for_a, pki.chains["domain-a"])
    assert check_reuse(for_a, named_a, now=NOW).permitted
    verdict = check_reuse(for_b, named_a, now=NOW)
    assert not verdict.permitted and verdict.reached is Action.FAIL
    assert verdict.status is not None and verdict.status.tlsrpt == "certificate-host-mismatch"
    # A certificate naming the MX host passes both decisions' checks.
    named_mx = _tls_facts(for_a, pki.chains["mx"])
    assert check_reuse(for_a, named_mx, now=NOW).permitted
    assert check_reuse(for_b, named_mx, now=NOW).permitted


def test_a_connection_to_another_mx_or_from_another_binding_does_not_fit(pki: Pki) -> None:
    text = pki.config(tls="required", verify="host", fallback=False, sts=False, dane=False)
    decision = _resolve(text, DOMAIN_A, MX)
    good = _tls_facts(decision, pki.chains["mx"])
    assert check_reuse(decision, good, now=NOW).permitted
    for changed in ({"mx_host": OTHER_MX}, {"binding": "b2"}, {"sni": OTHER_MX},
                    {"certificate_file": "/etc/client.pem"}, {"tls_version": None}):
        verdict = check_reuse(decision, _tls_facts(decision, pki.chains["mx"], **changed),
                              now=NOW)
        assert not verdict.permitted and verdict.reached is None, changed


def test_version_outside_tls_protocols_does_not_fit(pki: Pki) -> None:
    text = pki.config(tls="required", verify="no", fallback=False, sts=False, dane=False,
                      protocols="+ALL:-TLSv1.0:-TLSv1.1")
    decision = _resolve(text, DOMAIN_A, MX)
    old = _tls_facts(decision, pki.chains["mx"], tls_version=TlsVersion.TLSv1_0)
    assert not check_reuse(decision, old, now=NOW).permitted
    assert check_reuse(decision, _tls_facts(decision, pki.chains["mx"]), now=NOW).permitted


def test_requiretls_needs_the_keyword_recorded_after_starttls(pki: Pki) -> None:
    text = pki.config(tls="ifavailable", verify="host", fallback=True, sts=True, dane=False)
    decision = _resolve(text, DOMAIN_A, MX, Destination(mta_sts=ENFORCE, requiretls=True))
    assert decision.plan is Action.ATTEMPT and decision.requiretls
    with_kw = _tls_facts(decision, pki.chains["mx"])
    without = _tls_facts(decision, pki.chains["mx"], ehlo_keywords={"8BITMIME"})
    assert check_reuse(decision, with_kw, now=NOW).permitted
    verdict = check_reuse(decision, without, now=NOW)
    assert not verdict.permitted and verdict.reached is Action.FAIL
    assert verdict.status is not None and verdict.status.enhanced == "4.7.30"


@pytest.mark.parametrize(("tls", "fallback", "reason", "permitted"), [
    ("no", True, PlaintextReason.NOT_ATTEMPTED, True),
    ("ifavailable", True, PlaintextReason.NOT_ATTEMPTED, False),
    ("ifavailable", True, PlaintextReason.NOT_ADVERTISED, True),
    ("ifavailable", True, PlaintextReason.REFUSED, True),
    ("ifavailable", True, PlaintextReason.HANDSHAKE_FAILED, True),
    ("ifavailable", False, PlaintextReason.NOT_ADVERTISED, True),
    ("ifavailable", False, PlaintextReason.REFUSED, False),
    ("ifavailable", False, PlaintextReason.HANDSHAKE_FAILED, False),
    ("required", True, PlaintextReason.NOT_ADVERTISED, False),
])
def test_plaintext_reasons(pki: Pki, tls: str, fallback: bool, reason: PlaintextReason,
                           permitted: bool) -> None:
    text = pki.config(tls=tls, verify="no", fallback=fallback, sts=False, dane=False)
    decision = _resolve(text, DOMAIN_A, MX)
    verdict = check_reuse(decision, ConnectionFacts(MX, "default", reason), now=NOW)
    assert verdict.permitted is permitted


def test_enforce_mta_sts_forbidding_the_mx_rules_out_plaintext_too(pki: Pki) -> None:
    text = pki.config(tls="ifavailable", verify="no", fallback=True, sts=True, dane=False)
    decision = _resolve(text, DOMAIN_A, OTHER_MX, Destination(mta_sts=ENFORCE))
    assert decision.plan is Action.FAIL
    for reason in PlaintextReason:
        assert not check_reuse(decision, ConnectionFacts(OTHER_MX, "default", reason),
                               now=NOW).permitted


def test_summary_of_a_failing_plan(pki: Pki) -> None:
    decision = _dane_decision(pki, {"tlsa": TlsaLookup(TlsaLookupStatus.BOGUS, ())})
    summary = decision.to_dict()["required_security"]
    assert summary == {"plaintext_allowed_when": [], "min_tls_verification": "never"}
    assert decision.required_security.tls_check is None
