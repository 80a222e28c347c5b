"""Export to KumoMTA's traffic shaping TOML, with per-entry loss notes."""

from __future__ import annotations

import tomllib

import attrs
import pytest

from tlspolicy import loads_toml
from tlspolicy.floors import FloorExportError
from tlspolicy.formats.bundled import example_config
from tlspolicy.formats.kumomta import (
    KumoExportError,
    KumoExportErrors,
    dumps_kumomta,
    kumomta_shaping,
)

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
name = "mail.example"
use_mta_sts = true

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
    doc, notes = kumomta_shaping(loads_toml(POLICY), accept_loss=True)
    assert doc["default"]["enable_tls"] == "OpportunisticInsecure"
    assert doc["default"]["opportunistic_tls_reconnect_on_failed_handshake"] is True
    assert doc["default"]["enable_mta_sts"] is True and doc["default"]["enable_dane"] is False
    # KumoMTA never applies sources from the default block: relay's and tx's values for
    # domains no block names are losses (accepted here), not entries that look applied.
    assert "sources" not in doc["default"]
    assert {n.source for n in notes if n.option == "sources"} == {"relay", "tx"}
    # In a named block they are source entries, which KumoMTA applies.
    assert doc["mail.example"]["sources"]["relay"] == {"enable_tls": "Disabled"}
    assert doc["mail.example"]["sources"]["tx"] == {
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
    # The regex stanza and the relay and tx bindings are refused (see below) ...
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


# KumoMTA merges shaping in this order (docs/userguide/trafficshaping/resolution.md and
# ShapingInner::get_egress_path_config): the default block, providers and their sources,
# the site block, the domain block, then the site's and the domain's sources.  No step
# reads ``sources`` from the default block.

SECURE_POOL = """
[global]
tls = "ifavailable"

[[binding]]
name = "secure-pool"
tls = "required"
tls_verify = "host"

[[domain]]
name = "partner.example"
tls_protocols = "+ALL:-SSLv2:-SSLv3:-TLSv1.0"
"""


def test_a_binding_the_default_block_would_need_a_source_for_is_refused() -> None:
    # KumoMTA would send secure-pool's mail to any unnamed domain with the default
    # block's OpportunisticInsecure and plaintext reconnect: weaker than the policy.
    with pytest.raises(KumoExportError, match=r'binding "secure-pool"') as caught:
        kumomta_shaping(loads_toml(SECURE_POOL))
    message = str(caught.value)
    assert '"OpportunisticInsecure"' in message and '"Required"' in message
    assert "--accept-loss" in message
    assert caught.value.location.scope == 'binding "secure-pool"'
    with pytest.raises(KumoExportError, match=r'binding "secure-pool"'):
        dumps_kumomta(loads_toml(SECURE_POOL))


def test_the_loss_accepted_leaves_no_dead_default_sources_and_says_so() -> None:
    doc, notes = kumomta_shaping(loads_toml(SECURE_POOL), accept_loss=True)
    # A sources table in the default block would only look as if it applied.
    assert "sources" not in doc["default"]
    assert doc["default"]["enable_tls"] == "OpportunisticInsecure"
    # Named domains carry the binding as a source entry, which KumoMTA applies.
    assert doc["partner.example"]["sources"]["secure-pool"] == {"enable_tls": "Required"}
    lost = [n for n in notes if n.block == "default" and n.source == "secure-pool"]
    assert len(lost) == 1 and '"Required"' in lost[0].message
    assert "# not expressed: [\"default\"].sources.\"secure-pool\"" in dumps_kumomta(
        loads_toml(SECURE_POOL), accept_loss=True)


def test_a_binding_differing_only_for_named_domains_needs_no_loss() -> None:
    config = loads_toml("""
[global]
tls = "ifavailable"

[[binding]]
name = "pool"

  [[binding.domain]]
  name = "partner.example"
  tls = "required"
  tls_verify = "host"
""")
    doc, notes = kumomta_shaping(config)
    assert "sources" not in doc["default"]
    assert doc["partner.example"]["sources"]["pool"] == {"enable_tls": "Required"}
    assert not [n for n in notes if n.option == "sources"]


def test_a_grouped_binding_is_located_in_its_group() -> None:
    config = loads_toml("""
[global]
tls = "ifavailable"

[[binding_group]]
name = "tx"
tls_ifavailable_fallback = false

  [[binding_group.binding]]
  name = "tx-1"
""")
    with pytest.raises(KumoExportError) as caught:
        kumomta_shaping(config)
    assert caught.value.location.scope == 'binding_group "tx" > binding "tx-1"'
    assert "opportunistic_tls_reconnect_on_failed_handshake" in caught.value.message


def test_every_loss_is_named_at_once() -> None:
    with pytest.raises(KumoExportErrors) as caught:
        kumomta_shaping(loads_toml(SECURE_POOL + REGEX_ONLY.replace(
            '[global]\ntls = "ifavailable"\n', "")))
    scopes = [e.location.scope for e in caught.value.errors]
    assert scopes == ['domain "/(^|\\.)bank\\.example$/"', 'binding "secure-pool"']
    assert isinstance(caught.value, KumoExportError)


def test_cli_refuses_a_loss_and_writes_nothing(
        tmp_path: object, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    from tlspolicy.cli import main

    path = Path(str(tmp_path)) / "p.toml"
    path.write_text(SECURE_POOL)
    assert main(["convert", str(path), "--to", "kumomta"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert 'tlspolicy: error: binding "secure-pool": ' in err and "--accept-loss" in err
    assert main(["convert", str(path), "--to", "kumomta", "--accept-loss"]) == 0
    out, err = capsys.readouterr()
    assert tomllib.loads(out) == kumomta_shaping(loads_toml(SECURE_POOL), accept_loss=True)[0]
    assert '["default"].sources."secure-pool"' in err


def test_an_expiring_regex_stanza_notes_each_block_it_shapes() -> None:
    # The regex stanza sets a.example's block to Disabled; when it expires the block
    # would be RequiredInsecure, so the entry needs its expiry note.
    config = loads_toml("""
[global]
tls = "required"

[[domain]]
name = "/^a\\\\.example$/"
tls = "no"
expires = 2031-01-01
expiry_weakens = false
reason = "broken partner"

[[domain]]
name = "a.example"
tls_protocols = "+ALL:-SSLv2:-SSLv3"

[[floor]]
name = "b.example"
tls = "ifavailable"
expires = 2031-01-01
reason = "x"
expiry_weakens = true

[[domain]]
name = "b.example"
tls = "no"
""")
    doc, notes = kumomta_shaping(config, accept_loss=True)
    assert doc["a.example"]["enable_tls"] == "Disabled"
    expiring = {(n.block, n.source) for n in notes if n.option == "expires"}
    assert expiring == {("a.example", None), ("b.example", None)}
    a_note = next(n for n in notes if n.option == "expires" and n.block == "a.example")
    assert 'domain "/^a\\.example$/"' in a_note.message and "2031-01-01" in a_note.message


def test_an_expiring_stanza_inside_a_binding_notes_its_source_entry() -> None:
    config = loads_toml("""
[global]
tls = "ifavailable"

[[domain]]
name = "partner.example"
tls = "required"

[[binding]]
name = "pool"

  [[binding.domain]]
  name = "partner.example"
  tls = "no"
  expires = 2031-01-01
  reason = "their pool IP is not allow-listed yet"
""")
    doc, notes = kumomta_shaping(config)
    assert doc["partner.example"]["sources"]["pool"] == {"enable_tls": "Disabled"}
    expiring = [(n.block, n.source) for n in notes if n.option == "expires"]
    assert expiring == [("partner.example", "pool")]


def test_a_stanza_named_default_is_refused() -> None:
    # ["default"] is KumoMTA's block for every domain without its own: a domain
    # called "default" cannot have a block, and merging it would be lost silently.
    text = '[global]\ntls = "required"\n\n[[domain]]\nname = "default"\ntls = "no"\n'
    with pytest.raises(KumoExportError, match="default") as caught:
        kumomta_shaping(loads_toml(text))
    assert caught.value.location.scope == 'domain "default"'
    doc, notes = kumomta_shaping(loads_toml(text), accept_loss=True)
    assert doc == {"default": {"enable_tls": "RequiredInsecure", "enable_mta_sts": False,
                               "enable_dane": False}}
    assert any(n.option == "domain" and 'domain "default"' in n.message for n in notes)


def test_a_floor_named_default_is_refused() -> None:
    text = ('[global]\ntls = "ifavailable"\n\n[[floor]]\nname = "Default."\n'
            'tls = "required"\nreason = "x"\n')
    with pytest.raises(KumoExportError) as caught:
        kumomta_shaping(loads_toml(text))
    assert caught.value.location.scope == 'floor "Default."'
