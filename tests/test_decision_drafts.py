"""Decisions and TLS parameters made as drafts are the frozen objects ``__init__`` makes.

The resolver and ``Decision.build`` store a decision's fields on a layout-compatible
draft and then assign its class (``tlspolicy.decision._decision``, ``_like``,
``_parameters``).  What comes out must be indistinguishable from
``Decision(...)``: same type, equality, hash, repr, frozenness, pickling and weak
references.
"""

from __future__ import annotations

import copy
import pickle
import weakref

import attrs
import pytest

from tlspolicy import Decision, Resolver
from tlspolicy.decision import (
    TlsParameters,
    _decision,
    _like,
    _parameters,
)
from tlspolicy.formats.toml import loads_toml


def fields(obj: object) -> tuple[object, ...]:
    return attrs.astuple(obj, recurse=False)  # type: ignore[arg-type]


@pytest.fixture
def decision() -> Decision:
    config = loads_toml('[global]\ntls = "required"\ntls_ca = "ca.pem"\n'
                        '[[domain]]\nname = "a.example"\ntls_verify = "host"\n')
    return Resolver(config).resolve("a.example")


def test_drafted_parameters_are_tls_parameters(decision: Decision) -> None:
    p = decision.parameters
    made = _parameters(*fields(p))
    assert type(made) is TlsParameters
    assert made == TlsParameters(*fields(p)) and hash(made) == hash(p) and repr(made) == repr(p)
    other = _like(decision, "a.example", "b1", "g1", "mx.example", "mx.example",
                  ("a.example", "mx.example"), decision.explanation).parameters
    assert other == attrs.evolve(p, sni="mx.example")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        made.sni = "x"  # type: ignore[misc]
    assert weakref.ref(made)() is made
    assert pickle.loads(pickle.dumps(other)) == other


def test_drafted_decisions_are_decisions(decision: Decision) -> None:
    made = _decision(*fields(decision))
    assert type(made) is Decision
    assert made == Decision(*fields(decision))
    assert hash(made) == hash(decision) and repr(made) == repr(decision)
    assert made.to_dict() == decision.to_dict()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        made.domain = "x"  # type: ignore[misc]
    assert weakref.ref(made)() is made
    assert copy.deepcopy(made) == decision
    assert pickle.loads(pickle.dumps(made)) == decision
    like = _like(decision, "b.example", "b1", "g1", "mx.example", "mx.example",
                 ("b.example", "mx.example"), decision.explanation)
    assert type(like) is Decision and type(like.parameters) is TlsParameters
    assert like == attrs.evolve(
        decision, domain="b.example", binding="b1", binding_group="g1", mx_host="mx.example",
        parameters=attrs.evolve(decision.parameters, sni="mx.example"),
        reference_identities=("b.example", "mx.example"))


def test_build_of_a_subclass_still_makes_the_subclass(decision: Decision) -> None:
    @attrs.frozen(slots=True)
    class Special(Decision):
        pass

    from tlspolicy.decision import Requirements
    req = Requirements(decision.tls, decision.verification, decision.fallback,
                       decision.reference_identities)
    built = Special.build(req, domain=decision.domain, binding=decision.binding,
                          binding_group=decision.binding_group, mx_host=None,
                          parameters=decision.parameters, effective=decision.effective,
                          explanation=decision.explanation)
    assert type(built) is Special
