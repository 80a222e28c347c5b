"""The Postfix TLS model of ``tests/postfix_model.py``, one documented behaviour per test.

Each test names the Postfix document and section it follows: postconf(5) is the
parameter reference (by parameter name), TLS_README the "Postfix TLS Support"
guide (by section title).  Then the tlspolicy side (decisions through the
public API) and the two judges.
"""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import pytest

from postfix_model import (
    PROTOCOLS,
    Dane,
    Delivery,
    HostWorld,
    TlsaMatch,
    allowed,
    never_weaker,
    parse_answer,
    postfix_action,
    postfix_protocols,
    postfix_requirement,
    tlspolicy_action,
)
from tlspolicy import (
    Decision,
    Destination,
    Resolver,
    TlsaLookup,
    TlsaLookupStatus,
    TlsaRecord,
    loads_toml,
)

HOST = "mx1.example.net"
NEXTHOP = "example.org"
GOOD = HostWorld(names={HOST, NEXTHOP})
"""TLS works, the chain is trusted and in date, and it names the MX host and the next hop."""
NO_STARTTLS = HostWorld(starttls=False, names={HOST, NEXTHOP})
HANDSHAKE_FAILS = HostWorld(handshake=False, names={HOST, NEXTHOP})
UNTRUSTED = HostWorld(pkix_trusted=False, names={HOST, NEXTHOP})
EXPIRED = HostWorld(in_date=False, names={HOST, NEXTHOP})
NAMELESS = HostWorld(names={"other.example"})
DEGRADED = (NO_STARTTLS, HANDSHAKE_FAILS, UNTRUSTED, EXPIRED, NAMELESS)


def act(answer: str, world: HostWorld, *, host: str = HOST, nexthop: str = NEXTHOP,
        insecure_mx_policy: str = "dane") -> Delivery:
    return postfix_action(answer, host=host, nexthop=nexthop, world=world,
                          insecure_mx_policy=insecure_mx_policy)


def dane_world(match: TlsaMatch, **changes: Any) -> HostWorld:
    return attrs.evolve(HostWorld(dane=Dane.D, tlsa_match=match, names={HOST}), **changes)


# --------------------------------------------------------------- the levels


def test_delivery_is_ordered() -> None:
    assert Delivery.DEFER < Delivery.PLAINTEXT < Delivery.ENCRYPTED < Delivery.AUTHENTICATED


@pytest.mark.parametrize("world", (GOOD, *DEGRADED))
def test_none_is_plaintext_everywhere(world: HostWorld) -> None:
    # postconf(5) smtp_tls_security_level, "none": no TLS.
    assert act("none", world) is Delivery.PLAINTEXT


@pytest.mark.parametrize("world", (GOOD, UNTRUSTED, EXPIRED, NAMELESS))
def test_may_encrypts_whatever_the_certificate(world: HostWorld) -> None:
    # TLS_README "Opportunistic TLS": delivery goes on with an untrusted or
    # wrongly named server certificate.
    assert act("may", world) is Delivery.ENCRYPTED


def test_may_without_starttls_is_plaintext() -> None:
    # TLS_README "Opportunistic TLS": without the STARTTLS feature, in the clear.
    assert act("may", NO_STARTTLS) is Delivery.PLAINTEXT


def test_may_after_a_failed_handshake_is_plaintext() -> None:
    # postconf(5) smtp_tls_security_level, "may": a failed handshake is retried
    # with TLS disabled (after minimal_backoff_time; the model keeps the result).
    assert act("may", HANDSHAKE_FAILS) is Delivery.PLAINTEXT


@pytest.mark.parametrize("world", (GOOD, UNTRUSTED, EXPIRED, NAMELESS))
def test_encrypt_delivers_over_tls_without_checking_the_certificate(world: HostWorld) -> None:
    # TLS_README "Mandatory TLS encryption": untrusted or wrongly named
    # certificates do not stop delivery.
    assert act("encrypt", world) is Delivery.ENCRYPTED


@pytest.mark.parametrize("world", (NO_STARTTLS, HANDSHAKE_FAILS))
def test_encrypt_defers_without_tls(world: HostWorld) -> None:
    # postconf(5) smtp_tls_policy_maps, "encrypt": delivered only if STARTTLS is
    # offered and the handshake succeeds.
    assert act("encrypt", world) is Delivery.DEFER


