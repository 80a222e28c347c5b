"""Finding: ecelerity.conf typos were skipped silently, a downgrade.

``domain "p.example" { tsl = required }`` and a ``domian`` stanza used to
pass ``check``; the partner then resolved to plaintext.  Momentum's
documented names are skipped with a note; any other name is a located
error in load (so in ``check``), with the near miss named.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tlspolicy import ConfigError, ConfigErrors, load_config
from tlspolicy.errors import UnknownOptionError
from tlspolicy.formats.ecelerity import (
    EcelerityUnknownStanzaError,
    loads_ecelerity_config,
    parse_ecelerity,
)
from tlspolicy.formats.momentum_names import MOMENTUM_OPTIONS, MOMENTUM_SCOPES, near_miss


def _only_error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        loads_ecelerity_config(text, "ecelerity.conf")
    error = info.value
    assert not isinstance(error, ConfigErrors), str(error)
    return error


@pytest.mark.parametrize(("text", "line", "scope", "suggestion"), [
    ('domain "p.example" {\n  tsl = required\n}\n', 2, 'domain "p.example"', "tls"),
    ('binding "b1" {\n  tls_verfy = host\n}\n', 2, 'binding "b1"', "tls_verify"),
    ('binding_group "g" {\n  binding "b" {\n    TLS_Verfy = host\n  }\n}\n', 3,
     'binding_group "g" > binding "b"', "tls_verify"),
    ("tls = required\ntls_ca_fiel = /etc/ca.pem\n", 2, "global", None),
])
def test_unknown_options_are_located_errors(text: str, line: int, scope: str,
                                            suggestion: str | None) -> None:
    error = _only_error(text)
    assert isinstance(error, UnknownOptionError)
    assert (error.location.file, error.location.line) == ("ecelerity.conf", line)
    assert error.location.scope == scope and error.location.option is not None
    if suggestion is not None:
        assert f"did you mean {suggestion!r}" in str(error)


@pytest.mark.parametrize(("text", "line", "suggestion"), [
    ('domian "p.example" {\n  tls = required\n}\n', 1, "domain"),
    ('bindng "b1" { tls = required }\n', 1, "binding"),
    ('binding_grup "g" { }\n', 1, "binding_group"),
    ('binding "b1" {\n  domian "p.example" { tls = required }\n}\n', 2, "domain"),
    ('binding "b1" {\n  opendkim { }\n}\n', 2, None),
])
def test_unknown_stanzas_are_located_errors(text: str, line: int,
                                            suggestion: str | None) -> None:
    error = _only_error(text)
    assert isinstance(error, EcelerityUnknownStanzaError)
    assert error.location.line == line
    if suggestion is not None:
        assert f"did you mean {suggestion!r}" in str(error)


def test_every_typo_is_reported_at_once() -> None:
    with pytest.raises(ConfigErrors) as info:
        parse_ecelerity('tsl = required\ndomian "a" { }\nbinding "b" { tls_verfy = ca }\n')
    assert [e.location.line for e in info.value.errors] == [1, 2, 3]


def test_check_refuses_the_typo(tmp_path: Path) -> None:
    path = tmp_path / "ecelerity.conf"
    path.write_text('domain "p.example" { tsl = required }\n')
    with pytest.raises(UnknownOptionError):
        load_config(path)


def test_documented_names_and_modules_are_skipped_with_notes() -> None:
    text = ('SpoolBase = "/var/spool/ecelerity"\nmax_outbound_connections = 20\n'
            'ESMTP_Listener { Listen ":25" { tls = allow } }\n'
            'opendkim "dkim1" { header_canon = relaxed }\n'
            'Host "mx.example" { max_outbound_connections = 2 }\n'
            'domain "p.example" {\n  tls = required\n  adaptive_enabled = true\n}\n')
    doc = parse_ecelerity(text, filename="ecelerity.conf")
    assert [(w.kind, w.name) for w in doc.warnings] == [
        ("option", "SpoolBase"), ("option", "max_outbound_connections"),
        ("stanza", "ESMTP_Listener"), ("stanza", "opendkim"), ("stanza", "Host"),
        ("option", "adaptive_enabled")]
    config = loads_ecelerity_config(text)
    assert config.domains[0].options.tls is not None


def test_the_shipped_list_is_the_manual_summary() -> None:
    assert len(MOMENTUM_OPTIONS | MOMENTUM_SCOPES) >= 370
    for name in ("tls", "tls_verify", "binding_group", "esmtp_listener",
                 "keep_message_dicts_in_memory", "host", "pathway"):
        assert name in MOMENTUM_OPTIONS | MOMENTUM_SCOPES


@pytest.mark.parametrize(("word", "expected"), [
    ("tsl", "tls"), ("domian", "domain"), ("tls_verfy", "tls_verify"), ("TLS_CA", None),
    ("dane", None), ("x" * 100_000, None)])
def test_near_miss(word: str, expected: str | None) -> None:
    assert near_miss(word, frozenset({"tls", "domain", "tls_verify", "tls_ca", "binding"})) == (
        expected)
