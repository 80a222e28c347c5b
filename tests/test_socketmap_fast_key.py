"""parse_postfix_key's shortcut for plain host names gives the general parser's answer."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from strategies import examples
from tlspolicy.postfix.keys import (
    PostfixKey,
    PostfixKeyError,
    _parse_general_key,
    parse_postfix_key,
)

_KEYS = st.text(alphabet="aZ09_-.:[]x ", max_size=12) | st.sampled_from([
    "example.com", "Example.COM.", "1.2.3.4", "1.2.3.x", "a.1", "_a", "a..b", ".a", "a.",
    "-a.example", "a-.example", "x" * 64 + ".example", ("a" * 63 + ".") * 4 + "a",
    "bücher.example", "ipv6", "fe80", "a.b.c.d",
])


def _general(key: str) -> PostfixKey | str:
    try:
        return _parse_general_key(key)
    except PostfixKeyError as exc:
        return f"error: {exc}"


def _public(key: str) -> PostfixKey | str:
    try:
        return parse_postfix_key(key)
    except PostfixKeyError as exc:
        return f"error: {exc}"


@settings(max_examples=examples(ci=1000, default=200))
@given(_KEYS)
@example(("a" * 63 + ".") * 3 + "a" * 61)
@example(("a" * 63 + ".") * 3 + "a" * 62)
def test_shortcut_agrees_with_the_general_parser(key: str) -> None:
    assert _public(key) == _general(key)
