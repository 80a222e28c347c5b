"""Finding: a floor's tls_protocols with no overlap with the chain's.

A floor ``+ALL:-SSLv2:-SSLv3:-TLSv1.0:-TLSv1.1`` against a binding's
``-ALL:+TLSv1.0`` gave an ATTEMPT with an empty protocol set: the socketmap
answered ``TEMP internal error`` with a ``ValueError`` traceback on every
query and ``convert --to postfix`` crashed.  It is a located load error.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tlspolicy import ConfigError, ConfigErrors, load_config, loads_toml
from tlspolicy.cli import main
from tlspolicy.errors import InvalidValueError
from tlspolicy.servers.app import lookup_factory

MODERN = "+ALL:-SSLv2:-SSLv3:-TLSv1.0:-TLSv1.1"
BINDING = '''[global]
tls = "ifavailable"
[[binding]]
name = "b1"
tls_protocols = "-ALL:+TLSv1.0"
'''


def _floor(name: str, protocols: str = MODERN) -> str:
    return f'[[floor]]\nname = "{name}"\ntls = "required"\ntls_protocols = "{protocols}"\n'


def _errors(exc: ConfigError) -> tuple[ConfigError, ...]:
    return exc.errors if isinstance(exc, ConfigErrors) else (exc,)


@pytest.mark.parametrize("name", ["partner.example", r"/\\.partner\\.example$/"])
def test_no_overlap_with_a_binding_is_a_located_error(name: str) -> None:
    with pytest.raises(InvalidValueError) as info:
        loads_toml(BINDING + _floor(name), "floors.toml")
    error = info.value
    assert error.location.file == "floors.toml"
    assert error.location.line == 9
    assert error.location.option == "tls_protocols"
    assert (error.location.scope or "").startswith("floor ")
    assert error.value == MODERN
    assert "binding 'b1'" in str(error) and "no protocol version in common" in str(error)


def test_no_overlap_through_a_domain_stanza_in_a_binding() -> None:
    text = ('[[binding]]\nname = "b1"\n[[binding.domain]]\nname = "partner.example"\n'
            'tls_protocols = "TLSv1.2"\n' + _floor("partner.example", "TLSv1.3"))
    with pytest.raises(InvalidValueError, match=r'binding "b1" > domain "partner\.example"'):
        loads_toml(text)


def test_two_floors_with_no_overlap_on_one_name() -> None:
    text = _floor("partner.example", "TLSv1.2") + _floor("/partner/", "TLSv1.3")
    with pytest.raises(InvalidValueError, match="which also match"):
        loads_toml(text)


def test_overlapping_floors_and_shadowed_values_still_load() -> None:
    # The binding's own stanza for the floor's name gives TLSv1.2, so b1's TLSv1.0
    # never meets the floor.
    text = (BINDING + '[[binding.domain]]\nname = "partner.example"\n'
            'tls_protocols = "+TLSv1.2"\n' + _floor("partner.example"))
    loads_toml(text)
    loads_toml('[global]\ntls_protocols = "-ALL:+TLSv1.2"\n' + _floor("/x/"))


def test_layers_are_judged_together(tmp_path: Path) -> None:
    base = tmp_path / "ecelerity.conf"
    base.write_text('binding "b1" {\n  tls_protocols = "-ALL:+TLSv1.0"\n}\n', encoding="utf-8")
    floors = tmp_path / "floors.toml"
    floors.write_text(_floor("partner.example"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(base, floors)
    (error,) = _errors(info.value)
    assert isinstance(error, InvalidValueError)
    assert error.location.file == f"{base}, {floors}"
    assert error.location.option == "tls_protocols"


def test_commands_report_it_without_a_traceback(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "floors.toml"
    path.write_text(BINDING + _floor("partner.example"), encoding="utf-8")
    assert main(["check", str(path)]) == 1
    assert "no protocol version in common" in capsys.readouterr().out
    assert main(["convert", str(path), "--to", "postfix",
                 "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no protocol version in common" in err and "Traceback" not in err
    with pytest.raises(InvalidValueError):
        lookup_factory([str(path)], file_checks=False, postfix_version=(3, 10, 5))()
