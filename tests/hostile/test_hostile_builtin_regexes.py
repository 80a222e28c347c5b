"""Finding: the library's own regular expressions must stay linear.

Every compiled pattern of the package is listed here with the way the code
runs it; each is run on 100,000-character adversarial lines (runs of each
character the pattern cares about, pumped partial matches, with and without
a spoiling last character).  A backtracking blow-up hangs the forked child,
which the guard detects; linear patterns take milliseconds.  A pattern added
to the package without an entry here fails ``test_every_pattern_is_reviewed``.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import time
from pathlib import Path

import pytest
from bounded import within

import tlspolicy
from tlspolicy import loads_toml
from tlspolicy.errors import ConfigSyntaxError, TlsPolicyError

N = 100_000
# Each line must finish far below this; a linear pattern needs a few milliseconds.
PER_LINE_GUARD = 1.0

# (module, name) -> (how the code calls it, seeds pumped to N characters)
REVIEWED: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {
    ("tlspolicy.formats.toml_lines", "_HEADER"): ("match", ("[", "[[", " ", "[ ", "[a ", "a")),
    ("tlspolicy.formats.toml_lines", "_KEY"): ("match", (" ", "a", '"', "'", "a ", '"a')),
    ("tlspolicy.formats.toml_lines", "_CODE_STOP"): ("search", ("a", " ", "\\", "=")),
    ("tlspolicy.formats.toml_lines", "_BASIC_STOP"): ("search", ("a", " ", "'", "#")),
    ("tlspolicy.formats.toml", "_PLAIN_HOST"): ("fullmatch", ("a", "a.", "a-", "_", "a-a.")),
    ("tlspolicy.formats.toml", "_DECODE_POS"): ("search", ("(at line ", "(at line 1", "1")),
    ("tlspolicy.policytests.reader", "_HEADER"): ("match", ("[", "[[", " ", "[ ", "[a ")),
    ("tlspolicy.policytests.reader", "_DOTTED_KEY"): (
        "match", (" ", "a", "a.", "a .", '"a".', "'", '"', "a . ")),
    ("tlspolicy.policytests.reader", "_KEY_PARTS"): ("findall", ('"', "'", "a", "\"'")),
    ("tlspolicy.policytests.reader", "_ENHANCED"): ("fullmatch", ("2.", "2.0.", "2")),
    ("tlspolicy.policytests.runner", "_NOT_XML"): ("sub", ("a", "\x01", "\ufffe", "\ud800")),
    ("tlspolicy.names", "_ASCII_LABEL"): ("fullmatch", ("a", "a-", "-", "_")),
    ("tlspolicy.names", "_LABEL_RUN"): ("findall", ("\u00fc", "a-", "-", "b\u00fc-")),
    ("tlspolicy.options", "_VERSION_RE"): ("fullmatch", ("4", "4.", "4.8.")),
    ("tlspolicy.policies.mtasts", "_ID_RE"): ("fullmatch", ("a",)),
    ("tlspolicy.policies.mtasts", "_EXT_NAME_RE"): ("fullmatch", ("a", "a.", "-")),
    ("tlspolicy.policies.mtasts", "_TXT_EXT_VALUE_RE"): ("fullmatch", ("a", "!")),
    ("tlspolicy.policies.mtasts", "_TXT_FIELD_RE"): ("fullmatch", ("a", " ", "=", "a =", "= ")),
    ("tlspolicy.policies.mtasts", "_LABEL_RE"): ("fullmatch", ("a", "a-", "-")),
    ("tlspolicy.policies.mtasts", "_DIGITS_RE"): ("fullmatch", ("1",)),
    ("tlspolicy.policies.mtasts", "_STS_PREFIX_RE"): ("match", ("v=STSv1 ", "v=STSv1\t")),
    ("tlspolicy.policies.mtasts", "_CONTROL_RE"): ("search", ("a", "\t", " ")),
    ("tlspolicy.policies.dane", "_HEX_RE"): ("fullmatch", ("a", "0")),
    ("tlspolicy.postfix.mapping", "_CIPHER_NAME"): ("fullmatch", ("a", "+", ".")),
    ("tlspolicy.postfix.mapping", "_BAD_VALUE"): ("search", ("a",)),
    ("tlspolicy.postfix.mapping", "_CIPHER_SEPARATORS"): ("split", (":", ", ", "a:")),
    ("tlspolicy.formats.lint", "_META"): ("match", ("a",)),
    ("tlspolicy.postfix.replies", "_FORBIDDEN_IN_TEXT"): ("sub", ("a",)),
    ("tlspolicy.postfix.keys", "_PLAIN_KEY"): (
        "fullmatch", ("a", "a.", "a-", "a-a.", "0.", "a" * 62 + ".")),
    ("tlspolicy.postfix.keys", "_PORT_DIGITS"): ("fullmatch", ("1",)),
    ("tlspolicy.postfix.answers", "_SAFE_PATTERN"): (
        "fullmatch", ("a", "a.", "*.", "*.a", "a.a", ".", "a-", "A")),
    ("tlspolicy.postfix.answers", "_UNSAFE_LINE"): ("search", ("a", "{", "\x01")),
    ("tlspolicy.reporting.models", "_ADDRESS_RE"): ("fullmatch", ("a", "@", "a@", "a@a.")),
    ("tlspolicy.reporting.models", "_RCPT_RE"): (
        "fullmatch", ("a", "a.", ".a", "a.a", "..", "@", "a@", "a@a.", "a.@")),
    ("tlspolicy.stores.base", "_UNPRINTABLE"): ("search", ("a", "!", "~")),
    ("tlspolicy.discovery.records", "_URI_TEXT"): ("fullmatch", ("a", "!", "~")),
    ("tlspolicy.discovery.importcache", "_POLICY_STRING"): (
        "findall", ("{ policy_string = ", " ", "a", "{", "}", " }")),
    ("tlspolicy.discovery.importcache", "_DSN_PASSWORD"): ("sub", ("//", "/", "a", "@")),
    ("tlspolicy.discovery.records", "_STS_RE"): ("match", ("v=STSv1", " ", "\t")),
    ("tlspolicy.discovery.records", "_RPT_RE"): ("match", ("v=TLSRPTv1", " ", "\t")),
    ("tlspolicy.discovery.records", "_SMART_HOST_RE"): ("fullmatch", ("[", "[a", "]", "a", "]:1")),
    ("tlspolicy.discovery._dnswire", "_PLAIN_LABEL"): ("match", ("a", "-", "_", "a-", "0")),
}

_SPOILERS = ("", "\x00", "!", "[", "]", "=", "#", " ", "\t", ".", "-", "A")


def _modules() -> list[str]:
    names = ["tlspolicy"]
    for info in pkgutil.walk_packages(tlspolicy.__path__, "tlspolicy."):
        if not info.name.endswith("__main__"):  # importing it runs the command line
            names.append(info.name)
    return names


def _package_patterns() -> dict[tuple[str, str], re.Pattern[str]]:
    found: dict[tuple[str, str], re.Pattern[str]] = {}
    for name in _modules():
        try:
            module = importlib.import_module(name)
        except ImportError:  # an optional dependency is missing
            continue
        for attr, value in vars(module).items():
            if isinstance(value, re.Pattern) and getattr(module, "__name__", "") == name:
                found[(name, attr)] = value
    return found


def test_every_pattern_is_reviewed() -> None:
    found = _package_patterns()
    # Re-exports of one object count once, under the module that defines it.
    assert set(found) == set(REVIEWED), (
        "review the new pattern for linearity and add adversarial seeds above")


def test_no_inline_patterns() -> None:
    # Patterns written inline (re.search(r"...", x)) would escape the table above.
    source = Path(tlspolicy.__file__).parent
    inline = re.compile(r"\bre\.(?:match|search|fullmatch|split|findall|finditer|sub|subn)\(")
    offenders = [f"{path.relative_to(source)}:{n}" for path in sorted(source.rglob("*.py"))
                 for n, line in enumerate(path.read_text().splitlines(), start=1)
                 if inline.search(line) and not line.lstrip().startswith("#")]
    assert offenders == []


def _lines(seeds: tuple[str, ...], extra: str) -> list[str]:
    out = []
    alphabet = set("".join(seeds)) | {" ", "a", "0", "."}
    for ch in sorted(alphabet):
        for spoil in _SPOILERS:
            out.append(ch * N + spoil)
    for seed in seeds:
        for spoil in _SPOILERS:
            out.append((seed * (N // len(seed) + 1))[:N] + spoil)
            out.append(seed + " " * N + spoil)
            out.append(seed[:1] + seed[1:] * (N // max(len(seed) - 1, 1)) + spoil)
    return [line + extra for line in out]


def _slowest(module: str, attr: str) -> tuple[float, str]:
    pattern = getattr(importlib.import_module(module), attr)
    how, seeds = REVIEWED[(module, attr)]
    run = getattr(pattern, how)
    worst, worst_line = 0.0, ""
    for line in _lines(seeds, ""):
        start = time.perf_counter()
        run(" ", line) if how == "sub" else run(line)
        took = time.perf_counter() - start
        if took > worst:
            worst, worst_line = took, line[:20]
    return worst, worst_line


@pytest.mark.parametrize(("module", "attr"), sorted(REVIEWED))
def test_pattern_is_linear_on_adversarial_lines(module: str, attr: str) -> None:
    worst, line = within(_slowest, module, attr, seconds=60)
    assert worst < PER_LINE_GUARD, f"{module}.{attr} took {worst:.2f} s on {line!r}..."


# The public paths that run the patterns: a hostile file must come back at once.

def _load(text: str) -> str:
    try:
        loads_toml(text, "hostile.toml")
    except TlsPolicyError as exc:
        return type(exc).__name__
    return "loaded"


@pytest.mark.parametrize("line", ["[" + " " * 4000, "[" + " " * N, "[[" + " " * N + "a",
                                  "[ a" + " " * N + "b", "[" + "a " * (N // 2)])
def test_toml_line_locator_on_a_hostile_line(line: str) -> None:
    # Inside a multi-line string the line is valid TOML, so the file parses and the
    # locator scans it while reporting the unknown key.
    text = f'bogus = """\n{line}\n"""\n[global]\ntls = "no"\n'
    assert within(_load, text) == "ConfigSyntaxError"


def test_toml_hostile_line_after_a_real_error_is_located() -> None:
    text = f'[global]\ntls = "requried"\nnote = """\n[{" " * N}\n"""\n'
    with pytest.raises(TlsPolicyError) as info:
        within(loads_toml, text, "hostile.toml")
    assert "hostile.toml" in str(info.value)
    assert not isinstance(info.value, ConfigSyntaxError) or "line" in str(info.value)


def _expectations(text: str) -> str:
    from tlspolicy.policytests.reader import loads_expectations

    try:
        loads_expectations(text, "hostile-expect.toml")
    except TlsPolicyError as exc:
        return type(exc).__name__
    return "loaded"


@pytest.mark.parametrize("line", ["[" + " " * N, "a" + " ." * (N // 2), " " * N + "x"])
def test_expectation_line_locator_on_a_hostile_line(line: str) -> None:
    text = f'bogus = """\n{line}\n"""\n'
    assert within(_expectations, text) != "loaded"
