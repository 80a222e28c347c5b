"""Every row of the SEMANTICS section 4 tables and every section 4.1 status.

Each row is checked twice: through the pure table functions of the decision
module and through ``Resolver.resolve(...).outcome(...)`` on a configuration
read from TOML text.  The expected values are written out here from the
specification, not derived from the library's own tables.
"""

from __future__ import annotations

import json

import pytest

from tlspolicy import (
    Action,
    Decision,
    Observation,
    Outcome,
    Reason,
    Resolver,
    Tls,
    Verification,
    loads_toml,
)
from tlspolicy.decision import Requirements, TlsParameters
from tlspolicy.options import TlsEngine
from tlspolicy.outcomes import (
    CERTIFICATE_OBSERVATIONS,
    NEGOTIATION_OBSERVATIONS,
    REQUIRETLS_BOUNCE,
    STATUSES,
    certificate_outcome,
    negotiation_outcome,
)

NA = Observation.STARTTLS_NOT_ADVERTISED
REJ = Observation.STARTTLS_REJECTED
HS = Observation.HANDSHAKE_FAILED
CHAIN = Observation.CHAIN_NOT_TRUSTED
EXP = Observation.CERTIFICATE_EXPIRED
NAME = Observation.NAME_MISMATCH
TLSA = Observation.TLSA_MISMATCH

# SEMANTICS 4.1, copied from the specification: code, enhanced, text, TLS-RPT type.
SPEC_STATUSES = {
    Reason.STARTTLS_NOT_ADVERTISED: (451, "4.7.6", "STARTTLS required but not advertised",
                                     "starttls-not-supported"),
    Reason.STARTTLS_REJECTED: (451, "4.7.5", "no tls go-ahead", "starttls-not-supported"),
    Reason.HANDSHAKE_FAILED: (451, "4.7.5", "TLS negotiation failed", "validation-failure"),
    Reason.CHAIN_NOT_TRUSTED: (451, "4.7.5",
                               "remote node SSL certificate not signed by a valid CA",
                               "certificate-not-trusted"),
    Reason.CERTIFICATE_EXPIRED: (451, "4.7.5", "SSL certificate expired or not yet valid",
                                 "certificate-expired"),
    Reason.NAME_MISMATCH: (451, "4.7.5", "SSL certificate subject does not match host",
                           "certificate-host-mismatch"),
    Reason.TLSA_MISMATCH: (451, "4.7.5", "certificate does not match any TLSA record",
                           "tlsa-invalid"),
    Reason.TLSA_LOOKUP_FAILED: (451, "4.7.5", "TLSA lookup failed", "dnssec-invalid"),
    Reason.MX_NOT_PERMITTED: (451, "4.7.5", "MX host not permitted by MTA-STS policy",
                              "validation-failure"),
    Reason.REQUIRETLS_NOT_SUPPORTED: (451, "4.7.30", "REQUIRETLS support required", None),
    Reason.TLS_REMEMBERED_BROKEN: (451, "4.7.5", "TLS to this host failed recently", None),
}

OBSERVATION_REASON = {
    NA: Reason.STARTTLS_NOT_ADVERTISED, REJ: Reason.STARTTLS_REJECTED,
    HS: Reason.HANDSHAKE_FAILED, CHAIN: Reason.CHAIN_NOT_TRUSTED,
    EXP: Reason.CERTIFICATE_EXPIRED, NAME: Reason.NAME_MISMATCH, TLSA: Reason.TLSA_MISMATCH,
    Observation.REQUIRETLS_NOT_ADVERTISED: Reason.REQUIRETLS_NOT_SUPPORTED,
}

# SEMANTICS 4, negotiation table: (tls, observation) -> (fallback true, fallback false).
NEGOTIATION_ROWS = [
    (Tls.IFAVAILABLE, NA, Action.SKIP, Action.SKIP),
    (Tls.IFAVAILABLE, REJ, Action.FALLBACK, Action.DEFER),
    (Tls.IFAVAILABLE, HS, Action.FALLBACK, Action.DEFER),
    (Tls.REQUIRED, NA, Action.FAIL, Action.FAIL),
    (Tls.REQUIRED, REJ, Action.FAIL, Action.FAIL),
    (Tls.REQUIRED, HS, Action.FAIL, Action.FAIL),
]

