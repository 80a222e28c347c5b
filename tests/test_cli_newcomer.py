"""What a first-time user of the command line ran into: exit statuses, messages, layout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from test_cli import _WITHOUT_EXTRAS
from tlspolicy.cli import main


def test_lint_reports_a_broken_file_like_check(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('[global]\ntls = "requried"\ntls_verify = "nope"\n')
    assert main(["check", str(broken)]) == 1
    capsys.readouterr()
    # Errors in the file are a finding (1), as in check, and the summary counts them.
    assert main(["lint", str(broken)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "2 errors, 0 warnings\n"
    assert "requried" in captured.err and "nope" in captured.err
    # A usage error stays 2.
    assert main(["lint"]) == 2


@pytest.mark.parametrize("command", ["resolve", "discover"])
def test_a_missing_domain_is_named_alone(command: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main([command])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "the following arguments are required: DOMAIN\n" in err
    assert "FILE" not in err.splitlines()[-1]


@pytest.mark.parametrize("args", [
    ["discover", "example.com"],
    ["cache", "show"],
    ["serve", "socketmap", "--discovery", "--listen", "127.0.0.1:0",
     "--postfix-version", "3.7.11"],
])
def test_a_missing_extra_is_named_with_its_install_line(args: list[str]) -> None:
    result = subprocess.run([sys.executable, "-c", _WITHOUT_EXTRAS, *args],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    err = result.stderr
    assert "Traceback" not in err and "None" not in err
    assert "dnspython, which is not installed" in err
    assert "pip install 'tlspolicy[discovery]'" in err
    assert "pip install -e '.[discovery]'" in err


@pytest.mark.parametrize(("argv", "offered", "not_offered"), [
    (["cache", "show"], {"--cache", "--redis"},
     {"--first-wait", "--resolver", "--https-port", "--ca-file", "--probe-backoff-max"}),
    (["cache", "purge"], {"--cache", "--redis"}, {"--first-wait", "--resolver"}),
    (["cache", "refresh"], {"--resolver", "--https-port", "--ca-file", "--cache"},
     {"--first-wait", "--probe-backoff-max"}),
    (["discover"], {"--resolver", "--first-wait", "--cache"}, {"--probe-backoff-max"}),
    (["import-cache"], {"--cache", "--redis"}, {"--resolver", "--first-wait"}),
    (["serve", "socketmap"], {"--resolver", "--first-wait", "--probe-backoff-max"}, set()),
])
def test_each_command_offers_only_its_own_options(
        argv: list[str], offered: set[str], not_offered: set[str],
        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    shown = capsys.readouterr().out
    for option in offered:
        assert f"{option} " in shown, option
    for option in not_offered:
        assert f"{option} " not in shown, option


def test_an_option_of_another_command_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["cache", "show", "--first-wait", "3"])
    assert stopped.value.code == 2
    assert "unrecognized arguments: --first-wait" in capsys.readouterr().err


def test_cache_help_names_the_default_path_with_or_without_the_extra() -> None:
    for code in ("from tlspolicy.cli import main; main(['cache', 'show', '--help'])",
                 _WITHOUT_EXTRAS):
        argv = [] if code != _WITHOUT_EXTRAS else ["cache", "show", "--help"]
        result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True,
                                text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert "/var/lib/tlspolicy/discovery.sqlite3" in " ".join(result.stdout.split())


_REGEX_POLICY = """\
[global]
tls = "ifavailable"

[[domain]]
name = "/(^|\\\\.)bank\\\\.example$/"
tls = "required"
tls_verify = "ca"

