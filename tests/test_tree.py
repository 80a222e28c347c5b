"""``tlspolicy tree``: the scope tree of a configuration, one scope per line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tlspolicy import Config, cli, loads_toml
from tlspolicy.policytests import render_tree
from tlspolicy.policytests.tree import build_tree


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
            *argv: str) -> tuple[int, str, str]:
    """Run the real command line."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_example_tree() -> None:
    text = render_tree(cli.example_config())
    lines = text.splitlines()
    assert lines[0].startswith(
        "global (compatibility 4.8, match_cache_size 16384)  tls=ifavailable")
    assert '├── domain "payroll-partner.example"  tls=required tls_verify=host ' \
           "tls_ca=/etc/tlspolicy/ca/payroll-partner.pem" in lines
    assert '├── domain "[192.0.2.25]" [IP literal]  tls_ifavailable_fallback=false ' \
           "tls_verify=no" in lines
    assert '│   └── binding "tx-us-1"  tls_ciphers=ECDHE+AESGCM:ECDHE+CHACHA20' in lines
    assert '│       └── domain "payroll-partner.example"  tls_certificate=' \
           "/etc/tlspolicy/client/payroll-us.pem tls_key=/etc/tlspolicy/client/payroll-us.key" \
           in lines
    assert '│   └── binding "bulk-2"  tls_certificate=none' in lines
    assert '└── binding_group "default" (implicit)' in lines
    # The floors raise relay-internal's tls=no (marked), and follow the scope tree.
    assert '    ├── binding "relay-internal"  tls=no  (raised: by floor ' \
           '"payroll-partner.example" tls to required; by floor ' \
           '"/(^|\\.)bank\\.example$/" tls to required)' in lines
    floors = next(i for i, line in enumerate(lines) if line.startswith("floors "))
    assert lines[floors - 1].startswith('    └── binding "default"  tlsv13_ciphersuites=')
    # Exact stanzas are listed before regex stanzas (they win in the same container).
    regex = next(i for i, line in enumerate(lines) if "[regex]" in line)
    legacy = next(i for i, line in enumerate(lines) if "legacy-mail.example" in line)
    assert legacy < regex


def test_names_only_and_quoting() -> None:
    config = loads_toml('[global]\ntls_ciphers = "HIGH:!aNULL @STRENGTH"\n'
                        '[[binding]]\nname = "b 1"\n')
    text = render_tree(config)
    assert text.splitlines()[0] == 'global  tls_ciphers="HIGH:!aNULL @STRENGTH"'
    assert render_tree(config, values=False).splitlines() == [
        "global", '└── binding_group "default" (implicit)', '    ├── binding "b 1"',
        '    └── binding "default" (implicit)']


def test_empty_configuration() -> None:
    assert render_tree(Config()) == (
        'global\n└── binding_group "default" (implicit)\n'
        '    └── binding "default" (implicit)\n')


def test_declared_default_group_holds_the_ungrouped_bindings() -> None:
    config = loads_toml('[[binding_group]]\nname = "default"\ntls = "required"\n'
                        '[[binding_group.binding]]\nname = "a"\n[[binding]]\nname = "b"\n')
    tree = build_tree(config)
    [group] = tree.children
    assert group.label == 'binding_group "default"'
    assert [c.label for c in group.children] == [
        'binding "a"', 'binding "b"', 'binding "default" (implicit)']


def test_cli_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(monkeypatch, capsys, "tree")
    assert code == 0 and out == render_tree(cli.example_config())
    path = tmp_path / "c.toml"
    path.write_text('[[domain]]\nname = "x.example"\ntls = "required"\n', "utf-8")
    code, out, _ = run_cli(monkeypatch, capsys, "tree", "--config", str(path), "--names-only")
    assert code == 0
    assert out.splitlines()[:2] == ["global", '├── domain "x.example"']
    bad = tmp_path / "bad.toml"
    bad.write_text('[global]\ntls = "sometimes"\n', "utf-8")
    code, _out, err = run_cli(monkeypatch, capsys, "tree", "--config", str(bad))
    assert code == 2 and "bad.toml:2" in err
