"""Drop-in mode (SEMANTICS 11, "Drop-in mode"): MTA-STS and DANE alone, NOTFOUND where
neither applies, never less strict than Postfix's own level.

The pure part (:mod:`tlspolicy.postfix.dropin`) row by row; then the real daemon, started
as postfix-mta-sts-resolver's and postfix-tlspol's users would start it (no file, or a file
holding only ``[discovery]``), against the signed DNS lab and the HTTPS policy lab on
loopback, asked over its socket with the map names those peers' main.cf lines use.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tlspolicy.postfix.answers import DiscoveredAnswer
from tlspolicy.postfix.dropin import (
    DROP_IN_CONFIG,
    drop_in,
    own_security_level,
    sends_sts_attributes_for,
)
from tlspolicy.postfix.levels import PostfixLevel, PostfixPolicy
from tlspolicy.scopes.stanzas import sets_no_option

STS_ATTRIBUTES = (("policy_type", "sts"), ("policy_domain", "t.example"),
                  ("policy_ttl", "600"), ("policy_string", "{version: STSv1}"),
                  ("mx_host_pattern", "*.t.example"))


def answer(level: str, rule: str, attributes: tuple[tuple[str, str], ...] = ()
           ) -> DiscoveredAnswer:
    return DiscoveredAnswer(PostfixPolicy(PostfixLevel(level), attributes), rule)


def sent(result: DiscoveredAnswer) -> str:
    return "NOTFOUND" if result.notfound else result.policy.text()


# ------------------------------------------------------------------ the pure part


def test_drop_in_config_is_mta_sts_and_dane_alone() -> None:
    assert DROP_IN_CONFIG.options.use_mta_sts is True
    assert DROP_IN_CONFIG.options.use_dane is True
    assert not sets_no_option(DROP_IN_CONFIG)
    assert DROP_IN_CONFIG.domains == () and DROP_IN_CONFIG.floors == ()


@pytest.mark.parametrize("own", [None, "none", "may", "encrypt", "dane", "verify", "secure",
                                 "fingerprint"])
@pytest.mark.parametrize("level", ["none", "may", "encrypt", "dane", "dane-only"])
def test_neither_applies_is_notfound(own: str | None, level: str) -> None:
    """Rule (e) without a testing-mode policy: Postfix's own level stands."""
    assert sent(drop_in(answer(level, "e"), own)) == "NOTFOUND"


@pytest.mark.parametrize(("own", "expected"), [
    ("may", "may"), ("encrypt", "encrypt"),
    (None, "NOTFOUND"), ("none", "NOTFOUND"), ("dane", "NOTFOUND"), ("dane-only", "NOTFOUND"),
    ("verify", "NOTFOUND"), ("secure", "NOTFOUND"), ("fingerprint", "NOTFOUND")])
def test_testing_mode_renders_postfix_own_level_never_lower(own: str | None,
                                                             expected: str) -> None:
    """A testing-mode policy with its attributes: Postfix's own level carries them where
    that level is may or encrypt; never a lower level than Postfix's own."""
    result = drop_in(answer("may", "e", STS_ATTRIBUTES), own)
    if expected == "NOTFOUND":
        assert result.notfound
    else:
        assert result.policy == PostfixPolicy(PostfixLevel(expected), STS_ATTRIBUTES)


@pytest.mark.parametrize(("own", "expected"), [
    ("none", "dane"), ("may", "dane"), ("dane", "dane"),
    ("encrypt", "dane-only"), (None, "dane-only"), ("verify", "dane-only"),
    ("secure", "dane-only"), ("fingerprint", "dane-only"), ("dane-only", "NOTFOUND")])
@pytest.mark.parametrize("rule", ["b", "c"])
def test_dane_never_below_postfix_own_level(rule: str, own: str | None,
                                            expected: str) -> None:
    """dane lets Postfix use a host without TLSA records at may: dane-only where Postfix's
    own level asks more of such a host, or is not known."""
    assert sent(drop_in(answer("dane", rule), own)) == expected


