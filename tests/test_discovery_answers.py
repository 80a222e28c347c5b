"""Postfix answers with discovery (SEMANTICS 11): the pure rules, then the lookup against
real servers (NSD + validating Unbound with signed zones, the HTTPS policy lab, SQLite and
Redis stores), then the socketmap server and ``serve socketmap --discovery`` end to end
with Postfix's own ``postmap``.  No network mocks.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from discovery_support import DnsLab, HttpsLab, PolicyAnswer, RedisServer, free_port
from postfix_support import find_postfix_binary, postmap_config_dir, postmap_query
from test_discovery import Env, enforce, seed
from tlspolicy import Resolver, loads_toml
from tlspolicy.discovery import Discovery, redis_cache
from tlspolicy.policies.dane import TlsaLookup, TlsaLookupStatus, TlsaRecord
from tlspolicy.policies.destination import Destination
from tlspolicy.policies.mtasts import parse_policy
from tlspolicy.postfix.answers import (
    HostDecisions,
    HostState,
    NextHopView,
    PostfixProfile,
    render,
    with_policy_ttl,
)
from tlspolicy.postfix.levels import Need, PostfixLevel, PostfixMappingError, PostfixPolicy, need_of
from tlspolicy.postfix.lookup import PolicyLookup
from tlspolicy.servers.discovered import DiscoveryLookup
from tlspolicy.servers.socketmap import SocketmapReply, SocketmapServer
from tlspolicy.stores.redis import RedisStore

pytestmark = pytest.mark.timeout(180)

D, X, U, N = HostState.DANE, HostState.FAILED, HostState.UNUSABLE, HostState.OTHER
MAY = PostfixPolicy(PostfixLevel.MAY)
ENFORCE = parse_policy(b"version: STSv1\nmode: enforce\nmx: mx1.example.com\nmx: *.example.net\n"
                       b"max_age: 86400\n")


_CONFIG_OF_NEED = {
    Need.NONE: 'tls = "no"',
    Need.MAY: 'tls = "ifavailable"',
    Need.ENCRYPT: 'tls = "required"',
    Need.VERIFIED: 'tls = "required"\ntls_verify = "host"',
    Need.DEFER: 'tls = "required"',  # with TLS remembered broken: plan FAIL
}
_TLSA_OF_STATE = {
    D: TlsaLookup(TlsaLookupStatus.RECORDS, (TlsaRecord(3, 1, 1, bytes(32)),)),
    X: TlsaLookup(TlsaLookupStatus.FAILED, detail="SERVFAIL"),
    U: TlsaLookup(TlsaLookupStatus.RECORDS, (TlsaRecord(1, 1, 1, bytes(32)),)),
    N: TlsaLookup(TlsaLookupStatus.NODATA),
}


def _resolver(need: Need, extra: str) -> Resolver:
    return Resolver(loads_toml(f"[global]\n{_CONFIG_OF_NEED[need]}\nuse_dane = true\n"
                               f"use_mta_sts = true\n{extra}"))


def _host(name: str, state: HostState, need: Need, sts: Any, mx_secure: bool,
          extra: str) -> HostDecisions:
    """A host whose decision, made by the resolver, has ``state`` and needs ``need``
    without DANE (an X host also carries the decisions it may turn out to have)."""
    resolver = _resolver(need, extra)

    def decide(state: HostState) -> Any:
        return resolver.resolve("example.com", mx_host=name, destination=Destination(
            mta_sts=sts, tlsa=_TLSA_OF_STATE[state], mx_dnssec=mx_secure,
            tls_broken=need is Need.DEFER and sts is None))

    alternatives = (decide(N), decide(U)) if state is X else ()
    return HostDecisions(name, decide(state), alternatives)


def compose(hosts: Sequence[tuple[str, HostState, Need]], *, extra: str = "",
            base: Need = Need.MAY, sts: Any = None, mx_secure: bool = True,
            version: tuple[int, ...] = (3, 10, 5), enforced: bool = True) -> Any:
    view = NextHopView(
        binding="default", key="example.com", policy_domain="example.com",
        hosts=tuple(_host(n, s, need, sts, mx_secure, extra) for n, s, need in hosts),
        base=_resolver(base, extra).resolve("example.com"), mx_secure=mx_secure,
        sts_ttl=86400)
    return render(view, PostfixProfile(version, enforced))


PROTOCOLS_AND_CA = 'tls_protocols = "-ALL:+TLSv1.2:+TLSv1.3"\ntls_ca = "/ca.pem"\n'


def codes(answer: Any) -> set[str]:
    return {w.code for w in answer.warnings}


# ------------------------------------------------------------------ the rules, pure

def test_rule_a_insecure_mx_with_enforce_is_secure_never_dane() -> None:
    answer = compose([("mx1.example.com", N, Need.VERIFIED)], sts=ENFORCE, mx_secure=False)
    assert answer.rule == "a"
    assert answer.policy.level is PostfixLevel.SECURE
    assert "dane" not in answer.policy.text()
    assert "sts-insecure-mx" in codes(answer)


def test_rule_b_every_host_dane_is_dane_only() -> None:
    answer = compose([("a", D, Need.MAY), ("b", D, Need.VERIFIED)])
    assert (answer.rule, answer.policy.text()) == ("b", "dane-only")


@pytest.mark.parametrize(("others", "level"), [
    ((Need.NONE, Need.MAY), "dane"),
    ((Need.MAY, Need.ENCRYPT), "dane-only"),
    ((Need.VERIFIED,), "dane-only"),
    ((Need.DEFER,), "dane-only"),
])
def test_rule_c_dane_only_when_a_non_dane_host_needs_more_than_may(
        others: tuple[Need, ...], level: str) -> None:
    hosts = [("d", D, Need.MAY), *((f"n{i}", N, need) for i, need in enumerate(others))]
    answer = compose(hosts)
    assert answer.rule == "c"
    assert answer.policy.level.value == level
    assert ("dane-only-defers" in codes(answer)) is (level == "dane-only")


def test_rule_c_failed_tlsa_counts_like_dane() -> None:
    assert compose([("x", X, Need.MAY), ("n", N, Need.MAY)]).policy.text() == "dane"
    assert compose([("x", X, Need.MAY), ("n", N, Need.ENCRYPT)]).policy.text() == "dane-only"


def test_unusable_records_take_dane_only_when_encrypt_is_not_enough() -> None:
    # Postfix at dane uses a host with only unusable records with mandatory TLS (encrypt).
    assert compose([("u", U, Need.ENCRYPT)]).policy.text() == "dane"
    assert compose([("u", U, Need.VERIFIED)]).policy.text() == "dane-only"


def test_dane_answers_never_carry_match_or_tafile() -> None:
    # The configuration alone answers verify match=hostname:nexthop tafile=/ca.pem
    # protocols=>=TLSv1.2.
    answer = compose([("d", D, Need.VERIFIED)], extra=PROTOCOLS_AND_CA, base=Need.VERIFIED)
    assert answer.policy.text() == "dane-only protocols=>=TLSv1.2"
    assert "dane-drops-match" in codes(answer)


def test_rule_d_enforce_policy_without_dane() -> None:
    answer = compose([("mx1.example.com", N, Need.VERIFIED)], sts=ENFORCE)
    assert answer.rule == "d"
    assert answer.policy.text() == (
        "secure match=mx1.example.com:.example.net servername=hostname policy_type=sts "
        "policy_domain=example.com policy_ttl=86400 policy_string={version: STSv1} "
        "policy_string={mode: enforce} policy_string={mx: mx1.example.com} "
        "policy_string={mx: *.example.net} policy_string={max_age: 86400} "
        "mx_host_pattern=mx1.example.com mx_host_pattern=*.example.net")
    assert "policy_failure" not in answer.policy.text()
    assert answer.sts_derived


@pytest.mark.parametrize(("version", "servername", "sts_attributes", "filtered"), [
    ((3, 3), False, False, False),
    ((3, 4), True, False, False),
    ((3, 6, 2), True, False, False),
    ((3, 10), True, True, False),
    ((3, 10, 4), True, True, False),
    ((3, 10, 5), True, True, True),
    ((3, 11), True, True, True),
])
def test_attributes_follow_the_postfix_version(version: tuple[int, ...], servername: bool,
                                               sts_attributes: bool, filtered: bool) -> None:
    answer = compose([("mx1.example.com", N, Need.VERIFIED), ("other.example.org", N,
                                                              Need.DEFER)],
                     sts=ENFORCE, version=version)
    text = answer.policy.text()
    assert ("servername=hostname" in text) is servername
    assert ("policy_type=sts" in text) is sts_attributes
    assert ("mx_host_pattern=" in text) is sts_attributes
    assert ("sts-mx-not-filtered" in codes(answer)) is not filtered
    assert ("sts-wildcard-depth" in codes(answer)) is not filtered
    assert ("sts-attributes-omitted" in codes(answer)) is not sts_attributes
    if not filtered:
        note = next(w for w in answer.warnings if w.code == "sts-mx-not-filtered")
        assert "other.example.org" in note.message


def test_mx_filtering_switched_off_is_reported() -> None:
    answer = compose([("mx1.example.com", N, Need.VERIFIED)], sts=ENFORCE, enforced=False)
    assert "sts-mx-not-filtered" in codes(answer)
    assert "smtp_tls_enforce_sts_mx_patterns = no" in " ".join(w.message
                                                               for w in answer.warnings)


def test_rule_e_the_operator_mapping() -> None:
    operator = PostfixPolicy(PostfixLevel.ENCRYPT, (("protocols", ">=TLSv1.2"),))
    extra = 'tls_protocols = "-ALL:+TLSv1.2:+TLSv1.3"\n'
    answer = compose([("n", N, Need.ENCRYPT)], extra=extra, base=Need.ENCRYPT)
    assert (answer.rule, answer.policy) == ("e", operator)
    # null MX, no hosts: the decision without a host
    assert compose([], extra=extra, base=Need.ENCRYPT).policy == operator


def test_policy_lines_and_patterns_that_would_inject_attributes_are_dropped() -> None:
    hostile = parse_policy(b"version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 60\n")
    object.__setattr__(hostile, "mx", ("mx1.example.com", "evil}.example.com",
                                       "a:b.example.com"))
    answer = compose([("mx1.example.com", N, Need.VERIFIED)], sts=hostile)
    text = answer.policy.text()
    attributes = dict(answer.policy.attributes)
    assert "evil" not in text
    assert attributes["match"] == "mx1.example.com"
    assert [v for k, v in answer.policy.attributes if k == "mx_host_pattern"] == [
        "mx1.example.com"]
    assert text.count("{") == text.count("}")
    assert {"sts-pattern-dropped", "sts-policy-line-dropped"} <= codes(answer)
    object.__setattr__(hostile, "mx", ("evil}.example.com",))
    with pytest.raises(PostfixMappingError):
        compose([("mx1.example.com", N, Need.VERIFIED)], sts=hostile)


TESTING = parse_policy(b"version: STSv1\nmode: testing\nmx: mx1.example.com\n"
                       b"mx: *.example.net\nmax_age: 86400\n")
STS_TAIL = ("policy_type=sts policy_domain=example.com policy_ttl=86400 "
            "policy_string={version: STSv1} policy_string={mode: testing} "
            "policy_string={mx: mx1.example.com} policy_string={mx: *.example.net} "
            "policy_string={max_age: 86400} mx_host_pattern=mx1.example.com "
            "mx_host_pattern=*.example.net")


@pytest.mark.parametrize(("need", "level"), [
    (Need.NONE, "may"),        # tls = no is raised to opportunistic TLS, never none
    (Need.MAY, "may"),
    (Need.ENCRYPT, "encrypt"),
])
def test_testing_mode_renders_its_decided_level_with_the_policy_attributes(
        need: Need, level: str) -> None:
    # SEMANTICS 11: a testing-mode policy renders its decided level with policy_type=sts
    # and the policy's attributes (Postfix >= 3.10), never a lower level to carry them.
    answer = compose([("mx1.example.com", N, need), ("mx2.example.net", N, need)],
                     sts=TESTING, base=need)
    assert answer.rule == "e" and answer.sts_derived
    assert answer.policy.text() == f"{level} {STS_TAIL}"
    # The decided level, whatever carries the attributes: never lower than without them.
    assert _LEVELS.index(answer.policy.level.value) >= _LEVELS.index(
        compose([("mx1.example.com", N, need)], sts=TESTING, base=need,
                version=(3, 9)).policy.level.value)


_LEVELS = ["none", "may", "encrypt", "verify", "secure"]


def test_testing_mode_keeps_a_verified_decision_with_the_attributes() -> None:
    answer = compose([("mx1.example.com", N, Need.VERIFIED)], sts=TESTING,
                     base=Need.VERIFIED)
    before = compose([("mx1.example.com", N, Need.VERIFIED)], sts=TESTING,
                     base=Need.VERIFIED, version=(3, 9))
    assert answer.policy.level is before.policy.level is PostfixLevel.VERIFY
    assert answer.policy.text() == f"{before.policy.text()} {STS_TAIL}"
    assert "policy_" not in before.policy.text()


@pytest.mark.parametrize("sts", [ENFORCE, TESTING], ids=["enforce", "testing"])
@pytest.mark.parametrize("version", [(3, 9, 9), (3, 10), (3, 10, 5)])
def test_sts_attributes_row_at_least_one_of_each_list(sts: Any,
                                                      version: tuple[int, ...]) -> None:
    answer = compose([("mx1.example.com", N, Need.MAY)], sts=sts, version=version)
    names = [name for name, _ in answer.policy.attributes]
    if version < (3, 10):
        assert not {"policy_type", "policy_ttl", "policy_string",
                    "mx_host_pattern"} & set(names)
        return
    # Postfix reads each list unconditionally: every one of them, at least once.
    assert names.count("policy_type") == names.count("policy_domain") == 1
    assert names.count("policy_ttl") == 1
    assert names.count("policy_string") >= 1 and names.count("mx_host_pattern") >= 1
    assert "policy_failure" not in names


def test_policy_ttl_is_what_remains_and_never_more() -> None:
    view = NextHopView(
        binding="default", key="example.com", policy_domain="example.com",
        hosts=(_host("mx1.example.com", N, Need.MAY, ENFORCE, True, ""),),
        base=_resolver(Need.MAY, "").resolve("example.com"), sts_ttl=-5)
    answer = render(view, PostfixProfile((3, 10, 5)))
    assert dict(answer.policy.attributes)["policy_ttl"] == "0"
    view = attrs.evolve(view, sts_ttl=3600)
    policy = render(view, PostfixProfile((3, 10, 5))).policy
    assert dict(policy.attributes)["policy_ttl"] == "3600"
    # An answer given again later: lowered to what remains, never raised, never negative.
    assert dict(with_policy_ttl(policy, 1200.7).attributes)["policy_ttl"] == "1200"
    assert dict(with_policy_ttl(policy, 7200).attributes)["policy_ttl"] == "3600"
    assert dict(with_policy_ttl(policy, -3).attributes)["policy_ttl"] == "0"
    assert with_policy_ttl(policy, 1200).text().replace("policy_ttl=1200", "") == \
        policy.text().replace("policy_ttl=3600", "")
    assert with_policy_ttl(MAY, 10) is MAY


@pytest.mark.parametrize(("version", "protocols"), [
    ((3, 5, 9), "protocols=!SSLv2:!SSLv3:!TLSv1:!TLSv1.1"),
    ((3, 6), "protocols=>=TLSv1.2"),
])
def test_protocol_ranges_from_3_6_in_discovered_answers(version: tuple[int, ...],
                                                        protocols: str) -> None:
    extra = 'tls_protocols = "-ALL:+TLSv1.2:+TLSv1.3"\n'
    answer = compose([("n", N, Need.ENCRYPT)], extra=extra, base=Need.ENCRYPT,
                     version=version)
    assert answer.policy.text() == f"encrypt {protocols}"


def test_a_testing_mode_answer_too_long_keeps_its_level_without_the_attributes() -> None:
    # SEMANTICS 11, answers that fit: the MTA-STS attributes go, the decided level stays.
    long_policy = parse_policy(
        b"version: STSv1\nmode: testing\nmax_age: 86400\n" + b"".join(
            f"mx: mx{i:05d}.{'a' * 35}.example.net\n".encode() for i in range(1000)))
    answer = compose([("mx00001.example.net", N, Need.ENCRYPT)], sts=long_policy,
                     base=Need.ENCRYPT)
    assert answer.policy.text() == "encrypt"
    assert "sts-attributes-too-long" in codes(answer)


def test_need_of_decisions() -> None:
    resolver = Resolver(loads_toml("""
