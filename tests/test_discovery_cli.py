"""``tlspolicy discover`` and ``tlspolicy cache`` against the real DNS and HTTPS servers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from discovery_support import DnsLab, HttpsLab
from tlspolicy import cli

pytestmark = pytest.mark.timeout(120)

CONFIG = """
[global]
tls = "ifavailable"
use_mta_sts = true
use_dane = true
"""


@pytest.fixture
def lab_args(dns_lab: DnsLab, https_lab: HttpsLab, tmp_path: Path) -> list[str]:
    https_lab.reset()
    config = tmp_path / "outbound.toml"
    config.write_text(CONFIG)
    return [str(config), "--resolver", "127.0.0.1", "--resolver-port", str(dns_lab.port),
            "--probe-name", "test.", "--https-port", str(https_lab.port),
            "--ca-file", str(https_lab.ca_file), "--cache", str(tmp_path / "cache.sqlite3")]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_discover_prints_records_and_the_decision(
        lab_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "discover", "ok.secure.test", *lab_args)
    assert code == 0
    assert "DNSSEC trusted" in out
    assert "mx            mx: mx.ok.secure.test  (secure)" in out
    assert "mta-sts       enforce" in out
    assert "---- decision for mx.ok.secure.test" in out
    assert "tls           required    verification host" in out


def test_discover_json_has_dane_decision(lab_args: list[str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "discover", "secure.test", *lab_args, "--mx-host",
                       "mx.secure.test", "--json")
    assert code == 0
    data = json.loads(out)
    host = data["discovery"]["hosts"]["mx.secure.test"]
    assert host["tlsa"]["status"] == "records"
    decision = data["decisions"]["mx.secure.test"]
    assert decision["tls"] == "required"
    assert decision["tlsa_records"]


def test_cache_show_purge_refresh(lab_args: list[str],
                                  capsys: pytest.CaptureFixture[str]) -> None:
    discovery_flags = lab_args[1:]
    # show and purge only read the cache: they take only the cache's options.
    store_flags = lab_args[-2:]
    # No cache there yet: a mistyped path is an error, and no empty cache is made there.
    for action in (["show"], ["purge", "--all"]):
        code, _, err = run(capsys, "cache", *action, *store_flags)
        assert code == 2 and f"--cache {store_flags[-1]}: no such file" in err
        assert not Path(store_flags[-1]).exists()
    assert run(capsys, "discover", "ok.secure.test", *lab_args)[0] == 0
    assert run(capsys, "cache", "show", "nosuch.test", *store_flags)[1] == (
        "nothing cached for nosuch.test\n")
    code, out, _ = run(capsys, "cache", "show", "ok.secure.test", *store_flags)
    assert code == 0 and out.startswith("ok.secure.test  enforce  id id1")
    code, out, _ = run(capsys, "cache", "refresh", "ok.secure.test", "--json", *discovery_flags)
    assert code == 0 and json.loads(out)["policy"]["mode"] == "enforce"
    code, out, _ = run(capsys, "cache", "purge", "ok.secure.test", *store_flags)
    assert code == 0 and out == "purged 1 cached policy\n"
    assert run(capsys, "cache", "show", "ok.secure.test", *store_flags)[1] == (
        "nothing cached for ok.secure.test\n")


def test_cache_purge_needs_domain_or_all(lab_args: list[str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "cache", "purge", *lab_args[-2:])
    assert code == 2 and "DOMAIN or --all" in err
    code, _, err = run(capsys, "cache", "purge", "x.test", "--all", *lab_args[-2:])
    assert code == 2


def test_discover_unknown_binding_fails_before_fetching(
        lab_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "discover", "ok.secure.test", *lab_args, "--binding", "nope")
    assert code == 2 and "unknown binding 'nope'" in err


def test_discover_takes_files_positionally_or_with_config(
        lab_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    config, *flags = lab_args
    outputs = []
    for files in ([config], ["--config", config], ["-c", config]):
        code, out, err = run(capsys, "discover", "ok.secure.test", *files, *flags, "--json")
        assert code == 0 and "bundled example" not in err
        outputs.append(json.loads(out)["decisions"])
    assert outputs[0] == outputs[1] == outputs[2]


def test_cache_refresh_exits_1_after_a_failed_fetch(
        lab_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    flags = lab_args[1:]
    code, out, _ = run(capsys, "cache", "refresh", "notfound.secure.test", *flags)
    assert code == 1 and "latest fetch fetch-error" in out
    code, out, _ = run(capsys, "cache", "refresh", "notfound.secure.test", "--json", *flags)
    assert code == 1 and json.loads(out)["latest_fetch"] == "fetch-error"
    assert run(capsys, "cache", "refresh", "ok.secure.test", *flags)[0] == 0


def test_discover_says_each_diagnostic_once_and_shows_progress(
        lab_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "discover", "notfound.secure.test", *lab_args)
    assert code == 0
    # The failed fetch is in the summary, and not again on standard error.
    assert "latest fetch fetch-error" in out
    assert "MTA-STS notfound" not in err and "DNSSEC:" not in err
    assert "404" in out and "404" not in err
    # Each step is announced on standard error before it starts.
    assert "tlspolicy: asking the resolver 127.0.0.1:" in err
    assert "tlspolicy: looking up the MX hosts of notfound.secure.test" in err
    assert "tlspolicy: looking up the TLS-RPT record of notfound.secure.test" in err


def test_cache_show_columns_are_aligned(lab_args: list[str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    flags = lab_args[1:]
    for domain in ("ok.secure.test", "notfound.secure.test", "testing.secure.test"):
        run(capsys, "cache", "refresh", domain, *flags)
    code, out, _ = run(capsys, "cache", "show", *lab_args[-2:])
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3
    for word in ("latest fetch", "next check"):
        assert len({line.index(word) for line in lines}) == 1, out
    with_policy = [line for line in lines if " id " in line]
    assert len(with_policy) == 2
    assert len({line.index(" id ") for line in with_policy}) == 1
    assert len({line.index("expires") for line in with_policy}) == 1
