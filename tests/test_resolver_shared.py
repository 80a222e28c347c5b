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
