"""The bad-input corpus: every broken file gives typed, located errors.

``tests/data/bad-configs/expected.toml`` maps each file to the exception class
raised and, for each error reported (all of them, for a file with several
mistakes), its class, the option and scope-path fragment its message must
name, and its line.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

import tlspolicy.errors
from tlspolicy import ConfigError, ConfigErrors, Resolver, load_config, loads_toml

CORPUS = Path(__file__).parent / "data" / "bad-configs"
INDEX_FILE = CORPUS / "expected.toml"
INDEX: dict[str, Any] = tomllib.loads(INDEX_FILE.read_text(encoding="utf-8"))


def test_corpus_is_complete() -> None:
    files = {p.name for p in CORPUS.glob("*.toml")} - {INDEX_FILE.name}
    assert files == set(INDEX)
    assert len(files) >= 60


def _check(error: ConfigError, expected: dict[str, Any], filename: str) -> None:
    message = str(error)
    assert type(error).__name__ == expected["class"], message
    assert isinstance(error, getattr(tlspolicy.errors, expected["class"]))
    assert error.location.file == filename, message
    assert error.location.line == expected["line"], message
    assert f"{filename}:{expected['line']}" in message
    if "option" in expected:
        assert error.location.option == expected["option"], message
        assert repr(expected["option"]) in message
    if "names" in expected:
        assert repr(expected["names"]) in message
    if "scope" in expected:
        assert expected["scope"] in message, message


@pytest.mark.parametrize("name", sorted(INDEX))
def test_bad_config(name: str) -> None:
    expected = INDEX[name]
    path = CORPUS / name
    with pytest.raises(ConfigError) as info:
        loads_toml(path.read_text(encoding="utf-8"), name)
    error = info.value
    assert type(error).__name__ == expected["exception"], str(error)
    errors = error.errors if isinstance(error, ConfigErrors) else (error,)
    assert len(errors) == len(expected["errors"]), str(error)
    for got, want in zip(errors, expected["errors"], strict=True):
        _check(got, want, name)
    # Loading the file from disk reports the same errors, named by its path.
    with pytest.raises(ConfigError) as from_disk:
        load_config(path)
    disk_errors = (from_disk.value.errors if isinstance(from_disk.value, ConfigErrors)
                   else (from_disk.value,))
    assert [type(e) for e in disk_errors] == [type(e) for e in errors]
    assert all(e.location.file == str(path) for e in disk_errors)


def test_errors_of_several_files_are_reported_together() -> None:
    with pytest.raises(ConfigErrors) as info:
        load_config(CORPUS / "tls_requried.toml", CORPUS / "use_dane_in_binding.toml")
    files = {Path(str(e.location.file)).name for e in info.value.errors}
    assert files == {"tls_requried.toml", "use_dane_in_binding.toml"}


def test_missing_file_is_a_located_error(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert info.value.location.file == str(missing)


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[global]\ntls_ca = "/etc/ssl/caf\xe9.pem"\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.location.file == str(path)


def test_a_good_file_next_to_the_corpus_loads() -> None:
    # The corpus files differ from a working configuration only by their mistakes.
    config = loads_toml('[global]\ntls = "required"\n[[domain]]\nname = "example.com"\n'
                        'tls_verify = "host"\n', "good.toml")
    assert Resolver(config).resolve("example.com").verification.value == "host"


def test_an_expiry_past_the_last_utc_instant_is_a_located_error() -> None:
    """9999-12-31T23:59:59-23:59 is a TOML date-time Python reads, but in UTC it is past
    the year 9999: a located error, not an OverflowError."""
    text = ('[global]\ntls = "ifavailable"\n[[domain]]\nname = "a.example"\ntls = "required"\n'
            'expires = 9999-12-31T23:59:59-23:59\nreason = "x"\n')
    with pytest.raises(ConfigError, match="outside the instants") as info:
        loads_toml(text, "x.toml")
    errors = info.value.errors if isinstance(info.value, ConfigErrors) else (info.value,)
    assert [(e.location.line, e.location.option) for e in errors] == [(6, "expires")]


def test_a_file_name_holding_a_nul_is_a_located_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tlspolicy.cli import main

    path = tmp_path / "nul.toml"
    path.write_text('[global]\ntls = "ifavailable"\ntls_ca = "/tmp/a\\u0000b"\n')
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr()
    assert f"{path}:3: global: option 'tls_ca'" in out.out + out.err
    assert "NUL character" in out.out + out.err


def test_lines_inside_a_multi_line_string_are_no_keys() -> None:
    """A line of a multi-line string that starts like a key (``tls.example.com broke``)
    does not take the line of the real key after it."""
    text = ('[global]\ntls = "ifavailable"\n[[domain]]\nname = "a.example"\nreason = """\n'
            'tls.example.com broke its certificate;\ntls = "no" was tried\n"""\n'
            'tls = "bogus"\n')
    with pytest.raises(ConfigError) as info:
        loads_toml(text, "x.toml")
    errors = info.value.errors if isinstance(info.value, ConfigErrors) else (info.value,)
    assert [(e.location.line, e.location.option) for e in errors] == [(9, "tls")]


def test_a_header_of_thousands_of_parts_is_refused_without_locating_each() -> None:
    """Locating every part of such a header cost the square of their number (a 100 KB
    header took over a minute): past 32 parts it is not located, and the load still
    reports it."""
    text = '[global]\ntls = "ifavailable"\n["' + ".".join(["a"] * 20_000) + '"]\nx = 1\n'
    with pytest.raises(ConfigError, match="unknown top-level key"):
        loads_toml(text, "x.toml")
