"""lint: each check fires where it can prove a likely mistake, and stays silent otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from tlspolicy.cli import example_config
from tlspolicy.errors import ConfigErrors, UnknownOptionError
from tlspolicy.formats.ecelerity import loads_ecelerity_config, parse_ecelerity
from tlspolicy.formats.lint import LintWarning, lint_config, lint_document, lint_file
from tlspolicy.formats.toml import loads_toml


def codes(warnings: list[LintWarning]) -> list[tuple[str, str]]:
    return [(w.code, w.scope) for w in warnings]


def lint_toml(text: str) -> list[LintWarning]:
    return lint_config(loads_toml(text))


def test_clean_config() -> None:
    assert lint_toml('[global]\ntls = "ifavailable"\ntls_verify = "optional"\n') == []


def test_verify_without_tls() -> None:
    found = lint_toml('[global]\ntls_verify = "host"\ntls_ca = "/ca.pem"\n')
    assert codes(found) == [("verify-without-tls", "global")]
    assert "tls_verify, tls_ca" in found[0].message
    # A domain that switches TLS on makes the global setting useful.
    assert lint_toml('[global]\ntls_verify = "host"\n[[domain]]\nname = "a.example"\n'
                     'tls = "required"\n') == []
    # MTA-STS can switch TLS on too.
    assert lint_toml('[global]\ntls_verify = "host"\nuse_mta_sts = true\n') == []
    found = lint_toml('[[binding]]\nname = "b"\ntls = "no"\n[[binding.domain]]\n'
                      'name = "x.example"\ntls_certificate = "/c.pem"\n')
    assert codes(found) == [("verify-without-tls", 'binding "b" > domain "x.example"')]


def test_fallback_under_required() -> None:
    found = lint_toml('[global]\ntls = "required"\ntls_ifavailable_fallback = false\n')
    assert codes(found) == [("fallback-under-required", "global")]
    assert lint_toml('[global]\ntls = "required"\ntls_ifavailable_fallback = false\n'
                     '[[domain]]\nname = "/x/"\ntls = "ifavailable"\n') == []


def test_regex_shadowed() -> None:
    found = lint_toml('[[domain]]\nname = "/example/"\ntls = "required"\n'
                      '[[domain]]\nname = "/mail\\\\.example\\\\.com$/"\ntls = "no"\n'
                      'tls_verify = "ca"\n')
    assert codes(found) == [("regex-shadowed", 'domain "/mail\\.example\\.com$/"')]
    assert "sets tls" in found[0].message
    # Not provable (a character class): silent.
    assert lint_toml('[[domain]]\nname = "/[a-z]xample/"\ntls = "required"\n'
                     '[[domain]]\nname = "/example/"\ntls = "no"\n') == []
    # Anchored earlier pattern covers only names that start the same way.
    found = lint_toml('[[domain]]\nname = "/^mx/"\ntls = "required"\n'
                      '[[domain]]\nname = "/^mx1\\\\./"\ntls = "no"\n'
                      '[[domain]]\nname = "/amx1/"\ntls = "no"\n')
    assert [s for _c, s in codes(found)] == ['domain "/^mx1\\./"']


def test_unreachable_and_group_trap() -> None:
    text = ('[[domain]]\nname = "p.example"\ntls_verify = "host"\n'
            '[[binding_group]]\nname = "g"\ntls_verify = "no"\n'
            '[[binding_group.binding]]\nname = "b1"\n'
            '[[binding]]\nname = "default"\ntls_verify = "ca"\n')
    found = lint_toml(text)
    assert ("unreachable-domain-option", 'domain "p.example"') in codes(found)
    trap = [w for w in found if w.code == "group-beats-global-domain"]
    assert len(trap) == 1 and 'b1 (by binding_group "g")' in trap[0].message
    assert 'default (by binding "default")' in trap[0].message
    # The group restating the domain is a deliberate override, not the trap.
    text = ('[global]\ntls = "ifavailable"\n'
            '[[domain]]\nname = "p.example"\ntls_verify = "host"\n'
            '[[binding_group]]\nname = "g"\ntls_verify = "no"\n'
            '[[binding_group.domain]]\nname = "p.example"\ntls_verify = "ca"\n'
            '[[binding_group.binding]]\nname = "b1"\n')
    assert [c for c, _s in codes(lint_toml(text))] == []


def test_empty_group_domains_never_apply() -> None:
    found = lint_toml('[[binding_group]]\nname = "g"\n[[binding_group.domain]]\n'
                      'name = "x.example"\ntls = "required"\n')
    assert codes(found) == [("unreachable-domain-option",
                             'binding_group "g" > domain "x.example"')]


def test_example_trap_is_found() -> None:
    # The example closes the trap with floors; without them it is open again.
    import attrs

    found = lint_config(attrs.evolve(example_config(), floors=()))
    assert any(w.code == "group-beats-global-domain" and "bulk-1" in w.message
               and w.scope == 'domain "payroll-partner.example"' for w in found)


def test_example_floors_close_the_trap_and_are_reported_as_information() -> None:
    found = lint_config(example_config())
    assert [w for w in found if not w.informational] == []
    assert any(w.code == "floor-raised" and "relay-internal" in w.message
               and w.scope == 'floor "payroll-partner.example"' for w in found)


def test_exception_without_reason() -> None:
    found = lint_toml('[[domain]]\nname = "x.example"\ntls = "no"\nexpires = 2030-01-01\n'
                      'expiry_weakens = true\n')
    assert ("exception-without-reason", 'domain "x.example"') in codes(found)


def test_ecelerity_findings(tmp_path: Path) -> None:
    # A near miss of a TLS option is no longer a lint finding but a load error
    # (SEMANTICS section 3): lint, like check, refuses the file and names the typo.
    typo = ('use_dane = true\ntls = ifavailable\ntls_verfy = host\n'
            'binding "b" {\n  tls_ciphers_list = "x"\n}\n')
    with pytest.raises(ConfigErrors) as info:
        parse_ecelerity(typo, filename="x.conf")
    first, second = info.value.errors
    assert isinstance(first, UnknownOptionError) and first.location.line == 3
    assert "did you mean 'tls_verify'" in str(first)
    assert second.location.line == 5 and second.location.option == "tls_ciphers_list"
    path = tmp_path / "m.conf"
    path.write_text("dane { }\n" + typo)
    with pytest.raises(ConfigErrors):
        lint_file(path)
    text = 'use_dane = true\ntls = ifavailable\ntls_verify = host\n'
    document = parse_ecelerity(text, filename="x.conf")
    found = lint_document(document, loads_ecelerity_config(text, "x.conf"))
    assert [w.code for w in found] == ["dane-module-missing"]
    path.write_text("dane { }\n" + text)
    assert [w.code for w in lint_file(path)] == []


def test_regex_restated_in_the_group_silences_the_trap() -> None:
    # Exactly as the warning advises: the regex stanza repeated inside the group (and
    # inside a binding) is a deliberate override, as for an exact name.
    trap = ('[global]\ntls = "ifavailable"\n'
            '[[domain]]\nname = "/(^|\\\\.)bank\\\\.example$/"\ntls_verify = "host"\n'
            '[[binding_group]]\nname = "g"\ntls_verify = "no"\n')
    restated_group = ('[[binding_group.domain]]\nname = "/(^|\\\\.)bank\\\\.example$/"\n'
                      'tls_verify = "ca"\n')
    members = '[[binding_group.binding]]\nname = "b1"\n'
    found = lint_toml(trap + members)
    assert [c for c, _s in codes(found)] == ["group-beats-global-domain"]
    assert lint_toml(trap + restated_group + members) == []
    # Restated in the binding instead: that binding is fine, the other one is not.
    in_binding = (members + '[[binding_group.binding.domain]]\n'
                  'name = "/(^|\\\\.)bank\\\\.example$/"\ntls_verify = "host"\n'
                  '[[binding_group.binding]]\nname = "b2"\n')
    [warning] = [w for w in lint_toml(trap + in_binding)
                 if w.code == "group-beats-global-domain"]
    assert "b2 (by binding_group" in warning.message and "b1" not in warning.message
    # A different pattern in the group is no restatement.
    other = restated_group.replace("bank", "bonk")
    assert "group-beats-global-domain" in [c for c, _s in codes(
        lint_toml(trap + other + members))]
