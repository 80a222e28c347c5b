"""``tlspolicy diff``: every change of decision, classed by the strictness order.

Property-tested with generated configurations: weakening the decision of a
(binding, domain) pair is reported as a downgrade for that pair, a change
whose decisions are all less strict somewhere is reported as a downgrade
there, and a change that leaves every decision as it was reports nothing.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from strategies import PROPERTY_EXAMPLES, configs, options
from tlspolicy import Action, Config, Decision, Options, Resolver, Tls, cli, loads_toml
from tlspolicy.diff import ChangeClass, diff_configs, format_diff, regex_example
from tlspolicy.formats.loader import dump_toml
from tlspolicy.names import DomainName, normalise_domain
from tlspolicy.options import CompatVersion, ScopeKind, TlsProtocols, TlsVerify, TlsVersion
from tlspolicy.scopes import BindingGroupScope, BindingScope, DomainScope, layer_configs

DATA = resources.files("tlspolicy").joinpath("data")
EXAMPLE = Path(str(DATA.joinpath("example.toml")))

DOWN, UP, NEUTRAL, REVIEW = (ChangeClass.DOWNGRADE, ChangeClass.UPGRADE, ChangeClass.NEUTRAL,
                             ChangeClass.REVIEW)


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
            *argv: str) -> tuple[int, str, str]:
    """Run the real command line."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def changes(old: str, new: str) -> list[tuple[str, str, str, str, str, str]]:
    """(class, facet, old, new, binding, domain) for every change between two TOML texts."""
    result = diff_configs(loads_toml(old), loads_toml(new))
    return [(c.cls.value, c.facet, c.old, c.new, c.probe.binding if c.probe else "",
             c.probe.domain if c.probe else "") for c in result.changes]


def facets(old: str, new: str) -> set[tuple[str, str]]:
    return {(cls, facet) for cls, facet, *_ in changes(old, new)}


# ------------------------------------------------------------------ the example

def test_identical_and_round_tripped_configurations_report_nothing() -> None:
    example = cli.example_config()
    assert diff_configs(example, example).changes == ()
    assert diff_configs(example, loads_toml(dump_toml(example))).changes == ()
    text = format_diff(diff_configs(example, example))
    assert "no decision changed" in text


def test_probes_cover_every_binding_and_named_domain() -> None:
    result = diff_configs(cli.example_config(), cli.example_config())
    bindings = {p.binding for p in result.probes}
    assert bindings == {"tx-eu-1", "tx-us-1", "bulk-1", "bulk-2", "relay-internal", "default"}
    domains = {p.domain: p.origin for p in result.probes}
    assert domains["payroll-partner.example"] == "exact stanza"
    assert domains["[192.0.2.25]"] == "IP-literal stanza"
    assert domains["partner-vpn.example"] == "exact stanza"
    assert domains["bank.example"].startswith("generated to match regex stanza")
    defaults = [d for d, origin in domains.items() if origin.startswith("matched by no stanza")]
    assert len(defaults) == 1
    assert len(result.probes) == len(bindings) * len(domains)


def weakened(tmp: Path) -> Path:
    text = EXAMPLE.read_text("utf-8")
    new = (text.replace('tls_verify = "host"\ntls_ca = "/etc/tlspolicy/ca/payroll',
                        'tls_verify = "optional"\ntls_ca = "/etc/tlspolicy/ca/payroll')
           # The payroll floor holds the host check too: relax it as well.
           .replace('tls_verify = "host"\nreason = "payroll contract',
                    'tls_verify = "optional"\nreason = "payroll contract'))
    assert new != text
    path = tmp / "weakened.toml"
    path.write_text(new, "utf-8")
    return path


