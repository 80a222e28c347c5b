"""Property (SEMANTICS 10 and 11): discovery answers judged by the independent Postfix model.

One engine: the server's own composition (``DiscoveryLookup._judge``: one ``Destination``
per MX host, the resolver's decision for each, ``postfix.answers.render``) runs over
generated configurations, next hops (MX hosts, each host's DANE state as DNS really has
it), MTA-STS states, Postfix profiles and fault states (a failed TLSA lookup, a resolver
that does not validate yet, an MX lookup that fails).  ``tests/postfix_model.py``, written
from Postfix's documentation and sharing no table with ``render``, says what Postfix does
with the answer in generated host worlds, and judges:

- **allowed**: Postfix delivers only where the host's decision allows it.  Where the
  server knew the host's DANE state, the decision is the resolver's for that state; where
  it did not (a fault), Postfix's own lookup may find any state, so the answer must be
  allowed for the resolver's decision in each of them.
- **never weaker**: in every world, the answer never delivers with less security than the
  answer the same configuration gives with discovery off (where the MX RRset is unsigned,
  without Postfix's own DANE there: RFC 7672 applies none, see the test).

Worlds and inputs are values: nothing here is fetched (the real-server property test is
``test_discovery_answers_properties.py``).  The one documented gap, Postfix before 3.10.5
(or with ``smtp_tls_enforce_sts_mx_patterns = no``) not filtering MX hosts by the policy,
is checked to be reported instead (the ``sts-mx-not-filtered`` note).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Final

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postfix_model import Dane, HostWorld, TlsaMatch, allowed, never_weaker
from strategies import PROPERTY_EXAMPLES
from tlspolicy import Resolver, loads_toml
from tlspolicy.discovery import MxLookup, StsState
from tlspolicy.policies.dane import TlsaLookup, TlsaLookupStatus, TlsaRecord
from tlspolicy.policies.destination import Destination
from tlspolicy.policies.mtasts import CachedMtaStsPolicy, FetchOutcome, parse_policy
from tlspolicy.postfix.answers import DiscoveredAnswer
from tlspolicy.postfix.keys import parse_postfix_key
from tlspolicy.postfix.lookup import PolicyLookup
from tlspolicy.postfix.replies import SocketmapReply
from tlspolicy.servers.discovered import DiscoveryLookup, _Inputs

pytestmark = pytest.mark.timeout(600)

DOMAIN: Final = "example.com"
HOSTS: Final = ("mx1.example.com", "mx2.example.com", "mx.other.net")
NOW: Final = time.time()
_CA: Final = "/etc/ssl/partner.pem"
_TLSA: Final = {
    # A DANE-EE and a DANE-TA record, so that a world's match of either is the decision's.
    Dane.D: TlsaLookup(TlsaLookupStatus.RECORDS, (TlsaRecord(3, 1, 1, bytes(32)),
                                                  TlsaRecord(2, 1, 1, bytes(32)))),
    Dane.U: TlsaLookup(TlsaLookupStatus.RECORDS, (TlsaRecord(1, 1, 1, bytes(32)),)),
    Dane.N: TlsaLookup(TlsaLookupStatus.NODATA),
    Dane.X: TlsaLookup(TlsaLookupStatus.FAILED, detail="SERVFAIL"),
}
_SETTINGS = settings(max_examples=PROPERTY_EXAMPLES, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class _Discovery:
    """What the answer path reads of a started Discovery, as values: whether the resolver
    validates, why not, its trust epoch and the clock."""

    def __init__(self, trusted: bool) -> None:
        self.dnssec = trusted
        self.dnssec_detail = "validates" if trusted else "did not set AD (test)"
        self.trust_epoch = 0
        self._clock = lambda: NOW


@st.composite
def configurations(draw: st.DrawFn) -> str:
    """The options that pick the level and what discovery may add, globally and for the
    domain (a stanza may tighten or loosen the global ones)."""
    def options() -> str:
        lines = [f'tls = "{draw(st.sampled_from(["no", "ifavailable", "required"]))}"',
                 f'tls_verify = "{draw(st.sampled_from(["no", "optional", "ca", "host"]))}"',
                 f"tls_ifavailable_fallback = {draw(st.sampled_from(['true', 'false']))}",
                 f"use_dane = {draw(st.sampled_from(['true', 'false']))}",
                 f"use_mta_sts = {draw(st.sampled_from(['true', 'false']))}"]
        if draw(st.booleans()):
            lines.append(f'tls_protocols = "{draw(st.sampled_from(["TLSv1.2:TLSv1.3", "TLSv1.0:TLSv1.2", "+ALL:-TLSv1.1"]))}"')  # noqa: E501
        if draw(st.booleans()):
            lines.append(f'tls_ca = "{_CA}"')
        return "\n".join(lines) + "\n"

    text = "[global]\n" + options()
    if draw(st.booleans()):
        text += f'[[domain]]\nname = "{DOMAIN}"\n' + options()
    return text


@st.composite
def sts_states(draw: st.DrawFn) -> StsState | None:
    kind = draw(st.sampled_from(["none", "pending", "enforce", "testing", "mode-none"]))
    if kind in ("none", "pending"):
        return StsState(DOMAIN, kind, None, FetchOutcome.OK, "", None, NOW + 300, 0, None)
    patterns = draw(st.lists(st.sampled_from(["mx1.example.com", "*.example.com",
                                              "mx.other.net", "*.other.net"]),
                             min_size=1, max_size=3, unique=True))
    mode = {"enforce": "enforce", "testing": "testing", "mode-none": "none"}[kind]
    policy = parse_policy(("version: STSv1\nmode: " + mode + "\n" + "".join(
        f"mx: {p}\n" for p in patterns) + "max_age: 86400\n").encode())
    cached = CachedMtaStsPolicy(policy, datetime.fromtimestamp(NOW - 60, UTC), "id1")
    outcome = draw(st.sampled_from([FetchOutcome.OK, FetchOutcome.FETCH_ERROR]))
    return StsState(DOMAIN, "policy", cached, outcome, "", "id1", NOW + 3600, 0, None)


@st.composite
def worlds(draw: st.DrawFn, host: str, dane: Dane, mx_secure: bool) -> HostWorld:
    names = draw(st.frozensets(st.sampled_from([host, DOMAIN, "x.example.com",
                                                "x.other.net", "other.example"]), max_size=3))
    versions = draw(st.one_of(st.none(), st.frozensets(
        st.sampled_from(("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")), min_size=1, max_size=2)))
    return HostWorld(
        starttls=draw(st.booleans()), handshake=draw(st.booleans()),
        pkix_trusted=draw(st.booleans()),
        tafiles=draw(st.frozensets(st.just(_CA), max_size=1)),
        in_date=draw(st.booleans()), names=names, dane=dane,
        tlsa_match=draw(st.sampled_from(list(TlsaMatch))) if dane is Dane.D
        else TlsaMatch.NONE,
        mx_secure=mx_secure, versions=versions)


def _text(result: DiscoveredAnswer | SocketmapReply) -> str | None:
    """The answer Postfix acts on (``None``: it defers, as for TEMP and PERM)."""
    if isinstance(result, DiscoveredAnswer):
        return result.policy.text()
    return result.text if result.status.value == "OK" else None


@_SETTINGS
@given(config=configurations(), sts=sts_states(), data=st.data(),
       version=st.sampled_from([(3, 3), (3, 7, 11), (3, 10, 4), (3, 10, 5)]),
       enforced=st.booleans(), dane_ready=st.sampled_from([True, True, True, False]),
       fault=st.sampled_from(["none", "none", "tlsa-failed", "untrusted", "mx-failed"]))
def test_discovery_answers_are_allowed_and_never_weaker(
        config: str, sts: StsState | None, data: st.DataObject, version: tuple[int, ...],
        enforced: bool, dane_ready: bool, fault: str) -> None:
    resolver = Resolver(loads_toml(config))
    static = PolicyLookup(resolver, postfix_version=version)
    baseline_reply = static("default", DOMAIN)
    baseline = baseline_reply.text if baseline_reply.status.value == "OK" else None
    hosts = tuple(data.draw(st.lists(st.sampled_from(HOSTS), min_size=1, max_size=3,
                                     unique=True)))
    truth = {h: data.draw(st.sampled_from(list(Dane))) for h in hosts}
    mx_secure = data.draw(st.booleans())
    failed_host = data.draw(st.sampled_from(hosts)) if fault == "tlsa-failed" else None
    discovery = _Discovery(trusted=fault != "untrusted")
    lookup = DiscoveryLookup(static, discovery, postfix_version=version,  # type: ignore[arg-type]
                             mx_patterns_enforced=enforced, dane_ready=dane_ready)
    values = lookup._values("default", parse_postfix_key(DOMAIN))
    if fault == "mx-failed":
        mx = MxLookup("failed", (), False, "SERVFAIL")
        tlsa: dict[str, TlsaLookup | None] = {}
    else:
        mx = MxLookup("mx", hosts, mx_secure)
        tlsa = {}
        if values.dane_on and mx_secure and discovery.dnssec:
            tlsa = {h: _TLSA[Dane.X] if h == failed_host else _TLSA[truth[h]] for h in hosts}
    result = lookup._judge("default", DOMAIN, parse_postfix_key(DOMAIN), values,
                           _Inputs(mx, sts if values.sts_on else None, tlsa))
    answer = _text(result)
    if answer is None:
        assert isinstance(result, SocketmapReply)
        assert result.status.value == "PERM" or (fault == "mx-failed" and sts is not None
                                                 and sts.state == "unreadable"), result
        return
    assert "policy_failure" not in answer
    if not dane_ready:
        # Postfix cannot do DANE (SEMANTICS 10): no dane or dane-only answer at all; the
        # model's Postfix does DANE, so only what the decisions allow is judged below.
        assert not answer.startswith("dane"), answer
        baseline = None
    if answer.startswith("dane"):
        assert "match=" not in answer and "tafile=" not in answer
        assert values.dane_on, answer
    notes = {w.code for w in result.warnings} if isinstance(result, DiscoveredAnswer) else set()
    policy = Destination.from_cache(sts.cached, datetime.fromtimestamp(NOW, UTC)).mta_sts \
        if sts is not None and values.sts_on else None
    for host in hosts:
        # What the server could know of the host's DANE state: nothing to know (DANE off,
        # or an unauthenticated MX whose hosts get no TLSA lookup), the real state, or
        # nothing for sure (a fault: Postfix's own lookup may then find any state).
        if not values.dane_on or (not mx_secure and fault != "untrusted"):
            views: list[tuple[Dane, TlsaLookup | None]] = [(truth[host], None)]
        elif fault == "untrusted" or host == failed_host:
            views = [(state, _TLSA[state]) for state in Dane]
        else:
            views = [(truth[host], _TLSA[truth[host]])]
        if fault == "mx-failed":
            views = [(truth[host], _TLSA[truth[host]] if values.dane_on and mx_secure
                      else None)]
        filtered = (policy is not None and policy.mode.value == "enforce"
                    and not policy.permits_mx(host) and "mx_host_pattern=" in answer
                    and version >= (3, 10, 5) and enforced)
        for state, seen in views:
            destination = Destination(mta_sts=policy, tlsa=seen, mx_dnssec=mx_secure)
            decision = resolver.resolve(DOMAIN, "default", mx_host=host, destination=destination)
            for _ in range(4):
                world = data.draw(worlds(host, state, mx_secure))
                if baseline is not None:
                    # What the configuration requires: DANE applies only behind a signed MX
                    # RRset (RFC 7672 section 2.2.1); Postfix's own DANE behind an unsigned
                    # one (smtp_tls_dane_insecure_mx_policy = dane) is a strictness of
                    # Postfix, not of the configuration, so the baseline is judged without it.
                    assert never_weaker(answer, baseline, host, DOMAIN, world,
                                        insecure_mx_policy="may"), (
                        f"{answer!r} weaker than {baseline!r} at {host} ({state.name}), "
                        f"fault {fault}, world {world}\n{config}")
                if fault == "mx-failed" or filtered:
                    # The outage sequence answers from the cache (SEMANTICS 11); a host
                    # outside the policy is skipped by Postfix 3.10.5 and later.
                    continue
                if allowed(answer, decision, host, DOMAIN, world):
                    continue
                # The documented gaps: MX hosts outside the policy are not filtered, and a
                # certificate is checked against the policy's patterns, not the host's name.
                assert policy is not None and (
                    ("sts-mx-not-filtered" in notes and not policy.permits_mx(host))
                    or ("sts-match-patterns" in notes and answer.startswith("secure")
                        and any(policy.permits_mx(name) for name in world.names))), (
                        f"{answer!r} not allowed for {host} ({state.name}): decision "
                        f"{decision.plan.value} {decision.tls.value}/"
                        f"{decision.verification.value} fallback={decision.fallback}, "
                        f"fault {fault}, world {world}\n{config}\nsts {sts}")


def test_the_stand_in_reads_only_what_a_discovery_gives() -> None:
    # The attributes the answer path reads of discovery, and nothing more.
    used = {"dnssec", "dnssec_detail", "trust_epoch", "_clock"}
    stand_in: Any = _Discovery(True)
    assert used <= set(vars(stand_in))


def test_an_mx_host_that_is_no_host_name_never_fails_the_answer() -> None:
    # A stranger's DNS may name an MX host no connection can be made to: it is left out,
    # the other hosts decide, and the answer is never PERM or TEMP for it.
    resolver = Resolver(loads_toml('[global]\ntls = "required"\ntls_verify = "host"\n'
                                   "use_dane = true\n"))
    static = PolicyLookup(resolver, postfix_version=(3, 7, 11))
    lookup = DiscoveryLookup(static, _Discovery(True),  # type: ignore[arg-type]
                             postfix_version=(3, 7, 11))
    parsed = parse_postfix_key(DOMAIN)
    values = lookup._values("default", parsed)
    for names in (("bad..name", "mx1.example.com"), ("x" * 300, "-bad-.example")):
        result = lookup._judge("default", DOMAIN, parsed, values, _Inputs(
            MxLookup("mx", names, True), None,
            {n: _TLSA[Dane.D] if n == "mx1.example.com" else None for n in names}))
        assert isinstance(result, DiscoveredAnswer), result
        assert result.policy.text() == ("dane-only" if "mx1.example.com" in names
                                        else static("default", DOMAIN).text)


@pytest.mark.parametrize("mx_secure", [False, True])
@pytest.mark.parametrize("version", [(3, 3), (3, 7, 11), (3, 10, 5)])
@pytest.mark.parametrize(("verify", "enforce"), [("no", True), ("ca", True), ("ca", False)])
def test_no_answer_loosens_a_dane_only_answer_without_discovery(
        mx_secure: bool, version: tuple[int, ...], verify: str, enforce: bool) -> None:
    # DANE on with a gap in the TLS versions answers dane-only without discovery (no
    # range at dane serves hosts with and without TLSA records).  Rules (a) and (d) would
    # answer secure match=..., and rule (e) behind an unsigned MX RRset verify match=...
    # (tls_verify = "ca" raised to opportunistic TLS): both deliver with PKIX to a host
    # without usable TLSA records that dane-only defers.  The answer stays dane-only.
    config = (f'[global]\ntls = "no"\ntls_verify = "{verify}"\nuse_dane = true\n'
              f'use_mta_sts = true\ntls_protocols = "TLSv1.0:TLSv1.2"\ntls_ca = "{_CA}"\n')
    resolver = Resolver(loads_toml(config))
    static = PolicyLookup(resolver, postfix_version=version)
    baseline = static("default", DOMAIN).text
    assert baseline.startswith("dane-only")
    policy = parse_policy(b"version: STSv1\nmode: enforce\nmx: mx1.example.com\n"
                          b"max_age: 86400\n")
    cached = CachedMtaStsPolicy(policy, datetime.fromtimestamp(NOW - 60, UTC), "id1")
    sts = StsState(DOMAIN, "policy", cached, FetchOutcome.OK, "", "id1", NOW + 3600, 0, None) \
        if enforce else StsState(DOMAIN, "none", None, FetchOutcome.OK, "", None, NOW + 300, 0,
                                 None)
    lookup = DiscoveryLookup(static, _Discovery(True),  # type: ignore[arg-type]
                             postfix_version=version)
    parsed = parse_postfix_key(DOMAIN)
    values = lookup._values("default", parsed)
    hosts = ("mx1.example.com", "mx2.example.com")
    tlsa = {h: _TLSA[Dane.U] for h in hosts} if mx_secure else {}
    result = lookup._judge("default", DOMAIN, parsed, values,
                           _Inputs(MxLookup("mx", hosts, mx_secure), sts, tlsa))
    assert isinstance(result, DiscoveredAnswer), result
    answer = result.policy.text()
    assert answer == baseline
    codes = {w.code for w in result.warnings}
    if not mx_secure and enforce:
        assert "sts-dane-only-without-discovery" in codes
    # The world where secure match=... delivers (a trusted certificate naming the host,
    # no usable TLSA record): the answer defers there, as the answer without discovery.
    world = HostWorld(starttls=True, handshake=True, pkix_trusted=True,
                      tafiles=frozenset({_CA}), in_date=True,
                      names=frozenset({"mx1.example.com"}),
                      dane=Dane.U if mx_secure else Dane.N, tlsa_match=TlsaMatch.NONE,
                      mx_secure=mx_secure, versions=None)
    for host in hosts:
        assert never_weaker(answer, baseline, host, DOMAIN, world, insecure_mx_policy="may")
        decision = resolver.resolve(DOMAIN, "default", mx_host=host, destination=Destination(
            mta_sts=Destination.from_cache(cached, datetime.fromtimestamp(NOW, UTC)).mta_sts
            if enforce else None, tlsa=tlsa.get(host), mx_dnssec=mx_secure))
        assert allowed(answer, decision, host, DOMAIN, world)
