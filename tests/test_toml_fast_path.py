"""The fast TOML reader accepts exactly what the located path accepts, and builds the same model.

``loads_toml`` first tries a reader that builds the configuration straight from
``tomllib``'s dictionaries and gives up on anything unusual; the located path
(``toml_to_raw`` + ``build_config``) then reports the problems.  These tests
check that the fast reader never accepts what the located path refuses and
never builds a different configuration.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import configs, examples
from tlspolicy.errors import ConfigError
from tlspolicy.formats.toml import (
    _Bail,
    _FastReader,
    config_to_toml,
    dumps_toml,
    loads_toml,
    toml_to_raw,
)
from tlspolicy.scopes import Config, build_config

BAD_CONFIGS = Path(__file__).parent / "data" / "bad-configs"


def _fast(document: dict[str, Any]) -> Config | None:
    try:
        return _FastReader().build(document)
    except _Bail:
        return None


def _located(text: str) -> Config | ConfigError:
    try:
        return build_config(toml_to_raw(text, "f.toml"))
    except ConfigError as exc:
        return exc


def _same(a: Config, b: Config) -> None:
    # repr shows what == leaves out: the spelling of domain names and value types.
    assert a == b
    assert repr(a) == repr(b)


@settings(max_examples=examples(ci=200, default=50))
@given(configs())
def test_fast_reader_builds_what_the_located_path_builds(config: Config) -> None:
    text = dumps_toml(config)
    fast = _fast(tomllib.loads(text))
    assert fast is not None, text
    located = _located(text)
    assert isinstance(located, Config)
    _same(fast, located)
    _same(fast, config)


_KEYS = st.sampled_from(["name", "Name", "tls", "TLS", "tls_verify", "use_dane", "tls_engine",
                         "enable_dane", "tls_protocols", "domain", "Domain", "binding",
                         "binding_group", "global", "compatibility", "match_cache_size",
                         "tls_ifavailable_fallback", "tlsv13_ciphersuites", "bogus"])
_VALUES = st.one_of(
    st.sampled_from(["required", "no", "ca", "host", "yes", "none", " ", "", "4.6", "4.0",
                     "+ALL:-SSLv3", "gnutls", "a.example", "A.Example.", "/x$/", "/(/",
                     "[192.0.2.1]", "192.0.2.1", "b1", "g1", " b1", "default", "bad..name",
                     "-x.example", "bücher.example", "1.example", "_srv.example"]),
    st.booleans(), st.integers(-1, 3), st.floats(0, 2), st.none())


def _mutate(document: Any, data: st.DataObject) -> Any:
    """Change one key or value somewhere in the document."""
    tables: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            tables.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    table = data.draw(st.sampled_from(tables))
    action = data.draw(st.sampled_from(["set", "rename", "drop", "copy", "nest"]))
    if action == "set" or not table:
        table[data.draw(_KEYS)] = data.draw(_VALUES)
    elif action == "rename":
        key = data.draw(st.sampled_from(sorted(table)))
        table[data.draw(_KEYS)] = table.pop(key)
    elif action == "drop":
        del table[data.draw(st.sampled_from(sorted(table)))]
    elif action == "copy":
        arrays = [v for t in tables for v in t.values() if isinstance(v, list) and v]
        if arrays:
            array = data.draw(st.sampled_from(arrays))
            array.append(dict(data.draw(st.sampled_from(array))))
    else:
        table[data.draw(st.sampled_from(["domain", "binding", "binding_group", "global"]))] = \
            data.draw(st.sampled_from([{}, [], [{"name": "n.example"}], "x"]))
    return document


@settings(max_examples=examples(ci=500, default=100))
@given(configs(), st.data())
def test_fast_reader_never_accepts_more_than_the_located_path(config: Config,
                                                             data: st.DataObject) -> None:
    document = config_to_toml(config)
    for _ in range(data.draw(st.integers(1, 3))):
        document = _mutate(document, data)
    try:
        text = tomli_w.dumps(document)
    except Exception:  # values tomli_w cannot write (None): not a TOML document
        return
    fast = _fast(tomllib.loads(text))
    located = _located(text)
    if fast is not None:
        assert isinstance(located, Config), (text, located)
        _same(fast, located)
    result: Config | ConfigError
    try:
        result = loads_toml(text, "f.toml")
    except ConfigError as exc:
        result = exc
    if isinstance(located, Config):
        assert isinstance(result, Config)
        _same(result, located)
    else:
        # The same error, word for word, as the located path reports.
        assert type(result) is type(located)
        assert str(result) == str(located)


@pytest.mark.parametrize("path", sorted(BAD_CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_fast_reader_gives_up_on_every_bad_configuration(path: Path) -> None:
    text = path.read_text()
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return
    located = _located(text)
    if isinstance(located, ConfigError):
        assert _fast(document) is None