# SEMANTICS 4, certificate table: verification -> {observation: (action, reported)}.
P, PR, F = (Action.PROCEED, False), (Action.PROCEED, True), (Action.FAIL, True)
CERTIFICATE_ROWS = {
    Verification.NO: {CHAIN: P, EXP: P, NAME: P, TLSA: None},
    Verification.OPTIONAL: {CHAIN: PR, EXP: PR, NAME: PR, TLSA: None},
    Verification.CA: {CHAIN: F, EXP: F, NAME: P, TLSA: None},
    Verification.HOST: {CHAIN: F, EXP: F, NAME: F, TLSA: None},
}


def _status_tuple(outcome: Outcome) -> tuple[int, str, str, str | None] | None:
    s = outcome.status
    return None if s is None else (s.code, s.enhanced, s.text, s.tlsrpt)


def _resolve(toml: str, domain: str = "example.com") -> Decision:
    return Resolver(loads_toml(toml, "table.toml")).resolve(domain, mx_host="mx.example.com")


def _config(tls: str, fallback: bool | None = None, verify: str = "no",
            compatibility: str | None = None) -> str:
    lines = [f'compatibility = "{compatibility}"'] if compatibility else []
    lines += ["[global]", f'tls = "{tls}"', f'tls_verify = "{verify}"']
    if fallback is not None:
        lines.append(f"tls_ifavailable_fallback = {'true' if fallback else 'false'}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- section 4.1

@pytest.mark.parametrize("reason", list(Reason), ids=lambda r: r.value)
def test_status_table_row(reason: Reason) -> None:
    status = STATUSES[reason]
    assert (status.code, status.enhanced, status.text, status.tlsrpt) == SPEC_STATUSES[reason]
    assert not status.permanent
    assert str(status) == f"{status.code} {status.enhanced} {status.text}"


def test_status_table_has_exactly_the_specified_rows() -> None:
    assert set(STATUSES) == set(SPEC_STATUSES) == set(Reason)


def test_requiretls_final_bounce_is_permanent_5_7_30() -> None:
    assert (REQUIRETLS_BOUNCE.code, REQUIRETLS_BOUNCE.enhanced) == (550, "5.7.30")
    assert REQUIRETLS_BOUNCE.permanent
    assert REQUIRETLS_BOUNCE.tlsrpt is None


@pytest.mark.parametrize("observation", list(Observation), ids=lambda o: o.value)
def test_every_observation_maps_to_its_reason(observation: Observation) -> None:
    assert Reason.of(observation) is OBSERVATION_REASON[observation]


@pytest.mark.parametrize("reason", [Reason.TLSA_LOOKUP_FAILED, Reason.MX_NOT_PERMITTED,
                                    Reason.TLS_REMEMBERED_BROKEN], ids=lambda r: r.value)
def test_plan_failure_carries_its_status(reason: Reason) -> None:
    # Plan-time failures come from destination policy; the decision carries the
    # status of SEMANTICS 4.1 and the client may not connect (no outcomes).
    decision = Decision.build(
        Requirements(Tls.REQUIRED, Verification.HOST, False, ("example.com",),
                     plan_failure=reason),
        domain="example.com", binding="default", binding_group="default", mx_host=None,
        parameters=TlsParameters(None, None, None, None, None, frozenset(), None,
                                 TlsEngine.OPENSSL),
        effective={}, explanation={},
    )
    assert decision.plan is Action.FAIL
    assert decision.plan_status is not None
    s = decision.plan_status
    assert (s.code, s.enhanced, s.text, s.tlsrpt) == SPEC_STATUSES[reason]
    assert not decision.outcomes
    assert not decision.required_security.plaintext


def test_requiretls_not_advertised_fails_with_4_7_30() -> None:
    decision = Decision.build(
        Requirements(Tls.REQUIRED, Verification.HOST, False, ("example.com",),
                     requiretls=True),
        domain="example.com", binding="default", binding_group="default", mx_host=None,
        parameters=TlsParameters(None, None, None, None, None, frozenset(), None,
                                 TlsEngine.OPENSSL),
        effective={}, explanation={},
    )
    outcome = decision.outcome(Observation.REQUIRETLS_NOT_ADVERTISED)
    assert outcome.action is Action.FAIL
    assert _status_tuple(outcome) == SPEC_STATUSES[Reason.REQUIRETLS_NOT_SUPPORTED]


# ------------------------------------------------------- negotiation table

@pytest.mark.parametrize("fallback", [True, False], ids=["fallback", "no-fallback"])
@pytest.mark.parametrize(("tls", "observation", "if_true", "if_false"), NEGOTIATION_ROWS,
                         ids=[f"{r[0].value}-{r[1].value}" for r in NEGOTIATION_ROWS])
def test_negotiation_row(tls: Tls, observation: Observation, if_true: Action,
                         if_false: Action, fallback: bool) -> None:
    expected = if_true if fallback else if_false
    pure = negotiation_outcome(tls, observation, fallback=fallback)
    assert pure is not None
    resolved = _resolve(_config(tls.value, fallback)).outcome(observation)
    for outcome in (pure, resolved):
        assert outcome.action is expected
        if expected is Action.SKIP:
            assert outcome.status is None
        else:
            # FAIL, FALLBACK and DEFER all carry the observation's status.
            assert _status_tuple(outcome) == SPEC_STATUSES[OBSERVATION_REASON[observation]]
            assert outcome.reason is OBSERVATION_REASON[observation]
            assert outcome.report


def test_negotiation_defaults_to_fallback_when_unset() -> None:
    # tls_ifavailable_fallback defaults to true (SEMANTICS 3).
    decision = _resolve(_config("ifavailable"))
    assert decision.fallback is True
    assert decision.outcome(HS).action is Action.FALLBACK


@pytest.mark.parametrize("observation", NEGOTIATION_OBSERVATIONS, ids=lambda o: o.value)
def test_tls_no_plans_skip_and_has_no_negotiation(observation: Observation) -> None:
    assert negotiation_outcome(Tls.NO, observation, fallback=True) is None
    assert negotiation_outcome(Tls.NO, observation, fallback=False) is None
    decision = _resolve(_config("no"))
    assert decision.plan is Action.SKIP
    with pytest.raises(KeyError, match=observation.value):
        decision.outcome(observation)


@pytest.mark.parametrize("tls", [Tls.IFAVAILABLE, Tls.REQUIRED], ids=lambda t: t.value)
def test_plan_is_attempt_when_tls_wanted(tls: Tls) -> None:
    assert _resolve(_config(tls.value)).plan is Action.ATTEMPT


@pytest.mark.parametrize(("tls", "observation", "if_true", "_if_false"), NEGOTIATION_ROWS,
                         ids=[f"{r[0].value}-{r[1].value}" for r in NEGOTIATION_ROWS])
def test_negotiation_row_under_compatibility_4_0(
    tls: Tls, observation: Observation, if_true: Action, _if_false: Action
) -> None:
    # Under 4.0 the FALLBACK cells are DEFER; everything else is unchanged.
    expected = Action.DEFER if if_true is Action.FALLBACK else if_true
    decision = _resolve(_config(tls.value, None, compatibility="4.0"))
    assert decision.fallback is False
    outcome = decision.outcome(observation)
    assert outcome.action is expected
    if expected is not Action.SKIP:
        assert _status_tuple(outcome) == SPEC_STATUSES[OBSERVATION_REASON[observation]]


@pytest.mark.parametrize("version", ["4.1", "4.1.0.2", "4.8"])
def test_fallback_exists_from_4_1(version: str) -> None:
    decision = _resolve(_config("ifavailable", None, compatibility=version))
    assert decision.outcome(REJ).action is Action.FALLBACK


# ------------------------------------------------------- certificate table

_CERT_CASES = [(v, o) for v in CERTIFICATE_ROWS for o in CERTIFICATE_OBSERVATIONS]


@pytest.mark.parametrize("tls", ["ifavailable", "required"])
@pytest.mark.parametrize("fallback", [True, False], ids=["fallback", "no-fallback"])
@pytest.mark.parametrize(("verification", "observation"), _CERT_CASES,
                         ids=[f"{v.value}-{o.value}" for v, o in _CERT_CASES])
def test_certificate_row(verification: Verification, observation: Observation,
                         fallback: bool, tls: str) -> None:
    row = CERTIFICATE_ROWS[verification][observation]
    pure = certificate_outcome(verification, observation)
    decision = _resolve(_config(tls, fallback, verify=verification.value))
    assert decision.verification is verification
    if row is None:
        # A TLSA mismatch cannot arise without DANE.
        assert pure is None
        with pytest.raises(KeyError):
            decision.outcome(observation)
        return
    action, reported = row
    assert pure is not None
    for outcome in (pure, decision.outcome(observation)):
        assert outcome.action is action
        assert outcome.report is reported
        if reported:
            assert _status_tuple(outcome) == SPEC_STATUSES[OBSERVATION_REASON[observation]]
        else:
            assert outcome.status is None


# DANE: as far as Verification.DANE goes in the decision module.  A client
# reports problems as the TLSA matcher judged them; PKIX trust is replaced by
# the TLSA match, so an untrusted chain alone does not fail.
DANE_ROW = {CHAIN: Action.PROCEED, EXP: Action.FAIL, NAME: Action.FAIL, TLSA: Action.FAIL}


@pytest.mark.parametrize("observation", CERTIFICATE_OBSERVATIONS, ids=lambda o: o.value)
def test_dane_certificate_row(observation: Observation) -> None:
    outcome = certificate_outcome(Verification.DANE, observation)
    assert outcome is not None
    assert outcome.action is DANE_ROW[observation]
    if outcome.action is Action.FAIL:
        assert _status_tuple(outcome) == SPEC_STATUSES[OBSERVATION_REASON[observation]]


def test_tlsa_mismatch_status_is_tlsa_invalid() -> None:
    outcome = certificate_outcome(Verification.DANE, TLSA)
    assert outcome is not None and outcome.status is not None
    assert outcome.status.tlsrpt == "tlsa-invalid"


@pytest.mark.parametrize("verification", list(Verification), ids=lambda v: v.value)
@pytest.mark.parametrize("observation", CERTIFICATE_OBSERVATIONS, ids=lambda o: o.value)
def test_no_certificate_problem_is_ever_fallback(verification: Verification,
                                                 observation: Observation) -> None:
    outcome = certificate_outcome(verification, observation)
    assert outcome is None or outcome.action in (Action.PROCEED, Action.FAIL)


@pytest.mark.parametrize("verify", ["no", "optional", "ca", "host"])
def test_certificate_outcomes_ignore_fallback_setting(verify: str) -> None:
    on = _resolve(_config("ifavailable", True, verify))
    off = _resolve(_config("ifavailable", False, verify))
    for observation in (CHAIN, EXP, NAME):
        assert on.outcome(observation) == off.outcome(observation)


# ---------------------------------------------------- after_certificate

@pytest.mark.parametrize(("verify", "problems", "action", "reason"), [
    ("host", [], Action.PROCEED, None),
    ("host", [NAME, EXP], Action.FAIL, Reason.CERTIFICATE_EXPIRED),
    ("host", [NAME, CHAIN], Action.FAIL, Reason.CHAIN_NOT_TRUSTED),
    ("ca", [NAME], Action.PROCEED, None),
    ("ca", [NAME, EXP], Action.FAIL, Reason.CERTIFICATE_EXPIRED),
    ("optional", [NAME, EXP], Action.PROCEED, Reason.CERTIFICATE_EXPIRED),
    ("no", [CHAIN, EXP, NAME], Action.PROCEED, None),
])
def test_after_certificate_folds_problems(verify: str, problems: list[Observation],
                                          action: Action, reason: Reason | None) -> None:
    outcome = _resolve(_config("required", verify=verify)).after_certificate(problems)
    assert outcome.action is action
    assert outcome.reason is reason
    assert outcome.report is (reason is not None)


def test_decision_outcomes_json_carry_statuses() -> None:
    data = json.loads(json.dumps(_resolve(_config("ifavailable", False, "host")).to_dict()))
    assert data["outcomes"]["starttls-rejected"] == {
        "action": "defer", "report": True,
        "status": {"code": 451, "enhanced": "4.7.5", "text": "no tls go-ahead",
                   "tlsrpt": "starttls-not-supported"}}
    assert data["outcomes"]["starttls-not-advertised"]["action"] == "skip"
    assert data["outcomes"]["name-mismatch"]["status"]["tlsrpt"] == "certificate-host-mismatch"
