"""Postfix's own routes, read with the real postconf and postmap from a private config dir."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from postfix_support import POSTMAP, find_postfix_binary, requires_postmap
from tlspolicy import Resolver
from tlspolicy.formats.toml import loads_toml
from tlspolicy.postfix.keys import parse_postfix_key
from tlspolicy.postfix.lookup import PolicyLookup
from tlspolicy.postfix.transport import (
    RouteTable,
    catch_all_routes,
    parse_inline_map,
    parse_transport_table,
    split_map_list,
    unwrap_map,
)
from tlspolicy.servers.postfix_routes import (
    RouteLossError,
    read_postfix_routes,
)

pytestmark = [requires_postmap, pytest.mark.timeout(120)]

MASTER = "smtp      unix  -       -       n       -       -       smtp\n"


def _config_dir(tmp_path: Path, main: dict[str, str], master_extra: str = "",
                files: dict[str, str] | None = None, indexed: tuple[str, ...] = ()) -> Path:
    conf = tmp_path / "conf"
    conf.mkdir()
    for name, text in (files or {}).items():
        (conf / name).write_text(text)
    (conf / "main.cf").write_text("compatibility_level = 3.6\n" + "".join(
        f"{k} = {v.replace('{conf}', str(conf))}\n" for k, v in main.items()))
    (conf / "master.cf").write_text(MASTER + master_extra.replace("{conf}", str(conf)))
    assert POSTMAP is not None
    for name in indexed:
        subprocess.run([POSTMAP, "-c", str(conf), f"hash:{conf / name}"], check=True,
                       timeout=30)
    return conf


def _routes(table: RouteTable) -> set[tuple[str, str]]:
    return {(r.pattern, r.nexthop_text) for r in table.routes}


# ------------------------------------------------------------------ pure helpers


def test_map_lists_inline_and_unwrapping() -> None:
    text = "proxy:hash:/a, inline:{ {u@x = smtp:[ix]:25, [iy]}, y=relay:[iy] } texthash:/b"
    assert split_map_list(text) == [
        "proxy:hash:/a", "inline:{ {u@x = smtp:[ix]:25, [iy]}, y=relay:[iy] }", "texthash:/b"]
    assert parse_inline_map("{ {u@x = smtp:[ix]:25, [iy]}, y=relay:[iy] }") == [
        ("u@x", "smtp:[ix]:25, [iy]"), ("y", "relay:[iy]")]
    assert unwrap_map("proxy:unionmap:{hash:/a, proxy:texthash:/b}") == ["hash:/a",
                                                                         "texthash:/b"]
    with pytest.raises(ValueError, match="key=value"):
        parse_inline_map("{ novalue }")


def test_next_hop_lists_are_routes_element_by_element() -> None:
    table = parse_transport_table("a.test smtp:[one.test]:25, [two.test] three.test\n"
                                  "u@b.test smtp:[one.test]:25\n")
    assert [(r.pattern, r.nexthop_text, r.recipient) for r in table.routes] == [
        ("a.test", "[one.test]:25", False), ("a.test", "[two.test]", False),
        ("a.test", "three.test", False), ("b.test", "[one.test]:25", True)]
    assert table.exact_domains() == frozenset({"a.test"})
    relay = catch_all_routes("[r1.test]:587, [r2.test]", file="main.cf relayhost")
    assert [(r.pattern, r.nexthop_text, r.location()) for r in relay.routes] == [
        ("*", "[r1.test]:587", "main.cf relayhost"), ("*", "[r2.test]", "main.cf relayhost")]
    assert catch_all_routes("smtp", file="x", transport_form=True) == RouteTable()
    assert catch_all_routes("DUNNO", file="x") == RouteTable()
    assert catch_all_routes("error:5.1.1 gone", file="x", transport_form=True) == RouteTable()


def test_a_catch_all_does_not_carry_domains_routed_elsewhere() -> None:
    # Disjoint protocol sets: combining them at one next hop is a load-time error, so the
    # relayhost key must not carry the domain its own transport entry sends elsewhere.
    config = loads_toml('[global]\ntls = "ifavailable"\n\n[[domain]]\nname = "a.test"\n'
                         'tls_protocols = "-ALL:+TLSv1.3"\n\n[[domain]]\nname = "b.test"\n'
                         'tls = "required"\ntls_protocols = "-ALL:+TLSv1.2"\n')
    routes = parse_transport_table("a.test smtp:[a-hop.test]\n") + catch_all_routes(
        "[relay.test]:587", file="main.cf relayhost")
    lookup = PolicyLookup(Resolver(config), routes=routes, postfix_version=(3, 7))
    assert lookup("default", "[relay.test]:587").to_text() == \
        "OK encrypt protocols=>=TLSv1.2:<=TLSv1.2"
    assert lookup("default", "[a-hop.test]").to_text().startswith("OK may")
    # A fallback relay takes any mail, whatever routes it first: both, which conflict.
    fallback = routes + catch_all_routes("[fb.test]", file="main.cf smtp_fallback_relay",
                                         fallback=True)
    with pytest.raises(Exception, match="no protocol version in common"):
        PolicyLookup(Resolver(config), routes=fallback, postfix_version=(3, 7))


# ------------------------------------------------------------------ the reader


def test_every_route_source(tmp_path: Path) -> None:
    conf = _config_dir(tmp_path, {
        "transport_maps": "proxy:hash:{conf}/transport, unionmap:{texthash:{conf}/text, "
                          "inline:{ {u@c.test = smtp:[c-hop.test]:2525} }}",
        "relayhost": "[relay1.test]:587, [relay2.test]",
        "sender_dependent_relayhost_maps": "hash:{conf}/senders, static:[st.test]",
        "sender_dependent_default_transport_maps": "inline:{ x@s.test=smtp:[sdt.test]:26 }",
        "default_transport": "smtp:[dt.test]",
        "relay_transport": "relay",
        "smtp_fallback_relay": "[fb.test]",
    }, master_extra="out  unix  -  -  n  -  -  smtp\n  -o relayhost=[master.test]:25\n"
                    "  -o smtp_fallback_relay=$myhostname\n", files={
        "transport": "a.test smtp:[a-hop.test]:25, [a-hop2.test]\n.sub.test relay:sub-hop.test\n",
        "text": "b.test  smtp:[b-hop.test]\nlocal.test local:\n",
        "senders": "s@s.test [sender-relay.test]:587\n",
    }, indexed=("transport", "senders"))
    found = read_postfix_routes(str(conf))
    myhostname = subprocess.run(
        [find_postfix_binary("postconf") or "postconf", "-c", str(conf), "-h", "myhostname"],
        capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    assert _routes(found.routes) == {
        ("a.test", "[a-hop.test]:25"), ("a.test", "[a-hop2.test]"),
        (".sub.test", "sub-hop.test"), ("b.test", "[b-hop.test]"), ("c.test", "[c-hop.test]:2525"),
        ("*", "[relay1.test]:587"), ("*", "[relay2.test]"), ("*", "[sender-relay.test]:587"),
        ("*", "[st.test]"),
        ("*", "[sdt.test]:26"), ("*", "[dt.test]"), ("*", "[fb.test]"),
        ("*", "[master.test]:25"), ("*", myhostname)}
    assert found.losses == ()
    assert str(conf / "transport.db") in found.files and str(conf / "text") in found.files
    by_hop = {r.nexthop_text: r for r in found.routes.routes}
    assert by_hop["[c-hop.test]:2525"].recipient
    assert by_hop["[fb.test]"].fallback and by_hop[myhostname].fallback
    assert by_hop["[master.test]:25"].file == "master.cf out/unix -o relayhost"


def test_indexed_tables_are_read_as_postfix_reads_them(tmp_path: Path) -> None:
    conf = _config_dir(tmp_path, {"transport_maps": "hash:{conf}/transport"},
                       files={"transport": "a.test smtp:[old.test]\n"}, indexed=("transport",))
    # The source changed but postmap was not run: Postfix still routes by the .db.
    (conf / "transport").write_text("a.test smtp:[new.test]\n")
    assert _routes(read_postfix_routes(str(conf)).routes) == {("a.test", "[old.test]")}


def test_a_table_that_cannot_be_listed_is_a_loss(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                 ) -> None:
    conf = _config_dir(tmp_path, {"transport_maps": "regexp:{conf}/transport.re, "
                                                    "texthash:{conf}/text",
                                  "relayhost": "[relay.test]"},
                       files={"transport.re": "/x/ smtp:[re.test]\n",
                              "text": "b.test smtp:[b-hop.test]\n"})
    with pytest.raises(RouteLossError) as info:
        read_postfix_routes(str(conf))
    message = str(info.value)
    assert f"main.cf transport_maps: table regexp:{conf}/transport.re" in message
    assert "--accept-route-loss transport_maps" in message
    accepted = read_postfix_routes(str(conf), accept_loss=("transport_maps",))
    assert _routes(accepted.routes) == {("b.test", "[b-hop.test]"), ("*", "[relay.test]")}
    assert [loss.parameter for loss in accepted.losses] == ["transport_maps"]
    assert read_postfix_routes(str(conf), accept_loss=("all",)).loss_summary() == \
        accepted.loss_summary()
    with pytest.raises(RouteLossError):
        read_postfix_routes(str(conf), accept_loss=("relayhost",))
    # A missing texthash file, a bad entry: losses too, each naming its table.
    (conf / "text").unlink()
    with pytest.raises(RouteLossError, match=r"texthash:.*/text: .*No such file"):
        read_postfix_routes(str(conf), accept_loss=("relayhost",))

    # Unattributed keys under an accepted loss: logged once per key, counted by reason.
    config = loads_toml('[global]\ntls = "required"\n')
    reasons: list[str] = []
    lookup = PolicyLookup(Resolver(config), routes=accepted.routes, postfix_version=(3, 7),
                          route_losses=accepted.loss_summary(), on_unattributed=reasons.append)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            lookup("default", "[x.test]:25")
            lookup.note_unattributed("default", "[x.test]:25", parse_postfix_key("[x.test]:25"))
        lookup("default", "[192.0.2.1]")
        lookup("default", "[b-hop.test]")
    assert reasons == ["route-loss-accepted", "ip-literal"]
    logged = [r.getMessage() for r in caplog.records if "[x.test]:25" in r.getMessage()]
    assert len(logged) == 1 and "loss accepted" in logged[0] and "regexp:" in logged[0]


def test_serve_refuses_to_start_on_an_unlistable_route_table(tmp_path: Path) -> None:
    conf = _config_dir(tmp_path, {"transport_maps": "pcre:{conf}/transport.re"},
                       files={"transport.re": "/x/ smtp:[re.test]\n"})
    policy = tmp_path / "policy.toml"
    policy.write_text('[global]\ntls = "required"\n')
    base = [sys.executable, "-m", "tlspolicy", "serve", "socketmap", "--listen",
            "127.0.0.1:0", "--config", str(policy), "--postfix-version", "3.7",
            "--no-postfix-checks", "--postfix-config-dir", str(conf)]
    result = subprocess.run(base, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert f"main.cf transport_maps: table pcre:{conf}/transport.re" in result.stderr
    assert "--accept-route-loss transport_maps" in result.stderr
    assert "Traceback" not in result.stderr
    check = subprocess.run([*base, "--check"], capture_output=True, text=True, timeout=60,
                           check=False)
    assert check.returncode == 1
    assert "FAIL  routes from Postfix" in check.stdout and "pcre:" in check.stdout
    accepted = subprocess.run([*base, "--check", "--accept-route-loss", "transport_maps"],
                              capture_output=True, text=True, timeout=60, check=False)
    assert "warn  routes from Postfix" in accepted.stdout and "loss accepted" in accepted.stdout


def test_whole_domain_entries_without_a_next_hop_leave_the_catch_all() -> None:
    table = parse_transport_table("a.test smtp:\nb.test local:\nc.test :\nu@d.test smtp:\n"
                                  ".e.test smtp:\n")
    assert table.routes == () and table.direct == frozenset({"a.test", "b.test"})
    assert (table + catch_all_routes("[r.test]", file="x")).exact_domains() == \
        frozenset({"a.test", "b.test"})


def test_an_accepted_loss_is_logged_once_per_key_and_counted(tmp_path: Path) -> None:
    pytest.importorskip("prometheus_client")
    from test_metrics import scrape

    conf = _config_dir(tmp_path, {"transport_maps": "regexp:{conf}/transport.re"},
                       files={"transport.re": "/x/ smtp:[re.test]:25\n"})
    policy = tmp_path / "policy.toml"
    policy.write_text('[global]\ntls = "required"\n')
    err = tmp_path / "stderr"
    command = [sys.executable, "-m", "tlspolicy", "serve", "socketmap", "--listen",
               "127.0.0.1:0", "--config", str(policy), "--postfix-version", "3.7",
               "--no-postfix-checks", "--postfix-config-dir", str(conf),
               "--accept-route-loss", "transport_maps", "--metrics-listen", "127.0.0.1:0"]
    with err.open("wb") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        assert process.stdout is not None
        metrics = process.stdout.readline().strip().rpartition("http://")[2]
        metrics = metrics.removesuffix("/metrics")
        listening = process.stdout.readline()
        assert listening.startswith("listening on "), (listening, err.read_text())
        port = int(listening.strip().rpartition(":")[2])
        import test_daemon_faults

        client = test_daemon_faults.Client(port, timeout=30.0)
        try:
            for _ in range(3):
                assert client.ask("[re.test]:25").startswith("OK encrypt")
            assert client.ask("[192.0.2.1]").startswith("OK encrypt")
        finally:
            client.close()
        samples = scrape(metrics)
        name = "tlspolicy_socketmap_unattributed_nexthops_total"
        assert samples[(name, (("reason", "route-loss-accepted"),))] == 1
        assert samples[(name, (("reason", "ip-literal"),))] == 1
    finally:
        process.terminate()
        process.wait(20)
    log = err.read_text()
    assert log.count("'[re.test]:25'") == 1, log
    assert "loss accepted (--accept-route-loss transport_maps)" in log
    assert "Traceback" not in log


def test_drop_in_mode_reads_no_routes(tmp_path: Path) -> None:
    from tlspolicy.servers.app import lookup_factory
    from tlspolicy.servers.app_inputs import ServeMode

    def unreadable() -> Any:
        raise AssertionError("drop-in mode must not read routes")

    for files in ([], [tmp_path / "only-discovery.toml"]):
        for path in files:
            path.write_text("[discovery]\nenabled = true\n")
        mode = ServeMode(drop_in_allowed=True, table_given=bool(files))
        lookup = lookup_factory([str(p) for p in files], postfix_version=(3, 7),
                                mode=mode, route_reader=unreadable)()
        assert mode.drop_in and lookup.routes == RouteTable()
