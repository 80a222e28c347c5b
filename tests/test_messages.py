"""Messages as an operator reads them: each thing said once, values as a file writes them.

Over every bad configuration of the test corpora: no message repeats its
option (``option 'x': option 'x' ...``), shows a Python repr (``True``,
``{'name': ...}``) or a placeholder file name (``<config>``); the error types
and locations stay as they were.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tlspolicy import ConfigError, ConfigErrors, Options, Resolver, cli, loads_toml
from tlspolicy.errors import OptionScopeError, OptionVersionError
from tlspolicy.formats.loader import load_config

DATA = Path(__file__).parent / "data"
BAD = sorted((DATA / "bad-configs").glob("*.toml")) + sorted(
    (DATA / "ecelerity" / "invalid").glob("*.conf"))
EXAMPLE = Path(__file__).parent.parent / "src" / "tlspolicy" / "data" / "example.toml"

_REPEATED = re.compile(r"option '([^']+)': option '\1'")
# A Python bool, None or dict repr, or a placeholder file name.
_REPR = re.compile(r"\b(True|False|None)\b|\{'[^']*': |<config>|<string>")


def _errors(exc: ConfigError) -> tuple[ConfigError, ...]:
    return exc.errors if isinstance(exc, ConfigErrors) else (exc,)


def _messages(path: Path) -> list[str]:
    try:
        load_config(path)
    except ConfigError as exc:
        return [str(e) for e in _errors(exc)]
    return []


@pytest.mark.parametrize("path", [p for p in BAD if p.name != "expected.toml"],
                         ids=lambda p: p.name)
def test_corpus_messages_read_well(path: Path) -> None:
    for message in _messages(path):
        assert not _REPEATED.search(message), message
        assert not _REPR.search(message), message
        assert message.startswith(str(path)), message


def test_scope_and_version_errors_say_the_option_once() -> None:
    with pytest.raises(OptionScopeError) as scope:
        loads_toml('[[binding]]\nname = "relay"\nuse_dane = true\n', "c.toml")
    assert str(scope.value) == ('c.toml:3: binding "relay": option \'use_dane\': not valid in '
                                "a binding scope (valid in: domain, global) (value true)")
    assert scope.value.location.option == "use_dane"
    with pytest.raises(OptionVersionError) as version:
        loads_toml('compatibility = "4.0"\n[global]\ntls_ifavailable_fallback = false\n',
                   "c.toml")
    assert str(version.value).startswith(
        "c.toml:3: global: option 'tls_ifavailable_fallback': needs Momentum 4.1 or newer")
    resolver = Resolver(loads_toml('[global]\ntls = "ifavailable"\n'))
    with pytest.raises(OptionScopeError) as override:
        resolver.resolve("a.example", overrides=Options(use_dane=True))
    assert str(override.value).startswith(
        "override: option 'use_dane': cannot be overridden per message")


def test_values_are_shown_as_written() -> None:
    with pytest.raises(ConfigError) as info:
        loads_toml('[[domain]]\nname = { name = "x.example" }\n', "c.toml")
    assert "(value { name = 'x.example' })" in str(info.value)
    with pytest.raises(ConfigError) as info:
        Options.from_mapping({"tls_ciphers": ["HIGH", True]})
    assert str(info.value).endswith("(value ['HIGH', true])")
    # No file: no placeholder name, the scope and option still say where.
    with pytest.raises(ConfigError) as info:
        loads_toml('[global]\ntls = "x"\n', None)  # type: ignore[arg-type]
    assert not _REPR.search(str(info.value))


def test_mta_sts_file_errors_say_so_once(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "sts-bad.txt"
    policy.write_text("version: STSv1\nmode: enforce\nmx mx1\n")
    code = cli.main(["resolve", "x.example", "--mx-host", "mx1.x.example", "--mta-sts",
                     str(policy), str(EXAMPLE)])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (f"tlspolicy: error: MTA-STS policy {policy}, line 3: 'mx mx1' is not a "
                   "'key: value' line\n")


def test_override_errors_name_the_override(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["resolve", "x.example", "--override", "tls=bogus", str(EXAMPLE)]) == 2
    assert capsys.readouterr().err == (
        "tlspolicy: error: override: option 'tls': expected one of 'no', 'ifavailable', "
        "'required' (value 'bogus')\n")


def test_effective_values_keep_one_source_column(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["resolve", "payroll-partner.example", "-b", "tx-us-1", str(EXAMPLE)]) == 0
    block = capsys.readouterr().out.split("\neffective values\n", 1)[1].splitlines()
    columns = {line.index(" from ") for line in block if " from " in line}
    assert len(columns) == 1, block
    # A value too long for its column has its source on the next line, in that column.
    long_values = [line for line in block if " from " not in line]
    assert long_values and all(len(line) > max(columns) for line in long_values)