@pytest.mark.parametrize(("own", "expected"), [
    (None, "secure"), ("none", "secure"), ("may", "secure"), ("encrypt", "secure"),
    ("dane", "secure"), ("verify", "NOTFOUND"), ("secure", "NOTFOUND"),
    ("fingerprint", "NOTFOUND"), ("dane-only", "NOTFOUND")])
@pytest.mark.parametrize("rule", ["a", "d"])
def test_enforce_policy_answer_against_postfix_own_level(rule: str, own: str | None,
                                                         expected: str) -> None:
    result = drop_in(answer("secure", rule, (("match", ".t.example"),)), own)
    assert sent(result).split(" ")[0] == expected


@pytest.mark.parametrize("own", [None, "none", "may", "encrypt", "dane", "verify"])
def test_dane_only_stays(own: str | None) -> None:
    assert sent(drop_in(answer("dane-only", "b"), own)) == "dane-only"


@pytest.mark.parametrize(("settings", "services", "expected"), [
    ({"smtp_tls_security_level": "may"}, (), "may"),
    ({"smtp_tls_security_level": "Encrypt"}, (), "encrypt"),
    ({"smtp_tls_security_level": "dane-only"}, (), "dane-only"),
    ({"smtp_tls_security_level": "bogus"}, (), None),
    ({}, (), None),
    # Empty: the obsolete switches decide (Debian's "No configuration" main.cf).
    ({"smtp_tls_security_level": ""}, (), "none"),
    ({"smtp_tls_security_level": "", "smtp_use_tls": "yes"}, (), "may"),
    ({"smtp_tls_security_level": "", "smtp_enforce_tls": "yes"}, (), "verify"),
    ({"smtp_tls_security_level": "", "smtp_enforce_tls": "yes",
      "smtp_tls_enforce_peername": "no"}, (), "encrypt"),
    # master.cf -o overrides: one level for every smtp(8) service, or not known.
    ({"smtp_tls_security_level": "may", "relay/unix/smtp_tls_security_level": "may"},
     ("smtp/unix", "relay/unix"), "may"),
    ({"smtp_tls_security_level": "may", "relay/unix/smtp_tls_security_level": "encrypt"},
     ("smtp/unix", "relay/unix"), None),
    ({"smtp_tls_security_level": "may", "smtp/unix/smtp_tls_security_level": "encrypt"},
     ("smtp/unix",), "encrypt"),
])
def test_own_security_level(settings: dict[str, str], services: tuple[str, ...],
                            expected: str | None) -> None:
    assert own_security_level(settings, services) == expected


@pytest.mark.parametrize(("map_name", "version_sends", "expected"), [
    ("QUERYwithTLSRPT", True, True), ("querywithtlsrpt", True, True),
    ("QUERYwithTLSRPT", False, False), ("QUERY", True, False), ("query", True, False),
    ("postfix", True, True), ("postfix", False, False), ("default", True, True)])
def test_sts_attributes_by_map_name(map_name: str, version_sends: bool,
                                    expected: bool) -> None:
    """postfix-tlspol's QUERY asks without the attributes; a Postfix before 3.10 never
    gets them, whatever the map name (it would refuse the entry)."""
    assert sends_sts_attributes_for(map_name, version_sends) is expected


# ------------------------------------------------------------------- the daemon

#: A NOTFOUND reply as the socketmap protocol writes it (status, space, no data).
NOTFOUND = "NOTFOUND "


def _daemon_support() -> Any:
    # The daemon fixtures and client of the fault tests (real servers on loopback).
    import test_daemon_faults

    return test_daemon_faults


def _until(seen: list[str], ask: Callable[[], str], good: Callable[[str], bool]
           ) -> Callable[[], bool]:
    """A poll check: ask once, keep the answer in ``seen``, say whether it is good."""
    def check() -> bool:
        seen.append(ask())
        return good(seen[-1])

    return check