@pytest.mark.parametrize("level", ("verify", "secure"))
@pytest.mark.parametrize("world", DEGRADED)
def test_verified_levels_defer_on_any_failure(level: str, world: HostWorld) -> None:
    # TLS_README "Mandatory server certificate verification" and "Secure server
    # certificate verification": TLS required, the chain valid (trusted, not
    # expired) and a certificate name matching.  NAMELESS names neither host.
    assert act(f"{level} match=hostname:nexthop", world) is Delivery.DEFER


@pytest.mark.parametrize("level", ("verify", "secure"))
def test_verified_levels_authenticate_a_good_host(level: str) -> None:
    # TLS_README, as above.
    assert act(f"{level} match=hostname:nexthop", GOOD) is Delivery.AUTHENTICATED


def test_verify_matches_the_mx_host_name_by_default() -> None:
    # postconf(5) smtp_tls_verify_cert_match: default "hostname".
    assert act("verify", HostWorld(names={HOST})) is Delivery.AUTHENTICATED
    assert act("verify", HostWorld(names={NEXTHOP})) is Delivery.DEFER


def test_secure_matches_the_nexthop_and_its_subdomains_by_default() -> None:
    # postconf(5) smtp_tls_secure_cert_match: default "nexthop, dot-nexthop";
    # TLS_README "Secure server certificate verification": MX names not used.
    assert act("secure", HostWorld(names={NEXTHOP})) is Delivery.AUTHENTICATED
    assert act("secure", HostWorld(names={"mx.example.org"})) is Delivery.AUTHENTICATED
    assert act("secure", HostWorld(names={HOST})) is Delivery.DEFER


@pytest.mark.parametrize(("pattern", "name", "matches"), [
    ("hostname", HOST, True),
    ("hostname", NEXTHOP, False),
    ("nexthop", NEXTHOP, True),
    ("nexthop", "mx.example.org", False),
    ("dot-nexthop", "mx.example.org", True),
    ("dot-nexthop", "a.b.example.org", True),
    ("dot-nexthop", NEXTHOP, False),
    (".example.com", "mx.example.com", True),
    (".example.com", "example.com", False),
    (".example.com", "badexample.com", False),
    ("example.com", "example.com", True),
    ("example.com", "mx.example.com", False),
    ("Example.COM", "example.com", True),
    ("example.com", "EXAMPLE.com.", True),
])
def test_match_patterns_and_strategies(pattern: str, name: str, matches: bool) -> None:
    # postconf(5) smtp_tls_verify_cert_match: "example.com" a name, ".example.com"
    # its sub-domains (one or more labels), strategies "hostname", "nexthop",
    # "dot-nexthop"; case ignored.
    expected = Delivery.AUTHENTICATED if matches else Delivery.DEFER
    assert act(f"verify match={pattern}", HostWorld(names={name})) is expected


def test_match_list_is_colon_separated_and_any_pattern_suffices() -> None:
    # postconf(5) smtp_tls_policy_maps, "verify" / "secure": several patterns in
    # match= are separated by colons.
    world = HostWorld(names={"mx.example.com"})
    assert act("secure match=example.net:.example.com", world) is Delivery.AUTHENTICATED
    assert act("secure match=example.net:example.com", world) is Delivery.DEFER


@pytest.mark.parametrize("match", ("hostname", "nexthop", "dot-nexthop", ".example.com",
                                   "hostname:nexthop", "mx1.example.net:.example.org"))
@pytest.mark.parametrize("names", ({HOST}, {NEXTHOP}, {"a.example.org"}, {"b.example.com"}))
def test_verify_and_secure_check_a_host_alike_for_the_same_match_list(
        match: str, names: set[str]) -> None:
    # postconf(5) smtp_tls_policy_maps, "verify" and "secure": the match attribute
    # overrides each level's default; the levels differ in whether the MX host
    # name is trusted, which for one host with a given name is the same check.
    world = HostWorld(names=names)
    assert act(f"verify match={match}", world) is act(f"secure match={match}", world)


def test_bracketed_nexthop_makes_hostname_the_nexthop_and_drops_the_port() -> None:
    # postconf(5) smtp_tls_verify_cert_match, "hostname": with square brackets it is
    # the same as "nexthop"; smtp_tls_policy_maps: the port and the brackets are not
    # used for name verification.
    world = HostWorld(names={"relay.example.com"})
    assert act("verify", world, host="relay.example.com",
               nexthop="[relay.example.com]:587") is Delivery.AUTHENTICATED
    assert act("verify", world, host="elsewhere.example",
               nexthop="[relay.example.com]:587") is Delivery.AUTHENTICATED
    assert act("secure match=nexthop", world, host="elsewhere.example",
               nexthop="[relay.example.com]") is Delivery.AUTHENTICATED


