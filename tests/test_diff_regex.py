"""``tlspolicy diff`` and regex stanzas: a weakened name is never silent.

The probes are generated names, so a regex stanza or floor must get one that
it decides (no exact stanza and no earlier regex claims it).  Checked against
names the diff did not choose: any name of a fixed pool, under any binding,
whose decision gets weaker must show as a downgrade or a review somewhere.
"""

from __future__ import annotations

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategies import EXACT_NAMES, PROPERTY_EXAMPLES, REQUEST_NAMES, configs
from test_diff import DOWN, REVIEW, mutated, weaker
from test_floors import floors
from tlspolicy import Config, Resolver
from tlspolicy.diff import diff_configs

_BASE = sorted(set(REQUEST_NAMES.values()) | set(EXACT_NAMES.values()))
POOL = (*_BASE, *(f"mail.{n}" for n in _BASE if not n.startswith("[")),
        *(f"x.{n}" for n in _BASE if not n.startswith("[")),
        "mail.example", "example", "com", "mail.com", "org", "net", "e", "xn--mnchen-3ya.de",
        "unlisted.invalid")


def _weakened(old: Config, new: Config, bindings: list[str]) -> list[tuple[str, str]]:
    a, b = Resolver(old), Resolver(new)
    return [(binding, name) for binding in bindings for name in POOL
            if weaker(a.resolve(name, binding), b.resolve(name, binding))]


@settings(max_examples=PROPERTY_EXAMPLES, suppress_health_check=[HealthCheck.too_slow],
          deadline=None)
@given(configs(versions=(None,)), floors(), st.data())
def test_a_weakened_name_is_a_downgrade_or_a_review(config: Config, extra: tuple,
                                                    data: st.DataObject) -> None:
    config = attrs.evolve(config, floors=extra)
    new = data.draw(mutated(config), label="new")
    if data.draw(st.booleans(), label="drop a floor") and extra:
        new = attrs.evolve(new, floors=extra[1:])
    result = diff_configs(config, new)
    bindings = sorted({p.binding for p in result.probes})
    hit = _weakened(config, new, bindings)
    if not hit or any(c.facet == "regex" for c in result.of(REVIEW)):
        return
    # Every binding with a weakened name has a downgrade of its own.
    down = {c.probe.binding for c in result.of(DOWN) if c.probe is not None}
    assert {binding for binding, _name in hit} <= down, (hit, result.changes)
