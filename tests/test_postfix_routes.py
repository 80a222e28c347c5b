"""Next-hop keys from transport routes, protocol forms by Postfix version, loss codes."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tlspolicy import Resolver, Tls
from tlspolicy.cli.serve_inputs import postconf_version
from tlspolicy.errors import ConfigError
from tlspolicy.formats.loader import load_config
from tlspolicy.formats.postfix import load_transport_table
from tlspolicy.options import OPTION_SPECS, TlsProtocols, TlsVerify
from tlspolicy.postfix.levels import PostfixLevel, PostfixMappingError, PostfixPolicy
from tlspolicy.postfix.lookup import PolicyLookup, parse_postfix_version
from tlspolicy.postfix.mapping import behaviour_notes, map_values
from tlspolicy.postfix.transport import (
    NextHopConflictError,
    TransportTableError,
    parse_transport_table,
)


def values(**given: object) -> dict[str, object]:
    out = {name: spec.default for name, spec in OPTION_SPECS.items()}
    out.update(given)
    return out


def codes(warnings: object) -> set[str]:
    return {w.code for w in warnings}  # type: ignore[attr-defined]


# ------------------------------------------------------------------ transport tables


def test_transport_table_forms() -> None:
    text = """\
# comment
example.com      smtp:[relay.example.net]:587
.example.com     smtp:[relay.example.net]:587

other.example    relay:mx.other.example:2525
   # an indented comment
split.example
    smtp:[192.0.2.7]
user@mail.example smtp:[10.0.0.1]:25
local.example    local:
bounce.example   error:5.1.1 gone away
plain.example    smtp:
*                smtp:[smart.example]
"""
    table = parse_transport_table(text, file="transport")
    got = [(r.pattern, r.nexthop, r.line) for r in table.routes]
    assert got == [
        ("example.com", ("relay.example.net", 587, True), 2),
        (".example.com", ("relay.example.net", 587, True), 3),
        ("other.example", ("mx.other.example", 2525, False), 5),
        ("split.example", ("[192.0.2.7]", None, True), 7),
        ("mail.example", ("[10.0.0.1]", 25, True), 9),
        ("*", ("smart.example", None, True), 13),
    ]
    assert [len(v) for v in table.by_nexthop().values()] == [2, 1, 1, 1, 1]


@pytest.mark.parametrize(("line", "fragment"), [
    ("example.com", "pattern transport:nexthop"),
    ("example.com smtp", "has no ':'"),
    ("example.com smtp:[a.example],[b.example]:99999", "out of range"),
    ("example.com smtp:[a.example]:99999", "out of range"),
    ("exa mple.com smtp:[a.example]", "white space"),
    ("-bad-.example smtp:[a.example]", "pattern"),
])
def test_transport_table_errors_are_located(line: str, fragment: str) -> None:
    with pytest.raises(TransportTableError) as info:
        parse_transport_table(f"# first\n{line}\n", file="/etc/postfix/transport")
    assert info.value.location.file == "/etc/postfix/transport"
    assert info.value.location.line == 2
    assert fragment in str(info.value)


def test_unreadable_transport_table(tmp_path: Path) -> None:
    with pytest.raises(TransportTableError) as info:
        load_transport_table(tmp_path / "missing")
    assert "missing" in str(info.value)


def test_a_transport_table_that_is_no_regular_file_is_a_located_error(tmp_path: Path) -> None:
    """A FIFO would hang the load and /dev/zero fill memory: only regular files are read."""
    fifo = tmp_path / "transport"
    os.mkfifo(fifo)
    with pytest.raises(TransportTableError, match="not a regular file") as info:
        load_transport_table(fifo)
    assert info.value.location.file == str(fifo)
    with pytest.raises(TransportTableError, match="not a regular file"):
        load_transport_table("/dev/zero")


# ------------------------------------------------------------------ next-hop answers


def lookup_for(tmp_path: Path, config: str, transport: str) -> PolicyLookup:
    (tmp_path / "policy.toml").write_text(config)
    (tmp_path / "transport").write_text(transport)
    return PolicyLookup(Resolver(load_config(tmp_path / "policy.toml")),
                        routes=load_transport_table(tmp_path / "transport"),
                        postfix_version=(3, 7, 11))


CONFIG = """\
[global]
tls = "ifavailable"

[[domain]]
name = "a.test"
tls_protocols = "-ALL:+TLSv1.2:+TLSv1.3"

[[domain]]
name = "b.test"
tls = "required"
tls_verify = "host"
tls_protocols = "+ALL:-TLSv1.3"
use_dane = true

[[domain]]
name = "x.sub.test"
tls = "required"