def test_address_literal_nexthop_matches_the_address() -> None:
    # postconf(5) smtp_tls_policy_maps: brackets are not part of the verified name.
    world = HostWorld(names={"192.0.2.1"})
    assert act("verify match=hostname:nexthop", world, host="192.0.2.1",
               nexthop="[192.0.2.1]") is Delivery.AUTHENTICATED


@pytest.mark.parametrize("level", ("verify", "secure"))
def test_tafile_replaces_the_system_store(level: str) -> None:
    # postconf(5) smtp_tls_trust_anchor_file: when set, the CAfile / CApath roots
    # are no longer trusted, only chains to one of the anchors; smtp_tls_policy_maps:
    # "tafile" per destination, which may be given several times.
    system_only = HostWorld(names={HOST, NEXTHOP})
    anchored = HostWorld(pkix_trusted=False, tafiles={"/b.pem"}, names={HOST, NEXTHOP})
    answer = f"{level} match=hostname:nexthop"
    assert act(f"{answer} tafile=/a.pem", system_only) is Delivery.DEFER
    assert act(f"{answer} tafile=/b.pem", anchored) is Delivery.AUTHENTICATED
    assert act(f"{answer} tafile=/a.pem tafile=/b.pem", anchored) is Delivery.AUTHENTICATED
    assert act(answer, anchored) is Delivery.DEFER


def test_tafile_anchors_do_not_expire() -> None:
    # postconf(5) smtp_tls_trust_anchor_file: the trust anchors are not subject to
    # expiration.
    world = HostWorld(pkix_trusted=False, tafiles={"/a.pem"}, expired_anchors={"/a.pem"},
                      names={HOST})
    assert act("verify tafile=/a.pem", world) is Delivery.AUTHENTICATED


@pytest.mark.parametrize("extra", ("ciphers=high", "exclude=aNULL:MD5", "servername=hostname",
                                   "ciphers=medium,exclude=RC4", "protocols=>=TLSv1"))
@pytest.mark.parametrize("level", ("may", "encrypt", "verify match=hostname:nexthop",
                                   "secure match=nexthop"))
def test_cipher_and_sni_attributes_are_ignored(level: str, extra: str) -> None:
    # Model choice (module docstring): ciphers= and exclude= only narrow the handshake
    # (postconf(5) smtp_tls_policy_maps) and the world's handshake flag is its outcome
    # under them; servername= only picks the certificate shown.  protocols=>=TLSv1 is
    # the default (postconf(5) smtp_tls_mandatory_protocols).
    for world in (GOOD, *DEGRADED, attrs.evolve(GOOD, versions={"TLSv1.2"})):
        assert act(f"{level} {extra}", world) is act(level, world)


@pytest.mark.parametrize(("spec", "versions"), [
    ("", PROTOCOLS),
    (">=TLSv1", PROTOCOLS[2:]),
    (">=TLSv1.2", ("TLSv1.2", "TLSv1.3")),
    (">=TLSv1.1:<=TLSv1.2", ("TLSv1.1", "TLSv1.2")),
    ("<=TLSv1.2", PROTOCOLS[:5]),
    (">=0x0303", ("TLSv1.2", "TLSv1.3")),
    (">=TLSv1.2:<=0304", ("TLSv1.2", "TLSv1.3")),
    ("!SSLv2:!SSLv3", PROTOCOLS[2:]),
    ("!SSLv2:!SSLv3:!TLSv1:!TLSv1.1", ("TLSv1.2", "TLSv1.3")),
    ("!SSLv2:!SSLv3:!TLSv1.1", ("TLSv1",)),
    ("!SSLv2:!SSLv3:!TLSv1.3", ("TLSv1", "TLSv1.1", "TLSv1.2")),
    ("TLSv1.2:TLSv1.3", ("TLSv1.2", "TLSv1.3")),
    ("tlsv1.3", ("TLSv1.3",)),
    (">=TLSv1.3:<=TLSv1.2", ()),
])
def test_protocols_attribute(spec: str, versions: tuple[str, ...]) -> None:
    # postconf(5) smtp_tls_mandatory_protocols: >= and <= bounds (names or hex
    # numbers), "!" exclusions where disabling a version disables every version
    # above it, names to include; an empty value allows every protocol.
    assert postfix_protocols(spec) == frozenset(versions)