[[domain]]
name = "a.example"
tls = "no"
"""


def test_convert_to_postfix_refuses_to_drop_a_regex_stanza(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(_REGEX_POLICY)
    assert main(["convert", str(policy), "--to", "postfix"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert 'domain "/(^|\\.)bank\\.example$/"' in err and "--accept-loss" in err
    # Told it may, it writes the table without them and names them again.
    assert main(["convert", str(policy), "--to", "postfix", "--accept-loss"]) == 0
    out, err = capsys.readouterr()
    assert "a.example\tnone\n" in out and "bank" not in out
    assert "left out (--accept-loss)" in err and "bank" in err
    # With a pcre table nothing is lost.
    pcre = tmp_path / "regex.pcre"
    assert main(["convert", str(policy), "--to", "postfix", "--pcre-output", str(pcre)]) == 0
    assert "bank" in pcre.read_text() and "left out" not in capsys.readouterr().err
    assert main(["convert", str(policy), "--to", "toml", "--accept-loss"]) == 2


def test_convert_to_toml_writes_global_before_the_stanzas(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tlspolicy.formats.toml import loads_toml

    policy = tmp_path / "policy.conf"
    policy.write_text('tls = "ifavailable"\ndomain "a.example" { tls = "no" }\n'
                      'binding "b1" { domain "c.example" { tls = "required" } }\n')
    assert main(["convert", str(policy), "--to", "toml"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    # Settings, then [global], then each top-level stanza as its own table.
    first_table = next(i for i, line in enumerate(lines) if line.startswith("["))
    assert lines[first_table] == "[global]"
    assert all(not line or line.startswith("compatibility") for line in lines[:first_table])
    assert "[[domain]]" in lines and "[[binding]]" in lines
    assert lines.index("[[domain]]") > first_table
    from tlspolicy.formats.loader import load_config

    assert loads_toml(out) == load_config(policy)


def test_resolve_shows_a_status_code_only_where_delivery_stops(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[global]\ntls = "ifavailable"\ntls_verify = "optional"\n'
                      '[[domain]]\nname = "strict.example"\ntls = "required"\n'
                      'tls_verify = "host"\n')
    assert main(["resolve", "some.example", str(policy)]) == 0
    rows = capsys.readouterr().out.split("\noutcomes\n")[1].split("\n\n")[0].splitlines()
    proceed = [row for row in rows if " PROCEED " in row]
    assert proceed and all("451" not in row and "4.7.5" not in row for row in proceed)
    assert all("  reported: " in row and "[tls-rpt certificate-" in row for row in proceed)
    assert all("451" not in row for row in rows if " FALLBACK " in row)
    # The action column is aligned.
    assert len({row.index(" reported: ") for row in rows if "reported: " in row}) == 1
    assert main(["resolve", "strict.example", str(policy)]) == 0
    rows = capsys.readouterr().out.split("\noutcomes\n")[1].split("\n\n")[0].splitlines()
    assert all(" FAIL " in row and "451 4.7." in row for row in rows)


def test_discover_and_refresh_fail_fast_when_the_resolver_is_down(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import socket
    import time

    # A UDP port that takes queries and never answers (a resolver that is down).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = str(silent.getsockname()[1])
        flags = ["--resolver-port", port, "--cache", str(tmp_path / "cache.sqlite3")]
        for argv in (["discover", "example.com", *flags],
                     ["cache", "refresh", "example.com", *flags]):
            started = time.monotonic()
            assert main(argv) == 1
            elapsed = time.monotonic() - started
            out, err = capsys.readouterr()
            assert out == ""
            errors = [line for line in err.splitlines() if "error" in line]
            assert len(errors) == 1 and f"127.0.0.1:{port} does not answer" in errors[0]
            assert "Timeout" in errors[0] and err.count("Timeout") == 1
            # One probe (the DNS timeout, 3 s), not one timeout per lookup.
            assert elapsed < 6, elapsed


_REPORT_SETTINGS = """\
[reporting]
organization_name = "tlspolicy CLI test"
contact_info = "mailto:postmaster@example.net"
submitter = "example.net"
mail_from = "tlsrpt@example.net"
dkim_key_file = "{directory}/dkim.pem"

[store]
sqlite = "{store}"
"""


def test_report_build_says_why_nothing_was_built(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    store = tmp_path / "tlsrpt.sqlite3"
    sqlite3.connect(store).close()  # a store nothing was recorded in
    settings = tmp_path / "report.toml"
    settings.write_text(_REPORT_SETTINGS.format(directory=tmp_path, store=store))
    out = tmp_path / "out"
    assert main(["report", "build", "-s", str(settings), "--date", "2026-01-02",
                 "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert ("note: no report built for 2026-01-02 (UTC): no TLS session was recorded"
            in captured.err)
    assert not out.exists()


def test_a_missing_sqlite_report_store_is_a_clear_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    absent = tmp_path / "absent.sqlite3"
    settings = tmp_path / "report.toml"
    settings.write_text(_REPORT_SETTINGS.format(directory=tmp_path, store=absent))
    for action in ("build", "show", "send"):
        assert main(["report", action, "-s", str(settings)]) == 2
        err = capsys.readouterr().err
        assert f"[store] sqlite = '{absent}': no such file" in err and "Traceback" not in err
        # Nothing was created in its place.
        assert not absent.exists()


@pytest.mark.parametrize(("name", "text", "ca_line", "stanza_line"), [
    ("policy.toml",
     '[global]\ntls = "ifavailable"\n\n[[domain]]\nname = "a.example"\n'
     'tls_verify = "host"\ntls_ca = "{ca}"\n\n[[binding]]\nname = "x"\n'
     'tls_verify = "optional"\n', 7, 4),
    ("policy.conf",
     'tls = "ifavailable"\ndomain "a.example" {{\n  tls_verify = "host"\n'
     '  tls_ca = "{ca}"\n}}\nbinding "x" {{\n  tls_verify = "optional"\n}}\n', 4, 2),
])
def test_file_errors_and_lint_warnings_carry_the_line(
        name: str, text: str, ca_line: int, stanza_line: int, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / name
    missing = tmp_path / "missing-ca.pem"
    policy.write_text(text.format(ca=missing))
    assert main(["check", str(policy)]) == 1
    out = capsys.readouterr().out
    assert f"{policy}:{ca_line}: domain \"a.example\": option 'tls_ca': cannot read" in out
    assert main(["lint", str(policy)]) == 0
    out = capsys.readouterr().out
    assert f"{policy}:{stanza_line}: domain \"a.example\": group-beats-global-domain:" in out


def test_a_toml_file_cut_short_names_its_last_line(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "cut.toml"
    policy.write_text('[global]\ntls = "no"\ntls_verify')
    assert main(["check", str(policy)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"{policy}:3: not valid TOML:") and "end of the file" in out
