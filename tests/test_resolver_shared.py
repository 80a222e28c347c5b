"""Decisions that share their parts between keys equal decisions built eagerly.

A cold resolution takes the effective values, plan, outcomes and parameters
from the first decision made from the same sets of options, and makes its
explanation only when it is read.  These tests build every decision the
plain way as well (effective values and sources, then ``Decision.build``) and
compare: equality, hash, ``to_dict`` (explanation included) and repr.
"""

from __future__ import annotations

import copy
import pickle
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategies import MX_NAMES, REQUEST_NAMES, configs, declared_bindings, examples
from tlspolicy import Config, Decision, Resolver
from tlspolicy.formats.toml import loads_toml
from tlspolicy.names import normalise_domain


def eager(resolver: Resolver, domain: str, binding: str | None, mx: str | None) -> Decision:
    """The decision built without any sharing, as ``Resolver`` did before."""
    name = normalise_domain(domain)
    index_name = binding if binding is not None else "default"
    values, sources = resolver.effective(name, index_name)
    mx_name = normalise_domain(mx) if mx is not None else None
    return Decision.build(
        resolver.requirements(name, mx_name, values),
        domain=name, binding=index_name, binding_group=resolver.binding_group_of(index_name),
        mx_host=mx_name, parameters=resolver.parameters(name, mx_name, values),
        effective=values, explanation=sources)


def check(config: Config, requests: list[tuple[str, str | None, str | None]]) -> None:
    shared = Resolver(config)
    reference = Resolver(config, decision_cache_size=0)
    for domain, binding, mx in requests:
        got = shared.resolve(domain, binding, mx_host=mx)
        want = eager(reference, domain, binding, mx)
        assert got == want
        assert hash(got) == hash(want)
        assert got.to_dict() == want.to_dict()
        assert dict(got.explanation) == dict(want.explanation)
        # The options in the same order too (mappings compare equal in any order).
        assert list(got.effective) == list(want.effective)
        assert list(got.explanation) == list(want.explanation)
        assert list(shared.effective_values(got.domain, binding)) == list(want.effective)
        assert repr(got) == repr(want)
        # Copies and pickles carry the explanation, not the resolver behind it.
        assert copy.deepcopy(got) == want
        assert pickle.loads(pickle.dumps(got)) == want


@settings(max_examples=examples(ci=150, default=50), suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_shared_decisions_equal_eager_ones(data: st.DataObject) -> None:
    config = data.draw(configs())
    names = [None, *declared_bindings(config)]
    requests = data.draw(st.lists(st.tuples(
        st.sampled_from(sorted(REQUEST_NAMES)), st.sampled_from(names),
        st.sampled_from([None, *MX_NAMES])), min_size=1, max_size=30))
    check(config, requests)


def test_pairs_sharing_values_keep_their_own_names_and_explanations() -> None:
    config = loads_toml(
        '[global]\ntls = "ifavailable"\n'
        '[[domain]]\nname = "a.example"\ntls = "required"\n'
        '[[domain]]\nname = "b.example"\ntls = "required"\n'
        '[[domain]]\nname = "[192.0.2.1]"\ntls = "required"\n'
        '[[binding]]\nname = "b1"\n'
        '[[binding.domain]]\nname = "a.example"\ntls = "required"\n'
        '[[floor]]\nname = "b.example"\ntls_verify = "host"\n')
    r = Resolver(config)
    a, b = r.resolve("a.example"), r.resolve("B.example.")
    assert a.domain == "a.example" and b.domain == "b.example"
    assert a.parameters.sni == "a.example" and b.parameters.sni == "b.example"
    assert str(a.explanation["tls"]) == 'domain "a.example"'
    assert str(b.explanation["tls_verify"]).startswith('floor "b.example"')
    ip = r.resolve("192.0.2.1", mx_host="mx.example")
    assert ip.parameters.sni == "mx.example"
    assert ip.reference_identities == ("192.0.2.1", "mx.example")
    in_binding = r.resolve("a.example", "b1")
    assert str(in_binding.explanation["tls"]) == 'binding "b1" > domain "a.example"'
    check(config, [("a.example", None, None), ("b.example", None, "mx.b.example"),
                   ("a.example", "b1", None), ("192.0.2.1", "b1", None),
                   ("c.example", "b1", "mx.c.example"), ("c.example", None, None)])


# A few values per option, so that many scopes set the same options (as bindings that
# differ only in their CA file do) and value sets are made over the same rest of a chain.
_OPTION_VALUES = {
    "tls": ['"no"', '"ifavailable"', '"required"'],
    "tls_verify": ['"optional"', '"ca"', '"host"'],
    "tls_ca": ['"a.pem"', '"b.pem"', '"c.pem"'],
    "tls_ciphers": ['"HIGH"', '"MEDIUM"'],
}
_scope_options = st.dictionaries(st.sampled_from(sorted(_OPTION_VALUES)),
                                 st.integers(0, 2), max_size=3)
_DOMAINS = ("a.example", "b.example", "c.example")


def _stanzas(options: dict[str, int]) -> str:
    return "".join(f"{name} = {_OPTION_VALUES[name][i % len(_OPTION_VALUES[name])]}\n"
                   for name, i in options.items())


def _like(shape: dict[str, int]) -> st.SearchStrategy[dict[str, int]]:
    """Options setting the names of ``shape`` with any values, or any options."""
    return st.one_of(st.fixed_dictionaries({name: st.integers(0, 2) for name in shape}),
                     _scope_options)


@st.composite
def _layered_configs(draw: st.DrawFn) -> str:
    out = ["[global]\n", _stanzas(draw(_scope_options))]
    for domain in _DOMAINS:
        if draw(st.booleans()):
            out.append(f'[[domain]]\nname = "{domain}"\n{_stanzas(draw(_scope_options))}')
    for g in range(draw(st.integers(1, 2))):
        out.append(f'[[binding_group]]\nname = "g{g}"\n{_stanzas(draw(_scope_options))}')
        for domain in _DOMAINS:
            if draw(st.booleans()):
                out.append(f'[[binding_group.domain]]\nname = "{domain}"\n'
                           f'{_stanzas(draw(_scope_options))}')
        # The bindings of a group, and their domain stanzas, mostly set the same
        # options (with values of their own).
        shape, inner = draw(_scope_options), draw(_scope_options)
        for b in range(draw(st.integers(1, 8))):
            out.append(f'[[binding_group.binding]]\nname = "g{g}b{b}"\n'
                       f'{_stanzas(draw(_like(shape)))}')
            for domain in _DOMAINS:
                if draw(st.integers(0, 3)) == 0:
                    out.append(f'[[binding_group.binding.domain]]\nname = "{domain}"\n'
                               f'{_stanzas(draw(_like(inner)))}')
    if draw(st.booleans()):
        out.append(f'[[floor]]\nname = "{draw(st.sampled_from(_DOMAINS))}"\n'
                   'tls_verify = "ca"\n')
    return "".join(out)


@settings(max_examples=examples(ci=300, default=60), suppress_health_check=[HealthCheck.too_slow])
@given(_layered_configs(), st.randoms(use_true_random=False))
def test_value_sets_made_over_a_shared_rest_equal_eager_ones(text: str, rng: Any) -> None:
    # Every pair, in a random order: new value sets are made over the value sets of
    # their chains' rests, made earlier or just then, with their keys in the same order.
    config = loads_toml(text)
    pairs = [(domain, binding, None) for domain in (*_DOMAINS, "d.example")
             for binding in (None, *declared_bindings(config))]
    rng.shuffle(pairs)
    check(config, pairs)
