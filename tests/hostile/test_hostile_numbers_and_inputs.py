"""Finding: untyped errors.  Huge integers, full-width digits, no files, a BOM.

Every input error must be a :class:`TlsPolicyError` (typed, located), never
a plain ``ValueError`` from ``int()``'s 4,300-digit limit.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tlspolicy import (
    ConfigError,
    PolicyInputError,
    TlsaRecord,
    TlsPolicyError,
    load_config,
    loads_toml,
)
from tlspolicy.errors import ConfigSyntaxError, InvalidValueError, NoConfigFilesError
from tlspolicy.formats.ecelerity import loads_ecelerity_config, parse_ecelerity
from tlspolicy.options import CompatVersion

HUGE = "9" * 5000


def test_huge_toml_integer_is_a_located_syntax_error() -> None:
    with pytest.raises(ConfigSyntaxError) as info:
        loads_toml(f"match_cache_size = {HUGE}\n", "big.toml")
    assert info.value.location.file == "big.toml"
    assert len(str(info.value)) < 300


def test_huge_toml_integer_as_an_option_value() -> None:
    with pytest.raises(ConfigSyntaxError):
        loads_toml(f"[global]\ntls = {HUGE}\n")


@pytest.mark.parametrize("text", [f"4.{HUGE}", HUGE, f"{HUGE}.8", "4." + "0" * 5000])
def test_huge_compatibility_is_typed(text: str) -> None:
    with pytest.raises(InvalidValueError):
        CompatVersion.parse(text)
    with pytest.raises(ConfigError):
        loads_toml(f'compatibility = "{text}"\n')


@pytest.mark.parametrize("text", ["４.８", "٤.٨", "4.８", "𝟒.𝟖"])
def test_non_ascii_digits_are_not_a_version(text: str) -> None:
    with pytest.raises(InvalidValueError):
        CompatVersion.parse(text)
    with pytest.raises(ConfigError):
        loads_toml(f'compatibility = "{text}"\n')


def test_ascii_versions_still_parse() -> None:
    assert str(CompatVersion.parse("4.8")) == "4.8"
    assert CompatVersion.parse("4.1.0.2") > CompatVersion.parse("4.1")


@pytest.mark.parametrize("where", ["tls = {n}\n", "domain \"a.example\" {{ x = ({n}) }}\n",
                                   "max_outbound_connections = {n}\n"])
def test_huge_bare_ecelerity_word_is_located(where: str) -> None:
    text = "# leading comment\n" + where.format(n=HUGE)
    with pytest.raises(ConfigSyntaxError) as info:
        parse_ecelerity(text, filename="ecelerity.conf")
    assert (info.value.location.file, info.value.location.line) == ("ecelerity.conf", 2)
    assert "4300 digits" in info.value.message and len(str(info.value)) < 300


@pytest.mark.parametrize("field", [0, 1, 2])
def test_huge_tlsa_field_is_a_policy_input_error(field: int) -> None:
    fields = ["3", "1", "1", "ab" * 32]
    fields[field] = HUGE
    with pytest.raises(PolicyInputError) as info:
        TlsaRecord.parse(" ".join(fields))
    assert len(str(info.value)) < 300


def test_load_config_without_files_is_an_error() -> None:
    with pytest.raises(NoConfigFilesError):
        load_config()
    assert issubclass(NoConfigFilesError, TlsPolicyError)


def test_bom_is_treated_alike(tmp_path: Path) -> None:
    toml = tmp_path / "bom.toml"
    toml.write_bytes(b'\xef\xbb\xbf[global]\ntls = "required"\n')
    conf = tmp_path / "bom.conf"
    conf.write_bytes(b"\xef\xbb\xbftls = required\n")
    assert load_config(toml) == load_config(conf)
    assert loads_toml('\ufeff[global]\ntls = "required"\n') == loads_ecelerity_config(
        "\ufefftls = required\n")


def test_bom_keeps_toml_error_lines() -> None:
    with pytest.raises(InvalidValueError) as info:
        loads_toml('\ufeff[global]\ntls = "requried"\n', "bom.toml")
    assert info.value.location.line == 2
