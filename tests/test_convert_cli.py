"""The convert, lint and serve commands, run through argparse as the main CLI runs them."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tlspolicy import cli
from tlspolicy.cli.serve_inputs import parse_listen
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
    # The example's compatibility and match_cache_size are the defaults: nothing is lost.
    assert "compatibility" not in err and "match_cache_size" not in err


def test_convert_to_ecelerity_warns_about_settings_it_loses(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "old.toml"
    path.write_text('compatibility = "4.6"\nmatch_cache_size = 10\n[global]\ntls = "no"\n')
    assert run("convert", str(path), "--to", "ecelerity") == 0
    err = capsys.readouterr().err
    assert "compatibility = 4.6" in err and "match_cache_size = 10" in err


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
    # The regex lines stand inside a guard that keeps Postfix's ".parent" lookups out.
    assert pcre.read_text().splitlines()[1:] == [
        "if !/^\\./",
        "/(?:^|\\.)bank\\.example$/\tverify match=hostname:nexthop "
        "tafile=/etc/tlspolicy/ca/bank-root.pem protocols=>=TLSv1.2",
        "endif"]
    assert "what Postfix cannot express:" in err and "use_mta_sts" in err
    assert "--pcre-output" not in err


def test_convert_postfix_needs_one_binding_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    # Several bindings in one stream would repeat keys (postmap warns) and mix pcre tables.
    assert run("convert", str(EXAMPLE), "--to", "postfix") == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "give --binding BINDING" in err and "--output-dir DIR" in err
    assert "tx-eu-1, tx-us-1, bulk-1, bulk-2, relay-internal, default" in err


def test_convert_postfix_single_binding_config(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "one.toml"
    path.write_text('[global]\ntls = "required"\n[[domain]]\nname = "a.example"\ntls = "no"\n')
    assert run("convert", str(path), "--to", "postfix") == 0
    assert "a.example\tnone\n" in capsys.readouterr().out


def test_convert_postfix_output_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tlspolicy.postfix.tables import postfix_entries, render_pcre_table, render_policy_table

    target = tmp_path / "tables"
    assert run("convert", str(EXAMPLE), "--to", "postfix", "--output-dir", str(target)) == 0
    out, err = capsys.readouterr()
    config = load_config(EXAMPLE)
    names = ("tx-eu-1", "tx-us-1", "bulk-1", "bulk-2", "relay-internal", "default")
    for name in names:
        entries, _ = postfix_entries(config, name)
        assert (target / f"{name}.policy").read_text() == render_policy_table(entries)
        assert (target / f"{name}.pcre").read_text() == render_pcre_table(entries)
        assert f'binding "{name}": {target / name}.policy, {target / name}.pcre\n' in out
        # Each file holds one binding: no key repeats.
        keys = [line.split("\t")[0] for line in (target / f"{name}.policy").read_text()
                .splitlines() if line and not line.startswith("#")]
        assert len(keys) == len(set(keys))
    assert sorted(p.name for p in target.iterdir()) == sorted(
        f"{n}.{ext}" for n in names for ext in ("policy", "pcre"))
    assert "pass --pcre-output" not in err


def test_convert_postfix_losses_summarised_by_kind(capsys: pytest.CaptureFixture[str],
                                                   tmp_path: Path) -> None:
    from tlspolicy.postfix.tables import postfix_entries

    config = load_config(EXAMPLE)
    every = [w for name in ("tx-eu-1", "tx-us-1", "bulk-1", "bulk-2", "relay-internal",
                            "default") for w in postfix_entries(config, name)[1]]
    assert run("convert", str(EXAMPLE), "--to", "postfix", "--output-dir",
               str(tmp_path / "t")) == 0
    err = capsys.readouterr().err
    kinds = {(w.option, w.message) for w in every}
    assert f"what Postfix cannot express: {len(every)} notes of {len(kinds)} kinds" in err
    mta_sts = sum(1 for w in every if w.option == "use_mta_sts")
    assert (f"  {mta_sts} entries in 6 bindings: option 'use_mta_sts': a Postfix policy "
            "answer cannot apply MTA-STS") in err
    assert len(err.splitlines()) == 1 + len(kinds)
    assert run("convert", str(EXAMPLE), "--to", "postfix", "--output-dir",
               str(tmp_path / "t"), "--verbose") == 0
    err = capsys.readouterr().err
    assert err.splitlines()[1:] == [w.describe() for w in every]


def test_convert_postfix_refuses_unsafe_combinations(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert run("convert", str(EXAMPLE), "--to", "postfix", "--output-dir", str(tmp_path),
               "--pcre-output", str(tmp_path / "x.pcre")) == 2
    assert run("convert", str(EXAMPLE), "--to", "toml", "--binding", "bulk-1") == 2
    err = capsys.readouterr().err
    assert "--pcre-output is for one binding" in err
    assert "--binding applies to --to postfix only" in err
    odd = tmp_path / "odd.toml"
    odd.write_text('[[binding]]\nname = "../escape"\ntls = "no"\n')
    assert run("convert", str(odd), "--to", "postfix", "--output-dir", str(tmp_path / "o")) == 2
    assert "cannot be a file name" in capsys.readouterr().err
    assert not (tmp_path / "escape.policy").exists() and not (tmp_path / "o").exists()


def test_lint_exit_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean = tmp_path / "clean.toml"
    clean.write_text('[global]\ntls = "ifavailable"\n')
    assert run("lint", str(clean)) == 0
    assert run("lint", "--strict", str(clean)) == 0
    # A clean file still gets the summary line, so silence never has to mean "clean".
    assert capsys.readouterr().out == "0 warnings\n0 warnings\n"
    warned = tmp_path / "warned.toml"
    warned.write_text('[global]\ntls_verify = "host"\n')
    assert run("lint", str(warned)) == 0
    assert run("lint", "--strict", str(warned)) == 1
    out = capsys.readouterr().out
    assert f"{warned}:2: global: verify-without-tls:" in out and "1 warning\n" in out
    broken = tmp_path / "broken.toml"
    broken.write_text('[global]\ntls = "requried"\n')
    assert run("lint", str(broken)) == 1
    assert "requried" in capsys.readouterr().err


def test_listen_parsing() -> None:
    assert parse_listen("127.0.0.1:8465") == ("127.0.0.1", 8465)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("8465", "127.0.0.1:", "127.0.0.1:99999", "host:port"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_listen(bad)
