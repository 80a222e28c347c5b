"""``tlspolicy tree`` shows floors (SEMANTICS 7): their own section after the scopes, and
on each scope a floor raises, which floor raises which of its values to what."""

from __future__ import annotations

import pytest

from tlspolicy import cli, loads_toml
from tlspolicy.policytests import render_tree
from tlspolicy.policytests.tree import build_floors

PAYROLL = 'floor "payroll-partner.example"'
BANK = 'floor "/(^|\\.)bank\\.example$/"'
FLOORS = ("floors (minimums no binding can weaken: every floor matching the domain raises "
          "the values above to its own)")


def test_example_tree_shows_its_floors() -> None:
    lines = render_tree(cli.example_config()).splitlines()
    start = lines.index(FLOORS)
    assert lines[start:] == [
        lines[start],
        f"├── {PAYROLL}  tls=required tls_verify=host",
        f"└── {BANK} [regex]  tls=required tls_verify=ca",
    ]
    # The chain's last scope still ends the scope tree.
    assert lines[start - 1].startswith('    └── binding "default"  tlsv13_ciphersuites=')


def test_example_tree_marks_the_values_floors_raise() -> None:
    lines = render_tree(cli.example_config()).splitlines()
    assert (f'    ├── binding "relay-internal"  tls=no  (raised: by {PAYROLL} tls to required; '
            f"by {BANK} tls to required)") in lines
    assert (f'├── binding_group "marketing"  tls_verify=no  (raised: by {PAYROLL} tls_verify '
            f"to host; by {BANK} tls_verify to ca)") in lines
    # A domain stanza is raised only by the floors matching its name.
    assert '├── domain "legacy-mail.example"  tls=no' in lines
    assert '├── domain "[192.0.2.25]" [IP literal]  tls_ifavailable_fallback=false ' \
           "tls_verify=no" in lines
    assert lines[0].endswith(f"(raised: by {PAYROLL} tls to required, tls_verify to host; "
                             f"by {BANK} tls to required, tls_verify to ca)")


def test_domain_stanzas_raised_by_the_floors_matching_them() -> None:
    config = loads_toml(
        '[[domain]]\nname = "mail.bank.example"\ntls = "no"\n'
        '[[domain]]\nname = "/example$/"\ntls_ifavailable_fallback = true\n'
        '[[domain]]\nname = "other.example"\ntls_verify = "no"\n'
        '[[floor]]\nname = "/bank\\\\.example$/"\ntls = "ifavailable"\n'
        '[[floor]]\nname = "x.example"\ntls_ifavailable_fallback = false\n'
        'tls_protocols = "+TLSv1.2:+TLSv1.3"\n')
    lines = render_tree(config).splitlines()
    assert ('├── domain "mail.bank.example"  tls=no  (raised: by floor "/bank\\.example$/" '
            "tls to ifavailable)") in lines
    # A regex stanza applies to an exact floor's name it matches.
    assert ('├── domain "/example$/" [regex]  tls_ifavailable_fallback=true  (raised: by floor '
            '"x.example" tls_ifavailable_fallback to false)') in lines
    assert '├── domain "other.example"  tls_verify=no' in lines
    assert lines[-2:] == [
        '├── floor "/bank\\.example$/" [regex]  tls=ifavailable',
        '└── floor "x.example"  tls_ifavailable_fallback=false tls_protocols=+TLSv1.2:+TLSv1.3',
    ]


def test_names_only_lists_the_floors_without_marks() -> None:
    lines = render_tree(cli.example_config(), values=False).splitlines()
    assert '    ├── binding "relay-internal"' in lines
    assert lines[-3:] == [FLOORS, f"├── {PAYROLL}", f"└── {BANK} [regex]"]


def test_no_floors_no_section() -> None:
    config = loads_toml('[global]\ntls = "no"\n')
    assert build_floors(config) is None
    assert "floor" not in render_tree(config)


@pytest.mark.parametrize("values", [True, False])
def test_expired_floors_are_not_shown(values: bool) -> None:
    import datetime

    from tlspolicy.scopes import config_at

    config = loads_toml('[global]\ntls = "no"\n[[floor]]\nname = "a.example"\n'
                        'tls = "required"\nexpires = 2020-01-01\nexpiry_weakens = true\n'
                        'reason = "x"\n')
    now = config_at(config, datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC))
    assert "floor" not in render_tree(now, values=values)