[global]
tls = "ifavailable"
[[domain]]
name = "no.example"
tls = "no"
[[domain]]
name = "req.example"
tls = "required"
[[domain]]
name = "ver.example"
tls = "required"
tls_verify = "host"
"""))
    assert need_of(resolver.resolve("x.example")) is Need.MAY
    assert need_of(resolver.resolve("no.example")) is Need.NONE
    assert need_of(resolver.resolve("req.example")) is Need.ENCRYPT
    assert need_of(resolver.resolve("ver.example")) is Need.VERIFIED


# ---------------------------------------------------- the lookup with real servers

CONFIG = """
[global]
tls = "ifavailable"
use_mta_sts = true
use_dane = true
"""


@pytest.fixture
def env(dns_lab: DnsLab, https_lab: HttpsLab, tmp_path: Path) -> Env:
    https_lab.reset()
    return Env(dns_lab, https_lab, tmp_path)


def lookup_for(discovery: Discovery, config: str = CONFIG, *,
               version: tuple[int, ...] = (3, 7, 11), **kwargs: Any) -> DiscoveryLookup:
    return DiscoveryLookup(PolicyLookup(Resolver(loads_toml(config)), postfix_version=version),
                           discovery, postfix_version=version, **kwargs)


async def ask(lookup: DiscoveryLookup, key: str, map_name: str = "default") -> SocketmapReply:
    reply = lookup(map_name, key)
    if isinstance(reply, SocketmapReply):
        return reply
    return await reply


def answers(env: Env, keys: Sequence[str], config: str = CONFIG, **kwargs: Any
            ) -> dict[str, str]:
    async def main() -> dict[str, str]:
        async with env.discovery() as discovery:
            lookup = lookup_for(discovery, config, **kwargs)
            return {key: (await ask(lookup, key)).to_text() for key in keys}

    return asyncio.run(main())


def test_answers_per_rule_from_real_dns_and_https(env: Env) -> None:
    env.web.set("insecure.test", PolicyAnswer(enforce("insecure.test")))
    got = answers(env, [
        "secure.test",            # D (its policy names other MX hosts: DANE wins)
        "twomx.secure.test",      # every host N, no policy: the operator's may
        "mxbogus.secure.test",    # X only
        "unusable.secure.test",   # U only: encrypt is enough for 'ifavailable'
        "insecure.test",          # (a): unsigned MX, enforce policy
        "ok.secure.test",         # (d): signed MX, no TLSA, enforce policy
        "nullmx.secure.test",     # no hosts: the operator's mapping
        "[relay.secure.test]:587",  # a smart host: DANE at _587._tcp.relay
        ".secure.test",           # parent keys never trigger discovery
        "[127.0.0.1]",            # IP literals have no names to look up
    ])
    assert got["secure.test"] == "OK dane-only"
    assert got["twomx.secure.test"] == "OK may"
    assert got["mxbogus.secure.test"] == "OK dane"  # Postfix defers a bogus TLSA host
    assert got["unusable.secure.test"] == "OK dane"
    assert got["insecure.test"].startswith("OK secure match=.insecure.test servername=hostname")
    assert got["ok.secure.test"] == "OK secure match=.ok.secure.test servername=hostname"
    assert got["nullmx.secure.test"] == "OK may"
    assert got["[relay.secure.test]:587"] == "OK dane-only"
    assert got[".secure.test"] == "NOTFOUND "
    assert got["[127.0.0.1]"] == "OK may"


def test_sts_attributes_only_for_postfix_3_10_and_on_sts_answers(env: Env) -> None:
    got = answers(env, ["ok.secure.test", "secure.test", "twomx.secure.test"],
                  version=(3, 10, 5))
    # policy_ttl: what remains of the policy's max_age (SEMANTICS 11), never longer.
    ttl = re.search(r" policy_ttl=([0-9]+) ", got["ok.secure.test"])
    assert ttl is not None and 0 < int(ttl.group(1)) <= 86400
    assert got["ok.secure.test"] == (
        "OK secure match=.ok.secure.test servername=hostname policy_type=sts "
        f"policy_domain=ok.secure.test policy_ttl={ttl.group(1)} "
        "policy_string={version: STSv1} "
        "policy_string={mode: enforce} policy_string={mx: *.ok.secure.test} "
        "policy_string={max_age: 86400} mx_host_pattern=*.ok.secure.test")
    assert "policy_" not in got["secure.test"] and "policy_" not in got["twomx.secure.test"]


def test_policy_ttl_of_an_answer_given_again_is_what_remains(env: Env) -> None:
    # SEMANTICS 11: policy_ttl no longer than the answer's own validity, also when the
    # answer is reused while its inputs are unchanged.
    def ttl(reply: SocketmapReply) -> int:
        found = re.search(r" policy_ttl=([0-9]+) ", reply.text)
        assert found is not None, reply.text
        return int(found.group(1))

    async def main() -> list[int]:
        async with env.discovery() as discovery:
            lookup = lookup_for(discovery, version=(3, 10, 5))
            seen = [ttl(await ask(lookup, "ok.secure.test")),
                    ttl(await ask(lookup, "ok.secure.test"))]  # held from here on
            env.clock.now += 20
            seen.append(ttl(await ask(lookup, "ok.secure.test")))
            env.clock.now += 5
            seen.append(ttl(await ask(lookup, "ok.secure.test")))
            return seen

    first, second, later, last = asyncio.run(main())
    assert 0 < second <= first <= 86400
    assert later <= second - 20 and last <= later - 5


def test_an_address_next_hop_with_one_routed_domain_reports_its_match_note(
        env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """An IP-literal next hop with one routed domain is answered match=<domain> and
    carries the nexthop-match loss note, with discovery as without (issue 21)."""
    import logging

    from tlspolicy.postfix.transport import parse_transport_table

    config = CONFIG + '\n[[domain]]\nname = "b.test"\ntls = "required"\n' \
        'tls_verify = "host"\n'
    policy = PolicyLookup(Resolver(loads_toml(config)), postfix_version=(3, 7, 11),
                          routes=parse_transport_table("b.test smtp:[192.0.2.9]:2525\n"))
    assert [n.code for n in policy.notes("default", "[192.0.2.9]:2525")
            if n.code == "nexthop-match"] == ["nexthop-match"]

    async def main() -> str:
        async with env.discovery() as discovery:
            lookup = DiscoveryLookup(policy, discovery, postfix_version=(3, 7, 11))
            with caplog.at_level(logging.DEBUG, logger="tlspolicy.servers.discovered"):
                return (await ask(lookup, "[192.0.2.9]:2525")).to_text()

    assert asyncio.run(main()) == "OK verify match=b.test"
    assert any("one domain (b.test) is routed through this address" in r.getMessage()
               for r in caplog.records)


def test_operator_switches_turn_dane_and_mta_sts_off(env: Env) -> None:
    config = CONFIG + '\n[[domain]]\nname = "secure.test"\nuse_dane = false\n' \
        '[[domain]]\nname = "ok.secure.test"\nuse_mta_sts = false\n'
    got = answers(env, ["secure.test", "ok.secure.test"], config=config)
    # Without DANE, secure.test's own enforce policy applies; without MTA-STS, the
    # operator's may.
    assert got["secure.test"].startswith("OK secure match=")
    assert got["ok.secure.test"] == "OK may"


def test_operator_requirements_stay_in_the_answer(env: Env) -> None:
    config = CONFIG + '\n[[domain]]\nname = "twomx.secure.test"\ntls = "required"\n' \
        'tls_protocols = "TLSv1.2:TLSv1.3"\n[[domain]]\nname = "unusable.secure.test"\n' \
        'tls = "required"\ntls_verify = "host"\n'
    got = answers(env, ["twomx.secure.test", "unusable.secure.test"], config=config)
    assert got["twomx.secure.test"] == "OK encrypt protocols=>=TLSv1.2"
    # A host with only unusable TLSA records and a verified requirement: dane would give
    # it unauthenticated TLS, so dane-only (it defers; reported).
    assert got["unusable.secure.test"] == "OK dane-only"


def test_unknown_binding_and_malformed_keys_as_without_discovery(env: Env) -> None:
    got = answers(env, ["a b c", "secure.test"], config=CONFIG)
    assert got["a b c"].startswith("PERM malformed key")

    async def main() -> str:
        async with env.discovery() as discovery:
            return (await ask(lookup_for(discovery), "secure.test", "nosuch")).to_text()

    assert asyncio.run(main()).startswith("PERM unknown binding")


def test_a_malformed_key_in_drop_in_is_named_as_such_under_any_map_name(env: Env) -> None:
    """Drop-in answers every map name: a key that is no next hop is refused as a malformed
    key, not as an unknown binding named after the map (which would send an operator
    looking for a wrong map name in main.cf)."""
    async def main() -> list[str]:
        async with env.discovery() as discovery:
            lookup = lookup_for(discovery, drop_in=True)
            return [(await ask(lookup, key, "QUERY")).to_text() for key in ("a b c", "x..y")]

    for text in asyncio.run(main()):
        assert text.startswith("PERM malformed key"), text


def test_answers_to_long_map_names_are_not_kept(env: Env) -> None:
    """Drop-in answers every map name: distinct long ones, each answered, are not kept for
    reuse (a client sending junk would fill the memo with them); a map name as Postfix's
    main.cf spells it is."""
    async def main() -> tuple[int, int]:
        async with env.discovery() as discovery:
            lookup = lookup_for(discovery, drop_in=True)
            for n in range(20):
                await ask(lookup, "nodane.secure.test", f"{n:03d}" + "m" * 400)
            kept = len(lookup._held)
            await ask(lookup, "nodane.secure.test", "QUERY")
            return kept, len(lookup._held)

    assert asyncio.run(main()) == (0, 1)


# --------------------------------------------------------------- TEMP and outages

def _silent_udp() -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


def test_mx_failure_alone_is_never_temp(env: Env) -> None:
    sock, port = _silent_udp()
    try:
        async def main() -> dict[str, str]:
            store = env.store()
            await seed(store, "ok.secure.test", enforce("ok.secure.test"),
                       fetched_at=env.clock.now, policy_id="id1",
                       next_check=env.clock.now + 3600)
            discovery = env.discovery(store=store, resolver_port=port, dns_timeout=0.5)
            async with discovery:
                lookup = lookup_for(discovery)
                return {key: (await ask(lookup, key)).to_text()
                        for key in ("ok.secure.test", "twomx.secure.test")}

        got = asyncio.run(main())
    finally:
        sock.close()
    # DNS is down: the cached enforce policy still answers, an uncached domain gets the
    # configuration alone (Postfix's own MX lookup fails and defers it), where DANE
    # inputs are unknown, never insecure: may becomes dane (SEMANTICS 10).
    assert got["ok.secure.test"] == "OK secure match=.ok.secure.test servername=hostname"
    assert got["twomx.secure.test"] == "OK dane"


def test_temp_only_when_neither_mx_nor_the_cache_can_be_read(env: Env) -> None:
    sock, port = _silent_udp()
    dead = free_port()
    try:
        async def main() -> str:
            store = await RedisStore.connect(f"redis://127.0.0.1:{dead}/0", timeout=0.5,
                                             require_up=False, clock=env.clock)
            discovery = env.discovery(store=store, resolver_port=port, dns_timeout=0.5,
                                      first_wait=0.5)
            async with discovery:
                return (await ask(lookup_for(discovery), "ok.secure.test")).to_text()

        got = asyncio.run(main())
    finally:
        sock.close()
    assert got.startswith("TEMP ")


def test_temp_answers_and_resolver_trust_are_counted(env: Env) -> None:
    """Metrics (issue 21): a TEMP because neither the MX lookup nor the MTA-STS cache
    could be read is counted with the cause ``store``; the resolver trust gauge follows
    the probe; answers are counted by readable rule names."""
    from tlspolicy.servers.metrics import Metrics

    metrics = Metrics()
    sock, port = _silent_udp()
    dead = free_port()

    def sample(name: str, **labels: str) -> float:
        got = metrics.registry.get_sample_value(name, labels)
        return 0.0 if got is None else got

    try:
        async def main() -> tuple[str, float]:
            store = await RedisStore.connect(f"redis://127.0.0.1:{dead}/0", timeout=0.5,
                                             require_up=False, clock=env.clock)
            discovery = env.discovery(store=store, resolver_port=port, dns_timeout=0.5,
                                      first_wait=0.5)
            discovery.observer = metrics
            async with discovery:
                untrusted = sample("tlspolicy_discovery_resolver_trusted")
                lookup = lookup_for(discovery, on_temp=metrics.count_temp,
                                    on_answer=metrics.count_rule)
                return (await ask(lookup, "ok.secure.test")).to_text(), untrusted

        got, untrusted = asyncio.run(main())
    finally:
        sock.close()
    assert got.startswith("TEMP ")
    assert untrusted == 0.0  # the silent resolver never answered the probe
    assert sample("tlspolicy_socketmap_temp_replies_total", cause="store") == 1

    async def trusted() -> float:
        discovery = env.discovery()
        discovery.observer = metrics
        async with discovery:
            lookup = lookup_for(discovery, version=(3, 10, 5), on_answer=metrics.count_rule)
            for key in ("ok.secure.test", "secure.test", "twomx.secure.test"):
                await ask(lookup, key)
            return sample("tlspolicy_discovery_resolver_trusted")

    assert asyncio.run(trusted()) == 1.0
    answers = "tlspolicy_socketmap_discovered_answers_total"
    assert sample(answers, rule_name="sts-enforce") == 1
    assert sample(answers, rule_name="dane-hosts") == 1
    assert sample(answers, rule_name="configuration") == 1


@pytest.mark.slow
def test_outage_dns_and_https_stopped_cached_enforce_policies_still_answered(
        env: Env, redis_server: RedisServer) -> None:
    """With DNS and HTTPS unreachable, and then Redis stopped too, every domain with an
    unexpired cached enforce policy is answered with it (from the SQLite mirror)."""
    domains = [f"{n}.fleet.secure.test" for n in range(20)]
    sock, dead_dns = _silent_udp()
    try:
        async def main() -> list[str]:
            store = await redis_cache(redis_server.url, env.tmp / "mirror.sqlite3",
                                      clock=env.clock)
            for domain in domains:
                await seed(store, domain, enforce(domain), fetched_at=env.clock.now,
                           policy_id="fleet1", next_check=env.clock.now + 3600)
            await store.close()
            redis_server.stop()
            store = await redis_cache(redis_server.url, env.tmp / "mirror.sqlite3",
                                      clock=env.clock)
            discovery = env.discovery(store=store, resolver_port=dead_dns, dns_timeout=0.5,
                                      https_port=free_port(), first_wait=0.5)
            async with discovery:
                lookup = lookup_for(discovery)
                return [(await ask(lookup, d)).to_text() for d in domains]

        got = asyncio.run(main())
    finally:
        sock.close()
        if redis_server.process is None:
            redis_server.start()  # the server is shared by the session's other tests
    assert got == [f"OK secure match=.{d} servername=hostname" for d in domains]


def test_answers_within_the_deadline_when_dns_never_answers(env: Env) -> None:
    sock, port = _silent_udp()
    try:
        async def main() -> tuple[str, float]:
            discovery = env.discovery(resolver_port=port, dns_timeout=30.0, first_wait=30.0)
            discovery.dnssec = True  # as if the probe had passed before DNS went silent
            lookup = lookup_for(discovery, deadline=0.5)
            started = time.monotonic()
            reply = await ask(lookup, "secure.test")
            took = time.monotonic() - started
            await discovery.close()
            return reply.to_text(), took

        text, took = asyncio.run(main())
    finally:
        sock.close()
    # Nothing arrived: MX unknown, the cache readable (empty): not TEMP, and DANE may
    # apply, so Postfix checks TLSA itself.
    assert text in ("OK dane", "OK dane-only")
    assert took < 20  # a hang guard, not a timing assertion


def test_proactive_refresh_of_domains_in_use(env: Env) -> None:
    async def main() -> tuple[int, int, int]:
        async with env.discovery() as discovery:
            lookup = lookup_for(discovery, memo_ttl=0)
            await ask(lookup, "ok.secure.test")
            before = env.web.fetches("ok.secure.test")
            assert await lookup.refresh_once(ahead=60) == 0  # fresh: nothing due
            env.clock.now += 86400 / 2  # half of max_age: the policy is due
            started = await lookup.refresh_once(ahead=60)
            for _ in range(200):
                if not discovery._refreshing:
                    break
                await asyncio.sleep(0.02)
            return before, started, env.web.fetches("ok.secure.test")

    before, started, after = asyncio.run(main())
    assert started == 1
    assert after >= before  # the TXT id is unchanged: refreshed from DNS, fetched if needed


# ------------------------------------------------ the server and the command line

def test_server_answers_awaitable_lookups_in_order_per_connection(env: Env) -> None:
    async def main() -> list[str]:
        async with env.discovery() as discovery:
            lookup = lookup_for(discovery)
            async with SocketmapServer(lookup) as server:
                reader, writer = await asyncio.open_connection(*server.address)
                keys = ["secure.test", "[127.0.0.1]", "ok.secure.test", ".secure.test"]
                for key in keys:  # pipelined: the answers must come back in order
                    data = f"default {key}".encode()
                    writer.write(f"{len(data)}:".encode() + data + b",")
                await writer.drain()
                out = []
                for _ in keys:
                    size = int((await reader.readuntil(b":"))[:-1])
                    out.append((await reader.readexactly(size + 1))[:-1].decode())
                writer.close()
                return out

    assert asyncio.run(main()) == ["OK dane-only", "OK may",
                                   "OK secure match=.ok.secure.test servername=hostname",
                                   "NOTFOUND "]


@attrs.define
class Served:
    process: subprocess.Popen[str]
    port: int
    metrics: str = ""


def _serve(env: Env, tmp: Path, *extra: str, config: str = CONFIG) -> Served:
    path = tmp / "policy.toml"
    path.write_text(config)
    port = free_port()
    command = [sys.executable, "-m", "tlspolicy", "serve", "socketmap", str(path),
               "--listen", f"127.0.0.1:{port}", "--no-file-checks",
               # The machine's own Postfix is not the one under test here.
               "--no-postfix-checks", *extra]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stdout is not None
    metrics = ""
    line = process.stdout.readline()
    if line.startswith("metrics on "):
        metrics = line.split()[-1]
        line = process.stdout.readline()
    if not line.startswith("listening on"):
        process.kill()
        raise AssertionError(f"serve did not start: {line!r} {process.communicate()[1]}")
    return Served(process, port, metrics)


def test_serve_socketmap_discovery_with_postmap(env: Env, tmp_path: Path) -> None:
    if find_postfix_binary("postmap") is None:
        pytest.skip("postmap (Debian package postfix) is not installed")
    config = CONFIG + f"""
