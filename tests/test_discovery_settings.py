"""The [discovery] settings: one typed object, one rule (a flag given, else the table, else
the default), and the DiscoveryConfig built from it."""

from __future__ import annotations

import argparse
from pathlib import Path

import attrs
import pytest

from tlspolicy.cli import build_parser
from tlspolicy.errors import ConfigError, ConfigSyntaxError
from tlspolicy.formats.loader import load_config, read_discovery_settings, read_discovery_table
from tlspolicy.formats.settings import (
    DISCOVERY_FLAGS,
    DISCOVERY_KEYS,
    DiscoveryConfig,
    DiscoverySettings,
    discovery_settings,
)


def _serve(*flags: str) -> object:
    return build_parser().parse_args(["serve", "socketmap", "x.toml", *flags])


def test_every_key_has_a_field_and_the_defaults_are_discovery_config_s() -> None:
    names = [f.name for f in attrs.fields(DiscoverySettings) if f.name != "table"]
    assert names == list(DISCOVERY_KEYS)
    config = DiscoverySettings().discovery_config()
    assert config == DiscoveryConfig()


def _command(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command: argparse.ArgumentParser = sub.choices[name]
    return command


def test_serve_offers_every_flag_as_its_key_declares_it() -> None:
    socketmap = _command(_command(build_parser(), "serve"), "socketmap")
    actions = {a.dest: a for a in socketmap._actions}
    assert set(DISCOVERY_FLAGS) <= set(actions)
    for dest, flag in DISCOVERY_FLAGS.items():
        assert actions[dest].option_strings == [flag.option]
        assert actions[dest].help == flag.shown_help
        # Left out, a flag is None: the table's value or the default applies.
        assert actions[dest].default is None
    assert DISCOVERY_FLAGS["sts_mx_patterns"].option == "--no-sts-mx-patterns"
    assert DISCOVERY_FLAGS["discovery"].option == "--discovery"
    assert DISCOVERY_FLAGS["resolver"].shown_help.endswith("default 127.0.0.1)")


def test_a_flag_given_wins_over_the_table_even_at_its_default_value() -> None:
    table = {"resolver": "192.0.2.53", "resolver_port": 5353, "first_wait": 2}
    settings = discovery_settings(table, flags=_serve("--resolver", "127.0.0.1"))
    assert settings.resolver == "127.0.0.1"
    assert settings.resolver_port == 5353
    assert settings.first_wait == 2.0 and isinstance(settings.first_wait, float)
    assert settings.https_port == 443


def test_flags_left_out_leave_the_table_and_the_defaults() -> None:
    settings = discovery_settings({"enabled": True, "resolver_trusted": True,
                                   "sts_mx_patterns": False}, flags=_serve())
    assert settings.enabled and settings.resolver_trusted and not settings.sts_mx_patterns
    assert discovery_settings(flags=_serve()).enabled is False
    given = discovery_settings({"enabled": False, "sts_mx_patterns": True},
                               flags=_serve("--discovery", "--no-sts-mx-patterns"))
    assert given.enabled and not given.sts_mx_patterns
    assert given.table == {"enabled": False, "sts_mx_patterns": True}


def test_discover_reads_its_flags_alone() -> None:
    args = build_parser().parse_args(["discover", "example.com", "--cache", "c.sqlite3"])
    config = discovery_settings(flags=args).discovery_config()
    assert config.cache_path == "c.sqlite3" and config.resolver == "127.0.0.1"


# ------------------------------------------------ the tables serve reads, as loaded

_TABLE = '[global]\ntls = "ifavailable"\n[discovery]\nenabled = true\nresolver_port = 5353\n'


def _written(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(("name", "text", "fmt"), [
    ("bom.toml", "\ufeff" + _TABLE, None),          # a byte order mark, as the loader drops
    ("upper.TOML", _TABLE, None),                   # TOML by any name not ecelerity.conf's
    ("policy.cfg", _TABLE, "toml"),                 # --format toml
    ("case.toml", _TABLE.replace("[discovery]", "[Discovery]"), None),  # keys in any case
])
def test_serve_reads_the_discovery_table_of_every_file_the_loader_reads_as_toml(
        tmp_path: Path, name: str, text: str, fmt: str | None) -> None:
    """A file ``check`` loads with its ``[discovery]`` table is read with it by ``serve``:
    a table passed over would leave discovery off (answers from the configuration alone,
    without MTA-STS or DANE) without a word."""
    path = _written(tmp_path, name, text)
    load_config(path, format=fmt)  # it loads, table and all
    assert read_discovery_table([path], format=fmt) == {"enabled": True, "resolver_port": 5353}
    settings = read_discovery_settings([path], format=fmt)
    assert settings.enabled and settings.resolver_port == 5353


def test_an_ecelerity_file_holds_no_discovery_table(tmp_path: Path) -> None:
    path = _written(tmp_path, "policy.cfg", _TABLE)
    assert read_discovery_table([path], format="ecelerity") == {}


@pytest.mark.parametrize("text", [
    _TABLE + "x = [\n",                           # not TOML
    _TABLE + "x = " + "[" * 5000 + "]" * 5000 + "\n",  # nested past the parser's recursion
    _TABLE + "x = 1" + "0" * 5000 + "\n",         # a number too large to read
])
def test_a_file_that_does_not_parse_is_an_error_not_a_table_passed_over(
        tmp_path: Path, text: str) -> None:
    path = _written(tmp_path, "bad.toml", text)
    with pytest.raises(ConfigSyntaxError, match="not valid TOML") as raised:
        read_discovery_table([path])
    assert raised.value.location.file == path
    with pytest.raises(ConfigSyntaxError, match="not valid TOML"):
        load_config(path)


def test_serve_names_the_line_of_a_bad_discovery_table_as_check_does(tmp_path: Path) -> None:
    path = _written(tmp_path, "bad.toml", _TABLE + 'answer_deadline = "x"\n')
    with pytest.raises(ConfigError) as loaded:
        load_config(path)
    with pytest.raises(ConfigError) as read:
        read_discovery_table([path])
    assert str(read.value) == str(loaded.value)
    assert read.value.location.line == 3 and read.value.location.option == "answer_deadline"


def test_two_discovery_tables_differing_in_case_are_an_error(tmp_path: Path) -> None:
    """Table names are case-insensitive: which of two would count would depend on their
    order, so both ``check`` and ``serve`` refuse the second."""
    path = _written(tmp_path, "two.toml", _TABLE + "[DISCOVERY]\nanswer_deadline = 7\n")
    for load in (lambda: load_config(path), lambda: read_discovery_table([path])):
        with pytest.raises(ConfigError, match="a second discovery table, 'DISCOVERY'") as info:
            load()
        assert info.value.location.line == 6


@pytest.mark.parametrize(("text", "line"), [
    # The second of two inline tables, told apart by case only.
    ('Discovery = { enabled = true }\ndiscovery = { enabled = true }\n[global]\n'
     'tls = "ifavailable"\n', 2),
    ('discovery = { enabled = true }\n[global]\ntls = "ifavailable"\n[DISCOVERY]\n', 4),
    # A dotted key: the line of its first part.
    ('# first\ndiscovery.bogus_key = 1\n[global]\ntls = "ifavailable"\n', 2),
    # TOML breaks lines at "\n" only: U+2028 in a comment does not move the count.
    ('# a note\u2028more\n[discovery]\nbogus_key = 1\n[global]\ntls = "ifavailable"\n', 2),
])
def test_discovery_errors_name_the_line_both_readers_agree_on(
        tmp_path: Path, text: str, line: int) -> None:
    path = _written(tmp_path, "lines.toml", text)
    for load in (lambda: load_config(path), lambda: read_discovery_table([path])):
        with pytest.raises(ConfigError) as info:
            load()
        assert info.value.location.line == line, str(info.value)