def test_protocols_decide_the_handshake() -> None:
    # postconf(5) smtp_tls_policy_maps: "protocols" overrides the protocol settings
    # at may and at encrypt and higher; smtp_tls_mandatory_protocols: default >=TLSv1.
    old = attrs.evolve(GOOD, versions={"TLSv1"})
    modern = attrs.evolve(GOOD, versions={"TLSv1.3"})
    ssl_only = attrs.evolve(GOOD, versions={"SSLv3"})
    assert act("encrypt", old) is Delivery.ENCRYPTED
    assert act("encrypt protocols=>=TLSv1.2", old) is Delivery.DEFER
    assert act("may protocols=>=TLSv1.2", old) is Delivery.PLAINTEXT
    assert act("verify protocols=>=TLSv1.2", modern) is Delivery.AUTHENTICATED
    assert act("verify protocols=<=TLSv1.2", modern) is Delivery.DEFER
    assert act("encrypt", ssl_only) is Delivery.DEFER
    assert act("encrypt protocols=", ssl_only) is Delivery.ENCRYPTED
    assert act("may protocols=!SSLv2:!SSLv3:!TLSv1.1", attrs.evolve(
        GOOD, versions={"TLSv1.2"})) is Delivery.PLAINTEXT


# ------------------------------------------------------------------ DANE


@pytest.mark.parametrize("level", ("dane", "dane-only"))
def test_dane_ee_match_authenticates_without_name_or_date_checks(level: str) -> None:
    # TLS_README "DANE TLS authentication": with a DANE-EE record no name or
    # expiration checks are applied (RFC 7672 section 3.1.1).
    world = dane_world(TlsaMatch.EE, names={"other.example"}, in_date=False,
                       pkix_trusted=False)
    assert act(level, world) is Delivery.AUTHENTICATED


@pytest.mark.parametrize("level", ("dane", "dane-only"))
def test_dane_ta_match_checks_names_and_dates(level: str) -> None:
    # RFC 7672 section 3.2.3: with a DANE-TA record the peer name is matched against
    # the MX host's names (the TLSA base domain), not the next-hop domain.
    assert act(level, dane_world(TlsaMatch.TA)) is Delivery.AUTHENTICATED
    assert act(level, dane_world(TlsaMatch.TA, names={NEXTHOP})) is Delivery.DEFER
    assert act(level, dane_world(TlsaMatch.TA, names={"other.example"})) is Delivery.DEFER
    assert act(level, dane_world(TlsaMatch.TA, in_date=False)) is Delivery.DEFER


@pytest.mark.parametrize("level", ("dane", "dane-only"))
@pytest.mark.parametrize("world", (dane_world(TlsaMatch.NONE),
                                   dane_world(TlsaMatch.EE, starttls=False),
                                   dane_world(TlsaMatch.EE, handshake=False)))
def test_dane_with_usable_records_never_falls_back(level: str, world: HostWorld) -> None:
    # TLS_README "DANE TLS authentication": when DANE authentication fails there is
    # no fallback to unauthenticated or plaintext delivery; RFC 7672 section 2.2:
    # usable TLSA records mean TLS is required.
    assert act(level, world) is Delivery.DEFER


def test_dane_with_unusable_records_is_encrypt() -> None:
    # postconf(5) smtp_tls_policy_maps, "dane": TLSA records found, none usable ->
    # effective level encrypt.
    for world in (GOOD, *DEGRADED):
        unusable = attrs.evolve(world, dane=Dane.U)
        assert act("dane", unusable) is act("encrypt", world)


def test_dane_without_records_is_may() -> None:
    # postconf(5) smtp_tls_policy_maps, "dane": no TLSA records -> effective level may.
    for world in (GOOD, *DEGRADED):
        assert act("dane", world) is act("may", world)


def test_dane_defers_when_the_tlsa_lookup_fails() -> None:
    # RFC 7672 section 2.2: a failed or bogus TLSA lookup means the server is not
    # used (no downgrade to non-DANE delivery).
    for world in (GOOD, *DEGRADED):
        failed = attrs.evolve(world, dane=Dane.X)
        assert act("dane", failed) is Delivery.DEFER
        assert act("dane-only", failed) is Delivery.DEFER


