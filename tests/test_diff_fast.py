"""The diff at scale: only pairs whose chain touches a changed scope are resolved.

The fast path must give exactly the result of resolving every probe.
"""

from __future__ import annotations

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategies import PROPERTY_EXAMPLES, configs
from test_floors import floors
from tlspolicy import Config, loads_toml
from tlspolicy.diff import diff_configs


def _splice(a: Config, b: Config, part: str, data: st.DataObject) -> Config:
    """``a`` with one part taken from ``b``: a small change, like a one-stanza edit."""
    if part == "groups" and a.binding_groups and b.binding_groups:
        i = data.draw(st.integers(0, len(a.binding_groups) - 1))
        donor = b.binding_groups[data.draw(st.integers(0, len(b.binding_groups) - 1))]
        mine = a.binding_groups[i]
        mixed = attrs.evolve(mine, options=donor.options, domains=donor.domains)
        groups = (*a.binding_groups[:i], mixed, *a.binding_groups[i + 1:])
        return attrs.evolve(a, binding_groups=groups)
    if part == "bindings" and a.bindings and b.bindings:
        i = data.draw(st.integers(0, len(a.bindings) - 1))
        donor = b.bindings[data.draw(st.integers(0, len(b.bindings) - 1))]
        mixed = attrs.evolve(a.bindings[i], options=donor.options, domains=donor.domains)
        return attrs.evolve(a, bindings=(*a.bindings[:i], mixed, *a.bindings[i + 1:]))
    if part == "domains":
        if a.domains and data.draw(st.booleans()):
            i = data.draw(st.integers(0, len(a.domains) - 1))
            if b.domains:
                swapped = attrs.evolve(a.domains[i], options=b.domains[0].options)
                return attrs.evolve(a, domains=(*a.domains[:i], swapped, *a.domains[i + 1:]))
            return attrs.evolve(a, domains=(*a.domains[:i], *a.domains[i + 1:]))
        return attrs.evolve(a, domains=b.domains)
    if part == "global":
        return attrs.evolve(a, options=b.options)
    return attrs.evolve(a, floors=b.floors)


@settings(max_examples=PROPERTY_EXAMPLES, suppress_health_check=[HealthCheck.too_slow],
          deadline=None)
@given(configs(versions=(None,)), configs(versions=(None,)), floors(), floors(),
       st.sampled_from(("groups", "bindings", "domains", "global", "floors", "all")),
       st.data())
def test_fast_diff_equals_the_exhaustive_diff(a: Config, b: Config, fa: tuple, fb: tuple,
                                              part: str, data: st.DataObject) -> None:
    a = attrs.evolve(a, floors=fa)
    b = attrs.evolve(b, floors=fb)
    new = b if part == "all" else _splice(a, b, part, data)
    fast = diff_configs(a, new)
    slow = diff_configs(a, new, exhaustive=True)
    assert fast.changes == slow.changes
    assert len(fast.probes) == len(slow.probes)


def test_one_stanza_change_resolves_only_its_pairs() -> None:
    text = "".join(f'[[domain]]\nname = "d{i}.example"\ntls = "required"\n' for i in range(50))
    text += "".join(f'[[binding]]\nname = "b{j}"\n' for j in range(10))
    old = loads_toml(text)
    new = loads_toml(text.replace('name = "d7.example"\ntls = "required"',
                                  'name = "d7.example"\ntls = "no"'))
    calls: list[tuple[int, int]] = []
    result = diff_configs(old, new, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (11, 11)  # ten bindings and the implicit default, one domain each
    assert {c.probe.domain for c in result.changes if c.probe} == {"d7.example"}
    assert len(result.probes) == 11 * 51
    assert result.changes == diff_configs(old, new, exhaustive=True).changes


def test_terminal_progress_draws_only_on_a_terminal_after_a_while() -> None:
    import io

    from tlspolicy.cli._common import terminal_progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert terminal_progress("x", stream=io.StringIO()) is None
    quiet = Terminal()
    progress = terminal_progress("x", stream=quiet, after=3600)
    assert progress is not None
    progress(1, 2)
    progress(2, 2)
    assert quiet.getvalue() == ""
    shown = Terminal()
    progress = terminal_progress("comparing", stream=shown, after=0)
    assert progress is not None
    progress(1500, 3000)
    progress(3000, 3000)
    assert shown.getvalue() == "\rcomparing: 1,500 of 3,000 (50%)\r\x1b[K"
