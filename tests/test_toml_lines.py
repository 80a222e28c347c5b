"""The TOML line locator (``formats.toml_lines``): a key or header is found only on a line
that starts outside every string, array and inline table, whatever the text looks like.

The configuration's locator (:class:`~tlspolicy.formats.toml_lines.Lines`) and the
expectation reader's share :func:`~tlspolicy.formats.toml_lines.code_lines`; both are
checked here on hand-written traps and on generated documents.
"""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tlspolicy import ConfigError, ConfigErrors, loads_toml
from tlspolicy.formats.toml_lines import Lines, code_lines
from tlspolicy.policytests import loads_expectations
from tlspolicy.policytests.reader import _Lines


def config_errors(text: str) -> list[tuple[int | None, str | None]]:
    with pytest.raises(ConfigError) as info:
        loads_toml(text, "x.toml")
    errors = info.value.errors if isinstance(info.value, ConfigErrors) else (info.value,)
    return [(e.location.line, e.location.option) for e in errors]


# ------------------------------------------------------------- configurations


def test_three_quotes_inside_a_one_line_string_open_nothing() -> None:
    # "a ''' b" is a one-line string: counting ''' on the line took it for the start of
    # a multi-line string and skipped every later line.
    text = ('[[domain]]\nname = "a.example"\nreason = "a \'\'\' b"\n'
            '[[domain]]\nname = "b.example"\ntls = "bogus"\n')
    assert config_errors(text) == [(6, "tls")]


def test_three_quotes_in_a_comment_or_literal_string_open_nothing() -> None:
    text = '[global]\ntls = "ifavailable"  # don\'t """ stop\ntls_verify = "bogus"\n'
    assert config_errors(text) == [(3, "tls_verify")]
    text = "[global]\ntls_ciphers = 'HIGH \"\"\" x'\ntls_verify = \"bogus\"\n"
    assert config_errors(text) == [(3, "tls_verify")]


def test_a_multi_line_string_opened_inside_an_array_hides_its_lines() -> None:
    # The string opens on a line that is no key's: its "[global]" and "tls = 1" lines
    # are text, not a header and a key.
    text = ('[global]\nbogus = [\n"""x\n[global]\ntls = 1\n""" ]\n'
            'tls = "bogus"\n')
    assert config_errors(text) == [(2, "bogus"), (7, "tls")]


def test_a_line_inside_an_array_is_no_header() -> None:
    text = '[global]\nbogus = [\n[1, 2]\n]\ntls = "bogus"\n'
    assert config_errors(text) == [(2, "bogus"), (5, "tls")]


def test_closing_quotes_of_multi_line_strings() -> None:
    # Up to two quotes just before the closing three belong to the string; an escaped
    # quote does not close a basic one; a literal one has no escapes.
    text = ('[[domain]]\nname = "a.example"\nreason = """a\\"""\n[global]\ntls = 1\n""""\n'
            "expiry_weakens = '''b\\'''\n"
            '[[domain]]\nname = "b.example"\ntls = "bogus"\n')
    assert tomllib.loads(text)["domain"][0]["reason"] == 'a"""\n[global]\ntls = 1\n"'
    assert config_errors(text) == [(7, "expiry_weakens"), (10, "tls")]


def test_code_lines_yields_only_lines_that_start_outside_strings() -> None:
    text = ('a = """x\ny"""\nb = [\n  1,\n]\nc = { d = "}" }\n'
            "e = '''\nf'''  # \"\"\"\n[t]\n")
    assert [n for n, _line in code_lines(text)] == [1, 3, 6, 7, 9, 10]


# ------------------------------------------------------------- expectation files


def test_expectation_case_after_a_one_line_string_with_three_quotes() -> None:
    text = ('config = "example.toml"\n\n[[case]]\nname = "a \'\'\' b"\n'
            'domain = "ordinary.example"\ntls = "ifavailable"\n\n[[case]]\n'
            'name = "second"\ndomain = "ordinary.example"\ntls = "required"\n')
    second = loads_expectations(text, "l3.toml").cases[1]
    assert (second.line, second.lines["tls"]) == (8, 11)


def test_expectation_case_header_inside_a_string_in_an_array() -> None:
    text = ('config = "example.toml"\n\n[[case]]\nname = "first"\n'
            'domain = "ordinary.example"\nidentities = [\n"""x\n[[case]]\n""" ]\n\n'
            '[[case]]\nname = "second"\ndomain = "ordinary.example"\ntls = "required"\n')
    first, second = loads_expectations(text, "l4.toml").cases
    assert first.identities == ("x\n[[case]]\n",)
    assert (second.line, second.lines["tls"]) == (11, 14)