[[domain]]
name = "relay.test"
tls = "no"
"""


def test_nexthop_takes_the_routed_domains_at_their_strictest(tmp_path: Path) -> None:
    lookup = lookup_for(tmp_path, CONFIG, "a.test smtp:[relay.test]:587\n"
                                          "b.test smtp:[relay.test]:587\n")
    # b's tls and verification, the intersection of the protocols; not relay.test's own
    # "tls = no", and b's use_dane does not carry over (DANE comes from the host).
    assert lookup("default", "[relay.test]:587").to_text() == \
        "OK verify match=hostname:nexthop protocols=>=TLSv1.2:<=TLSv1.2"
    notes = codes(lookup.notes("default", "[relay.test]:587"))
    assert {"nexthop-strictest", "nexthop-match", "starttls-5xx"} <= notes
    # The recipient domains themselves keep their own answers.
    assert lookup("default", "a.test").to_text() == "OK may protocols=>=TLSv1.2"
    # Other ports and the bare host are other keys.
    assert lookup("default", "[relay.test]").to_text() == "OK none"


def test_one_routed_domain_is_named_in_the_match_list(tmp_path: Path) -> None:
    lookup = lookup_for(tmp_path, CONFIG, "b.test smtp:[relay.test]:2525\n"
                                          "b.test smtp:[192.0.2.9]:2525\n")
    # The first entry wins in Postfix; tlspolicy answers each next hop it names.
    assert lookup("default", "[relay.test]:2525").to_text() == \
        "OK verify match=b.test:hostname:nexthop protocols=>=TLSv1:<=TLSv1.2"
    # At an address only the name: OpenSSL fails a verification whose match name
    # is an address the certificate does not carry.
    assert lookup("default", "[192.0.2.9]:2525").to_text() == \
        "OK verify match=b.test protocols=>=TLSv1:<=TLSv1.2"
    # ... and that loss is reported, as the documentation promises (issue 21).
    notes = [n for n in lookup.notes("default", "[192.0.2.9]:2525")
             if n.code == "nexthop-match"]
    assert len(notes) == 1 and "b.test" in notes[0].message
    assert "stricter" in notes[0].message
    assert not [n for n in lookup.notes("default", "[relay.test]:2525")
                if n.code == "nexthop-match"]


def test_several_domains_behind_an_address(tmp_path: Path) -> None:
    lookup = lookup_for(tmp_path, CONFIG, "a.test smtp:[192.0.2.9]\n"
                                          "b.test smtp:[192.0.2.9]\n"
                                          "a.test smtp:[192.0.2.10]\n"
                                          "relay.test smtp:[192.0.2.10]\n")
    reply = lookup("default", "[192.0.2.9]")
    assert reply.status.value == "PERM" and "several domains" in reply.text
    assert "nexthop-match" in codes(lookup.notes("default", "[192.0.2.9]"))
    # Without verification no match list is needed.
    assert lookup("default", "[192.0.2.10]").to_text() == "OK may protocols=>=TLSv1.2"


def test_parent_and_catch_all_routes(tmp_path: Path) -> None:
    lookup = lookup_for(tmp_path, CONFIG, ".sub.test smtp:[relay.test]:25\n")
    # x.sub.test is covered by .sub.test and requires TLS.
    assert lookup("default", "[relay.test]:25").to_text() == "OK encrypt"
    lookup = lookup_for(tmp_path, CONFIG, "* smtp:[smart.test]\n")
    assert lookup("default", "[smart.test]").to_text() == \
        "OK verify match=hostname:nexthop protocols=>=TLSv1.2:<=TLSv1.2"


FLOORS = """\
[global]
tls = "ifavailable"

[[floor]]
name = "partner.test"
tls = "required"
tls_verify = "host"
reason = "contract"