[discovery]
enabled = true
resolver = "127.0.0.1"
resolver_port = {env.dns.port}
probe_name = "test."
https_port = {env.web.port}
ca_file = "{env.web.ca_file}"
cache = "{tmp_path / 'cache.sqlite3'}"
postfix_version = "3.10.5"
"""
    served = _serve(env, tmp_path, "--metrics-listen", "127.0.0.1:0", config=config)
    try:
        table = f"socketmap:inet:127.0.0.1:{served.port}:default"
        conf = postmap_config_dir(tmp_path / "postmap")

        def query(key: str) -> str:
            result = postmap_query(conf, table, key)
            assert result.returncode == 0, result.stderr
            return result.stdout.strip()

        assert query("secure.test") == "dane-only"
        assert query("ok.secure.test").startswith(
            "secure match=.ok.secure.test servername=hostname policy_type=sts")
        assert query("twomx.secure.test") == "may"
        import urllib.request

        with urllib.request.urlopen(served.metrics, timeout=10) as response:
            scraped = response.read().decode()
        assert 'tlspolicy_socketmap_discovered_answers_total{rule_name="dane-hosts"} 1.0' \
            in scraped
        assert 'tlspolicy_socketmap_discovered_answers_total{rule_name="sts-enforce"} 1.0' \
            in scraped
        assert "tlspolicy_discovery_resolver_trusted 1.0" in scraped
        assert 'tlspolicy_socketmap_queries_total{level="dane-only",status="OK"} 1.0' in scraped
        assert "tlspolicy_discovery_cache_lookups_total{" in scraped
    finally:
        served.process.terminate()
        served.process.wait(timeout=20)
    assert served.process.returncode == 0


def test_serve_discovery_flags_and_refusals(env: Env, tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(CONFIG + "\n[discovery]\nanswer_deadline = 120\n")
    result = subprocess.run(
        [sys.executable, "-m", "tlspolicy", "serve", "socketmap", str(path), "--listen",
         "127.0.0.1:0", "--discovery", "--postfix-version", "3.7.11", "--no-file-checks",
         "--no-postfix-checks"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "answer deadline" in result.stderr and "Traceback" not in result.stderr
    path.write_text(CONFIG + "\n[discovery]\nresolvr = \"127.0.0.1\"\n")
    result = subprocess.run(
        [sys.executable, "-m", "tlspolicy", "check", str(path)],
        capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "unknown discovery key 'resolvr'" in result.stderr + result.stdout




# ------------------------------------------------------ shadow with discovery (SEMANTICS 9)

NO_STS_FOR_OK = CONFIG + '\n[[domain]]\nname = "ok.secure.test"\nuse_mta_sts = false\n'


def test_shadow_with_discovery_classes_a_downgrade_on_a_discovered_enforce_policy(
        env: Env) -> None:
    """The candidate is judged on the live answer's fetched inputs (the same Destination
    per MX host): switching MTA-STS off for a domain with a discovered enforce policy is a
    downgrade; the same configuration shows no difference; nothing is fetched for it."""
    from tlspolicy.servers.shadow import DiscoveryShadowLookup

    def policy(config: str) -> PolicyLookup:
        return PolicyLookup(Resolver(loads_toml(config)), postfix_version=(3, 10, 5))

    async def main() -> tuple[list[str], Any, Any, int, int]:
        async with env.discovery() as discovery:
            live = lookup_for(discovery, version=(3, 10, 5))
            shadow = DiscoveryShadowLookup(live, live.candidate(policy(NO_STS_FOR_OK)))
            same_live = lookup_for(discovery, version=(3, 10, 5))
            same = DiscoveryShadowLookup(same_live, same_live.candidate(policy(CONFIG)))
            got = []
            for key in ("ok.secure.test", "ok.secure.test", "twomx.secure.test",
                        "secure.test", "[127.0.0.1]", ".secure.test"):
                got.append((await ask(shadow, key)).to_text())
                await ask(same, key)
            fetches = env.web.fetches("ok.secure.test")

            def queries() -> list[int]:
                return [env.dns.queries(name, rdtype) for name, rdtype in (
                    ("ok.secure.test", "MX"), ("_mta-sts.ok.secure.test", "TXT"),
                    ("_25._tcp.mx.ok.secure.test", "TLSA"))]

            before = queries()
            # Compared after the replies, in a worker thread as the server does.
            await asyncio.to_thread(shadow.run_pending)
            await asyncio.to_thread(same.run_pending)
            assert env.web.fetches("ok.secure.test") == fetches  # no fetch of its own
            assert queries() == before
            return got, shadow.counts(), same.counts(), shadow.pending, fetches

    got, counts, same, pending, fetches = asyncio.run(main())
    assert got[0].startswith("OK secure match=.ok.secure.test servername=hostname "
                             "policy_type=sts")
    assert got[2] == "OK may" and got[3] == "OK dane-only"
    assert pending == 0 and fetches == 1
    assert counts.requests == 6 and counts.errors == 0 and counts.shed == 0
    # ok.secure.test twice: secure (enforce policy) -> may; logged once per key.
    assert counts.differing == {"downgrade": 2, "review": 0, "upgrade": 0}
    assert counts.keys["downgrade"] == 1
    assert same.requests == 6 and same.errors == 0
    assert same.differing == {"downgrade": 0, "review": 0, "upgrade": 0}


def test_shadow_with_discovery_never_fetches_for_the_candidate(env: Env) -> None:
    """A candidate that needs an input the live answer did not look up takes it from what
    discovery holds, or the request is counted as not comparable: never a guess, never a
    fetch of its own."""
    from tlspolicy.servers.shadow import DiscoveryShadowLookup

    live_config = CONFIG.replace("use_mta_sts = true", "use_mta_sts = false")

    async def main() -> tuple[Any, Any, int]:
        async with env.discovery() as discovery:
            live = lookup_for(discovery, live_config, version=(3, 10, 5))
            shadow = DiscoveryShadowLookup(live, live.candidate(
                PolicyLookup(Resolver(loads_toml(CONFIG)), postfix_version=(3, 10, 5))))
            assert (await ask(shadow, "ok.secure.test")).to_text() == "OK may"
            await asyncio.to_thread(shadow.run_pending)
            unknown = shadow.counts()
            # Once discovery holds the policy (fetched for someone else), the candidate
            # is judged with it: an upgrade, may -> secure.
            await discovery.sts_state("ok.secure.test")
            fetched = env.web.fetches("ok.secure.test")
            assert (await ask(shadow, "ok.secure.test")).to_text() == "OK may"
            await asyncio.to_thread(shadow.run_pending)
            return unknown, shadow.counts(), env.web.fetches("ok.secure.test") - fetched

    unknown, known, extra = asyncio.run(main())
    assert unknown.requests == 1 and unknown.errors == 1
    assert known.requests == 2 and known.errors == 1
    assert known.differing["upgrade"] == 1
    assert extra == 0


def test_serve_socketmap_shadow_with_discovery(env: Env, tmp_path: Path) -> None:
    """serve socketmap --discovery --shadow (refused before): the report classes the
    candidate's downgrade on a discovered enforce policy."""
    import json

    from tlspolicy.postfix.netstring import encode_netstring

    discovery_table = f"""
[discovery]
enabled = true
resolver = "127.0.0.1"
resolver_port = {env.dns.port}
probe_name = "test."
https_port = {env.web.port}
ca_file = "{env.web.ca_file}"
cache = "{tmp_path / 'cache.sqlite3'}"
postfix_version = "3.10.5"
"""
    candidate = tmp_path / "candidate.toml"
    candidate.write_text(NO_STS_FOR_OK)
    report = tmp_path / "shadow.json"
    served = _serve(env, tmp_path, "--shadow", str(candidate), "--shadow-report",
                    str(report), "--metrics-listen", "127.0.0.1:0",
                    config=CONFIG + discovery_table)
    try:
        with socket.create_connection(("127.0.0.1", served.port), timeout=20) as sock:
            sock.settimeout(20)
            answers = []
            for key in ("ok.secure.test", "twomx.secure.test", "ok.secure.test"):
                sock.sendall(encode_netstring(f"default {key}".encode()))
                data = b""
                while not data.endswith(b","):
                    chunk = sock.recv(65536)
                    assert chunk
                    data += chunk
                answers.append(data.decode())
        assert ":OK secure match=.ok.secure.test" in answers[0]
        assert answers[1].endswith(":OK may,")
        time.sleep(0.5)  # the shadow drains its queue after the replies
    finally:
        served.process.terminate()
        _out, err = served.process.communicate(timeout=20)
    assert served.process.returncode == 0, err
    counts = json.loads(report.read_text())
    assert counts["requests"] == 3 and counts["errors"] == 0
    assert counts["differing"]["downgrade"] == 2
    assert counts["keys"]["downgrade"] == 1
    assert "shadow: downgrade map 'default' key 'ok.secure.test'" in err


