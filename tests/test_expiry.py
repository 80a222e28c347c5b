"""Expiring exceptions (SEMANTICS section 8)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategies import PROPERTY_EXAMPLES, configs, requests
from tlspolicy import Config, ConfigError, Resolver, Tls, loads_toml
from tlspolicy.errors import ExpiryWeakensError
from tlspolicy.scopes import DomainScope, FloorScope, config_at
from tlspolicy.scopes.stanzas import iter_stanzas, next_expiry, without_stanza

UTC = dt.UTC
T = dt.datetime(2026, 12, 15, tzinfo=UTC)

EXCEPTION = """
[global]
tls = "ifavailable"

[[domain]]
name = "broken.example"
tls = "no"
expires = 2026-12-15
reason = "their TLS is broken until they renew; ticket 4711"
"""


def test_a_date_means_midnight_utc_and_offsets_are_kept() -> None:
    config = loads_toml(EXCEPTION)
    assert config.domains[0].expires == T
    other = loads_toml(EXCEPTION.replace("2026-12-15", "2026-12-15T01:30:00+02:00"))
    assert other.domains[0].expires == dt.datetime(2026, 12, 14, 23, 30, tzinfo=UTC)


@pytest.mark.parametrize("value, message", [
    ("2026-12-15T10:00:00", "local date-time"),
    ('"2026-12-15"', "not a string"),
    ("12:00:00", "not a string"),
])
def test_bad_expires_is_a_located_error(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf'x.toml:8: domain "broken.example": option '
                                          rf"'expires'.*{message}"):
        loads_toml(EXCEPTION.replace("2026-12-15", value), "x.toml")


def test_the_stanza_applies_until_it_expires_and_never_after() -> None:
    config = loads_toml(EXCEPTION)
    before = Resolver(config, at=T - dt.timedelta(seconds=1)).resolve("broken.example")
    at = Resolver(config, at=T).resolve("broken.example")
    later = Resolver(config, at=T + dt.timedelta(days=30)).resolve("broken.example")
    assert before.tls is Tls.NO
    assert at.tls is Tls.IFAVAILABLE and later.tls is Tls.IFAVAILABLE
    assert str(at.explanation["tls"]) == "global"
    assert next_expiry(config, T - dt.timedelta(days=1)) == T
    assert next_expiry(config, T) is None


def test_expiry_that_would_weaken_is_a_load_time_error() -> None:
    text = ('[global]\ntls = "ifavailable"\n[[domain]]\nname = "p.example"\n'
            'tls = "required"\nexpires = 2026-12-15\n')
    with pytest.raises(ExpiryWeakensError) as info:
        loads_toml(text, "x.toml")
    message = str(info.value)
    assert message.startswith('x.toml:6: domain "p.example": option \'expires\'')
    assert "tls required -> ifavailable" in message and "expiry_weakens = true" in message
    # Acknowledged: loads.
    loads_toml(text + "expiry_weakens = true\n")


def test_an_expiring_regex_behind_an_exact_stanza_is_judged_where_it_decides() -> None:
    # The exact stanza claims bank.example; after the date mail.bank.example gets weaker.
    text = ('[global]\ntls = "ifavailable"\n[[domain]]\nname = "bank.example"\n'
            'tls = "required"\ntls_verify = "host"\n[[domain]]\n'
            'name = "/bank\\\\.example$/"\ntls = "required"\ntls_verify = "host"\n'
            'expires = 2030-01-01\nreason = "temporary"\n')
    with pytest.raises(ExpiryWeakensError, match=r"mail\.bank\.example"):
        loads_toml(text, "x.toml")
    loads_toml(text + "expiry_weakens = true\n")


def test_an_expiring_floor_that_raises_something_must_be_acknowledged() -> None:
    text = ('[[binding]]\nname = "relay"\ntls = "no"\n[[floor]]\nname = "p.example"\n'
            'tls = "required"\nexpires = 2027-01-01\nreason = "trial"\n')
    with pytest.raises(ExpiryWeakensError, match=r'x.toml:7: floor "p.example"'):
        loads_toml(text, "x.toml")
    assert loads_toml(text + "expiry_weakens = true\n").floors[0].expiry_weakens


def test_layers_are_judged_together(tmp_path: Path) -> None:
    from tlspolicy import load_config

    base = tmp_path / "base.toml"
    base.write_text('[[domain]]\nname = "p.example"\ntls = "no"\nexpires = 2026-12-15\n'
                    'reason = "exception"\n')
    over = tmp_path / "over.toml"
    # The later layer turns the expiring stanza into a requirement: its expiry now weakens.
    over.write_text('[[domain]]\nname = "p.example"\ntls = "required"\n')
    with pytest.raises(ExpiryWeakensError, match=r"base.toml, .*over.toml"):
        load_config(base, over)


def test_toml_round_trip_keeps_expiry() -> None:
    from tlspolicy.formats.toml import dumps_toml

    config = loads_toml(EXCEPTION)
    assert loads_toml(dumps_toml(config)) == config


# ------------------------------------------------------------------ property

def _with(config: Config, target: DomainScope | FloorScope, replacement: object) -> Config:
    def swap(stanzas: tuple) -> tuple:  # type: ignore[type-arg]
        return tuple(replacement if s is target else s for s in stanzas)

    groups = tuple(attrs.evolve(g, domains=swap(g.domains), bindings=tuple(
        attrs.evolve(b, domains=swap(b.domains)) for b in g.bindings))
        for g in config.binding_groups)
    return attrs.evolve(config, domains=swap(config.domains), binding_groups=groups,
                        bindings=tuple(attrs.evolve(b, domains=swap(b.domains))
                                       for b in config.bindings),
                        floors=swap(config.floors))


# Four resolvers per example: the heavier budget, with several requests per example.
@settings(max_examples=PROPERTY_EXAMPLES, suppress_health_check=[HealthCheck.too_slow],
          deadline=None)
@given(configs(), st.data())
def test_an_expired_stanza_gives_exactly_the_configuration_without_it(
        config: Config, data: st.DataObject) -> None:
    stanzas = [s for _p, s in iter_stanzas(config)]
    if not stanzas:
        return
    target = data.draw(st.sampled_from(stanzas))
    expiring = attrs.evolve(target, expires=T, expiry_weakens=True)
    config_e = _with(config, target, expiring)
    gone = Resolver(without_stanza(config_e, expiring))
    still = Resolver(config)
    late = data.draw(st.sampled_from([T, T + dt.timedelta(seconds=1), T + dt.timedelta(days=9)]))
    expired = Resolver(config_e, at=late)
    live = Resolver(config_e, at=T - dt.timedelta(microseconds=1))
    for request in data.draw(st.lists(requests(config), min_size=1, max_size=8)):
        after = expired.resolve(request.domain, **request.call())
        before = live.resolve(request.domain, **request.call())
        assert after == gone.resolve(request.domain, **request.call())
        assert before == still.resolve(request.domain, **request.call())


def test_config_at_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        config_at(loads_toml(EXCEPTION), dt.datetime(2026, 1, 1))


# ------------------------------------------------------------------ exports and commands

def test_exports_note_each_expiring_entry() -> None:
    from tlspolicy.formats.ecelerity import dumps_ecelerity, ecelerity_export_losses
    from tlspolicy.postfix.tables import postfix_entries

    config = loads_toml(EXCEPTION)
    losses = ecelerity_export_losses(config)
    assert any('domain "broken.example": expires 2026-12-15' in loss for loss in losses)
    assert "# not written: domain \"broken.example\": expires" in dumps_ecelerity(config)
    _entries, warnings = postfix_entries(config)
    notes = [w for w in warnings if w.option == "expires"]
    assert [w.key for w in notes] == ["broken.example"]
    assert "cannot carry expiry" in notes[0].describe()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from tlspolicy.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_exceptions_at_resolve_and_check(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.toml"
    path.write_text(EXCEPTION)
    code, out, _ = run(capsys, "exceptions", str(path), "--at", "2026-12-13T12:00:00Z")
    assert code == 0
    assert 'domain "broken.example": expires 2026-12-15T00:00:00+00:00, 1d 12h left' in out
    assert "reason: their TLS is broken" in out
    code, out, _ = run(capsys, "exceptions", str(path), "--at", "2026-12-16", "--json")
    assert '"expired": true' in out and '"seconds_left": -86400' in out
    code, out, _ = run(capsys, "resolve", "broken.example", str(path), "--at", "2026-12-14")
    assert "SKIP" in out
    code, out, _ = run(capsys, "resolve", "broken.example", str(path), "--at", "2026-12-15")
    assert "ATTEMPT" in out
    code, _out, err = run(capsys, "resolve", "broken.example", str(path), "--at",
                          "2026-12-15T10:00")
    assert code == 2 and "no offset" in err
    old = tmp_path / "old.toml"
    old.write_text(EXCEPTION.replace("2026-12-15", "2020-01-01"))
    code, out, err = run(capsys, "check", str(old))
    assert code == 0 and "expired 2020-01-01T00:00:00+00:00; it is ignored" in err
    code, out, _ = run(capsys, "diff", str(path), str(old), "--at", "2026-12-01")
    assert "UPGRADE" in out and "broken.example" in out


# ------------------------------------------------------------------ the server's clock

class _Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def test_server_policy_recompiles_on_expiry_and_never_revives(tmp_path: Path) -> None:
    from tlspolicy.servers.expiry_watch import ExpiringPolicy

    path = tmp_path / "p.toml"
    path.write_text(EXCEPTION)
    clock = _Clock(T - dt.timedelta(minutes=1))
    policy = ExpiringPolicy([str(path)], clock=clock)
    first = policy()
    assert first.policy("default", "broken.example").level.value == "none"
    assert not policy.expiry_due()
    clock.now = T + dt.timedelta(seconds=5)
    assert policy.expiry_due()
    second = policy.recompile()
    assert second.policy("default", "broken.example").level.value == "may"
    # The clock steps back: the stanza stays expired, on recompile and on reload.
    clock.now = T - dt.timedelta(hours=1)
    assert not policy.expiry_due()
    assert policy.recompile().policy("default", "broken.example").level.value == "may"
    assert policy().policy("default", "broken.example").level.value == "may"


def test_watch_expiry_swaps_a_whole_lookup(tmp_path: Path) -> None:
    from tlspolicy.servers.expiry_watch import ExpiringPolicy, watch_expiry

    path = tmp_path / "p.toml"
    path.write_text(EXCEPTION)
    clock = _Clock(T - dt.timedelta(minutes=1))
    policy = ExpiringPolicy([str(path)], clock=clock)

    class Server:
        def __init__(self) -> None:
            self.lookup = policy()
            self.swaps = 0

        def swap_lookup(self, lookup: object) -> None:
            self.lookup = lookup  # type: ignore[assignment]
            self.swaps += 1

    server = Server()

    async def scenario() -> None:
        task = asyncio.create_task(watch_expiry(server, policy, interval=0.01))
        await asyncio.sleep(0.05)
        assert server.swaps == 0
        clock.now = T
        for _ in range(200):
            if server.swaps:
                break
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(scenario())
    assert server.swaps == 1
    assert server.lookup.policy("default", "broken.example").level.value == "may"