[[floor]]
name = "/(^|\\\\.)bank\\\\.test$/"
tls = "required"
reason = "banks"
"""


def test_catch_all_and_parent_routes_carry_the_floors(tmp_path: Path) -> None:
    # No stanza names the floors' domains: a relay carrying every domain still carries
    # the partner's and the banks' mail, which no binding may weaken (SEMANTICS 7).
    lookup = lookup_for(tmp_path, FLOORS, "* smtp:[smart.test]:587\n")
    assert lookup("default", "[smart.test]:587").to_text() == \
        "OK verify match=hostname:nexthop"
    # A parent route covering the exact floor, and one the regex floor may match.
    lookup = lookup_for(tmp_path, FLOORS, ".test smtp:[relay.test]:25\n")
    assert lookup("default", "[relay.test]:25").to_text() == \
        "OK verify match=hostname:nexthop"
    lookup = lookup_for(tmp_path, FLOORS.split("[[floor]]\nname = \"partner")[0]
                        + FLOORS.split("reason = \"contract\"\n")[1],
                        ".test smtp:[relay.test]:25\n")
    assert lookup("default", "[relay.test]:25").to_text() == "OK encrypt"
    # ... but not one whose literal ending shows it matches no name under the route.
    lookup = lookup_for(tmp_path, FLOORS, ".other smtp:[relay.test]:25\n")
    assert lookup("default", "[relay.test]:25").to_text() == "OK may"
    # A route of one exact domain no floor names keeps that domain's answer.
    lookup = lookup_for(tmp_path, FLOORS, "plain.test smtp:[relay.test]:25\n")
    assert lookup("default", "[relay.test]:25").to_text() == "OK may"


def test_unordered_options_that_differ_are_a_load_time_error(tmp_path: Path) -> None:
    config = CONFIG + '\n[[domain]]\nname = "c.test"\ntls_ca = "/etc/ca-c.pem"\n'
    with pytest.raises(NextHopConflictError) as info:
        lookup_for(tmp_path, config, "# routes\na.test smtp:[relay.test]\n"
                                     "c.test smtp:[relay.test]\n")
    error = info.value
    assert error.location.file == str(tmp_path / "transport") and error.location.line == 2
    assert error.location.option == "tls_ca"
    assert "/etc/ca-c.pem" in str(error) and "a.test" in str(error)


def test_disjoint_protocols_are_a_load_time_error(tmp_path: Path) -> None:
    config = CONFIG + '\n[[domain]]\nname = "c.test"\ntls_protocols = "-ALL:+TLSv1.3"\n'
    with pytest.raises(NextHopConflictError, match="no protocol version in common"):
        lookup_for(tmp_path, config, "b.test smtp:[relay.test]\nc.test smtp:[relay.test]\n")


def test_unattributed_next_hops_are_warned_once(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    lookup = lookup_for(tmp_path, CONFIG, "a.test smtp:[relay.test]:587\n")
    with caplog.at_level(logging.WARNING, logger="tlspolicy.postfix.lookup"):
        for _ in range(3):
            assert lookup("default", "[elsewhere.test]:587").to_text() == "OK may"
        assert lookup("default", "elsewhere.test").to_text() == "OK may"
    warned = [r for r in caplog.records if "named by no transport route" in r.getMessage()]
    assert len(warned) == 1 and "[elsewhere.test]:587" in warned[0].getMessage()
    assert "nexthop-unattributed" in codes(lookup.notes("default", "[elsewhere.test]:587"))
    assert "nexthop-unattributed" not in codes(lookup.notes("default", "elsewhere.test"))


# --------------------------------------------------------------- protocols by version


@pytest.mark.parametrize(("spec", "new", "old"), [
    ("+ALL", None, None),
    ("+ALL:-TLSv1.3", ">=TLSv1:<=TLSv1.2", "!SSLv2:!SSLv3:!TLSv1.3"),
    ("-ALL:+TLSv1.2", ">=TLSv1.2:<=TLSv1.2", "!SSLv2:!SSLv3:!TLSv1:!TLSv1.1:!TLSv1.3"),
    ("+ALL:-SSLv2:-SSLv3:-TLSv1.0", ">=TLSv1.1", "!SSLv2:!SSLv3:!TLSv1"),
    ("-ALL:+TLSv1.3", ">=TLSv1.3", "!SSLv2:!SSLv3:!TLSv1:!TLSv1.1:!TLSv1.2"),
    ("-ALL:+SSLv3:+TLSv1.0", ">=TLSv1:<=TLSv1", "!SSLv2:!SSLv3:!TLSv1.1:!TLSv1.2:!TLSv1.3"),
])
def test_protocol_forms_postfix_accepts(spec: str, new: str | None, old: str | None) -> None:
    v = values(tls=Tls.REQUIRED, tls_protocols=TlsProtocols.parse(spec))
    for version, expected in (((3, 7, 11), new), ((3, 6), new), ((3, 5, 9), old)):
        policy, _w = map_values(v, postfix_version=version)
        assert dict(policy.attributes).get("protocols") == expected
        # Never an SSL version as a range bound: Postfix rejects it.
        assert ">=SSL" not in policy.text()


def test_ssl_only_protocols_cannot_be_answered() -> None:
    v = values(tls=Tls.REQUIRED, tls_protocols=TlsProtocols.parse("-ALL:+SSLv3"))
    with pytest.raises(PostfixMappingError):
        map_values(v)


# ---------------------------------------------------------------------- loss codes


def test_ifavailable_without_fallback_is_encrypt() -> None:
    for verify in (TlsVerify.NO, TlsVerify.OPTIONAL):
        policy, warnings = map_values(values(tls=Tls.IFAVAILABLE, tls_verify=verify,
                                             tls_ifavailable_fallback=False))
        assert policy.level is PostfixLevel.ENCRYPT
        assert "fallback-false-encrypt" in codes(warnings)
    policy, warnings = map_values(values(tls=Tls.IFAVAILABLE), fallback_exists=False)
    assert policy.level is PostfixLevel.ENCRYPT and "fallback-false-encrypt" in codes(warnings)
    policy, warnings = map_values(values(tls=Tls.IFAVAILABLE))
    assert policy.level is PostfixLevel.MAY and "fallback-false-encrypt" not in codes(warnings)


def test_behaviour_notes_by_level() -> None:
    assert codes(behaviour_notes(PostfixPolicy(PostfixLevel.MAY))) == \
        {"handshake-fallback-delayed"}
    for level in (PostfixLevel.ENCRYPT, PostfixLevel.VERIFY):
        assert codes(behaviour_notes(PostfixPolicy(level))) == {"starttls-5xx"}
    assert codes(behaviour_notes(PostfixPolicy(PostfixLevel.DANE))) == \
        {"handshake-fallback-delayed", "starttls-5xx"}
    assert behaviour_notes(PostfixPolicy(PostfixLevel.NONE)) == ()


# ------------------------------------------------------------------ the serve options


def test_postfix_version_parsing() -> None:
    assert parse_postfix_version("3.7.11\n") == (3, 7, 11)
    assert parse_postfix_version("3.10") == (3, 10)
    for bad in ("", "3", "3.x", "three"):
        with pytest.raises(ConfigError):
            parse_postfix_version(bad)


def test_postconf_version_reads_postconf(tmp_path: Path) -> None:
    fake = tmp_path / "postconf"
    fake.write_text("#!/bin/sh\n[ \"$1 $2\" = '-h mail_version' ] && echo 3.5.25\n")
    fake.chmod(0o755)
    assert postconf_version(str(fake)) == (3, 5, 25)


def test_serve_refuses_a_bad_version_and_a_bad_transport_table(tmp_path: Path) -> None:
    config = tmp_path / "policy.toml"
    config.write_text(CONFIG)
    base = [sys.executable, "-m", "tlspolicy", "serve", "socketmap", "--listen",
            "127.0.0.1:0", "--config", str(config)]
    result = subprocess.run([*base, "--postfix-version", "latest"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 2 and "not a Postfix version" in result.stderr
    table = tmp_path / "transport"
    table.write_text("a.test smtp:[one.test],[two.test]:99999\n")
    result = subprocess.run([*base, "--postfix-version", "3.7", "--transport-map", str(table)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert f"{table}:1" in result.stderr and "out of range" in result.stderr
    assert "Traceback" not in result.stderr


def test_relayhost_routes_every_domain(tmp_path: Path) -> None:
    from tlspolicy.servers.app import lookup_factory

    config = tmp_path / "policy.toml"
    config.write_text(CONFIG)
    lookup = lookup_factory([str(config)], relayhost="[smart.test]:587",
                            postfix_version=(3, 7))()
    assert lookup("default", "[smart.test]:587").to_text() == \
        "OK verify match=hostname:nexthop protocols=>=TLSv1.2:<=TLSv1.2"
    assert lookup.nexthop("default", "[smart.test]:587") is not None


def test_an_address_literal_next_hop_carries_that_address_own_policy(tmp_path: Path) -> None:
    # Postfix looks up user@[192.0.2.1]'s policy under the key a route to [192.0.2.1]
    # uses: the answer carries the address literal's own floor or stanza too.
    config = ('[global]\ntls = "no"\n[[floor]]\nname = "192.0.2.1"\ntls = "required"\n')
    lookup = lookup_for(tmp_path, config, "example.com smtp:[192.0.2.1]\n")
    assert lookup("default", "[192.0.2.1]").to_text() == "OK encrypt"
    lookup = lookup_for(tmp_path, config.replace("192.0.2.1", "192.0.2.2"),
                        "example.com smtp:[192.0.2.1]\n")
    assert lookup("default", "[192.0.2.1]").to_text() == "OK none"


def test_a_regex_that_matches_no_routed_name_does_not_count(tmp_path: Path) -> None:
    # The floor's literal ending shows it matches nothing under .legacy.example: its
    # protocols do not conflict with the routed stanza's.
    config = ('[[domain]]\nname = "a.legacy.example"\ntls_protocols = "-ALL:+TLSv1.2"\n'
              '[[floor]]\nname = "/(^|\\\\.)modern\\\\.example$/"\n'
              'tls_protocols = "-ALL:+TLSv1.3"\n')
    lookup = lookup_for(tmp_path, config, ".legacy.example smtp:[relay.test]\n")
    assert lookup("default", "[relay.test]").to_text() == "OK none"