@pytest.mark.slow
def test_two_processes_on_one_port_share_one_redis_store(
        env: Env, tmp_path: Path, redis_server: RedisServer) -> None:
    """Several serve processes on one port (SO_REUSEPORT) share the discovery store: each
    policy is fetched once for the fleet, and both answer the same."""
    if find_postfix_binary("postmap") is None:
        pytest.skip("postmap (Debian package postfix) is not installed")
    env.web.reset()
    port = free_port()
    config = CONFIG + f"""
[discovery]
enabled = true
resolver_port = {env.dns.port}
probe_name = "test."
https_port = {env.web.port}
ca_file = "{env.web.ca_file}"
redis = "{redis_server.url}"
postfix_version = "3.10.5"
"""
    path = tmp_path / "policy.toml"
    path.write_text(config)
    processes = []
    try:
        for index in range(2):
            process = subprocess.Popen(
                [sys.executable, "-m", "tlspolicy", "serve", "socketmap", str(path),
                 "--listen", f"127.0.0.1:{port}", "--reuse-port", "--no-file-checks",
                 "--no-postfix-checks",
                 "--cache", str(tmp_path / f"mirror{index}.sqlite3")],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            processes.append(process)
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("listening on"), (line, process.stderr)
        table = f"socketmap:inet:127.0.0.1:{port}:default"
        conf = postmap_config_dir(tmp_path / "postmap")
        domains = [f"{n}.fleet.secure.test" for n in range(100, 140)]
        from postfix_support import postmap_query_many

        # Several postmap processes, so the kernel spreads connections over both servers.
        results = [postmap_query_many(conf, table, domains[i::4]) for i in range(4)]
        results += [postmap_query_many(conf, table, domains[i::4]) for i in range(4)]
        for result in results:
            assert result.returncode == 0, result.stderr
            for line in result.stdout.splitlines():
                key, value = line.split("\t")
                assert value.startswith("secure match=") and "policy_type=sts" in value, (
                    key, value)
        fetched = sum(env.web.fetches(d) for d in domains)
        assert fetched <= len(domains) * 1.01 + 1, fetched
        assert all(env.web.fetches(d) >= 1 for d in domains)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=20)


