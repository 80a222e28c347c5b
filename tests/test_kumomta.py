"""Export to KumoMTA's traffic shaping TOML, with per-entry loss notes."""

from __future__ import annotations

import tomllib

import attrs
import pytest

from tlspolicy import loads_toml
from tlspolicy.floors import FloorExportError
from tlspolicy.formats.bundled import example_config
from tlspolicy.formats.kumomta import KumoExportError, dumps_kumomta, kumomta_shaping

POLICY = """
[global]
tls = "ifavailable"
tls_verify = "optional"
use_mta_sts = true

[[domain]]
name = "partner.example"
tls = "required"
tls_verify = "host"
tls_ca = "/etc/ca/partner.pem"

[[domain]]
name = "legacy.example"
tls = "no"

[[domain]]
name = "/\\\\.bank\\\\.example$/"
tls = "required"

[[binding]]
name = "relay"
tls = "no"

[[binding]]
name = "tx"
tls_verify = "ca"
tls_ifavailable_fallback = false

[[floor]]
name = "partner.example"
tls = "required"
tls_verify = "host"
"""


def test_blocks_sources_and_modes() -> None:
    doc, _notes = kumomta_shaping(loads_toml(POLICY), accept_loss=True)
    assert doc["default"]["enable_tls"] == "OpportunisticInsecure"
    assert doc["default"]["opportunistic_tls_reconnect_on_failed_handshake"] is True
    assert doc["default"]["enable_mta_sts"] is True and doc["default"]["enable_dane"] is False
    assert doc["default"]["sources"]["relay"] == {"enable_tls": "Disabled"}
    assert doc["default"]["sources"]["tx"] == {
        "enable_tls": "Opportunistic", "opportunistic_tls_reconnect_on_failed_handshake": False}
    partner = doc["partner.example"]
    assert partner["mx_rollup"] is False and partner["enable_tls"] == "Required"
    # The floor holds through the plaintext relay: no source entry weakens it.
    assert "sources" not in partner
    assert doc["legacy.example"]["enable_tls"] == "Disabled"
    assert "sources" not in doc["legacy.example"]


def test_text_is_toml_and_notes_name_each_entry() -> None:
    config = loads_toml(POLICY)
    text = dumps_kumomta(config, accept_loss=True)
    assert tomllib.loads(text) == kumomta_shaping(config, accept_loss=True)[0]
    notes = [n.describe() for n in kumomta_shaping(config, accept_loss=True)[1]]
    assert any(n.startswith('["partner.example"]: option \'tls_ca\'') for n in notes)
    assert any("regex stanza /\\.bank\\.example$/" in n for n in notes)
    assert any(n.startswith('["default"]: option \'tls_verify\'') and "optional" in n
               for n in notes)
    assert '["default"].sources."tx": option \'tls_verify\': \'ca\'' in "\n".join(notes)
    assert "# not expressed:" in text


def test_regex_floor_is_a_located_error_and_exact_floors_export() -> None:
    with pytest.raises(FloorExportError, match=r'floor "/\(\^\|\\\.\)bank'):
        kumomta_shaping(example_config())
    exact_only = attrs.evolve(example_config(), floors=example_config().floors[:1])
    doc, _notes = kumomta_shaping(exact_only, accept_loss=True)
    assert doc["payroll-partner.example"]["enable_tls"] == "Required"
    assert "sources" not in doc["payroll-partner.example"]


def test_expiry_gets_a_note() -> None:
    config = loads_toml(POLICY + '[[domain]]\nname = "broken.example"\ntls = "no"\n'
                        'expires = 2030-01-01\nreason = "x"\n')
    notes = [n for n in kumomta_shaping(config, accept_loss=True)[1] if n.option == "expires"]
    assert [n.block for n in notes] == ["broken.example"]


def test_cli_convert_to_kumomta(tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    from tlspolicy.cli import main

    path = Path(str(tmp_path)) / "p.toml"
    path.write_text(POLICY)
    # The regex stanza is refused (see below) ...
    assert main(["convert", str(path), "--to", "kumomta"]) == 1
    assert capsys.readouterr().out == ""
    # ... and written without them when the loss is accepted.
    assert main(["convert", str(path), "--to", "kumomta", "--accept-loss"]) == 0
    out, err = capsys.readouterr()
    assert '["partner.example"]' in out and "not exported" in err


REGEX_ONLY = """
[global]
tls = "ifavailable"

[[domain]]
name = "/(^|\\\\.)bank\\\\.example$/"
tls = "required"
tls_verify = "host"
"""


def test_a_regex_stanza_is_refused_unless_the_loss_is_accepted() -> None:
    with pytest.raises(KumoExportError, match=r"--accept-loss") as caught:
        kumomta_shaping(loads_toml(REGEX_ONLY))
    assert caught.value.location.scope == 'domain "/(^|\\.)bank\\.example$/"'
    doc, notes = kumomta_shaping(loads_toml(REGEX_ONLY), accept_loss=True)
    assert doc["default"]["enable_tls"] == "OpportunisticInsecure"
    assert any("regex stanza /(^|\\.)bank\\.example$/" in n.describe() for n in notes)