def _flags(dns_port: int, web: Any, cache: Path, version: str) -> list[str]:
    """The discovery settings as flags (no file at all)."""
    return ["--resolver", "127.0.0.1", "--resolver-port", str(dns_port),
            "--probe-name", "test.", "--https-port", str(web.port),
            "--ca-file", str(web.ca_file), "--cache", str(cache),
            "--postfix-version", version, "--answer-deadline", "4"]


def _start_without_a_file(dns_lab: Any, https_lab: Any, tmp_path: Path
                          ) -> tuple[subprocess.Popen[bytes], int, Path]:
    """The drop-in command with no file, beside a Postfix configuration with Debian's
    defaults (no DNSSEC support level); its process, port and standard error file, once
    it listens."""
    faults = _daemon_support()
    https_lab.reset()
    conf = tmp_path / "postfix"
    conf.mkdir()
    (conf / "main.cf").write_text("compatibility_level = 3.6\n")
    (conf / "master.cf").write_text("smtp unix - - y - - smtp\n")
    port = faults.free_port()
    err = tmp_path / "stderr"
    out = tmp_path / "stdout"
    command = [sys.executable, "-m", "tlspolicy", "serve", "socketmap", "--discovery",
               "--listen", f"127.0.0.1:{port}", "--postfix-config-dir", str(conf),
               *_flags(dns_lab.port, https_lab, tmp_path / "cache.sqlite3", "3.7.11")]
    with out.open("wb") as o, err.open("wb") as e:
        process = subprocess.Popen(command, stdout=o, stderr=e)
    try:
        faults.poll("the daemon to listen", lambda: "listening on" in out.read_text()
                    or process.poll() is not None)
    except BaseException:
        process.kill()
        process.wait(20)
        raise
    if process.poll() is not None:
        raise AssertionError(err.read_text())
    return process, port, err


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_drop_in_without_a_file_answers_as_the_peers(dns_lab: Any, https_lab: Any,
                                                     tmp_path: Path) -> None:
    """``serve socketmap --discovery`` with no file on a Postfix configuration without
    DANE's prerequisites (Debian's defaults): it starts, warns once that DANE is off and
    what to change, and answers postfix-mta-sts-resolver's map name ``postfix`` and
    postfix-tlspol's ``QUERY``: the enforce policy's answer, NOTFOUND where nothing is
    published, NOTFOUND for a DANE-only domain (DANE is off)."""
    faults = _daemon_support()
    process, port, err = _start_without_a_file(dns_lab, https_lab, tmp_path)
    try:
        log = err.read_text()
        assert log.count("DANE is off") == 1, log
        assert "smtp_dns_support_level = dnssec" in log
        assert "drop-in mode" in log

        def ask(key: str, map_name: str) -> str:
            client = faults.Client(port)
            try:
                return str(client.ask(key, map_name))
            finally:
                client.close()

        expected = "OK secure match=.ok.secure.test servername=hostname"
        for map_name in ("postfix", "QUERY", "QUERYwithTLSRPT", "querywithtlsrpt"):
            seen: list[str] = []
            faults.poll(f"the enforce policy's answer through {map_name}",
                        _until(seen, lambda m=map_name: ask("ok.secure.test", m),
                               lambda a: a == expected), detail=lambda s=seen: repr(s[-3:]))
            # Nothing published: Postfix's own level stands.
            assert ask("nodane.secure.test", map_name) == NOTFOUND
            # DANE off (Postfix cannot do DANE here): nothing else applies.
            assert ask("implicit.secure.test", map_name) == NOTFOUND
            # Parent-domain lookups and IP literals: never a policy.
            assert ask(".secure.test", map_name) == NOTFOUND
            assert ask("[192.0.2.1]", map_name) == NOTFOUND
    finally:
        process.terminate()
        process.wait(20)


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(("version", "own", "testing"), [
    ("3.7.11", "encrypt", NOTFOUND),
    ("3.10.5", "encrypt", "OK encrypt policy_type=sts"),
    ("3.10.5", "may", "OK may policy_type=sts"),
    ("3.10.5", "dane", NOTFOUND),
])
def test_drop_in_file_with_only_discovery_never_below_postfix_level(
        dns_lab: Any, https_lab: Any, tmp_path: Path, version: str, own: str,
        testing: str) -> None:
    """A file holding only ``[discovery]``, a Postfix meeting DANE's prerequisites, its
    own level given: a testing-mode domain is never answered below that level (NOTFOUND,
    or that level carrying the policy's attributes where Postfix takes them, and never
    through ``QUERY``); DANE is on (``dane-only`` for a DANE domain); ``QUERYwithTLSRPT``
    against a Postfix before 3.10 carries no MTA-STS attributes."""
    faults = _daemon_support()
    https_lab.reset()
    cache = tmp_path / "cache.sqlite3"
    table = faults.discovery_table(dns_lab.port, https_lab, cache, version=version)
    daemon = faults.Daemon(tmp_path, "", table, (
        "--postfix-setting", f"smtp_tls_security_level={own}"))
    daemon.start()
    try:
        assert "drop-in mode" in daemon.log()
        assert "DANE is off" not in daemon.log()
        seen: list[str] = []
        def testing_answer() -> str:
            return str(daemon.ask("testing.secure.test", "QUERYwithTLSRPT"))

        # Ask until the policy is in (the first answer may come before it).
        faults.poll("the testing-mode policy",
                    _until(seen, testing_answer, lambda a: a.startswith(testing)),
                    detail=lambda: repr(seen[-3:]))
        if testing != NOTFOUND:
            assert seen[-1].startswith(testing + " policy_domain=testing.secure.test"), seen
            assert daemon.ask("testing.secure.test", "QUERY") == NOTFOUND
        else:
            assert "policy_type" not in seen[-1]
        enforce = daemon.ask("ok.secure.test", "QUERYwithTLSRPT")
        assert enforce.startswith("OK secure match=.ok.secure.test servername=hostname")
        assert ("policy_type=sts" in enforce) is version.startswith("3.10"), enforce
        assert daemon.ask("implicit.secure.test", "postfix") == "OK dane-only"
        assert daemon.ask("nodane.secure.test", "postfix") == NOTFOUND
    finally:
        daemon.stop()


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cache_imported_into_a_running_drop_in_server_takes_effect_on_reload(
        dns_lab: Any, https_lab: Any, tmp_path: Path) -> None:
    """The migration's last step: postfix-mta-sts-resolver's cache imported into the
    store of a drop-in daemon that is already running and has answered NOTFOUND for the
    domain; after SIGHUP (``systemctl reload``) the imported enforce policy is answered."""
    import signal

    from test_importcache import pol_body, write_resolver_sqlite

    faults = _daemon_support()
    cache = tmp_path / "cache.sqlite3"
    process, port, err = _start_without_a_file(dns_lab, https_lab, tmp_path)
    try:

        def ask(key: str) -> str:
            client = faults.Client(port)
            try:
                return str(client.ask(key, "postfix"))
            finally:
                client.close()

        # Nothing published for the domain: NOTFOUND, and the daemon remembers that.
        seen: list[str] = []
        faults.poll("the first answer", _until(seen, lambda: ask("nodane.secure.test"),
                                               lambda a: a == NOTFOUND),
                    detail=lambda: repr(seen[-3:]))
        source = tmp_path / "mta-sts.db"
        write_resolver_sqlite(source, {"nodane.secure.test": (
            int(time.time()) - 60, "imported-1",
            pol_body("enforce", ["*.nodane.secure.test"], 86400))})
        imported = subprocess.run(
            [sys.executable, "-m", "tlspolicy", "import-cache", "--from",
             "mta-sts-resolver-sqlite", str(source), "--cache", str(cache)],
            capture_output=True, text=True, timeout=60, check=False)
        assert imported.returncode == 0, imported.stderr
        assert ask("nodane.secure.test") == NOTFOUND  # held until the reload
        process.send_signal(signal.SIGHUP)
        expected = "OK secure match=.nodane.secure.test servername=hostname"
        faults.poll("the imported policy's answer",
                    _until(seen, lambda: ask("nodane.secure.test"),
                           lambda a: a == expected), detail=lambda: repr(seen[-3:]))
        assert "read from the store again" in err.read_text()
    finally:
        process.terminate()
        process.wait(20)


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_empty_file_is_still_refused_with_discovery(tmp_path: Path, text: str) -> None:
    """Drop-in mode is no file or a [discovery]-only file; an empty file is refused
    (SEMANTICS 11, "Empty policy"), naming the way to drop-in mode."""
    path = tmp_path / "policy.toml"
    path.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "tlspolicy", "serve", "socketmap", str(path), "--discovery",
         "--listen", "127.0.0.1:0", "--postfix-version", "3.7.11", "--no-postfix-checks"],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "sets no option at all" in result.stderr
    assert "drop-in mode" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_file_without_discovery_names_drop_in(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tlspolicy", "serve", "socketmap", "--listen", "127.0.0.1:0",
         "--postfix-version", "3.7.11"], capture_output=True, text=True, timeout=60,
        check=False)
    assert result.returncode == 2
    assert "--discovery alone for drop-in mode" in result.stderr