# ------------------------------------------------------------- generated documents

_PIECES = ["a", " ", '"', "'", "\\", "#", "[", "]", "{", "}", "=", ".", ",", "\n", "\t",
           "k = 1", "[[case]]", "[t0]", '"""', "'''", "\\\n", "é"]
_content = st.lists(st.sampled_from(_PIECES), max_size=8).map("".join)


def _escape(ch: str) -> str:
    return {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t"}.get(ch, ch)


def _basic(text: str) -> str:
    return '"' + "".join(_escape(ch) for ch in text) + '"'


def _literal(text: str) -> str:
    if "'" in text or "\n" in text:
        return _basic(text)
    return "'" + text + "'"


def _multi_basic(text: str) -> str:
    # Unescaped quotes as long as no three stand together; a final one or two are
    # written unescaped before the closing three (the closing rule's edge).
    out: list[str] = []
    run = 0
    for ch in text:
        if ch == '"' and run < 2:
            out.append(ch)
            run += 1
            continue
        run = 0
        out.append('\\"' if ch == '"' else "\\\\" if ch == "\\" else ch)
    return '"""' + "".join(out) + '"""'


def _multi_literal(text: str) -> str:
    out: list[str] = []
    run = 0
    for ch in text:
        run = run + 1 if ch == "'" else 0
        out.append("x" if run == 3 else ch)
        if run == 3:
            run = 0
    return "'''" + "".join(out) + "'''"


_string = st.one_of(_content.map(_basic), _content.map(_literal),
                    _content.map(_multi_basic), _content.map(_multi_literal))
_comment = _content.map(lambda t: " # " + t.replace("\n", " "))
_scalar = st.one_of(_string, st.integers(-5, 5).map(str), st.just("true"))


@st.composite
def _value(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["scalar", "array", "lines", "inline"]))
    if kind == "scalar":
        return draw(_scalar)
    if kind == "inline":
        items = draw(st.lists(_string.filter(lambda s: "\n" not in s), max_size=3))
        return "{ " + ", ".join(f"i{n} = {v}" for n, v in enumerate(items)) + " }"
    items = draw(st.lists(_scalar, max_size=3))
    if kind == "array":
        return "[" + ", ".join(items) + "]"
    # An array over several lines, with comments and a nested array on a line of its own.
    out = ["["]
    for item in items:
        comment = draw(st.sampled_from(["", " # x ] [y]", ' # """']))
        out.append(f"  {item},{comment}")
        if draw(st.booleans()):
            out.append("  [1, [2]],")
    out.append("]")
    return "\n".join(out)


@st.composite
def _document(draw: st.DrawFn) -> tuple[str, list[tuple[str, int | None, str, int]]]:
    """A TOML document and, for each key, (table name, index in its array of tables or
    None, key, the line it is written on)."""
    lines: list[str] = []
    keys: list[tuple[str, int | None, str, int]] = []
    table: tuple[str, int | None] = ("", None)
    cases = 0

    def statements() -> None:
        for n in range(draw(st.integers(0, 3))):
            if draw(st.booleans()):
                lines.append(draw(st.sampled_from(["", "# [[case]] '''", '  # k0 = """'])))
            key = draw(st.sampled_from([f"k{n}", f'"k{n}"', f"'k{n}'"]))
            keys.append((table[0], table[1], key.strip("\"'"), len(lines) + 1))
            comment = draw(_comment) if draw(st.booleans()) else ""
            lines.extend(f"{key} = {draw(_value())}{comment}".split("\n"))

    statements()
    for t in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            table = ("case", cases)
            cases += 1
            lines.append("[[case]]" + (draw(_comment) if draw(st.booleans()) else ""))
        else:
            table = (f"t{t}", None)
            lines.append(f"[t{t}]")
        statements()
    return "\n".join(lines) + "\n", keys


@settings(max_examples=300)
@given(_document())
def test_every_key_is_located_at_its_line(document: tuple[str, list[tuple[str, int | None,
                                                                          str, int]]]) -> None:
    text, keys = document
    tomllib.loads(text)  # the generator writes valid TOML only
    lines, expectation_lines = Lines(text), _Lines(text)
    for table, index, key, line in keys:
        path = ((table, index),) if table else ()
        assert lines.key(path, key) == line, (table, index, key)
        if table == "case":
            assert index is not None
            assert expectation_lines.case_keys(index)[key] == line, (index, key)
        else:
            assert expectation_lines.top(f"{table}.{key}" if table else key) == line, key
