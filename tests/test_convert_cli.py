"""The convert, lint and serve commands, run through argparse as the main CLI runs them."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tlspolicy import cli
from tlspolicy.cli.serve import parse_listen
from tlspolicy.formats.ecelerity import loads_ecelerity_config
from tlspolicy.formats.loader import load_config
from tlspolicy.formats.toml import loads_toml

EXAMPLE = Path(__file__).parent.parent / "src" / "tlspolicy" / "data" / "example.toml"
CORPUS = Path(__file__).parent / "data" / "ecelerity" / "valid"


def run(*argv: str) -> int:
    return cli.main(list(argv))


def test_convert_ecelerity_to_toml(capsys: pytest.CaptureFixture[str]) -> None:
    path = CORPUS / "03_group_nesting.conf"
    assert run("convert", str(path), "--to", "toml") == 0
    assert loads_toml(capsys.readouterr().out) == load_config(path)


def test_convert_toml_to_ecelerity(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("convert", str(EXAMPLE), "--to", "ecelerity") == 0
    out, err = capsys.readouterr()
    config = load_config(EXAMPLE)
    # ecelerity.conf has no floors: the file carries them as raised binding stanzas.
    from tlspolicy.floors import plan_floor_writes, written_config

    expected = loads_toml(
        EXAMPLE.read_text().replace('compatibility = "4.8"\n', "")
        .replace("match_cache_size = 16384\n", ""))
    assert loads_ecelerity_config(out) == written_config(expected, plan_floor_writes(expected))
    assert config.compatibility is not None
    assert "compatibility" in err and "match_cache_size" in err


def test_convert_layers_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    over = tmp_path / "over.toml"
    over.write_text('[global]\ntls = "required"\n')
    assert run("convert", str(EXAMPLE), str(over), "--to", "toml") == 0
    assert loads_toml(capsys.readouterr().out).options.tls.value == "required"  # type: ignore[union-attr]


def test_convert_postfix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pcre = tmp_path / "regex.pcre"
    assert run("convert", str(EXAMPLE), "--to", "postfix", "--binding", "bulk-1",
               "--pcre-output", str(pcre)) == 0
    out, err = capsys.readouterr()
    # The partner floors raise the marketing group's unverified answers.
    assert ("payroll-partner.example\tverify match=hostname:nexthop "
            "tafile=/etc/tlspolicy/ca/payroll-partner.pem protocols=>=TLSv1.2\n") in out
    assert pcre.read_text() == ("/(^|\\.)bank\\.example$/\tverify match=hostname:nexthop "
                                "tafile=/etc/tlspolicy/ca/bank-root.pem protocols=>=TLSv1.2\n")
    assert "what Postfix cannot express:" in err and "use_mta_sts" in err
    assert "--pcre-output" not in err


def test_convert_postfix_every_binding(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("convert", str(EXAMPLE), "--to", "postfix") == 0
    out, err = capsys.readouterr()
    for name in ("tx-eu-1", "tx-us-1", "bulk-1", "bulk-2", "relay-internal", "default"):
        assert f"# ---- binding {name!r}" in out
    assert "pass --pcre-output" in err


def test_lint_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean = tmp_path / "clean.toml"
    clean.write_text('[global]\ntls = "ifavailable"\n')
    assert run("lint", str(clean)) == 0
    assert run("lint", "--strict", str(clean)) == 0
    assert capsys.readouterr().out == ""
    warned = tmp_path / "warned.toml"
    warned.write_text('[global]\ntls_verify = "host"\n')
    assert run("lint", str(warned)) == 0
    assert run("lint", "--strict", str(warned)) == 1
    out = capsys.readouterr().out
    assert f"{warned}: global: verify-without-tls:" in out and "1 warning\n" in out
    broken = tmp_path / "broken.toml"
    broken.write_text('[global]\ntls = "requried"\n')
    assert run("lint", str(broken)) == 2
    assert "requried" in capsys.readouterr().err


def test_listen_parsing() -> None:
    assert parse_listen("127.0.0.1:8465") == ("127.0.0.1", 8465)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("8465", "127.0.0.1:", "127.0.0.1:99999", "host:port"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_listen(bad)