# ------------------------------------------------------------ serve ... --check


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tlspolicy", "serve", "socketmap", *args,
                           "--check"], capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.mark.network
def test_check_dry_run_of_drop_in_names_each_fix(dns_lab: Any, tmp_path: Path) -> None:
    """The dry run on a Postfix without DANE's prerequisites: exit 0 (drop-in mode starts),
    each missing prerequisite a warning with the main.cf line that fixes it, the resolver's
    validation and Postfix's own level reported; nothing is served or written."""
    conf = tmp_path / "postfix"
    conf.mkdir()
    (conf / "main.cf").write_text("compatibility_level = 3.6\nsmtp_tls_security_level = may\n")
    (conf / "master.cf").write_text("smtp unix - - n - - smtp\n")
    cache = tmp_path / "state" / "cache.sqlite3"
    result = _check("--discovery", "--listen", "127.0.0.1:0", "--postfix-config-dir",
                    str(conf), "--resolver-port", str(dns_lab.port), "--probe-name", "test.",
                    "--cache", str(cache), "--postfix-version", "3.7.11")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "ok    drop-in mode" in out
    assert "warn  Postfix smtp_dns_support_level" in out
    assert "fix: main.cf: smtp_dns_support_level = dnssec" in out
    assert "ok    Postfix's own TLS level: may" in out
    assert "ok    DNSSEC: resolver 127.0.0.1:" in out and "validates" in out
    assert " 0 failed" in out.splitlines()[-1]
    assert not cache.parent.exists()  # a dry run writes nothing
    assert "Traceback" not in result.stderr


def test_check_dry_run_fails_on_a_bad_file_and_a_taken_port(tmp_path: Path) -> None:
    bad = tmp_path / "policy.toml"
    bad.write_text('[global]\ntls = "bogus"\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _check(str(bad), "--listen", f"127.0.0.1:{port}", "--postfix-version",
                        "3.7.11", "--no-postfix-checks")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith("FAIL  configuration:") and "policy.toml:2" in line
               for line in lines), result.stdout
    assert any(line.startswith(f"FAIL  listening on 127.0.0.1:{port}") for line in lines)
    assert "2 failed" in lines[-1]
    assert "Traceback" not in result.stderr
