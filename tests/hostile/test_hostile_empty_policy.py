"""Finding: an empty configuration meant plaintext for everyone.

A 0-byte or comment-only file passed ``check`` and ``lint --strict``, ``serve``
answered ``OK none`` for every domain, and a SIGHUP to such a file swapped
that policy in.  A configuration that sets no option at all is refused
everywhere (SEMANTICS 11, "Empty policy"); a file holding only a
``[discovery]`` table is the drop-in marker and loads.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tlspolicy import load_config
from tlspolicy.cli import main
from tlspolicy.errors import EmptyPolicyError
from tlspolicy.formats.lint import lint_file
from tlspolicy.scopes.stanzas import sets_no_option
from tlspolicy.servers.app import lookup_factory
from tlspolicy.servers.socketmap import SocketmapReply, SocketmapServer

EMPTY_TOML = {
    "zero_bytes.toml": "",
    "blank.toml": "\n\n   \n",
    "comments.toml": "# the policy\n# tls = \"required\"\n",
    "bom.toml": "\ufeff",
    "empty_global.toml": "[global]\n",
    "settings_only.toml": 'compatibility = "4.8"\nmatch_cache_size = 10\n',
    "scopes_without_options.toml": ('[[binding]]\nname = "b1"\n[[binding.domain]]\n'
                                    'name = "example.com"\n[[domain]]\nname = "/x/"\n'),
}
EMPTY_CONF = {
    "zero_bytes.conf": "",
    "comments.conf": "# nothing here\n",
    "no_tls.conf": "Binding \"b1\" {\n}\n",
}
POLICY = '[global]\ntls = "required"\n'


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", sorted({**EMPTY_TOML, **EMPTY_CONF}))
def test_load_refuses_a_file_that_sets_nothing(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path, name, {**EMPTY_TOML, **EMPTY_CONF}[name])
    with pytest.raises(EmptyPolicyError) as info:
        load_config(path)
    assert info.value.location.file == str(path)
    message = str(info.value)
    assert "plaintext for every domain" in message
    assert ('tls = "no" under [global]' if name.endswith(".toml") else "tls = no") in message


def test_an_empty_layer_is_refused_too(tmp_path: Path) -> None:
    # A truncated layer is a fault even when another layer sets options.
    base = _write(tmp_path, "base.toml", POLICY)
    empty = _write(tmp_path, "local.toml", "")
    with pytest.raises(EmptyPolicyError) as info:
        load_config(base, empty)
    assert info.value.location.file == str(empty)


def test_plaintext_written_out_loads(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "plain.toml", '[global]\ntls = "no"\n'))
    assert not sets_no_option(config)


def test_a_floor_alone_is_a_policy(tmp_path: Path) -> None:
    path = _write(tmp_path, "floor.toml", '[[floor]]\nname = "p.example"\ntls = "required"\n')
    assert not sets_no_option(load_config(path))


def test_a_discovery_table_alone_is_the_drop_in_marker(tmp_path: Path) -> None:
    path = _write(tmp_path, "dropin.toml", "# drop-in\n[discovery]\nenabled = true\n")
    assert sets_no_option(load_config(path))


def test_check_refuses_an_empty_file(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, "empty.toml", "# nothing\n")
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}: sets no option at all" in out
    assert ": ok" not in out


def test_lint_refuses_an_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, text in (("empty.toml", ""), ("empty.conf", "# nothing\n")):
        path = _write(tmp_path, name, text)
        assert main(["lint", "--strict", str(path)]) == 1
        assert "sets no option at all" in capsys.readouterr().err
        with pytest.raises(EmptyPolicyError):
            lint_file(path)


def test_serve_refuses_an_empty_file_and_the_drop_in_marker(tmp_path: Path) -> None:
    # The drop-in mode is not served yet: its marker must not mean plaintext for all.
    for name, text in (("empty.toml", ""), ("dropin.toml", "[discovery]\n")):
        path = _write(tmp_path, name, text)
        with pytest.raises(EmptyPolicyError) as info:
            lookup_factory([str(path)], file_checks=False, postfix_version=(3, 10, 5))()
        assert info.value.location.file == str(path)


def test_reload_of_an_emptied_file_keeps_the_old_policy(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _write(tmp_path, "policy.toml", POLICY)
    policy = lookup_factory([str(path)], file_checks=False, postfix_version=(3, 10, 5))
    first = policy()
    assert first("default", "example.com") == SocketmapReply.ok("encrypt")
    server = SocketmapServer(first, host="127.0.0.1", port=0, reload=policy)
    for text in ("", "# emptied by a failed deployment\n"):
        path.write_text(text, encoding="utf-8")
        caplog.clear()
        with caplog.at_level(logging.INFO, "tlspolicy"):
            assert asyncio.run(server.reload()) is False
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert errors and "sets no option at all" in errors[0].getMessage()
        assert not errors[0].exc_info  # no traceback for an input error
        assert "lookup reloaded" not in caplog.text
        assert server.reload_results["failed"] >= 1
    path.write_text('[global]\ntls = "ifavailable"\n', encoding="utf-8")
    assert asyncio.run(server.reload()) is True


def test_a_layer_that_only_declares_scopes_is_judged_with_the_others(tmp_path: Path) -> None:
    base = _write(tmp_path, "base.toml", POLICY)
    scopes = _write(tmp_path, "bindings.toml", '[[binding]]\nname = "b1"\n')
    assert not sets_no_option(load_config(base, scopes))
    other = _write(tmp_path, "more.toml", '[[binding]]\nname = "b2"\n')
    with pytest.raises(EmptyPolicyError) as info:
        load_config(scopes, other)
    assert info.value.location.file == f"{scopes}, {other}"
