"""Tests of the ``ecelerity.conf`` reader: a corpus of real-looking files and broken ones.

Each ``valid/NAME.conf`` has a ``valid/NAME.json`` describing the expected raw
tree (scopes, TLS options with line and column), the skipped items, the
``dane`` module flag and the files read.  ``invalid/cases.json`` names, for
each broken file, the error class and the file, line and column it must
report.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategies import examples
from tlspolicy._raw import RawScope
from tlspolicy.errors import ConfigError, ConfigSyntaxError, TlsPolicyError, UnknownOptionError
from tlspolicy.formats import ecelerity
from tlspolicy.formats.ecelerity import (
    EcelerityDocument,
    EcelerityIncludeError,
    EcelerityStructureError,
    EcelerityUnknownStanzaError,
    EcelerityWarning,
    load_ecelerity_config,
    loads_ecelerity_config,
    parse_ecelerity,
    read_ecelerity,
)
from tlspolicy.options import ScopeKind

DATA = Path(__file__).parent / "data" / "ecelerity"
VALID = DATA / "valid"
INVALID = DATA / "invalid"
VALID_FILES = sorted(VALID.glob("*.conf"))
INVALID_CASES: dict[str, dict[str, Any]] = json.loads((INVALID / "cases.json").read_text())

ERROR_TYPES: dict[str, type[ConfigError]] = {
    "ConfigSyntaxError": ConfigSyntaxError,
    "EcelerityStructureError": EcelerityStructureError,
    "EcelerityIncludeError": EcelerityIncludeError,
}


def _rel(path: str | None, base: Path) -> str | None:
    return None if path is None else os.path.relpath(path, base)


def _describe_scope(scope: RawScope, base: Path, main: str) -> dict[str, Any]:
    """The scope in the shape of the expected-tree JSON (file given only when not main)."""

    def at(loc: Any) -> list[Any]:
        out = [loc.line, loc.column]
        rel = _rel(loc.file, base)
        if rel != main:
            out.append(rel)
        return out

    def value(v: object) -> object:
        return list(v) if isinstance(v, tuple) else v

    out: dict[str, Any] = {}
    if scope.kind is not ScopeKind.GLOBAL:
        out["kind"] = scope.kind.value
        out["name"] = scope.name
        out["at"] = at(scope.location)
    out["options"] = [[o.name, value(o.value), *at(o.location)] for o in scope.options]
    out["children"] = [_describe_scope(c, base, main) for c in scope.children]
    return out


def _describe_warning(w: EcelerityWarning, base: Path, main: str) -> list[Any]:
    out: list[Any] = [w.kind, w.name, w.argument, w.location.line, w.location.column]
    rel = _rel(w.location.file, base)
    if rel != main:
        out.append(rel)
    return out


@pytest.mark.parametrize("path", VALID_FILES, ids=[p.stem for p in VALID_FILES])
def test_valid_corpus(path: Path) -> None:
    expected = json.loads(path.with_suffix(".json").read_text())
    doc = read_ecelerity(path)
    assert isinstance(doc, EcelerityDocument)
    main = path.name
    assert _describe_scope(doc.tree, VALID, main) == expected["tree"]
    assert [_describe_warning(w, VALID, main) for w in doc.warnings] == expected["warnings"]
    assert doc.has_dane_module is expected["has_dane_module"]
    assert [_rel(f, VALID) for f in doc.files] == expected["files"]


@pytest.mark.parametrize("path", VALID_FILES, ids=[p.stem for p in VALID_FILES])
def test_valid_corpus_locations_carry_scope_and_option(path: Path) -> None:
    doc = read_ecelerity(path)

    def walk(scope: RawScope) -> None:
        for option in scope.options:
            assert option.location.option == option.name
            assert option.location.scope is not None
        for child in scope.children:
            assert child.location.scope is not None and child.name is not None
            assert child.location.scope.endswith(f'{child.kind.value} "{child.name}"')
            walk(child)

    walk(doc.tree)


@pytest.mark.parametrize("path", VALID_FILES, ids=[p.stem for p in VALID_FILES])
def test_valid_corpus_passes_the_validator(path: Path) -> None:
    # Every corpus file is also a valid policy, so the reader's tree fits build_config.
    load_ecelerity_config(path)


@pytest.mark.parametrize("name", sorted(INVALID_CASES), ids=sorted(INVALID_CASES))
def test_invalid_corpus(name: str) -> None:
    case = INVALID_CASES[name]
    with pytest.raises(ERROR_TYPES[case["error"]]) as info:
        read_ecelerity(INVALID / name)
    error = info.value
    assert type(error) is ERROR_TYPES[case["error"]]
    assert _rel(error.location.file, INVALID) == case.get("file", name)
    assert (error.location.line, error.location.column) == (case["line"], case["column"])
    assert case["message"] in error.message, error.message
    # The rendered message names the place, so an operator can find the mistake.
    assert f":{case['line']}:{case['column']}" in str(error)


def test_invalid_corpus_is_complete() -> None:
    on_disk = {p.relative_to(INVALID).as_posix() for p in INVALID.rglob("*.conf")}
    included_only = {n for n in on_disk if "/" in n and not n.endswith("main.conf")}
    assert set(INVALID_CASES) == on_disk - included_only
    assert len(INVALID_CASES) >= 40


def test_corpus_size() -> None:
    assert len(VALID_FILES) >= 15


# ----------------------------------------------------------------- focused checks


def _mem_loader(files: dict[str, str]) -> ecelerity.Loader:
    def load(path: str) -> str:
        try:
            return files[path]
        except KeyError:
            raise FileNotFoundError(2, "No such file or directory", path) from None

    return load


def test_in_memory_includes_relative_to_including_file() -> None:
    files = {
        os.path.join("conf", "a", "one.conf"): 'include "../b/two.conf"\ntls = required\n',
        os.path.join("conf", "b", "two.conf"): "Domain x.example { tls_verify = host }\n",
    }
    doc = parse_ecelerity('include "a/one.conf"\n', filename=os.path.join("conf", "main.conf"),
                          loader=_mem_loader(files))
    assert doc.files == (os.path.join("conf", "main.conf"), os.path.join("conf", "a", "one.conf"),
                         os.path.join("conf", "b", "two.conf"))
    (opt,) = doc.tree.options
    assert (opt.location.file, opt.location.line, opt.location.column) == (
        os.path.join("conf", "a", "one.conf"), 2, 1)
    (domain,) = doc.tree.children
    assert domain.options[0].location.file == os.path.join("conf", "b", "two.conf")


def test_include_cycle_names_the_chain() -> None:
    files = {"a.conf": 'include "b.conf"\n', "b.conf": '\n  include "a.conf"\n'}
    with pytest.raises(EcelerityIncludeError) as info:
        parse_ecelerity('include "a.conf"', filename="main.conf", loader=_mem_loader(files))
    err = info.value
    assert (err.location.file, err.location.line, err.location.column) == ("b.conf", 2, 3)
    assert "a.conf -> b.conf -> a.conf" in err.message


def test_self_include_is_a_cycle() -> None:
    with pytest.raises(EcelerityIncludeError, match=r"main\.conf -> main\.conf"):
        parse_ecelerity('include "main.conf"', filename="main.conf", loader=_mem_loader({}))


def test_diamond_include_is_not_a_cycle() -> None:
    files = {"a.conf": 'include "c.conf"', "b.conf": 'include "c.conf"',
             "c.conf": "Keep_Message_Dicts_In_Memory = true\n"}
    doc = parse_ecelerity('include "a.conf"\ninclude "b.conf"\n', filename="m.conf",
                          loader=_mem_loader(files))
    assert doc.files == ("m.conf", "a.conf", "c.conf", "b.conf")
    assert len(doc.warnings) == 2


def test_include_depth_is_bounded() -> None:
    files = {f"f{i}.conf": f'include "f{i + 1}.conf"' for i in range(100)}
    with pytest.raises(EcelerityIncludeError, match="nested deeper"):
        parse_ecelerity('include "f0.conf"', filename="m.conf", loader=_mem_loader(files))


def test_include_inside_stanza_reads_into_that_stanza() -> None:
    files = {"bank.conf": "tls = required\nDomain bank.example { tls_verify = host }\n"}
    doc = parse_ecelerity('Binding_Group g {\n  include "bank.conf"\n}\n', filename="m.conf",
                          loader=_mem_loader(files))
    (group,) = doc.tree.children
    assert [o.name for o in group.options] == ["tls"]
    assert [c.name for c in group.children] == ["bank.example"]


def test_repeated_binding_group_merges_in_place() -> None:
    text = (
        'binding_group "g" {\n  tls = ifavailable\n  binding "b1" { }\n}\n'
        'domain "x.example" { tls = required }\n'
        'binding_group "g" {\n  tls_verify = ca\n  binding "b2" { }\n}\n'
        'binding_group "G" { }\n'
    )
    doc = parse_ecelerity(text)
    group, domain, other = doc.tree.children
    assert (group.name, domain.name, other.name) == ("g", "x.example", "G")
    assert group.location.line == 1
    assert [o.name for o in group.options] == ["tls", "tls_verify"]
    assert [o.location.line for o in group.options] == [2, 7]
    assert [c.name for c in group.children] == ["b1", "b2"]


def test_repeated_binding_group_across_includes_merges() -> None:
    files = {"g1.conf": 'binding_group g { binding a { } }\n',
             "g2.conf": 'binding_group g { binding b { tls = required } }\n'}
    doc = parse_ecelerity('include "g1.conf"\ninclude "g2.conf"\n', filename="m.conf",
                          loader=_mem_loader(files))
    (group,) = doc.tree.children
    assert [(c.name, c.location.file) for c in group.children] == [("a", "g1.conf"),
                                                                   ("b", "g2.conf")]


def test_other_repeated_scopes_are_kept_for_the_validator() -> None:
    doc = parse_ecelerity('binding b { }\nbinding b { }\ndomain d { }\ndomain d { }\n')
    assert [(c.kind, c.name, c.location.line) for c in doc.tree.children] == [
        (ScopeKind.BINDING, "b", 1), (ScopeKind.BINDING, "b", 2),
        (ScopeKind.DOMAIN, "d", 3), (ScopeKind.DOMAIN, "d", 4)]


def test_value_kinds() -> None:
    doc = parse_ecelerity(
        'tls_ca = "a\\\\b\\"c\\td\\n"\ntls_key = \'single\'\ntls_ciphers = HIGH:!aNULL\n'
        'tls_ifavailable_fallback = 0\nenable_dane = -1\ntls_certificate = 0640\n'
        'tls_protocols = ( "+ALL" -SSLv3 7 )\n')
    values = [o.value for o in doc.tree.options]
    assert values == ['a\\b"c\td\n', "single", "HIGH:!aNULL", 0, -1, "0640",
                      ("+ALL", "-SSLv3", 7)]


def test_comments_of_both_kinds() -> None:
    doc = parse_ecelerity('/* a\n   block */ tls = no # trailing\n#tls = required\n'
                          'tls_verify = /*inline*/ ca\n')
    assert [(o.name, o.value, o.location.line, o.location.column) for o in doc.tree.options] == [
        ("tls", "no", 2, 13), ("tls_verify", "ca", 4, 1)]


def test_value_on_next_line_is_accepted() -> None:
    doc = parse_ecelerity("tls =\n  required\n}" .rstrip("}"))
    assert doc.tree.options[0].value == "required"


def test_crlf_bom_and_tabs() -> None:
    doc = parse_ecelerity("\ufeffBinding b {\r\n\ttls = required\r\n}\r\n")
    (binding,) = doc.tree.children
    opt = binding.options[0]
    assert (opt.location.line, opt.location.column) == (2, 2)


def test_dane_module_flag() -> None:
    assert parse_ecelerity("dane { }\nuse_dane = true\n").has_dane_module
    assert parse_ecelerity('Dane "dane1" { debug_level = 1 }').has_dane_module
    assert not parse_ecelerity("use_dane = true\n").has_dane_module
    # A 'dane' stanza nested in another stanza is not the module (inside a skipped
    # stanza it is not read; inside a policy scope it is an unknown stanza).
    assert not parse_ecelerity("ESMTP_Listener { dane { } }").has_dane_module
    with pytest.raises(EcelerityUnknownStanzaError):
        parse_ecelerity("Binding b { dane { } }")


def test_near_misses_of_tls_options_are_errors() -> None:
    # SEMANTICS section 3: an unknown option is an error; a near miss names the option.
    with pytest.raises(UnknownOptionError) as info:
        parse_ecelerity("Domain d { tls_verfy = host\n  max_outbound_connections = 5 }\n")
    assert str(info.value) == (
        "<string>:1:12: domain \"d\": option 'tls_verfy': unknown option 'tls_verfy': neither "
        "an outbound TLS option nor a documented Momentum option; did you mean 'tls_verify'?")
    doc = parse_ecelerity("Domain d { max_outbound_connections = 5 }\n")
    (other,) = doc.warnings
    assert other.suggestion is None and other.name == "max_outbound_connections"


def test_tls_options_inside_skipped_stanzas_are_not_policy() -> None:
    doc = parse_ecelerity('ESMTP_Listener { tls = required\n Listen ":25" { tls = no } }\n'
                          'Host "mx.example" { tls = required }\n')
    assert doc.tree.options == () and doc.tree.children == ()
    assert [(w.kind, w.name, w.argument) for w in doc.warnings] == [
        ("stanza", "ESMTP_Listener", None), ("stanza", "Host", "mx.example")]


def test_nesting_depth_is_bounded() -> None:
    with pytest.raises(ConfigSyntaxError, match="nested deeper"):
        parse_ecelerity("a { " * 500 + "}" * 500)


def test_read_missing_file_is_located(tmp_path: Path) -> None:
    with pytest.raises(ConfigSyntaxError) as info:
        read_ecelerity(tmp_path / "nope.conf")
    assert info.value.location.file == str(tmp_path / "nope.conf")


def test_read_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.conf"
    path.write_bytes(b'tls_ca = "caf\xe9"\n')
    with pytest.raises(ConfigSyntaxError, match="UTF-8"):
        read_ecelerity(path)


def test_include_of_non_utf8_file_is_located(tmp_path: Path) -> None:
    (tmp_path / "bad.conf").write_bytes(b"\xff\xfe\n")
    (tmp_path / "main.conf").write_text('\ninclude "bad.conf"\n')
    with pytest.raises(EcelerityIncludeError, match="UTF-8") as info:
        read_ecelerity(tmp_path / "main.conf")
    assert (info.value.location.line, info.value.location.column) == (2, 1)


def test_validated_config_from_corpus() -> None:
    config = load_ecelerity_config(VALID / "03_group_nesting.conf")
    (group,) = config.binding_groups
    assert group.name == "transactional"
    assert [b.name for b in group.bindings] == ["tx1", "tx2"]


def test_validator_errors_keep_ecelerity_locations() -> None:
    with pytest.raises(ConfigError) as info:
        loads_ecelerity_config('Binding b {\n  use_dane = true\n}\n', "x.conf")
    assert info.value.location.file == "x.conf"
    assert info.value.location.line == 2


# ------------------------------------------------------------------------- fuzzing

_VALID_TEXTS = [p.read_text() for p in VALID_FILES]
_SPECIALS = [*'{}()="\'#/*\\[]\n \t', "include ", "binding ", "domain ", "\x00", "é"]


def _parse_or_typed_error(text: str) -> None:
    try:
        doc = parse_ecelerity(text, filename="fuzz.conf", loader=_mem_loader(
            {"x.conf": "tls = required", "fuzz.conf": text}))
    except TlsPolicyError:
        return
    assert isinstance(doc.tree, RawScope)


@settings(max_examples=examples(ci=400, default=100), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_SPECIALS + list("abtlsv_=01 ")), max_size=120).map("".join))
def test_fuzz_random_text_raises_only_tlspolicy_errors(text: str) -> None:
    _parse_or_typed_error(text)


@settings(max_examples=examples(ci=200, default=50), deadline=None)
@given(st.text(max_size=300))
def test_fuzz_arbitrary_unicode(text: str) -> None:
    _parse_or_typed_error(text)


@settings(max_examples=examples(ci=400, default=100), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_VALID_TEXTS), st.randoms(use_true_random=False),
       st.integers(min_value=1, max_value=6))
def test_fuzz_mutated_valid_files(text: str, rnd: random.Random, edits: int) -> None:
    chars = list(text)
    for _ in range(edits):
        op = rnd.randrange(3)
        pos = rnd.randrange(len(chars) + 1)
        if op == 0 and chars:
            del chars[min(pos, len(chars) - 1)]
        elif op == 1:
            chars.insert(pos, rnd.choice(_SPECIALS))
        elif chars:
            a = rnd.randrange(len(chars))
            chars[a:a] = chars[pos:pos + rnd.randrange(1, 20)]
    _parse_or_typed_error("".join(chars))
