"""Writing ecelerity.conf: round trips, quoting, and the conversion corpus.

The corpus under ``tests/data/ecelerity/valid`` converts to the models in
``tests/data/ecelerity/converted`` (TOML, written out and reviewed by hand
against each ``.conf``); equality is on the models, so formatting of the
expectation files does not matter.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import PROPERTY_EXAMPLES
from strategies import configs as shared_configs
from tlspolicy import Config, Options, Tls
from tlspolicy.formats.ecelerity import (
    EcelerityExportError,
    dumps_ecelerity,
    ecelerity_export_losses,
    load_ecelerity_config,
    loads_ecelerity_config,
)
from tlspolicy.formats.toml import dumps_toml, loads_toml
from tlspolicy.names import DomainName
from tlspolicy.options import NEWEST_VERSION, TlsVerify
from tlspolicy.scopes import BindingGroupScope, BindingScope, DomainScope
from tlspolicy.scopes.models import DEFAULT_MATCH_CACHE_SIZE

DATA = Path(__file__).parent / "data" / "ecelerity"
CORPUS = sorted((DATA / "valid").glob("*.conf"))


def _portable(config: Config) -> Config:
    """``config`` without the two tlspolicy-only settings ecelerity.conf cannot hold."""
    return attrs.evolve(config, compatibility=None, match_cache_size=None)


def configs() -> st.SearchStrategy[Config]:
    """Random valid configurations at the newest version, pinned or not.

    ecelerity.conf has no compatibility setting, so the version is not part
    of what the writer carries; the tlspolicy-only settings are drawn too (by
    the shared strategy), to check they are reported.
    """
    return shared_configs(versions=(None, str(NEWEST_VERSION)))


@settings(max_examples=PROPERTY_EXAMPLES)
@given(configs())
def test_ecelerity_round_trip(config: Config) -> None:
    text = dumps_ecelerity(config)
    assert loads_ecelerity_config(text) == _portable(config)


@settings(max_examples=PROPERTY_EXAMPLES)
@given(configs())
def test_ecelerity_then_toml_round_trip(config: Config) -> None:
    from_conf = loads_ecelerity_config(dumps_ecelerity(config))
    assert loads_toml(dumps_toml(from_conf)) == _portable(config)


@settings(max_examples=100)
@given(configs())
def test_losses_listed_exactly_when_settings_differ_from_defaults(config: Config) -> None:
    # A setting equal to its default reads back the same: nothing is lost.
    losses = ecelerity_export_losses(config)
    assert len(losses) == (config.compatibility not in (None, NEWEST_VERSION)) + (
        config.match_cache_size not in (None, DEFAULT_MATCH_CACHE_SIZE))
    text = dumps_ecelerity(config)
    for loss in losses:
        assert f"# not written: {loss}" in text


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 15


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_corpus_converts_to_expected_model(path: Path) -> None:
    expected_file = DATA / "converted" / f"{path.stem}.toml"
    expected = loads_toml(expected_file.read_text("utf-8"), str(expected_file))
    assert load_ecelerity_config(path) == expected


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_corpus_survives_export(path: Path) -> None:
    config = load_ecelerity_config(path)
    assert loads_ecelerity_config(dumps_ecelerity(config)) == config
    assert loads_toml(dumps_toml(config)) == config


def test_repeated_group_converts_to_one_group() -> None:
    config = load_ecelerity_config(DATA / "valid" / "13_repeated_group.conf")
    (group,) = config.binding_groups
    assert group.options == Options(tls=Tls.IFAVAILABLE, tls_verify=TlsVerify.CA)
    assert [b.name for b in group.bindings] == ["one", "two"]


def test_output_shape() -> None:
    config = Config(
        options=Options(tls=Tls.IFAVAILABLE),
        domains=(DomainScope(DomainName.parse(r"/(^|\.)bank\.example$/"),
                             Options(tls=Tls.REQUIRED)),
                 DomainScope(DomainName.parse("[192.0.2.1]"))),
        binding_groups=(BindingGroupScope("g", bindings=(BindingScope("b 1"),)),),
    )
    text = dumps_ecelerity(config)
    assert "tls = ifavailable\n" in text
    assert 'domain "/(^|\\.)bank\\.example$/" {\n  tls = required\n}\n' in text
    assert 'domain "[192.0.2.1]" { }\n' in text
    assert 'binding_group "g" {\n  binding "b 1" { }\n}\n' in text


@pytest.mark.parametrize("name", [
    'quote"inside', "back\\slash", "tab\there", "new\nline", "'single'", "/slashes/",
    "/with\"quote/", "/with'quote/", "/a\\/", "ünïcode",
])
def test_awkward_binding_names_read_back(name: str) -> None:
    config = Config(bindings=(BindingScope(name, Options(tls=Tls.REQUIRED)),))
    assert loads_ecelerity_config(dumps_ecelerity(config)) == config


def test_awkward_values_read_back() -> None:
    config = Config(options=Options(tls_ca='/etc/ssl/"odd" dir\\ca.pem',
                                    tls_ciphers="HIGH:!aNULL"))
    assert loads_ecelerity_config(dumps_ecelerity(config)) == config


def test_regex_with_both_quotes_is_refused() -> None:
    config = Config(domains=(DomainScope(DomainName.parse("/a\"b'c/")),))
    with pytest.raises(EcelerityExportError, match="both quote characters"):
        dumps_ecelerity(config)