@pytest.mark.parametrize("state", (Dane.U, Dane.N, Dane.X))
def test_dane_only_defers_without_usable_records(state: Dane) -> None:
    # postconf(5) smtp_tls_security_level, "dane-only": no fallback to may or encrypt
    # when TLSA records are missing or unusable.
    assert act("dane-only", HostWorld(names={HOST}, dane=state)) is Delivery.DEFER


def test_dane_with_an_insecure_mx_rrset() -> None:
    # postconf(5) smtp_tls_dane_insecure_mx_policy: "may" ignores the TLSA records,
    # "encrypt" only requires TLS, "dane" (the default) uses them as with a secure MX;
    # dane-only needs a secure MX (TLS_README "DANE TLS authentication").
    ee = dane_world(TlsaMatch.EE, mx_secure=False)
    mismatch = dane_world(TlsaMatch.NONE, mx_secure=False)
    assert act("dane", ee) is Delivery.AUTHENTICATED
    assert act("dane", mismatch) is Delivery.DEFER
    assert act("dane", mismatch, insecure_mx_policy="encrypt") is Delivery.ENCRYPTED
    assert act("dane", mismatch, insecure_mx_policy="may") is Delivery.ENCRYPTED
    no_tls = dane_world(TlsaMatch.EE, mx_secure=False, starttls=False)
    assert act("dane", no_tls, insecure_mx_policy="may") is Delivery.PLAINTEXT
    assert act("dane", no_tls, insecure_mx_policy="encrypt") is Delivery.DEFER
    assert act("dane-only", ee) is Delivery.DEFER
    failed = HostWorld(dane=Dane.X, mx_secure=False)
    assert act("dane", failed, insecure_mx_policy="may") is Delivery.ENCRYPTED


# --------------------------------------------------------------- answers


def test_parse_answer_reads_attributes_in_order() -> None:
    # postconf(5) smtp_tls_policy_maps: a level, then name=value attributes separated
    # by white space or commas.
    parsed = parse_answer("secure match=a.example:.b.example, tafile=/x.pem tafile=/y.pem")
    assert parsed.level == "secure"
    assert parsed.match == ("a.example", ".b.example")
    assert parsed.values("tafile") == ("/x.pem", "/y.pem")


@pytest.mark.parametrize("bad", ("", "tls", "may bogus", "verify match", "fingerprint"))
def test_unknown_or_unmodelled_answers_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        act(bad, GOOD)


# ------------------------------------------------------------- tlspolicy


def decision(tls: str, verify: str = "no", *, fallback: bool = True, ca: str | None = None,
             destination: Destination | None = None, dane: bool = False) -> Decision:
    ca_line = f'tls_ca = "{ca}"' if ca is not None else ""
    config = loads_toml(f"""
[global]
tls = "{tls}"
tls_verify = "{verify}"
tls_ifavailable_fallback = {str(fallback).lower()}
use_dane = {str(dane).lower()}
{ca_line}
""")
    return Resolver(config).resolve(NEXTHOP, mx_host=HOST, destination=destination)


EE_RECORD = TlsaRecord.parse("3 1 1 " + "ab" * 32)
TA_RECORD = TlsaRecord.parse("2 0 1 " + "cd" * 32)


def test_tlspolicy_tls_no_is_plaintext() -> None:
    for world in (GOOD, *DEGRADED):
        assert tlspolicy_action(decision("no"), world) is Delivery.PLAINTEXT


def test_tlspolicy_ifavailable_falls_back_only_when_allowed() -> None:
    on, off = decision("ifavailable"), decision("ifavailable", fallback=False)
    assert tlspolicy_action(on, GOOD) is Delivery.ENCRYPTED
    assert tlspolicy_action(on, UNTRUSTED) is Delivery.ENCRYPTED
    assert tlspolicy_action(on, NO_STARTTLS) is Delivery.PLAINTEXT
    assert tlspolicy_action(on, HANDSHAKE_FAILS) is Delivery.PLAINTEXT
    assert tlspolicy_action(off, NO_STARTTLS) is Delivery.PLAINTEXT
    assert tlspolicy_action(off, HANDSHAKE_FAILS) is Delivery.DEFER


