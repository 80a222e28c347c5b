"""The ASCII fast path of ``normalise_domain`` agrees with full UTS #46 processing.

An ASCII name without an ``xn--`` label is only lower-cased; the full path maps
it with UTS #46 and validates every A-label.  Over generated ASCII names,
hostile ones included, both give the same name or the same error (class and
message).
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from strategies import examples
from tlspolicy import Config, Resolver
from tlspolicy.errors import InvalidDomainError
from tlspolicy.names import MAX_NAME_OCTETS, _normalise, _plain_name, normalise_domain


def outcome(name: str, fast: bool) -> tuple[str, str]:
    try:
        return ("ok", _normalise(name, fast))
    except InvalidDomainError as exc:
        return (type(exc).__name__, str(exc))


LABEL_PARTS = ("a", "Z", "0", "9", "-", "_", "xn--", "XN--", "bcher-kva", "fa-hia", "zz",
               "55qx5d", "a" * 63, "b" * 64, "--", "ab--c", "", " ", "*", "\x00", "\x7f",
               "!", "@", ":", "[", "]", "1", "123", "ipv6")

labels = st.lists(st.sampled_from(LABEL_PARTS), min_size=0, max_size=4).map("".join)
names = st.one_of(
    st.lists(labels, min_size=1, max_size=6).map(".".join),
    st.tuples(st.lists(labels, min_size=1, max_size=6).map(".".join),
              st.sampled_from(("", ".", "..", " ", "\t"))).map("".join),
    st.text(alphabet=st.characters(max_codepoint=127), max_size=80),
    st.integers(1, 130).map(lambda n: ".".join(["a" * 62] * (n // 63 + 1))[:n * 3]),
)

EDGES = [
    "", ".", "..", "a.", "a..", ".a", "a..b", " a.example ", "A.EXAMPLE",
    "a" * 63 + ".example", "a" * 64 + ".example",
    ".".join(["a" * 63] * 3 + ["a" * 61]),          # 253 octets
    ".".join(["a" * 63] * 3 + ["a" * 62]),          # 254 octets
    ".".join(["a" * 63] * 3 + ["a" * 61]) + ".",    # 253 plus the trailing dot
    "-a.example", "a-.example", "a.-example", "ab--cd.example", "r3---sn-abc.example",
    "xn--bcher-kva.de", "XN--BCHER-KVA.DE", "xn--zz.example", "xn--a.example", "xn--.example",
    "xn--abc-.example", "xn--55qx5d", "xn--fa-hia.de", "axn--b.example", "xn--" + "a" * 60,
    "example.123", "123", "1.2.3.4", "1.2.3.4.5", "192.0.2.300", "_dmarc.example",
    "_.example", "a_b.example", "[192.0.2.1]", "[ipv6:2001:db8::1]", "2001:db8::1",
    "a b.example", "a\x00.example", "a\tb",
]


@pytest.mark.parametrize("name", EDGES)
def test_fast_path_agrees_on_edges(name: str) -> None:
    assert outcome(name, True) == outcome(name, False)


@settings(max_examples=examples(ci=3000, default=300))
@given(names)
@example("xn--zz.example")
def test_fast_path_agrees_with_full_uts46(name: str) -> None:
    assert outcome(name, True) == outcome(name, False)


@pytest.mark.parametrize("name", ["xn--zz.example", "xn--a.example", "xn--.example",
                                  "xn--abc-.example", "XN--ZZ.EXAMPLE"])
def test_invalid_a_labels_are_refused(name: str) -> None:
    with pytest.raises(InvalidDomainError, match="invalid international domain name"):
        normalise_domain(name)


@pytest.mark.parametrize(("name", "want"), [
    ("XN--BCHER-KVA.DE", "xn--bcher-kva.de"), ("_dmarc.Example.", "_dmarc.example"),
    ("r3---sn-abc.example", "r3---sn-abc.example"), ("axn--b.example", "axn--b.example"),
])
def test_valid_ascii_names(name: str, want: str) -> None:
    assert normalise_domain(name) == want


def test_loaders_and_keys_check_a_labels_too() -> None:
    # The TOML fast reader and the socketmap key parser skip normalise_domain for
    # plain names; a name holding an A-label goes through it.
    from tlspolicy.errors import ConfigError
    from tlspolicy.formats.toml import loads_toml
    from tlspolicy.servers.socketmap import PostfixKeyError, parse_postfix_key

    with pytest.raises(ConfigError, match="invalid international domain name"):
        loads_toml('[[domain]]\nname = "xn--zz.example"\ntls = "required"\n', "f.toml")
    config = loads_toml('[[domain]]\nname = "XN--BCHER-KVA.de"\ntls = "required"\n')
    assert config.domains[0].name.key == "xn--bcher-kva.de"
    with pytest.raises(PostfixKeyError):
        parse_postfix_key("xn--zz.example")
    assert parse_postfix_key("[XN--BCHER-KVA.de]:25").domain == "xn--bcher-kva.de"


# Names close to the plain form: lower-case LDH labels, with the edges of the plain
# rule mixed in (leading digits, hyphens at label ends, long labels, A-label prefixes,
# upper case, a trailing dot, empty labels, IP-like spellings).
PLAIN_PARTS = ("a", "z", "0", "9", "_", "-", "ab", "x1", "xn--", "xn", "--", "a" * 61,
               "b" * 62, "c" * 63, "d" * 64, "A", "1", "255", "ipv6")
plain_labels = st.lists(st.sampled_from(PLAIN_PARTS), min_size=0, max_size=5).map("".join)
plain_like = st.one_of(
    st.lists(plain_labels, min_size=1, max_size=8).map(".".join),
    st.tuples(st.lists(plain_labels, min_size=1, max_size=6).map(".".join),
              st.sampled_from(("", ".", " ", ":25"))).map("".join),
    st.from_regex(r"[a-z_][a-z0-9_-]{0,70}(\.[a-z0-9_-]{1,70}){0,5}", fullmatch=True),
)


@settings(max_examples=examples(ci=3000, default=300))
@given(plain_like)
@example(".".join(["a" * 63] * 3 + ["a" * 61]))
@example(".".join(["a" * 63] * 3 + ["a" * 62]))
def test_plain_names_agree_with_full_processing(name: str) -> None:
    # A name the plain shortcut accepts comes back unchanged, as both the ASCII
    # path and full UTS #46 processing give it; any other name takes those paths.
    assert outcome(name, True) == outcome(name, False)
    if len(name) <= MAX_NAME_OCTETS and _plain_name(name) is not None and "xn--" not in name:
        assert outcome(name, False) == ("ok", name)


@settings(max_examples=examples(ci=1000, default=100))
@given(plain_like)
def test_resolver_names_a_domain_as_normalise_domain_does(name: str) -> None:
    # Resolver.resolve takes the plain shortcut inline; its decision names the domain
    # (or refuses it) exactly as normalise_domain does.
    resolver = Resolver(Config())
    try:
        want: tuple[str, str] = ("ok", normalise_domain(name))
    except InvalidDomainError as exc:
        want = (type(exc).__name__, str(exc))
    try:
        got: tuple[str, str] = ("ok", resolver.resolve(name).domain)
    except InvalidDomainError as exc:
        got = (type(exc).__name__, str(exc))
    assert got == want
