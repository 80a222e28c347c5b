"""The exported Postfix tables as Postfix reads them: every regex stanza written, whatever
its characters, never matched by Postfix's ``.parent`` lookups, never weaker than a floor,
and nothing a name can put into a table line of its own."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from postfix_support import (
    POSTMAP,
    postmap_config_dir,
    postmap_query,
    postmap_query_many,
    requires_postmap,
)
from tlspolicy import Resolver, loads_toml
from tlspolicy.cli import main
from tlspolicy.postfix.lookup import PolicyLookup
from tlspolicy.postfix.pcre import (
    case_dependent,
    disjoint,
    literal_ending,
    pcre_difference,
    pcre_pattern,
)
from tlspolicy.postfix.tables import (
    PCRE_LOSS,
    postfix_entries,
    render_pcre_table,
    render_policy_table,
)

CONFIG = r"""
[global]
tls = "ifavailable"

[[floor]]
name = "/(^|\\.)bank\\.example$|^x/y$/"
tls = "required"
tls_verify = "host"
reason = "banks"

[[floor]]
name = "/(^|\\.)pay\\.example$/"
tls = "required"
reason = "payments"

[[domain]]
name = "/(^|\\.)secure\\.pay\\.example$/"
tls_verify = "host"

[[domain]]
name = "/(^|\\.)gov\\.example$/"
tls_verify = "host"

[[domain]]
name = "/^mail ?\\.space\\.example$/"
tls = "required"

[[domain]]
name = "/(^|\\.)other\\.example$/"
tls = "required"
tls_verify = "host"
tls_ca = "/etc/ssl/ca$1.pem"