def test_tlspolicy_required_host_authenticates_or_defers() -> None:
    d = decision("required", "host")
    assert tlspolicy_action(d, GOOD) is Delivery.AUTHENTICATED
    assert tlspolicy_action(d, HostWorld(names={HOST})) is Delivery.AUTHENTICATED
    assert tlspolicy_action(d, HostWorld(names={NEXTHOP})) is Delivery.AUTHENTICATED
    for world in DEGRADED:
        assert tlspolicy_action(d, world) is Delivery.DEFER


def test_tlspolicy_ca_checks_the_chain_only_and_is_not_authentication() -> None:
    d = decision("required", "ca")
    assert tlspolicy_action(d, NAMELESS) is Delivery.ENCRYPTED
    assert tlspolicy_action(d, UNTRUSTED) is Delivery.DEFER
    assert tlspolicy_action(d, EXPIRED) is Delivery.DEFER


def test_tlspolicy_tls_ca_replaces_the_system_store() -> None:
    d = decision("required", "host", ca="/etc/ssl/a.pem")
    assert tlspolicy_action(d, GOOD) is Delivery.DEFER
    anchored = HostWorld(pkix_trusted=False, tafiles={"/etc/ssl/a.pem"}, names={HOST})
    assert tlspolicy_action(d, anchored) is Delivery.AUTHENTICATED


def test_tlspolicy_fails_an_expired_anchor_of_tls_ca() -> None:
    d = decision("required", "host", ca="/etc/ssl/a.pem")
    world = HostWorld(pkix_trusted=False, tafiles={"/etc/ssl/a.pem"},
                      expired_anchors={"/etc/ssl/a.pem"}, names={HOST})
    assert tlspolicy_action(d, world) is Delivery.DEFER
    assert tlspolicy_action(d, attrs.evolve(world, expired_anchors=set())) is \
        Delivery.AUTHENTICATED


def test_tlspolicy_handshake_needs_a_common_protocol_version() -> None:
    config = loads_toml("""
[global]
tls = "required"
tls_protocols = "TLSv1.2:TLSv1.3"
""")
    d = Resolver(config).resolve(NEXTHOP, mx_host=HOST)
    assert tlspolicy_action(d, attrs.evolve(GOOD, versions={"TLSv1", "TLSv1.1"})) is \
        Delivery.DEFER
    assert tlspolicy_action(d, attrs.evolve(GOOD, versions={"TLSv1.2"})) is Delivery.ENCRYPTED


def test_tlspolicy_optional_delivers_with_a_bad_certificate() -> None:
    d = decision("required", "optional")
    for world in (UNTRUSTED, EXPIRED, NAMELESS):
        assert tlspolicy_action(d, world) is Delivery.ENCRYPTED


def _tlsa(*records: TlsaRecord, status: TlsaLookupStatus = TlsaLookupStatus.RECORDS
          ) -> Destination:
    return Destination(tlsa=TlsaLookup(status, records))


def test_tlspolicy_dane_follows_the_decisions_records() -> None:
    ee = decision("ifavailable", dane=True, destination=_tlsa(EE_RECORD))
    ta = decision("ifavailable", dane=True, destination=_tlsa(TA_RECORD))
    lax = dane_world(TlsaMatch.EE, names={"other.example"}, in_date=False)
    assert tlspolicy_action(ee, lax) is Delivery.AUTHENTICATED
    assert tlspolicy_action(ee, dane_world(TlsaMatch.TA)) is Delivery.DEFER
    assert tlspolicy_action(ee, dane_world(TlsaMatch.NONE)) is Delivery.DEFER
    assert tlspolicy_action(ee, dane_world(TlsaMatch.EE, starttls=False)) is Delivery.DEFER
    assert tlspolicy_action(ta, dane_world(TlsaMatch.TA)) is Delivery.AUTHENTICATED
    assert tlspolicy_action(ta, dane_world(TlsaMatch.TA, in_date=False)) is Delivery.DEFER
    assert tlspolicy_action(ta, dane_world(TlsaMatch.TA, names={"x.example"})) is Delivery.DEFER


def test_tlspolicy_failed_tlsa_lookup_defers() -> None:
    d = decision("ifavailable", dane=True, destination=_tlsa(status=TlsaLookupStatus.BOGUS))
    assert tlspolicy_action(d, GOOD) is Delivery.DEFER


# ------------------------------------------------------------------ judges


def test_allowed_when_postfix_defers() -> None:
    assert allowed("encrypt", decision("no"), HOST, NEXTHOP, NO_STARTTLS)