def test_cli_diff_fails_on_a_weakened_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    weak = weakened(tmp_path)
    code, out, _ = run_cli(monkeypatch, capsys, "diff", str(EXAMPLE), str(weak))
    assert code == 0
    code, out, _ = run_cli(monkeypatch, capsys, "diff", str(EXAMPLE), str(weak),
                           "--fail-on-downgrade")
    assert code == 1
    assert "DOWNGRADE verification: host -> optional" in out
    assert 'old from: domain "payroll-partner.example"' in out
    assert 'binding "default" -> payroll-partner.example' in out
    # The transactional group restates host for its bindings: not downgraded there.
    assert 'binding "tx-eu-1" -> payroll-partner.example' not in out
    # The payroll floor covered the bulk pool too, so relaxing it shows there.
    assert 'binding "bulk-1" -> payroll-partner.example' in out
    assert "4 downgrades" in out
    code, out, _ = run_cli(monkeypatch, capsys, "diff", str(EXAMPLE), str(weak), "--json")
    data = json.loads(out)
    assert data["summary"]["downgrade"] == 4
    assert {c["binding"] for c in data["changes"]} == {"default", "relay-internal", "bulk-1",
                                                       "bulk-2"}
    assert all(c["facet"] == "verification" for c in data["changes"])
    # Nothing got weaker the other way round.
    code, out, _ = run_cli(monkeypatch, capsys, "diff", "--old", str(weak), "--new",
                           str(EXAMPLE), "--fail-on-downgrade")
    assert code == 0 and "4 upgrades" in out


