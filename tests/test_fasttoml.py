"""The plain-TOML reader gives what tomllib gives, or leaves the text to tomllib."""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlspolicy.formats._fasttoml import loads_plain

_KEYS = st.sampled_from(["a", "b", "name", "tls", "x-y", "k_1", "domain", "binding"])
_PATHS = st.lists(_KEYS, min_size=1, max_size=3).map(".".join)
_SPACE = st.sampled_from(["", " ", "\t", "  "])
_COMMENT = st.sampled_from(["", " # note", "\t#", " # \x01", "#x\t"])
_VALUES = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_characters="\n"), max_size=8).map(
        lambda t: f'"{t}"'),
    st.text(st.characters(codec="utf-8", exclude_characters="\n"), max_size=8).map(
        lambda t: f"'{t}'"),
    st.sampled_from(["true", "false", "0", "-0", "+7", "12", "007", "1_000", "1.5",
                     "2026-01-01", '""', '"a"b"', '"""x"""', "[1]", "{}", "tru",
                     "123456789012345678", "1234567890123456789"]),
)
_LINES = st.one_of(
    st.builds(lambda s, p, c: f"{s}[{p}]{c}", _SPACE, _PATHS, _COMMENT),
    st.builds(lambda s, p, c: f"{s}[[{p}]]{c}", _SPACE, _PATHS, _COMMENT),
    st.builds(lambda s, k, t, v, c: f"{s}{k}{t}={t}{v}{c}", _SPACE, _KEYS, _SPACE, _VALUES,
              _COMMENT),
    st.sampled_from(["", "# c", "  ", "[a]]", "[[a]", "[ a ]", "a.b = 1", '"a" = 1',
                     "a = 1\r", "[a.]", "\r", "x = 1 2"]),
)
_ENDINGS = st.sampled_from(["\n", "\r\n"])


def _tomllib(text: str) -> object:
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError):
        return "error"


@settings(max_examples=1000)
@given(st.lists(st.tuples(_LINES, _ENDINGS), max_size=12), st.booleans())
def test_plain_texts_read_as_tomllib_reads_them(lines: list[tuple[str, str]],
                                                 final_newline: bool) -> None:
    text = "".join(line + end for line, end in lines)
    if not final_newline:
        text = text.rstrip("\n")
    plain = loads_plain(text)
    if plain is not None:
        assert plain == _tomllib(text)


@pytest.mark.parametrize("text", [
    '[global]\ntls = "ifavailable"\n[[domain]]\nname = "a.example"\ntls = "required"\n'
    '[[binding_group]]\nname = "g"\n[[binding_group.binding]]\nname = "b"\n'
    '[[binding_group.binding.domain]]\nname = "c.example"\nx = 3\ny = true\n',
    "# only a comment\n\n",
    "[a]\n[a.b]\nk = 'v' # c\n",
])
def test_generated_configurations_are_read_without_tomllib(text: str) -> None:
    assert loads_plain(text) == tomllib.loads(text)


@pytest.mark.parametrize("text", [
    "[a]\n[a]\n", "a = 1\na = 2\n", "a = 1\n[a.b]\n", "[a.b]\n[a]\n", "[[a]]\n[a]\n",
    "a = 1\r", 'a = "\\n"\n', "a = [1]\n",
])
def test_anything_else_is_left_to_tomllib(text: str) -> None:
    assert loads_plain(text) is None