def test_allowed_when_postfix_is_more_secure() -> None:
    assert allowed("may", decision("no"), HOST, NEXTHOP, GOOD)
    assert allowed("verify match=hostname:nexthop", decision("ifavailable"), HOST, NEXTHOP,
                   GOOD)


def test_not_allowed_when_postfix_delivers_where_the_decision_defers() -> None:
    d = decision("ifavailable", fallback=False)
    assert not allowed("may", d, HOST, NEXTHOP, HANDSHAKE_FAILS)


def test_not_allowed_when_postfix_delivers_less_securely() -> None:
    assert not allowed("encrypt", decision("required", "host"), HOST, NEXTHOP, GOOD)
    assert not allowed("may", decision("required"), HOST, NEXTHOP, NO_STARTTLS)


def test_never_weaker_examples() -> None:
    assert not never_weaker("none", "may", HOST, NEXTHOP, GOOD)
    assert never_weaker("none", "may", HOST, NEXTHOP, NO_STARTTLS)
    assert not never_weaker("may", "encrypt", HOST, NEXTHOP, NO_STARTTLS)
    assert not never_weaker("encrypt", "verify", HOST, NEXTHOP, UNTRUSTED)
    assert never_weaker("verify", "encrypt", HOST, NEXTHOP, UNTRUSTED)
    assert not never_weaker("encrypt", "dane", HOST, NEXTHOP, HostWorld(dane=Dane.X))
    assert never_weaker("dane", "encrypt", HOST, NEXTHOP, HostWorld(dane=Dane.N))


def test_secure_and_dane_only_are_not_ordered_by_name() -> None:
    both = dane_world(TlsaMatch.EE, names={NEXTHOP})
    assert never_weaker("secure match=nexthop", "dane-only", HOST, NEXTHOP, both)
    assert never_weaker("dane-only", "secure match=nexthop", HOST, NEXTHOP, both)
    pkix_only = HostWorld(names={NEXTHOP})
    # dane-only refuses a host without DANE: secure delivering there is weaker.
    assert not never_weaker("secure match=nexthop", "dane-only", HOST, NEXTHOP, pkix_only)


ANSWERS = ("none", "may", "encrypt", "dane", "dane-only", "verify", "secure",
           "verify match=hostname:nexthop", "secure match=nexthop:.example.org")
WORLDS = (GOOD, *DEGRADED, HostWorld(dane=Dane.X), HostWorld(dane=Dane.U, names={HOST}),
          dane_world(TlsaMatch.EE), dane_world(TlsaMatch.TA), dane_world(TlsaMatch.NONE))


@pytest.mark.parametrize("answer", ANSWERS)
def test_an_answer_is_never_weaker_than_itself(answer: str) -> None:
    for world in WORLDS:
        assert never_weaker(answer, answer, HOST, NEXTHOP, world)


def test_requirement_is_met_by_every_delivery() -> None:
    # The definition's consistency: what an answer delivers meets its own requirement.
    for answer, world in itertools.product(ANSWERS, WORLDS):
        delivered = act(answer, world)
        required = postfix_requirement(answer, world=world)
        if delivered is not Delivery.DEFER:
            assert required is not None and delivered >= required


# ------------------------------------------------- the measured real-Postfix grid

