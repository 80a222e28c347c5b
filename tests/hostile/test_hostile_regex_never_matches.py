"""Findings: a regex domain that can never match, and a lone surrogate in a pattern.

Names are compared as A-labels, so a floor named ``/^bücher\\./`` never
applied, while ``check`` said ok and ``lint`` claimed it "may raise" a
binding.  A pattern every match of which needs a character no normalised
name holds is a located load-time error saying how to write it.  A pattern
holding a lone surrogate raised an untyped ``UnicodeEncodeError`` from RE2.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bounded import within

from tlspolicy import InvalidDomainError, Resolver, TlsPolicyError, loads_toml
from tlspolicy.cli import main
from tlspolicy.errors import RegexError
from tlspolicy.formats.ecelerity import loads_ecelerity_config
from tlspolicy.formats.lint import lint_file
from tlspolicy.names import DomainName, DomainPattern, never_matching_char, normalise_domain

FLOOR = '''[global]
tls = "ifavailable"
[[binding]]
name = "b1"
tls = "no"
[[floor]]
name = "{name}"
tls = "required"
'''


def _toml(name: str) -> str:
    return FLOOR.format(name=name.replace("\\", "\\\\"))


def test_a_u_label_floor_is_a_located_error_naming_the_a_label() -> None:
    with pytest.raises(RegexError) as info:
        loads_toml(_toml(r"/^bücher\./"), "floors.toml")
    error = info.value
    assert error.location.file == "floors.toml"
    assert error.location.line == 6
    assert error.location.scope == 'floor "/^bücher\\./"'
    message = str(error)
    assert "can never match" in message and "'ü'" in message
    assert "xn--bcher-kva" in message


@pytest.mark.parametrize("pattern", [
    r"^bücher\.", r"\.münchen\.de$", "[äöü]x", "(?:é|è)", "é+", "[à-ÿ]",
    r"(?i:ü)\.example", r"^(bücher|straße)\.",
])
def test_patterns_needing_a_non_ascii_character_are_refused(pattern: str) -> None:
    assert never_matching_char(pattern) is not None
    with pytest.raises(InvalidDomainError, match="can never match"):
        DomainName.parse(f"/{pattern}/")
    text = f'domain "/{pattern}/" {{\n  tls = required\n}}\n'
    with pytest.raises(RegexError):
        loads_ecelerity_config(text, "ecelerity.conf")


@pytest.mark.parametrize("pattern", [
    r"bücher|\.example$", r"x(ü)?\.example", "[üa]", "[^ü]", r"xü{0,2}",
    r"(?i)ſ", r"^xn--bcher-kva\.", r"\.Example$",
])
def test_patterns_that_may_match_still_load(pattern: str) -> None:
    # Upper-case literals stay lint's finding (regex-upper-case), as before.
    assert never_matching_char(pattern) is None
    DomainName.parse(f"/{pattern}/")


def test_the_a_label_form_matches_what_the_u_label_meant() -> None:
    config = loads_toml(_toml(r"/^xn--bcher-kva\./"))
    decision = Resolver(config).resolve("bücher.example", "b1")
    assert decision.tls.value == "required"
    assert DomainName.parse(r"/^xn--bcher-kva\./").matches(normalise_domain("BÜCHER.example"))


def test_check_and_lint_refuse_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "floors.toml"
    path.write_text(_toml(r"/^bücher\./"), encoding="utf-8")
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "can never match" in out and ": ok" not in out
    assert main(["lint", str(path)]) == 1
    captured = capsys.readouterr()
    assert "may raise" not in captured.out and "can never match" in captured.err
    with pytest.raises(RegexError):
        lint_file(path)


def test_the_check_is_linear_on_a_large_pattern() -> None:
    pattern = "|".join(f"(?:x{i}é)" for i in range(2000)) + "|" + "(" * 50 + "ü" + ")" * 50
    assert within(never_matching_char, pattern) == "é"


@pytest.mark.parametrize("name", ["/\udcff/", "/x\udcff\\.example$/", "/[\ud800-\udfff]/"])
def test_a_lone_surrogate_in_a_pattern_is_a_typed_error(name: str) -> None:
    with pytest.raises(InvalidDomainError, match="lone surrogate"):
        DomainPattern(name[1:-1])
    with pytest.raises(RegexError) as info:
        loads_toml(f'[[domain]]\nname = "{name.replace(chr(92), chr(92) * 2)}"\ntls = "no"\n',
                   "s.toml")
    assert info.value.location.file == "s.toml"
    with pytest.raises(TlsPolicyError):
        loads_ecelerity_config(f'domain "{name}" {{\n  tls = required\n}}\n')