def test_fail_on_review(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "old.toml"
    old.write_text('[global]\ntls = "required"\ntls_ciphers = "HIGH"\n')
    new = tmp_path / "new.toml"
    new.write_text('[global]\ntls = "required"\ntls_ciphers = "DEFAULT"\n')
    assert run_cli(monkeypatch, capsys, "diff", str(old), str(new),
                   "--fail-on-downgrade")[0] == 0
    code, out, _ = run_cli(monkeypatch, capsys, "diff", str(old), str(new), "--fail-on-review")
    assert code == 1 and "REVIEW    tls_ciphers: HIGH -> DEFAULT" in out


def test_layered_sides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    base = tmp_path / "base.toml"
    base.write_text('[global]\ntls = "required"\n')
    local = tmp_path / "local.toml"
    local.write_text('[global]\ntls = "ifavailable"\n')
    code, out, _ = run_cli(monkeypatch, capsys, "diff", "--old", str(base), "--new", str(base),
                           "--new", str(local), "--fail-on-downgrade")
    assert code == 1 and "DOWNGRADE tls: required -> ifavailable" in out
    assert f"{base}, {local}" in out
    code, _out, err = run_cli(monkeypatch, capsys, "diff", str(base))
    assert code == 2 and "no new configuration given" in err


# ------------------------------------------------------------------ classes

G = "[global]\n"


@pytest.mark.parametrize(("old", "new", "expected"), [
    (G + 'tls = "required"\n', G + 'tls = "ifavailable"\n', {("downgrade", "tls")}),
    (G + 'tls = "ifavailable"\n', G + 'tls = "required"\n', {("upgrade", "tls")}),
    (G + 'tls = "ifavailable"\ntls_verify = "host"\n', G + 'tls = "ifavailable"\n'
     'tls_verify = "ca"\n', {("downgrade", "verification")}),
    (G + 'tls = "ifavailable"\ntls_ifavailable_fallback = false\n',
     G + 'tls = "ifavailable"\n', {("downgrade", "fallback")}),
    (G + 'tls = "ifavailable"\n', G + 'tls = "ifavailable"\ntls_ifavailable_fallback = false\n',
     {("upgrade", "fallback")}),
    # Fallback cannot matter while TLS is required on both sides.
    (G + 'tls = "required"\ntls_ifavailable_fallback = false\n', G + 'tls = "required"\n',
     {("neutral", "fallback")}),
    (G + "use_mta_sts = true\n", G + "use_mta_sts = true\nenable_mta_sts = false\n",
     {("downgrade", "mta-sts")}),
    (G + "use_dane = true\n", G, {("downgrade", "dane")}),
    (G + 'tls = "ifavailable"\ntls_protocols = "TLSv1.2:TLSv1.3"\n',
     G + 'tls = "ifavailable"\ntls_protocols = "TLSv1.1:TLSv1.2:TLSv1.3"\n',
     {("downgrade", "tls_protocols")}),
    (G + 'tls = "ifavailable"\ntls_protocols = "TLSv1.2:TLSv1.3"\n',
     G + 'tls = "ifavailable"\ntls_protocols = "TLSv1.3"\n', {("upgrade", "tls_protocols")}),
    (G + 'tls = "ifavailable"\ntls_protocols = "TLSv1.2"\n',
     G + 'tls = "ifavailable"\ntls_protocols = "TLSv1.2:TLSv1.3"\n',
     {("neutral", "tls_protocols")}),
    (G + 'tls = "ifavailable"\ntls_ca = "/a.pem"\n', G + 'tls = "ifavailable"\n',
     {("review", "tls_ca")}),
    (G + 'tls = "ifavailable"\ntlsv13_ciphersuites = "TLS_AES_256_GCM_SHA384"\n',
     G + 'tls = "ifavailable"\n', {("review", "tlsv13_ciphersuites")}),
    (G + 'tls = "ifavailable"\n', G + 'tls = "ifavailable"\ntls_engine = "gnutls"\n',
     {("review", "tls_engine")}),
    (G + 'tls = "ifavailable"\ntls_certificate = "/c.pem"\n',
     G + 'tls = "ifavailable"\ntls_certificate = "none"\n', {("review", "tls_certificate")}),
    (G + 'tls = "ifavailable"\n', G + 'tls = "ifavailable"\ntls_key = "/k.pem"\n',
     {("neutral", "tls_key")}),
    # TLS is never attempted on either side: parameter changes cannot take effect.
    (G + 'tls_verify = "host"\ntls_ca = "/a.pem"\n', G + 'tls_ca = "/b.pem"\n',
     {("neutral", "verification"), ("neutral", "tls_ca")}),
    # Moving a value to another scope changes no decision.
    (G + 'tls = "required"\n', G + 'tls = "ifavailable"\n[[binding]]\nname = "default"\n'
     'tls = "required"\n', set()),
])
def test_classes(old: str, new: str, expected: set[tuple[str, str]]) -> None:
    assert facets(old, new) == expected


def test_inactive_changes_say_why() -> None:
    result = diff_configs(loads_toml(G + 'tls_verify = "host"\n'), loads_toml(G))
    assert result.changes and all(c.cls is NEUTRAL for c in result.changes)
    assert all("neither side ever attempts TLS" in (c.note or "") for c in result.changes)


def test_binding_on_one_side_only_is_review() -> None:
    found = changes(G, '[[binding]]\nname = "new-pool"\ntls = "required"\n')
    assert found == [("review", "binding", "not declared", "declared", "new-pool", "*")]
    found = changes('[[binding]]\nname = "old-pool"\n', G)
    assert found == [("review", "binding", "declared", "not declared", "old-pool", "*")]


def test_regex_stanzas_are_probed_with_a_matching_name() -> None:
    old = '[[domain]]\nname = "/\\\\.bank\\\\.example$/"\ntls = "required"\n'
    new = '[[domain]]\nname = "/\\\\.bank\\\\.example$/"\ntls = "ifavailable"\n'
    found = changes(old, new)
    assert {(c, f) for c, f, *_ in found} == {("downgrade", "tls")}
    assert {d for *_, d in found} == {"mail.bank.example"}


def test_regex_without_a_probe_name_is_review() -> None:
    # A 64-digit label is no host name: no probe can be made for this pattern.
    old = '[[domain]]\nname = "/^\\\\d{64}$/"\ntls = "required"\n'
    new = '[[domain]]\nname = "/^\\\\d{64}$/"\ntls = "ifavailable"\n'
    found = diff_configs(loads_toml(old), loads_toml(new)).changes
    assert len(found) == 1
    assert found[0].cls is REVIEW and found[0].facet == "regex" and found[0].probe is None
    assert "/^\\d{64}$/" in (found[0].note or "")
    # Unchanged, it is not worth a review.
    assert diff_configs(loads_toml(old), loads_toml(old)).changes == ()


def test_a_regex_matching_address_literals_is_probed_at_one() -> None:
    old = '[[domain]]\nname = "/\\\\[/"\ntls = "required"\n'
    new = '[[domain]]\nname = "/\\\\[/"\ntls = "ifavailable"\n'
    found = diff_configs(loads_toml(old), loads_toml(new)).changes
    assert [(c.cls, c.facet, c.probe.domain if c.probe else None) for c in found] == [
        (DOWN, "tls", "[192.0.2.1]")]


BANK = '[global]\ntls = "ifavailable"\n[[domain]]\nname = "bank.example"\ntls = "required"\n' \
    'tls_verify = "host"\n'
BANK_RX = '[[domain]]\nname = "/bank\\\\.example$/"\ntls = "required"\ntls_verify = "{verify}"\n'


@pytest.mark.parametrize("exhaustive", [False, True])
def test_a_regex_behind_an_exact_stanza_is_probed_where_it_decides(exhaustive: bool) -> None:
    # The exact stanza claims bank.example; the regex alone decides mail.bank.example.
    old = loads_toml(BANK + BANK_RX.format(verify="host"))
    new = loads_toml(BANK + BANK_RX.format(verify="no"))
    assert Resolver(new).resolve("mail.bank.example").verification.value == "no"
    result = diff_configs(old, new, exhaustive=exhaustive)
    found = {(c.cls, c.facet, c.old, c.new, c.probe.domain) for c in result.changes if c.probe}
    assert (DOWN, "verification", "host", "no", "mail.bank.example") in found
    assert "no decision changed" not in format_diff(result)


@pytest.mark.parametrize("exhaustive", [False, True])
def test_a_regex_behind_an_earlier_regex_is_probed_where_it_decides(exhaustive: bool) -> None:
    # /^bank/ matches the regex's first example (bank.example) and sets tls_verify there.
    first = '[global]\ntls = "ifavailable"\n[[domain]]\nname = "/^bank/"\ntls_verify = "ca"\n'
    old = loads_toml(first + BANK_RX.format(verify="host"))
    new = loads_toml(first + BANK_RX.format(verify="no"))
    result = diff_configs(old, new, exhaustive=exhaustive)
    downs = {(c.facet, c.old, c.new) for c in result.of(DOWN)
             if c.probe and not c.probe.domain.startswith("bank")}
    assert ("verification", "host", "no") in downs, result.changes


@pytest.mark.parametrize("exhaustive", [False, True])
def test_a_regex_floor_beside_an_exact_floor_is_probed_where_it_decides(
        exhaustive: bool) -> None:
    floor = ('[global]\ntls = "ifavailable"\n[[floor]]\nname = "bank.example"\n'
             'tls = "required"\ntls_verify = "host"\nreason = "x"\n')
    regex_floor = ('[[floor]]\nname = "/bank\\\\.example$/"\ntls = "required"\n'
                   'tls_verify = "host"\nreason = "y"\n')
    result = diff_configs(loads_toml(floor + regex_floor), loads_toml(floor),
                          exhaustive=exhaustive)
    found = {(c.facet, c.old, c.new) for c in result.of(DOWN)
             if c.probe and c.probe.domain == "mail.bank.example"}
    assert found == {("tls", "required", "ifavailable"), ("verification", "host", "no")}


def test_cli_fails_on_a_downgrade_only_a_regex_decides(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    old, new = tmp_path / "old.toml", tmp_path / "new.toml"
    old.write_text(BANK + BANK_RX.format(verify="host"))
    new.write_text(BANK + BANK_RX.format(verify="no"))
    code, out, _ = run_cli(monkeypatch, capsys, "diff", str(old), str(new),
                           "--fail-on-downgrade")
    assert code == 1 and "DOWNGRADE verification: host -> no" in out
    assert 'binding "default" -> mail.bank.example' in out


@pytest.mark.parametrize(("before", "after"), [
    # The exact stanza sets every option the regex sets, and the regex matches nothing else.
    (BANK + '[[domain]]\nname = "/^bank\\\\.example$/"\ntls_verify = "host"\n',
     BANK + '[[domain]]\nname = "/^bank\\\\.example$/"\ntls_verify = "no"\n'),
    # Every name /example/ matches, /e/ matches first.
    ('[[domain]]\nname = "/e/"\ntls = "required"\n[[domain]]\nname = "/example/"\n'
     'tls = "required"\n',
     '[[domain]]\nname = "/e/"\ntls = "required"\n[[domain]]\nname = "/example/"\n'
     'tls = "no"\n'),
])
def test_a_changed_regex_no_name_is_decided_by_is_review(before: str, after: str) -> None:
    result = diff_configs(loads_toml(before), loads_toml(after))
    reviews = [c for c in result.of(REVIEW) if c.facet == "regex"]
    assert len(reviews) == 1 and reviews[0].probe is None, result.changes
    assert "decided by" in (reviews[0].note or "")
    # Unchanged, it is not worth a review.
    assert diff_configs(loads_toml(before), loads_toml(before)).changes == ()


@pytest.mark.parametrize(("pattern", "example"), [
    (r"(^|\.)bank\.example$", "bank.example"),
    (r"\.bank\.example$", "mail.bank.example"),
    (r"^mail\.", "mail.example"),
    ("example", "example"),
    (r"\.com$", "mail.com"),
    ("(?i)EXAMPLE", "example"),
    (r"^mx[0-9]+\.example\.(com|net)$", "mx0.example.com"),
    # An example must be a valid name: "xn--a" is no A-label (UTS #46 refuses it).
    (r"^xn--", "xn--mnchen-3ya"),
    # Address literals are names too: a pattern that can match one gets one.
    (r"\[", "[192.0.2.1]"),
    (r"^\d{64}$", None),
])
def test_regex_example(pattern: str, example: str | None) -> None:
    assert regex_example(pattern) == example


# ------------------------------------------------------------------ properties

def _sts_on(d: Decision) -> bool:
    return bool(d.effective["use_mta_sts"]) and bool(d.effective["enable_mta_sts"])


def _dane_on(d: Decision) -> bool:
    return bool(d.effective["use_dane"]) and bool(d.effective["enable_dane"])


def projection(d: Decision) -> dict[str, Any]:
    """Everything a decision does, leaving out where values came from."""
    out = d.to_dict()
    del out["explanation"], out["effective"]
    out["mta-sts"] = _sts_on(d)
    out["dane"] = _dane_on(d)
    return out


SEVERITY = {Action.PROCEED: 0, Action.SKIP: 0, Action.FALLBACK: 1, Action.DEFER: 2,
            Action.FAIL: 3}


def weaker(a: Decision, b: Decision) -> bool:
    """An oracle written from the decision's behaviour, not from the diff's facets."""
    if b.tls < a.tls:
        return True
    if (_sts_on(a) and not _sts_on(b)) or (_dane_on(a) and not _dane_on(b)):
        return True
    for observation, outcome in a.outcomes.items():
        other = b.outcomes.get(observation)
        if other is not None and SEVERITY[other.action] < SEVERITY[outcome.action]:
            return True
    return False


SLOTS = ("global", "domain", "group", "group_domain", "group_binding", "group_binding_domain",
         "binding", "binding_domain")


@st.composite
def mutated(draw: st.DrawFn, config: Config) -> Config:
    """``config`` with the options of one scope replaced by newly drawn ones."""
    version = config.effective_compatibility
    slots: list[tuple[Any, ...]] = [("global",)]
    slots += [("domain", i) for i in range(len(config.domains))]
    for gi, g in enumerate(config.binding_groups):
        slots.append(("group", gi))
        slots += [("group_domain", gi, di) for di in range(len(g.domains))]
        for bi, b in enumerate(g.bindings):
            slots.append(("group_binding", gi, bi))
            slots += [("group_binding_domain", gi, bi, di) for di in range(len(b.domains))]
    for bi, b in enumerate(config.bindings):
        slots.append(("binding", bi))
        slots += [("binding_domain", bi, di) for di in range(len(b.domains))]
    slot = draw(st.sampled_from(slots))
    kind = {"global": ScopeKind.GLOBAL, "group": ScopeKind.BINDING_GROUP,
            "group_binding": ScopeKind.BINDING, "binding": ScopeKind.BINDING}.get(
                slot[0], ScopeKind.DOMAIN)
    new = draw(options(kind, version))

    def in_domains(domains: tuple[DomainScope, ...], i: int) -> tuple[DomainScope, ...]:
        return tuple(attrs.evolve(d, options=new) if n == i else d
                     for n, d in enumerate(domains))

    def in_binding(b: BindingScope, rest: tuple[Any, ...]) -> BindingScope:
        if not rest:
            return attrs.evolve(b, options=new)
        return attrs.evolve(b, domains=in_domains(b.domains, rest[0]))

    name = slot[0]
    if name == "global":
        return attrs.evolve(config, options=new)
    if name == "domain":
        return attrs.evolve(config, domains=in_domains(config.domains, slot[1]))
    if name.startswith("group"):
        groups = list(config.binding_groups)
        g = groups[slot[1]]
        if name == "group":
            g = attrs.evolve(g, options=new)
        elif name == "group_domain":
            g = attrs.evolve(g, domains=in_domains(g.domains, slot[2]))
        else:
            bindings = list(g.bindings)
            bindings[slot[2]] = in_binding(bindings[slot[2]], slot[3:])
            g = attrs.evolve(g, bindings=tuple(bindings))
        groups[slot[1]] = g
        return attrs.evolve(config, binding_groups=tuple(groups))
    bindings = list(config.bindings)
    bindings[slot[1]] = in_binding(bindings[slot[1]], slot[2:])
    return attrs.evolve(config, bindings=tuple(bindings))


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
@given(configs(), st.data())
def test_downgrades_are_reported_and_no_effect_reports_nothing(
        config: Config, data: st.DataObject) -> None:
    new = data.draw(mutated(config), label="new")
    result = diff_configs(config, new)
    old_r, new_r = Resolver(config), Resolver(new)
    downgraded = {(c.probe.binding, c.probe.domain) for c in result.of(DOWN) if c.probe}
    any_effect = False
    for probe in result.probes:
        a = old_r.resolve(probe.domain, probe.binding)
        b = new_r.resolve(probe.domain, probe.binding)
        if projection(a) != projection(b):
            any_effect = True
        else:
            assert not [c for c in result.changes if c.probe == probe]
        if weaker(a, b):
            assert (probe.binding, probe.domain) in downgraded, probe
    if not any_effect:
        # Only a regex stanza no probe name could be built for is left to a human.
        assert all(c.probe is None and c.facet == "regex" and c.cls is REVIEW
                   for c in result.changes), result.changes


def _weakenings(d: Decision, version: CompatVersion) -> list[tuple[str, Options]]:
    found: list[tuple[str, Options]] = []
    for lower in Tls:
        if lower < d.tls:
            found.append(("tls", Options(tls=lower)))
    if d.tls is not Tls.NO:
        for verify in TlsVerify:
            if verify.value in ("no", "optional", "ca", "host") and \
                    TlsVerify(d.verification.value) > verify:
                found.append(("verification", Options(tls_verify=verify)))
        oldest = min(list(TlsVersion).index(v) for v in d.parameters.protocols)
        if oldest > 0 and version >= CompatVersion.parse("4.1.0.2"):
            found.append(("tls_protocols", Options(tls_protocols=TlsProtocols.parse("+ALL"))))
    if d.tls is Tls.IFAVAILABLE and not d.fallback and version >= CompatVersion.parse("4.1"):
        found.append(("fallback", Options(tls_ifavailable_fallback=True)))
    if _sts_on(d):
        found.append(("mta-sts", Options(enable_mta_sts=False)))
    if _dane_on(d):
        found.append(("dane", Options(enable_dane=False)))
    return found


def _pin(config: Config, binding: str, domain: str, options_: Options) -> Config:
    """``config`` plus a stanza for ``domain`` inside ``binding`` (the top of the chain)."""
    stanza = DomainScope(DomainName.parse(domain), options_)
    for g in config.binding_groups:
        if any(b.name == binding for b in g.bindings):
            layer = Config(binding_groups=(BindingGroupScope(
                g.name, bindings=(BindingScope(binding, domains=(stanza,)),)),))
            break
    else:
        layer = Config(bindings=(BindingScope(binding, domains=(stanza,)),))
    return layer_configs([config, layer])


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
@given(configs(), st.data())
def test_weakening_one_decision_is_a_downgrade_for_it(config: Config,
                                                      data: st.DataObject) -> None:
    version = config.effective_compatibility
    probes = diff_configs(config, config).probes
    resolver = Resolver(config)
    candidates = [(p, w) for p in probes
                  for w in _weakenings(resolver.resolve(p.domain, p.binding), version)]
    assume(candidates)
    probe, (facet, weakening) = data.draw(st.sampled_from(candidates))
    new = _pin(config, probe.binding, probe.domain, weakening)
    result = diff_configs(config, new)
    hits = [c for c in result.of(DOWN)
            if c.probe is not None and (c.probe.binding, c.probe.domain)
            == (probe.binding, probe.domain)]
    assert facet in {c.facet for c in hits}, (facet, result.changes)
    # The new stanza sits at the top of the chain, so the diff names it as the source
    # (layered onto a stanza of the same name, it keeps that stanza's spelling).
    hit = next(c for c in hits if c.facet == facet)
    named = {normalise_domain(n) for n in re.findall(r'domain "([^"/]+)"', hit.new_source or "")}
    assert probe.domain in named, hit.new_source
