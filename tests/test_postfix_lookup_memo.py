"""PolicyLookup's answer memo: the same answers as without it, and bounded."""

from __future__ import annotations

import pytest

from test_postfix_map import CONFIG
from tlspolicy import Resolver
from tlspolicy.postfix.lookup import PolicyLookup

QUERIES = [
    ("b1", "own.example"), ("b1", "[own.example]:587"), ("default", "partner.example"),
    ("default", "x.bank.example"), ("default", "192.0.2.1"), ("default", "unlisted.test"),
    ("default", ".partner.example"), ("B1", "own.example"), ("b1", "bad..name"),
    ("default", "Partner.Example."), ("b1", "x" * 400 + ".example"),
]


@pytest.mark.parametrize("memo_size", [1, 3, 65536])
def test_memo_gives_the_unmemoised_answers_and_stays_bounded(memo_size: int) -> None:
    plain = PolicyLookup(Resolver(CONFIG), memo_size=0)
    memoised = PolicyLookup(Resolver(CONFIG), memo_size=memo_size)
    for _ in range(3):
        for map_name, key in QUERIES:
            assert memoised(map_name, key) == plain(map_name, key)
            assert len(memoised._answers) <= memo_size
            assert len(memoised._by_values) <= memo_size
    assert not plain._answers and not plain._by_values


def test_long_keys_are_answered_but_not_kept() -> None:
    lookup = PolicyLookup(Resolver(CONFIG))
    lookup("b1", "x" * 400 + ".example")
    assert not lookup._answers


def test_answers_to_long_map_names_are_not_kept() -> None:
    """An unknown map name is answered (PERM) like any other, but a client sending distinct
    long ones must not fill the memo with them: what is kept is bounded by map name and
    key together."""
    lookup = PolicyLookup(Resolver(CONFIG))
    for n in range(20):
        assert lookup(f"{n:03d}" + "m" * 4000, "a").status.value == "PERM"
    assert not lookup._answers
    lookup("b1", "a.example")
    assert len(lookup._answers) == 1


@pytest.mark.parametrize("size", [-1, True, 1.5])
def test_memo_size_is_checked(size: object) -> None:
    with pytest.raises(ValueError, match="memo_size"):
        PolicyLookup(Resolver(CONFIG), memo_size=size)  # type: ignore[arg-type]
