"""Scope models: validity by construction, layering, repeated groups (SEMANTICS 2, 3)."""

from __future__ import annotations

import attrs
import pytest

from tlspolicy import Config, Options, Resolver, Tls
from tlspolicy.errors import (
    BindingGroupConflictError,
    DuplicateScopeError,
    InvalidValueError,
    OptionScopeError,
    OptionVersionError,
)
from tlspolicy.formats.toml import toml_to_raw
from tlspolicy.names import DomainName
from tlspolicy.options import CompatVersion, TlsEngine, TlsVerify
from tlspolicy.scopes import (
    BindingGroupScope,
    BindingScope,
    DomainScope,
    build_config,
    layer_configs,
)
from tlspolicy.scopes.models import trusted_domain, trusted_exact_domains


def dom(name: str, **options: object) -> DomainScope:
    return DomainScope(DomainName.parse(name), Options(**options))  # type: ignore[arg-type]


def test_option_in_wrong_scope_is_rejected_by_the_models() -> None:
    with pytest.raises(OptionScopeError, match="tls_engine"):
        dom("example.com", tls_engine=TlsEngine.GNUTLS)
    with pytest.raises(OptionScopeError, match="use_dane"):
        BindingScope("b1", Options(use_dane=True))
    with pytest.raises(OptionScopeError, match="use_mta_sts"):
        BindingGroupScope("g1", Options(use_mta_sts=True))
    Config(Options(tls_engine=TlsEngine.GNUTLS, use_dane=True))
    dom("example.com", use_dane=True, use_mta_sts=True)


def test_duplicate_scopes_are_rejected_by_the_models() -> None:
    with pytest.raises(DuplicateScopeError):
        Config(domains=(dom("example.com"), dom("EXAMPLE.com.")))
    with pytest.raises(DuplicateScopeError):
        BindingScope("b1", domains=(dom("/x/"), dom("/x/")))
    with pytest.raises(DuplicateScopeError):
        Config(binding_groups=(BindingGroupScope("g"), BindingGroupScope("g")))
    with pytest.raises(DuplicateScopeError):
        BindingGroupScope("g", bindings=(BindingScope("b"), BindingScope("b")))


def test_binding_in_two_groups_is_rejected_by_the_model() -> None:
    with pytest.raises(BindingGroupConflictError, match="b1"):
        Config(binding_groups=(BindingGroupScope("g1", bindings=(BindingScope("b1"),)),
                               BindingGroupScope("g2", bindings=(BindingScope("b1"),))))
    with pytest.raises(BindingGroupConflictError, match="b1"):
        Config(binding_groups=(BindingGroupScope("g1", bindings=(BindingScope("b1"),)),),
               bindings=(BindingScope("b1"),))


def test_same_domain_in_different_containers_is_fine() -> None:
    Config(domains=(dom("example.com"),),
           bindings=(BindingScope("b1", domains=(dom("example.com"),)),))


@pytest.mark.parametrize("name", ["", " b1", "b1 ", 5])
def test_bad_binding_names(name: object) -> None:
    with pytest.raises(InvalidValueError):
        BindingScope(name)  # type: ignore[arg-type]


def test_binding_names_are_case_sensitive() -> None:
    config = Config(bindings=(BindingScope("b1"), BindingScope("B1", Options(tls=Tls.REQUIRED))))
    resolver = Resolver(config)
    assert resolver.resolve("example.com", "b1").tls is Tls.NO
    assert resolver.resolve("example.com", "B1").tls is Tls.REQUIRED


def test_version_checked_by_the_model() -> None:
    with pytest.raises(OptionVersionError, match="use_dane"):
        Config(Options(use_dane=True), compatibility=CompatVersion.parse("4.6"))


def test_bad_match_cache_size_in_the_model() -> None:
    with pytest.raises(InvalidValueError):
        Config(match_cache_size=-1)


def test_iter_bindings_names_groups() -> None:
    config = Config(binding_groups=(BindingGroupScope("g1", bindings=(BindingScope("a"),)),),
                    bindings=(BindingScope("b"),))
    assert [(g, b.name) for g, b in config.iter_bindings()] == [("g1", "a"), ("default", "b")]


def test_repeated_binding_group_is_an_error_unless_merging() -> None:
    text = """
[[binding_group]]
name = "g1"
tls = "ifavailable"
[[binding_group.binding]]
name = "b1"
[[binding_group]]
name = "g1"
tls_verify = "ca"
[[binding_group.binding]]
name = "b2"
"""
    with pytest.raises(DuplicateScopeError, match="g1"):
        build_config(toml_to_raw(text, "g.toml"))
    merged = build_config(toml_to_raw(text, "g.toml"), merge_groups=True)
    (group,) = merged.binding_groups
    assert group.options == Options(tls=Tls.IFAVAILABLE, tls_verify=TlsVerify.CA)
    assert [b.name for b in group.bindings] == ["b1", "b2"]


def test_merged_groups_still_reject_a_binding_in_another_group() -> None:
    text = """
[[binding_group]]
name = "g1"
[[binding_group.binding]]
name = "b1"
[[binding_group]]
name = "g2"
[[binding_group.binding]]
name = "b1"
"""
    with pytest.raises(BindingGroupConflictError):
        build_config(toml_to_raw(text), merge_groups=True)


def test_layer_configs_overlays_option_by_option_and_keeps_regex_order() -> None:
    first = Config(Options(tls=Tls.IFAVAILABLE, tls_ca="/a.pem"),
                   domains=(dom("/a/", tls=Tls.NO), dom("/b/", tls=Tls.REQUIRED)))
    second = Config(Options(tls=Tls.REQUIRED),
                    domains=(dom("/c/", tls=Tls.IFAVAILABLE), dom("/b/", tls_ca="/b.pem")))
    layered = layer_configs([first, second])
    assert layered.options == Options(tls=Tls.REQUIRED, tls_ca="/a.pem")
    assert [d.name.key for d in layered.domains] == ["a", "b", "c"]
    assert layered.domains[1].options == Options(tls=Tls.REQUIRED, tls_ca="/b.pem")


def test_layer_configs_rejects_binding_changing_group() -> None:
    first = Config(binding_groups=(BindingGroupScope("g1", bindings=(BindingScope("b1"),)),))
    second = Config(binding_groups=(BindingGroupScope("g2", bindings=(BindingScope("b1"),)),))
    with pytest.raises(BindingGroupConflictError):
        layer_configs([first, second])


def test_layering_a_config_onto_itself_changes_nothing() -> None:
    config = Config(Options(tls=Tls.REQUIRED), domains=(dom("/a/", tls=Tls.NO),),
                    bindings=(BindingScope("b1", Options(tls_ca="/x"), (dom("x.example"),)),))
    assert layer_configs([config, config]) == config
    assert layer_configs([config]) == config


def test_trusted_domain_builders_set_every_field_as_the_constructors_do() -> None:
    # They set the slots one by one: a field added to the models must be set there too.
    options = Options(tls=Tls.REQUIRED)
    expected = DomainScope(DomainName.parse("a.example"), options)
    (exact,) = trusted_exact_domains(["a.example"], [options])
    for built in (exact, trusted_domain(DomainName.parse("a.example"), options)):
        for field in attrs.fields(DomainScope):
            assert getattr(built, field.name) == getattr(expected, field.name), field.name
        for field in attrs.fields(DomainName):
            assert getattr(built.name, field.name) == getattr(expected.name, field.name)
    assert exact.name.key is exact.name.text