[[domain]]
name = "bücher.example"
tls = "required"
"""


def test_patterns_are_written_as_pcre_reads_them() -> None:
    assert pcre_pattern(r"(^|\.)a(?P<n>b)[(]c(?:d)(?i)e(?i:f)") == \
        r"(?:^|\.)a(?:b)[(]c(?:d)(?i)e(?i:f)"
    assert pcre_pattern(r"^x/y$") == r"^x\/y$"
    assert pcre_pattern(r"^a\/b$") == r"^a\/b$"  # already escaped: left as it is
    assert pcre_pattern(r"^a\\/b$") == r"^a\\\/b$"  # an escaped backslash, then a '/'
    assert pcre_pattern("^mail ?x$") == r"^mail\x{20}?x$"
    assert pcre_pattern("[ /]") == r"[\x{20}\/]"


def test_patterns_that_can_match_a_capital_are_found() -> None:
    for pattern in (r"^\x41cme$", "^Acme$", "[[:upper:]]", r"\p{Lu}", r"^\101$"):
        assert case_dependent(pattern), pattern
    for pattern in (r"(^|\.)bank\.example$", r"\d+\.example$", r"^a\\b$", "[[:lower:]]"):
        assert not case_dependent(pattern), pattern


def test_a_floor_line_is_raised_to_the_regex_stanzas_it_may_hide() -> None:
    entries, warnings = postfix_entries(loads_toml(CONFIG, "t.toml"), "default")
    lines = render_pcre_table(entries).splitlines()
    assert lines[1] == "if !/^\\./" and lines[-1] == "endif"
    # pay.example's floor may hide secure.pay.example's stanza, which verifies: raised.
    # Groups are written non-capturing: PCRE's captures cost it its match limit.
    assert r"/(?:^|\.)pay\.example$/	verify match=hostname:nexthop" in lines
    # gov.example's stanza cannot share a name with either floor (another ending).
    assert not [w for w in warnings if "gov" in w.message and "raised" in w.message]
    assert any("raised to the values of" in w.message and "/(^|\\.)bank" in w.message
               for w in warnings)
    # A '$' in an answer is written '$$': Postfix would put a match group there.
    assert any("tafile=/etc/ssl/ca$$1.pem" in line for line in lines)
    table = render_policy_table(entries)
    assert "xn--bcher-kva.example\tencrypt\n" in table and "bücher.example\tencrypt\n" in table
    # A floor line alone beside a stricter stanza it may hide, and beside another floor.
    entries, warnings = postfix_entries(loads_toml(
        '[global]\ntls = "ifavailable"\n'
        '[[domain]]\nname = "/(^|\\\\.)secure\\\\.bank$/"\ntls_verify = "host"\n'
        '[[floor]]\nname = "/\\\\.bank$/"\ntls = "required"\n'
        '[[floor]]\nname = "/(^|\\\\.)example\\\\.bank$/"\ntls_verify = "host"\n', "t.toml"))
    lines = render_pcre_table(entries).splitlines()
    assert lines[2] == "/\\.bank$/\tverify match=hostname:nexthop", lines
    assert any("example" in w.message for w in warnings
               if "raised to the values of" in w.message and w.key == "/\\.bank$/")


def test_a_binding_name_cannot_write_a_table_line(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = loads_toml('[[binding]]\nname = "pool\\nevil.example\\tnone\\n#"\ntls = "no"\n',
                        "t.toml")
    entries, _w = postfix_entries(config, "pool\nevil.example\tnone\n#")
    table = render_policy_table(entries)
    assert not [line for line in table.splitlines() if not line.startswith("#")]
    assert "evil.example" in table.splitlines()[0]
    path = tmp_path / "t.toml"
    path.write_text('[[binding]]\nname = "pool\\nx"\ntls = "no"\n')
    assert main(["convert", str(path), "--to", "postfix", "--output-dir",
                 str(tmp_path / "out")]) == 2
    assert "cannot be a file name" in capsys.readouterr().err


def test_a_case_dependent_pattern_is_refused_unless_the_loss_is_accepted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[global]\ntls = "required"\n[[domain]]\nname = "/^\\\\x41cme\\\\.example$/"\n'
                    'tls = "no"\n')
    out = tmp_path / "out"
    assert main(["convert", str(path), "--to", "postfix", "--output-dir", str(out)]) == 1
    assert "upper-case letter" in capsys.readouterr().err and not out.exists()
    assert main(["convert", str(path), "--to", "postfix", "--output-dir", str(out),
                 "--accept-loss"]) == 0
    assert "left out (--accept-loss)" in capsys.readouterr().err
    assert not (out / "default.pcre").exists()  # the only regex entry is left out
    entries, warnings = postfix_entries(loads_toml(path.read_text(), "c.toml"))
    assert [w.code for w in warnings if w.code == PCRE_LOSS] == [PCRE_LOSS]
    assert render_pcre_table(entries) == ""


def _pcre_supported(conf: Path, table: Path) -> bool:
    probe = postmap_query(conf, f"pcre:{table}", "probe.invalid")
    return "unsupported dictionary type" not in probe.stderr


@requires_postmap
def test_postfix_answers_as_the_socketmap_does(tmp_path: Path) -> None:
    # Postfix's smtp_tls_policy_maps = hash:default.policy, pcre:default.pcre: the name
    # in each table in turn, then its ".parent" forms in each table in turn.
    assert POSTMAP is not None
    config = loads_toml(CONFIG, "t.toml")
    entries, _w = postfix_entries(config, "default")
    policy = tmp_path / "default.policy"
    pcre = tmp_path / "default.pcre"
    policy.write_text(render_policy_table(entries), encoding="utf-8")
    pcre.write_text(render_pcre_table(entries), encoding="utf-8")
    conf = postmap_config_dir(tmp_path / "conf")
    if not _pcre_supported(conf, pcre):
        pytest.skip("Postfix's pcre map type is not installed (Debian package postfix-pcre)")
    subprocess.run([POSTMAP, "-c", str(conf), f"hash:{policy}"], check=True, timeout=30)
    lookup = PolicyLookup(Resolver(config))

    def postfix(name: str) -> str:
        labels = name.split(".")
        for key in [name] + ["." + ".".join(labels[i:]) for i in range(1, len(labels))]:
            for table in (f"hash:{policy}", f"pcre:{pcre}"):
                found = postmap_query(conf, table, key, fold=False)
                if found.returncode == 0:
                    return found.stdout.strip()
                assert found.returncode == 1, found.stderr
        return "may"  # the transport's default

    # The floor's pattern holds a '/', written escaped: the line is there and matches.
    assert postfix("x/y") == "verify match=hostname:nexthop"
    for name in ("x.bank.example", "mail.space.example", "mail.other.example",
                 "a.gov.example", "unlisted.example", "bücher.example",
                 "xn--bcher-kva.example"):
        assert postfix(name) == lookup("default", name).text, name
    # Only the floor matches pay.example; the line is raised for secure.pay.example.
    assert lookup("default", "shop.pay.example").text == "encrypt"
    assert postfix("shop.pay.example") == "verify match=hostname:nexthop"
    assert postfix("x.secure.pay.example") == lookup("default", "x.secure.pay.example").text
    # A regex line is never Postfix's answer for a parent-domain lookup.
    assert postmap_query(conf, f"pcre:{pcre}", ".bank.example").returncode == 1


def test_a_value_that_cannot_be_written_names_its_entry(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "e.toml"
    path.write_text('[global]\ntls = "required"\ntls_verify = "host"\n[[domain]]\n'
                    'name = "a.example"\ntls_ca = "/etc/a,b.pem"\n')
    assert main(["convert", str(path), "--to", "postfix"]) == 2
    err = capsys.readouterr().err
    assert 'binding "default" > a.example: tafile value' in err


_PIECES = ["(^|\\.)", "^", "[a-c]", "[]a]", "[^]b]", "a", "b", "\\.", ".", "a*", "(a|b)",
           "b?", "a{2}", "|", "\\\\", "[\\.a]"]


@settings(max_examples=400, deadline=None)
@example(["[\\.a]"], True, ["a"], True, ["a"])  # an escape inside a class is the class's
@example(["[]a]"], True, ["a"], True, ["a"])  # a "]" first in a class is a member
@given(st.lists(st.sampled_from(_PIECES), max_size=5), st.booleans(),
       st.lists(st.sampled_from(_PIECES), max_size=5), st.booleans(),
       st.lists(st.text("ab.", max_size=6), min_size=1, max_size=20))
def test_patterns_called_disjoint_share_no_name(one: list[str], end_one: bool,
                                                other: list[str], end_other: bool,
                                                names: list[str]) -> None:
    # The floor line is raised only over stanzas that may share a name with the floor:
    # two patterns called disjoint must never both match one name.
    a = "".join(one) + ("$" if end_one else "")
    b = "".join(other) + ("$" if end_other else "")
    try:
        first, second = re.compile(a), re.compile(b)
    except re.error:
        return
    if disjoint(a, b):
        for name in names + [n + "a" for n in names] + [n + "b" for n in names]:
            assert not (first.search(name) and second.search(name)), (a, b, name)


def test_patterns_postfix_would_read_with_other_case_rules_are_found() -> None:
    for pattern in (r"^[^?-_]+\.bank\.example$", r"^[[:^upper:]]+\.pay\.example$",
                    r"^[0-_]+\.legacy\.example$", "(?i)\u017fecure\\.example$",
                    "(?i)(^|\\.)ban\u212a\\.example$", r"\Q(\E?evil\.com$", "a\x00b",
                    r"^[!-~]+$", r"[\x41]"):
        assert case_dependent(pattern), pattern
    for pattern in (r"^[a-z0-9-]+\.example$", r"[[:alnum:]]\.example$", r"a\.b\-c$",
                    r"^[^a-z]$", r"^mail\ x$"):
        assert not case_dependent(pattern), pattern


def test_patterns_not_read_in_full_have_no_literal_ending() -> None:
    for pattern in (r"\Q(\E?evil\.com|\Q)\E?good\.org$",
                    r"[[:alpha:](]?evil\.com|[[:alpha:])]?good\.org$",
                    r"[^^]evil\.com|[x]good\.org$", r"(?i)good\.org$", r"\x2dgood\.org$",
                    r"\pLgood\.org$"):
        ending = literal_ending(pattern)
        assert not ending or not disjoint(pattern, r"(^|\.)evil\.com$"), (pattern, ending)
    assert literal_ending(r"[^^]x\.org$") == "x.org"
    assert literal_ending(r"(?:a|b)\.org$") == ".org"


def test_a_floor_that_postfix_would_match_otherwise_is_refused_whatever_the_flags(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "f.toml"
    path.write_text('[[floor]]\nname = "/^[^?-_]+\\\\.bank\\\\.example$/"\ntls = "required"\n')
    for extra in ([], ["--accept-loss"]):
        assert main(["convert", str(path), "--to", "postfix", "--output-dir",
                     str(tmp_path / "out"), *extra]) == 2
        assert "would read this regex floor otherwise" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_value_with_a_control_character_is_never_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "e.toml"
    path.write_text('[global]\ntls = "required"\ntls_verify = "host"\n'
                    'tls_ca = "/etc/a\\u0001b.pem"\n')
    assert main(["convert", str(path), "--to", "postfix"]) == 2
    assert "nor control characters" in capsys.readouterr().err


def test_what_pcre_refuses_or_reads_otherwise_is_found() -> None:
    for pattern in (r"^mx\b?\.bank\.example$", r"(^|\.)bank\.example${1}", r"^a[\d-z]b$",
                    r"[\w-z]", r"[[:alnum:]-b]", r"^[.a-z.]+\.bank\.example$",
                    r"^[:alnum:]+\.bank\.example$", r"^ab{,2}c$", r"^[^-0-_]$"):
        assert pcre_difference(pattern) is not None, pattern
    for pattern in (r"[^a-z]", "[a-]", "[]a]", "[^]a]", r"^[a-z0-9-]+\.example\.com$"):
        assert pcre_difference(pattern) is None, pattern


# Patterns called safe, with the names to try them on: what RE2 and Postfix's PCRE match
# must be the same.
SAFE = [r"(^|\.)bank\.example$", r"^[a-z0-9-]+\.example\.com$", r"[^a-z]x$", "[]a]b",
        "[^]a]b", r"^mx[0-9]{1,3}\.", r"\bmail\b", r"^(?:ab)+\.c$", r"[[:alpha:]]{3}\.d$",
        r"^a\.b\-c$", r"[.-/]x", r"x[^-z]", "a?" * 20 + "(a)" * 10 + "b$"]
NAMES = ["bank.example", "mx.bank.example", "a.example.com", "a.b.example.com", "ax",
         "-x", "9x", ".x", "ab", "]b", "bb", "mx1.a", "mx1234.a", "mail.x", "email.x",
         "ab.c", "aba.c", "abc.d", "ab1.d", "a.b-c", "a.b.c", "/x", "xa", "x-", "xz",
         "a" * 200 + "b"]


@requires_postmap
def test_postfix_matches_what_re2_matches_for_patterns_called_safe(tmp_path: Path) -> None:
    import re2

    assert POSTMAP is not None
    conf = postmap_config_dir(tmp_path / "conf")
    for number, pattern in enumerate(SAFE):
        assert pcre_difference(pattern) is None, pattern
        table = tmp_path / f"p{number}.pcre"
        table.write_text(f"/{pcre_pattern(pattern)}/\tyes\n", encoding="utf-8")
        if number == 0 and not _pcre_supported(conf, table):
            pytest.skip("Postfix's pcre map type is not installed (Debian package postfix-pcre)")
        found = postmap_query_many(conf, f"pcre:{table}", NAMES)
        assert "warning" not in found.stderr, found.stderr
        postfix = {line.split("\t")[0] for line in found.stdout.splitlines()}
        compiled = re2.compile(pattern)
        assert postfix == {n for n in NAMES if compiled.search(n)}, pattern


def test_next_hop_of_names_no_regex_matches_is_counted(tmp_path: Path) -> None:
    # A made-up "any other name" could match a regex stanza; the names no regex stanza
    # matches get the binding's own values, and those are counted.
    from tlspolicy.postfix.transport import parse_transport_table

    config = loads_toml('[global]\ntls = "required"\ntls_verify = "host"\n[[domain]]\n'
                        'name = "/^[a-z0-9-]+\\\\.example\\\\.com$/"\ntls = "ifavailable"\n'
                        'tls_verify = "no"\n', "t.toml")
    routes = parse_transport_table(".example.com smtp:[relay.example.net]:25\n", file="t")
    lookup = PolicyLookup(Resolver(config), routes=routes, postfix_version=(3, 7, 11))
    assert lookup("default", "a.b.example.com").text == "verify match=hostname:nexthop"
    assert lookup("default", "[relay.example.net]:25").text == \
        "verify match=hostname:nexthop"


def test_stanzas_of_one_pattern_in_several_scopes_are_one_line() -> None:
    # Postfix reads the first line of a pattern only: it carries every stanza's values.
    config = loads_toml(
        '[[binding]]\nname = "b"\n[[binding.domain]]\nname = "/(^|\\\\.)bank\\\\.example$/"\n'
        'tls = "required"\n[[domain]]\nname = "/(^|\\\\.)bank\\\\.example$/"\n'
        'tls_verify = "host"\n[[floor]]\nname = "/(^|\\\\.)bank\\\\.example$/"\n'
        'tls = "required"\n', "t.toml")
    entries, _w = postfix_entries(config, "b")
    lines = render_pcre_table(entries).splitlines()
    assert lines[2] == "/(?:^|\\.)bank\\.example$/\tverify match=hostname:nexthop", lines
    assert PolicyLookup(Resolver(config))("b", "mx.bank.example").text == \
        "verify match=hostname:nexthop"


def test_a_pattern_of_a_labels_says_postfix_may_look_up_utf_8() -> None:
    config = loads_toml('[[floor]]\nname = "/(^|\\\\.)xn--bcher-kva\\\\.example$/"\n'
                        'tls = "required"\n', "t.toml")
    _entries, warnings = postfix_entries(config)
    assert any("UTF-8" in w.message for w in warnings)


def test_a_quantified_flag_group_is_found() -> None:
    # RE2 repeats the atom before (?i); PCRE refuses the pattern and Postfix the line.
    for pattern in (r"^mx(?i)?\.bank\.example$", r"1(?m)+?x", r"^a(?s){1,}b"):
        assert pcre_difference(pattern) is not None, pattern
    for pattern in (r"(?i)bank\.example$", r"(?i:a)?b"):
        assert pcre_difference(pattern) is None, pattern


def test_a_floor_the_chain_meets_is_written_when_a_stanza_line_may_answer_first() -> None:
    # Merged option by option the binding meets the floor, so the floor plan writes
    # nothing; but Postfix answers s.example from the /^s/ line alone, whose tls is the
    # binding's "no".
    config = loads_toml('[[floor]]\nname = "/\\\\.example$/"\ntls = "required"\n'
                        '[[binding]]\nname = "b1"\n[[binding.domain]]\nname = "/^s/"\n'
                        'tls_protocols = "TLSv1.2:TLSv1.3"\n[[binding.domain]]\n'
                        'name = "/\\\\.example$/"\ntls = "required"\n', "t.toml")
    entries, _w = postfix_entries(config, "b1")
    lines = render_pcre_table(entries).splitlines()
    assert lines[2].startswith("/\\.example$/\tencrypt"), lines
    assert PolicyLookup(Resolver(config))("b1", "s.example").text.startswith("encrypt")


def test_a_repeated_group_that_can_backtrack_is_found() -> None:
    # Postfix skips a line whose match exceeds PCRE's limit (a 22-letter label here).
    for pattern in (r"^([a-z0-9]+-?)+\.corp$|\.bank\.example$", r"^(?:a|ab)+$", r"(a*)*"):
        assert pcre_difference(pattern) is not None, pattern
    for pattern in (r"^(?:mx|smtp)[0-9]+\.", r"(ab)+c", r"(?P<x>a)+", r"^mx(\d+)?\.x$"):
        assert pcre_difference(pattern) is None, pattern
    # Unbounded repeats one after another, with no group: four of these exceeded the
    # limit on a 236-character name.
    for pattern in (r"[a-z.]*[a-z.]*[a-z.]*[a-z.]*\.bank\.example$", r"a+b*c{2,}",
                    r"[a-z.]{0,60}[a-z.]{0,60}[a-z.]{0,60}[a-z.]{0,60}\.bank\.example$",
                    r"[a-z.]*?[a-z.]*?[a-z.]{0,60}?[a-z.]{0,60}?\.bank$", "(?:a|.)?" * 30):
        assert pcre_difference(pattern) is not None, pattern
    # Alternatives are ways to split a name too, and a "?" after a group repeats it.
    for pattern in ("(?:a|aa)" * 24 + "b$", "(?:a?)?" * 16 + "b$", "(?:a|.|..)" * 16 + "x$",
                    "a?" + "[a]?" * 24 + "a{25}$", "a?" + "\\d?" * 24 + "\\d{24}$"):
        assert pcre_difference(pattern) is not None, pattern
    for pattern in (r"[a-z.]{0,60}[a-z.]{0,60}[a-z.]{0,60}\.b$", "(?:a|b)?" * 8,
                    "(?:a|aa)" * 20 + "b$", "a$|b$|c$"):
        assert pcre_difference(pattern) is None, pattern
    assert pcre_difference(r"^[a-z0-9-]+\.[a-z]+\.example$") is None


def test_a_floor_line_written_for_an_overlapping_stanza_keeps_the_chain_above_it() -> None:
    # The floor asks for less than the binding gives: its line is the binding's values
    # raised to the floor, never the floor's own lower values.
    config = loads_toml('[global]\ntls = "no"\n[[floor]]\nname = "/^mx\\\\./"\n'
                        'tls = "ifavailable"\n[[binding]]\nname = "b2"\ntls = "required"\n'
                        '[[binding.domain]]\nname = "/\\\\.example$/"\ntls = "ifavailable"\n',
                        "t.toml")
    entries, _w = postfix_entries(config, "b2")
    lines = render_pcre_table(entries).splitlines()
    assert lines[2] == "/^mx\\./\tencrypt", lines
    assert PolicyLookup(Resolver(config))("b2", "mx.test").text == "encrypt"


def test_groups_after_repeats_are_written_without_captures() -> None:
    # Captures after a repeat's splits exceeded PCRE's match limit where the same
    # pattern without captures did not.
    assert pcre_pattern("a?" * 20 + "(a)" * 10 + "b$") == "a?" * 20 + "(?:a)" * 10 + "b$"