def test_serve_discovery_checks_postfix_dns_support_level(env: Env, tmp_path: Path) -> None:
    if find_postfix_binary("postconf") is None:
        pytest.skip("postconf (Debian package postfix) is not installed")
    conf = tmp_path / "postfix"
    conf.mkdir()
    (conf / "main.cf").write_text("compatibility_level = 3.6\nsmtp_dns_support_level = enabled\n")
    (conf / "master.cf").write_text("smtp unix - - n - - smtp\n")
    path = tmp_path / "policy.toml"
    path.write_text(CONFIG + f"""
[discovery]
enabled = true
resolver_port = {env.dns.port}
probe_name = "test."
cache = "{tmp_path / 'cache.sqlite3'}"
""")
    result = subprocess.run(
        [sys.executable, "-m", "tlspolicy", "serve", "socketmap", str(path), "--listen",
         "127.0.0.1:0", "--postfix-version", "3.7.11", "--no-file-checks",
         "--postfix-config-dir", str(conf)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "smtp_dns_support_level" in result.stderr and "dnssec" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_discovery_warns_when_no_scope_uses_dane_or_mta_sts(env: Env,
                                                                   tmp_path: Path) -> None:
    config = f"""
[global]
tls = "ifavailable"
[discovery]
enabled = true
resolver_port = {env.dns.port}
probe_name = "test."
cache = "{tmp_path / 'cache.sqlite3'}"
postfix_version = "3.7.11"
"""
    served = _serve(env, tmp_path, config=config)
    served.process.terminate()
    _out, err = served.process.communicate(timeout=20)
    assert "no scope sets use_dane = true or use_mta_sts = true" in err
