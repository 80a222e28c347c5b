"""Drop-in mode without DANE answers an enforce policy without the MX hosts (issue 25):
the answer is the one the MX hosts would have given, whatever they are.

Without DANE no MX host is D or X, so rule (d) of SEMANTICS 11 answers ``secure`` with
the policy's ``match=`` list whatever the hosts are; the drop-in configuration is
Postfix's own level, which names no host.  Here the answer computed from every MX answer
that lets mail be delivered (some hosts, implicit MX, hosts that are no host names, any
MX security) is compared with the answer made without the lookup, over policies, Postfix
versions, Postfix's own levels, map names and whether Postfix can do DANE.  Where the MX
answer lets no mail be delivered (a null MX, NXDOMAIN) the answer without the lookup is
the policy's: never weaker than the configuration alone (``NOTFOUND``).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Final

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategies import PROPERTY_EXAMPLES
from tlspolicy import Resolver
from tlspolicy.discovery import MxLookup, StsState
from tlspolicy.policies.mtasts import CachedMtaStsPolicy, FetchOutcome, parse_policy
from tlspolicy.postfix.answers import DiscoveredAnswer
from tlspolicy.postfix.dropin import DROP_IN_CONFIG
from tlspolicy.postfix.keys import parse_postfix_key
from tlspolicy.postfix.lookup import PolicyLookup
from tlspolicy.postfix.replies import SocketmapReply
from tlspolicy.servers.discovered import DiscoveryLookup
from tlspolicy.servers.discovered_models import _Inputs, _unasked_mx

DOMAIN: Final = "example.com"
NOW: Final = time.time()
_SETTINGS = settings(max_examples=PROPERTY_EXAMPLES, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])


class _Discovery:
    """What the answer path reads of a started Discovery (see the model test)."""

    def __init__(self, trusted: bool) -> None:
        self.dnssec = trusted
        self.dnssec_detail = "validates" if trusted else "did not set AD (test)"
        self.trust_epoch = 0
        self._clock = lambda: NOW


def _enforce(patterns: list[str], outcome: FetchOutcome) -> StsState:
    policy = parse_policy(("version: STSv1\nmode: enforce\n" + "".join(
        f"mx: {p}\n" for p in patterns) + "max_age: 86400\n").encode())
    cached = CachedMtaStsPolicy(policy, datetime.fromtimestamp(NOW - 60, UTC), "id1")
    return StsState(DOMAIN, "policy", cached, outcome, "", "id1", NOW + 3600, 0, None)


def _text(result: DiscoveredAnswer | SocketmapReply) -> str:
    if isinstance(result, DiscoveredAnswer):
        return "NOTFOUND" if result.notfound else result.policy.text()
    return result.to_text()


@_SETTINGS
@given(patterns=st.lists(st.sampled_from(["mx1.example.com", "*.example.com", "mx.other.net",
                                          "*.other.net"]), min_size=1, max_size=3,
                         unique=True),
       outcome=st.sampled_from([FetchOutcome.OK, FetchOutcome.FETCH_ERROR]),
       hosts=st.lists(st.sampled_from(["mx1.example.com", "mx2.example.com", "mx.other.net",
                                       "bad..name", DOMAIN]), min_size=1, max_size=4,
                      unique=True),
       kind=st.sampled_from(["mx", "implicit", "null", "nxdomain"]),
       mx_secure=st.booleans(), trusted=st.booleans(), dane_ready=st.booleans(),
       version=st.sampled_from([(3, 3), (3, 7, 11), (3, 10, 4), (3, 10, 5)]),
       enforced=st.booleans(),
       own=st.sampled_from([None, "none", "may", "encrypt", "dane", "dane-only", "verify",
                            "secure"]),
       map_name=st.sampled_from(["default", "QUERY", "QUERYwithTLSRPT", "other"]))
def test_enforce_policy_answer_needs_no_mx_hosts_without_dane(
        patterns: list[str], outcome: FetchOutcome, hosts: list[str], kind: str,
        mx_secure: bool, trusted: bool, dane_ready: bool, version: tuple[int, ...],
        enforced: bool, own: str | None, map_name: str) -> None:
    lookup = DiscoveryLookup(PolicyLookup(Resolver(DROP_IN_CONFIG), postfix_version=version),
                             _Discovery(trusted),  # type: ignore[arg-type]
                             postfix_version=version, mx_patterns_enforced=enforced,
                             dane_ready=dane_ready, drop_in=True, own_level=own)
    parsed = parse_postfix_key(DOMAIN)
    values = lookup._values("default", parsed)
    sts = _enforce(patterns, outcome)
    if values.dane_on and trusted:
        # DANE on: the hosts' TLSA records decide, so the MX hosts are always looked up.
        assert not lookup._mx_unneeded(values, sts, trusted, NOW)
        return
    assert lookup._mx_unneeded(values, sts, trusted, NOW)
    without = _text(lookup._judge("default", DOMAIN, parsed, values,
                                  _Inputs(_unasked_mx(), sts, {}, mx_asked=False),
                                  map_name))
    mx = MxLookup(kind, tuple(hosts) if kind == "mx" else
                  (DOMAIN,) if kind == "implicit" else (), mx_secure)
    with_mx = _text(lookup._judge("default", DOMAIN, parsed, values, _Inputs(mx, sts, {}),
                                  map_name))
    if kind in ("mx", "implicit") and with_mx != "NOTFOUND":
        assert without == with_mx, (hosts, kind)
    elif kind in ("mx", "implicit"):
        # Every host was no host name: Postfix cannot deliver to any of them either.
        assert all(".." in h for h in hosts) or without == with_mx, (hosts, kind, without)
    else:
        assert with_mx == "NOTFOUND"  # the configuration alone: Postfix's own level
        assert without == _text(lookup._judge("default", DOMAIN, parsed, values,
                                              _Inputs(MxLookup("mx", ("mx1.example.com",),
                                                               mx_secure), sts, {}),
                                              map_name))


def test_testing_mode_and_no_policy_still_ask_for_the_mx_hosts() -> None:
    lookup = DiscoveryLookup(PolicyLookup(Resolver(DROP_IN_CONFIG), postfix_version=(3, 10, 5)),
                             _Discovery(False),  # type: ignore[arg-type]
                             postfix_version=(3, 10, 5), drop_in=True, own_level="may")
    values = lookup._values("default", parse_postfix_key(DOMAIN))
    testing = _enforce(["mx1.example.com"], FetchOutcome.OK)
    policy = parse_policy(b"version: STSv1\nmode: testing\nmx: mx1.example.com\nmax_age: 86400\n")
    testing = StsState(DOMAIN, "policy", CachedMtaStsPolicy(
        policy, datetime.fromtimestamp(NOW - 60, UTC), "id1"), FetchOutcome.OK, "", "id1",
        NOW + 3600, 0, None)
    assert not lookup._mx_unneeded(values, testing, False, NOW)
    none = StsState(DOMAIN, "none", None, FetchOutcome.OK, "", None, NOW + 300, 0, None)
    assert not lookup._mx_unneeded(values, none, False, NOW)
    assert not lookup._mx_unneeded(values, None, False, NOW)
    expired = _enforce(["mx1.example.com"], FetchOutcome.OK)
    assert not lookup._mx_unneeded(values, expired, False, NOW + 2 * 86400)
    # Not drop-in: the operator's configuration may name MX hosts.
    configured = DiscoveryLookup(PolicyLookup(Resolver(DROP_IN_CONFIG),
                                              postfix_version=(3, 10, 5)),
                                 _Discovery(False),  # type: ignore[arg-type]
                                 postfix_version=(3, 10, 5))
    assert not configured._mx_unneeded(values, expired, False, NOW)


def test_next_hops_with_equal_values_share_one_object() -> None:
    # Memory (issue 25): in drop-in mode every domain has the configuration's values,
    # held once however many domains are answered for; the answers are unchanged.
    lookup = DiscoveryLookup(PolicyLookup(Resolver(DROP_IN_CONFIG), postfix_version=(3, 10, 5)),
                             _Discovery(False),  # type: ignore[arg-type]
                             postfix_version=(3, 10, 5), drop_in=True, own_level="may")
    parsed = [parse_postfix_key(f"d{n}.example.com") for n in range(50)]
    held = [lookup._values("default", p) for p in parsed]
    assert all(v is held[0] for v in held)
    assert held[0] == lookup._compute_values("default", parsed[0])
    assert len(lookup._value_shapes) == 1