# docs/postfix-answers.md "Measured against a real Postfix": a real Postfix 3.7
# delivering to seven receivers, for each configuration at the "domain" key.  Each
# row: configuration, the answer the level mapping documents for it ("Mapping"),
# and per receiver what Postfix did, then (after "|") the decision's outcome where
# it differs (the bold cells).  tls: delivered over TLS, plain / plain-late: in
# plaintext, defer.  The model must reproduce Postfix's column, and tlspolicy_action
# the decision's.
RECEIVERS = ("notls", "good", "wrongname", "expired", "selfsigned", "tls13", "refused")
RECEIVER_WORLDS = {
    "notls": HostWorld(starttls=False, names={HOST}),
    "good": HostWorld(names={HOST}),
    "wrongname": HostWorld(names={"wrong.example"}),
    "expired": HostWorld(in_date=False, names={HOST}),
    "selfsigned": HostWorld(pkix_trusted=False, names={HOST}),
    "tls13": HostWorld(versions={"TLSv1.3"}, names={HOST}),
    "refused": HostWorld(handshake=False, names={HOST}),
}
VERIFY = "verify match=hostname:nexthop"
MEASURED = [
    ("no/no", "", "none", "plain plain plain plain plain plain plain"),
    ("ifavailable/no", "", "may", "plain tls tls tls tls tls plain"),
    ("ifavailable/optional", "", "may", "plain tls tls tls tls tls plain"),
    ("ifavailable/ca", "", VERIFY,
     "defer tls defer defer defer tls defer | plain tls tls defer defer tls plain"),
    ("ifavailable/host", "", VERIFY,
     "defer tls defer defer defer tls defer | plain tls defer defer defer tls plain"),
    ("ifavailable/no fb=off", "", "encrypt",
     "defer tls tls tls tls tls defer | plain tls tls tls tls tls defer"),
    ("ifavailable/optional fb=off", "", "encrypt",
     "defer tls tls tls tls tls defer | plain tls tls tls tls tls defer"),
    ("ifavailable/ca fb=off", "", VERIFY,
     "defer tls defer defer defer tls defer | plain tls tls defer defer tls defer"),
    ("ifavailable/host fb=off", "", VERIFY,
     "defer tls defer defer defer tls defer | plain tls defer defer defer tls defer"),
    ("required/no", "", "encrypt", "defer tls tls tls tls tls defer"),
    ("required/optional", "", "encrypt", "defer tls tls tls tls tls defer"),
    ("required/ca", "", VERIFY,
     "defer tls defer defer defer tls defer | defer tls tls defer defer tls defer"),
    ("required/host", "", VERIFY, "defer tls defer defer defer tls defer"),
    ("ifavailable/no", "+ALL:-TLSv1.3", "may protocols=>=TLSv1:<=TLSv1.2",
     "plain tls tls tls tls plain-late plain"),
    ("ifavailable/no fb=off", "+ALL:-TLSv1.3", "encrypt protocols=>=TLSv1:<=TLSv1.2",
     "defer tls tls tls tls defer defer | plain tls tls tls tls defer defer"),
    ("required/host", "+ALL:-TLSv1.3", f"{VERIFY} protocols=>=TLSv1:<=TLSv1.2",
     "defer tls defer defer defer defer defer"),
    ("required/no", "-ALL:+TLSv1.3", "encrypt protocols=>=TLSv1.3",
     "defer tls tls tls tls tls defer"),
    ("required/no", "+ALL:-SSLv2:-SSLv3:-TLSv1.0:-TLSv1.1", "encrypt protocols=>=TLSv1.2",
     "defer tls tls tls tls tls defer"),
    ("required/no", "-ALL:+TLSv1.2", "encrypt protocols=>=TLSv1.2:<=TLSv1.2",
     "defer tls tls tls tls defer defer"),
    ("ifavailable/no", "+ALL:-TLSv1.2", "may protocols=>=TLSv1.3",
     "plain tls tls tls tls tls plain"),
]
_CELLS = {"plain": {Delivery.PLAINTEXT}, "plain-late": {Delivery.PLAINTEXT},
          "defer": {Delivery.DEFER}, "tls": {Delivery.ENCRYPTED, Delivery.AUTHENTICATED}}


def _measured_decision(policy: str, protocols: str) -> Decision:
    levels, _sep, flags = policy.partition(" ")
    tls, verify = levels.split("/")
    fallback = "fb=off" not in flags
    line = f'tls_protocols = "{protocols}"' if protocols else ""
    config = loads_toml(f"""
[global]
tls = "{tls}"
tls_verify = "{verify}"
tls_ifavailable_fallback = {str(fallback).lower()}
{line}
""")
    return Resolver(config).resolve(NEXTHOP, mx_host=HOST)


@pytest.mark.parametrize(("policy", "protocols", "answer", "cells"), MEASURED)
def test_the_model_reproduces_the_measured_grid(policy: str, protocols: str, answer: str,
                                                cells: str) -> None:
    postfix_cells, _sep, decision_cells = cells.partition(" | ")
    measured = dict(zip(RECEIVERS, postfix_cells.split(), strict=True))
    decided = dict(zip(RECEIVERS, (decision_cells or postfix_cells).split(), strict=True))
    d = _measured_decision(policy, protocols)
    for receiver, world in RECEIVER_WORLDS.items():
        assert act(answer, world) in _CELLS[measured[receiver]], receiver
        assert tlspolicy_action(d, world) in _CELLS[decided[receiver]], receiver
        assert allowed(answer, d, HOST, NEXTHOP, world), receiver
