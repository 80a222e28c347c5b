"""The TOML format: layout, case-insensitive options, locations, dump/load."""

from __future__ import annotations

import tomllib
from importlib import resources

import pytest

from tlspolicy import ConfigError, Options, Resolver, Tls, loads_toml
from tlspolicy.formats.loader import dump_toml
from tlspolicy.names import DomainKind
from tlspolicy.options import TlsProtocols, TlsVerify

FULL = r"""
compatibility = "4.8"
match_cache_size = 100

[global]
tls = "ifavailable"
tls_engine = "gnutls"
use_mta_sts = true

[[domain]]
name = "partner.example"
tls = "required"

[[domain]]
name = '/\.bank\.example$/'
TLS_Verify = "host"

[[binding_group]]
name = "transactional"
tls_verify = "ca"
  [[binding_group.domain]]
  name = "[IPv6:2001:db8::1]"
  tls_protocols = "TLSv1.2:TLSv1.3"
  [[binding_group.binding]]
  name = "tx1"
  tls_certificate = "/c.pem"
    [[binding_group.binding.domain]]
    name = "bücher.de"
    tls_certificate = "none"

[[binding]]
name = "bulk1"
tls = "no"
  [[binding.domain]]
  name = "/example/"
  enable_mta_sts = false
"""


def test_full_layout_loads() -> None:
    config = loads_toml(FULL, "full.toml")
    assert str(config.compatibility) == "4.8"
    assert config.match_cache_size == 100
    assert config.options.tls is Tls.IFAVAILABLE
    assert [d.name.kind for d in config.domains] == [DomainKind.EXACT, DomainKind.REGEX]
    assert config.domains[1].name.key == r"\.bank\.example$"
    assert config.domains[1].options == Options(tls_verify=TlsVerify.HOST)
    (group,) = config.binding_groups
    assert group.domains[0].name.key == "[ipv6:2001:db8::1]"
    assert group.domains[0].options.tls_protocols == TlsProtocols.parse("TLSv1.2:TLSv1.3")
    (tx1,) = group.bindings
    assert tx1.domains[0].name.key == "xn--bcher-kva.de"
    assert tx1.domains[0].options.tls_certificate is None
    assert config.bindings[0].domains[0].options.enable_mta_sts is False


def test_empty_file_is_the_empty_configuration() -> None:
    d = Resolver(loads_toml("", "empty.toml")).resolve("example.com")
    assert d.tls is Tls.NO


@pytest.mark.parametrize("key", ["tls_verify", "TLS_VERIFY", "Tls_Verify"])
def test_option_names_are_case_insensitive_in_toml(key: str) -> None:
    config = loads_toml(f'[global]\n{key} = "host"\n')
    assert config.options == Options(tls_verify=TlsVerify.HOST)


def test_values_are_case_insensitive() -> None:
    assert loads_toml('[global]\ntls = "Required"\n').options.tls is Tls.REQUIRED


def test_dump_round_trips_the_full_example() -> None:
    config = loads_toml(FULL, "full.toml")
    text = dump_toml(config)
    assert loads_toml(text, "dumped.toml") == config
    # The dump keeps spellings and is plain TOML in this module's layout.
    data = tomllib.loads(text)
    assert data["compatibility"] == "4.8"
    assert data["binding_group"][0]["binding"][0]["domain"][0] == {
        "name": "bücher.de", "tls_certificate": "none"}
    assert data["domain"][1]["name"] == r"/\.bank\.example$/"
    assert data["binding_group"][0]["domain"][0]["tls_protocols"] == "TLSv1.2:TLSv1.3"


def test_dump_keeps_declaration_order_of_regex_domains() -> None:
    text = "".join(f'[[domain]]\nname = "/{c}/"\ntls = "required"\n' for c in "zyxabc")
    config = loads_toml(dump_toml(loads_toml(text)))
    assert [d.name.key for d in config.domains] == list("zyxabc")


def test_dump_of_empty_config_is_empty() -> None:
    assert dump_toml(loads_toml("")) == ""


def test_bundled_example_loads() -> None:
    text = resources.files("tlspolicy").joinpath("data/example.toml").read_text("utf-8")
    config = loads_toml(text, "example.toml")
    assert loads_toml(dump_toml(config)) == config


def test_errors_carry_file_line_scope_and_option() -> None:
    text = '[[binding]]\nname = "b1"\n\n[[binding.domain]]\nname = "x.example"\ntls = "sure"\n'
    with pytest.raises(ConfigError) as info:
        loads_toml(text, "conf/outbound.toml")
    loc = info.value.location
    assert (loc.file, loc.line, loc.option) == ("conf/outbound.toml", 6, "tls")
    assert loc.scope == 'binding "b1" > domain "x.example"'
    assert str(info.value).startswith(
        "conf/outbound.toml:6: binding \"b1\" > domain \"x.example\": option 'tls'")
    assert "'sure'" in str(info.value)


def test_syntax_error_has_line_and_column() -> None:
    with pytest.raises(ConfigError) as info:
        loads_toml('[global]\ntls = "required\n', "broken.toml")
    assert info.value.location.file == "broken.toml"
    assert info.value.location.line == 2
    assert info.value.location.column is not None


def test_inline_tables_are_accepted() -> None:
    config = loads_toml('domain = [{ name = "a.example", tls = "required" }]\n')
    assert config.domains[0].options.tls is Tls.REQUIRED
