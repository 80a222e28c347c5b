"""Generated configurations: the resolver against a naive reference walk, the
SEMANTICS section 6 invariants that hold without destination policies, and
the TOML round trip.

The reference walk below reads the configuration tree directly, option by
option, in the seven-level order of SEMANTICS section 2, with its own
hand-written name normalisation (from ``tests/strategies.py``); it shares no
code with the resolver's index.
"""

from __future__ import annotations

import re
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategies import (
    CONFIG_EXAMPLES,
    EXACT_NAMES,
    MX_NAMES,
    Request,
    configs,
    declared_bindings,
    requests,
)
from tlspolicy import (
    Action,
    Config,
    Decision,
    Observation,
    Options,
    Resolver,
    Tls,
    UnknownBindingError,
    Verification,
    loads_toml,
)
from tlspolicy.formats.loader import dump_toml
from tlspolicy.names import DomainKind
from tlspolicy.options import OPTION_SPECS, CompatVersion
from tlspolicy.outcomes import CERTIFICATE_OBSERVATIONS
from tlspolicy.scopes import BindingScope, DomainScope

_SETTINGS = settings(
    max_examples=CONFIG_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_REQUESTS_PER_CONFIG = 4


def _stanza_key(scope: DomainScope) -> str:
    # The hand-written normalisation, so a normalisation bug cannot hide here.
    return EXACT_NAMES[scope.name.text]


def _container(
    domains: tuple[DomainScope, ...], path: str, domain: str
) -> list[tuple[Options, str]]:
    """The stanzas of one container that apply to ``domain``: exact first, then
    the matching regexes in declaration order."""
    exact = [(d.options, f'{path}domain "{d.name.text}"') for d in domains
             if d.name.kind is not DomainKind.REGEX and _stanza_key(d) == domain]
    regexes = [(d.options, f'{path}domain "{d.name.text}"') for d in domains
               if d.name.kind is DomainKind.REGEX
               and re.search(d.name.text.strip()[1:-1], domain) is not None]
    return exact + regexes


def reference_walk(
    config: Config, domain: str, binding: str | None, overrides: Options | None
) -> tuple[dict[str, object], dict[str, str]]:
    """Effective values and their source paths, computed the slow, obvious way."""
    name = "default" if binding is None else binding
    found: tuple[str | None, BindingScope] | None = None
    for declared_group in config.binding_groups:
        for b in declared_group.bindings:
            if b.name == name:
                found = (declared_group.name, b)
    for b in config.bindings:
        if b.name == name:
            found = (None, b)
    if found is None and name != "default":
        raise LookupError(name)
    declared_in, bscope = found if found is not None else (None, BindingScope("default"))
    group_name = declared_in if declared_in is not None else "default"
    group = next((g for g in config.binding_groups if g.name == group_name), None)
    gpath = f'binding_group "{group_name}"'
    bpath = (f'{gpath} > ' if declared_in is not None else "") + f'binding "{name}"'

    chain: list[tuple[Options, str]] = []
    if overrides is not None:
        chain.append((overrides, "override"))
    chain += _container(bscope.domains, f"{bpath} > ", domain)             # 1
    if group is not None:
        chain += _container(group.domains, f"{gpath} > ", domain)          # 2
    chain.append((bscope.options, bpath))                                  # 3
    if group is not None:
        chain.append((group.options, gpath))                               # 4
    chain += _container(config.domains, "", domain)                        # 5
    chain.append((config.options, "global"))                               # 6

    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    for option, spec in OPTION_SPECS.items():
        for options, path in chain:
            value = getattr(options, option)
            if value is not _UNSET:
                values[option], sources[option] = value, path
                break
        else:                                                              # 7
            values[option], sources[option] = spec.default, "default"
    return values, sources


_UNSET = Options().tls


def _expected_fallback(config: Config, values: dict[str, object]) -> bool:
    return bool(values["tls_ifavailable_fallback"]) and (
        config.effective_compatibility >= CompatVersion.parse("4.1"))


def check_invariants(decision: Decision) -> None:
    """SEMANTICS section 6, the parts that hold without destination policies."""
    actions = {o.action for o in decision.outcomes.values()}
    if decision.tls is Tls.REQUIRED:
        assert decision.plan is not Action.SKIP
        assert Action.SKIP not in actions and Action.FALLBACK not in actions
        assert not decision.required_security.plaintext
    for observation in CERTIFICATE_OBSERVATIONS:
        outcome = decision.outcomes.get(observation)
        if outcome is None:
            continue
        assert outcome.action is not Action.FALLBACK
        failures = {Verification.CA: (Observation.CHAIN_NOT_TRUSTED,
                                      Observation.CERTIFICATE_EXPIRED),
                    Verification.HOST: CERTIFICATE_OBSERVATIONS}.get(decision.verification, ())
        if observation in failures:
            assert outcome.action is not Action.PROCEED
            assert outcome.status is not None and outcome.status.code == 451
    if decision.plan is Action.ATTEMPT:
        for observation in CERTIFICATE_OBSERVATIONS[:3]:
            assert decision.after_certificate([observation]).action is not Action.FALLBACK
        assert decision.after_certificate(CERTIFICATE_OBSERVATIONS[:3]).action in (
            Action.PROCEED, Action.FAIL)


# The heaviest property test (10,000 configurations under the ci profile): a generous
# hang guard of its own, not a timing assertion.
@pytest.mark.timeout(900)
@_SETTINGS
@given(configs(), st.data())
def test_generated_configurations(config: Config, data: st.DataObject) -> None:
    """One generated configuration checked three ways (one draw keeps CI fast)."""
    check_round_trip(config)
    resolver = Resolver(config)
    fresh = Resolver(config, decision_cache_size=0)
    for _ in range(_REQUESTS_PER_CONFIG):
        request: Request = data.draw(requests(config, unknown_bindings=True))
        check_request(config, resolver, fresh, request)


def check_round_trip(config: Config) -> None:
    """(c) load(dump(config)) == config, and dumping again gives the same text."""
    text = dump_toml(config)
    loaded = loads_toml(text, "generated.toml")
    assert loaded == config
    assert dump_toml(loaded) == text


def check_request(config: Config, resolver: Resolver, fresh: Resolver,
                  request: Request) -> None:
    """(a) the resolver equals the reference walk; (b) the invariants hold."""
    domain = request.normalised_domain
    try:
        values, sources = reference_walk(config, domain, request.binding, request.overrides)
    except LookupError:
        with pytest.raises(UnknownBindingError):
            resolver.resolve(request.domain, **request.call())
        return
    decision = resolver.resolve(request.domain, **request.call())
    assert dict(decision.effective) == values
    assert {k: str(v) for k, v in decision.explanation.items()} == sources
    assert decision.domain == domain
    assert decision.tls is values["tls"]
    assert decision.verification.value == values["tls_verify"].value  # type: ignore[attr-defined]
    assert decision.fallback is _expected_fallback(config, values)
    assert decision.plan is (Action.SKIP if values["tls"] is Tls.NO else Action.ATTEMPT)
    mx = MX_NAMES[request.mx_host] if request.mx_host is not None else None
    assert decision.mx_host == mx
    check_invariants(decision)
    # Determinism: the memoised answer, and a separately built resolver's, agree.
    assert resolver.resolve(request.domain, **request.call()) == decision
    assert fresh.resolve(request.domain, **request.call()) == decision


@settings(max_examples=max(CONFIG_EXAMPLES // 50, 50), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(configs(), st.data())
def test_same_decisions_from_several_threads(config: Config, data: st.DataObject) -> None:
    batch = [data.draw(requests(config)) for _ in range(8)]
    expected = [Resolver(config).resolve(r.domain, **r.call()) for r in batch]
    shared = Resolver(config, decision_cache_size=4)
    results: list[list[Decision]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work() -> None:
        try:
            barrier.wait(timeout=10)
            mine = []
            for _round in range(5):
                mine = [shared.resolve(r.domain, **r.call()) for r in batch]
            results.append(mine)
        except BaseException as exc:  # reported below, in the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert len(results) == 4
    for got in results:
        assert got == expected


def test_strategy_covers_every_binding_placement() -> None:
    # The property tests are only as good as the strategy: make sure it reaches
    # grouped, ungrouped and implicit bindings and every domain kind.
    seen: set[str] = set()

    @settings(max_examples=300, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(configs())
    def collect(config: Config) -> None:
        for group in config.binding_groups:
            seen.add("group")
            if group.bindings:
                seen.add("grouped binding")
            if group.name == "default":
                seen.add("declared default group")
        if config.bindings:
            seen.add("ungrouped binding")
        if "default" in declared_bindings(config):
            seen.add("default binding")
        for _path, options in config.iter_options():
            if not options.is_empty():
                seen.add("options")
        for d in config.domains:
            seen.add(d.name.kind.value)

    collect()
    assert {"group", "grouped binding", "ungrouped binding", "declared default group",
            "options", "exact", "regex", "ip"} <= seen
