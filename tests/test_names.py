"""Domain name normalisation and stanza names (SEMANTICS section 2)."""

from __future__ import annotations

import pytest

from tlspolicy import InvalidDomainError
from tlspolicy.names import DomainKind, DomainName, normalise_domain


@pytest.mark.parametrize(("text", "expected"), [
    ("example.com", "example.com"),
    ("EXAMPLE.Com", "example.com"),
    ("example.com.", "example.com"),
    ("Example.COM.", "example.com"),
    ("  example.com  ", "example.com"),
    ("_dmarc.example.com", "_dmarc.example.com"),
    # UTS #46, non-transitional: ß stays (xn--fa-hia), not "fass".
    ("bücher.de", "xn--bcher-kva.de"),
    ("BÜCHER.DE", "xn--bcher-kva.de"),
    ("Bücher.de.", "xn--bcher-kva.de"),
    ("faß.de", "xn--fa-hia.de"),
    ("xn--fa-hia.de", "xn--fa-hia.de"),
    ("XN--BCHER-KVA.DE", "xn--bcher-kva.de"),
    ("例え.jp", "xn--r8jz45g.jp"),
])
def test_normalise_names(text: str, expected: str) -> None:
    assert normalise_domain(text) == expected


def test_faß_is_not_fass() -> None:
    assert normalise_domain("faß.de") != normalise_domain("fass.de")


@pytest.mark.parametrize("spelling", ["192.0.2.1", "[192.0.2.1]", " 192.0.2.1 ",
                                      "[IPv6:::ffff:192.0.2.1]", "::ffff:192.0.2.1"])
def test_ipv4_literal_spellings_are_equal(spelling: str) -> None:
    assert normalise_domain(spelling) == "[192.0.2.1]"


@pytest.mark.parametrize("spelling", ["2001:db8::1", "[IPv6:2001:db8::1]", "[ipv6:2001:db8::1]",
                                      "[IPV6:2001:DB8:0:0:0:0:0:1]", "2001:DB8:0::1",
                                      "[2001:db8::1]"])
def test_ipv6_literal_spellings_are_equal(spelling: str) -> None:
    assert normalise_domain(spelling) == "[ipv6:2001:db8::1]"


@pytest.mark.parametrize("text", [
    "", " ", ".", "..", "example..com", "-example.com", "example-.com", "exa mple.com",
    "example.com..", "[192.0.2.1", "[IPv6:2001:db8::g]", "[IPv6:192.0.2.1]", "[300.1.2.3]",
    "[192.0.2]", "2001:db8:::1", "[]", "a" * 64 + ".com", ".".join(["abcdefghi"] * 26),
    "exa$mple.com", "ex/ample.com", "\u200b.com",
])
def test_bad_names_are_typed_errors(text: str) -> None:
    with pytest.raises(InvalidDomainError):
        normalise_domain(text)


@pytest.mark.parametrize("value", [None, 3, b"example.com"])
def test_non_string_names(value: object) -> None:
    with pytest.raises(InvalidDomainError):
        normalise_domain(value)  # type: ignore[arg-type, unused-ignore]


def test_domain_name_kinds() -> None:
    exact = DomainName.parse("Example.COM.")
    assert (exact.kind, exact.key, exact.text) == (DomainKind.EXACT, "example.com",
                                                   "Example.COM.")
    ip = DomainName.parse("[IPv6:2001:db8::1]")
    assert (ip.kind, ip.key) == (DomainKind.IP, "[ipv6:2001:db8::1]")
    assert DomainName.parse("2001:db8::1") == ip
    regex = DomainName.parse(r"/\.example\.com$/")
    assert (regex.kind, regex.key) == (DomainKind.REGEX, r"\.example\.com$")


def test_regex_uses_search_semantics() -> None:
    name = DomainName.parse("/example/")
    assert name.matches("mail.example.com")
    assert name.matches("example.org")
    assert not name.matches("exampl.com")
    anchored = DomainName.parse("/^example/")
    assert anchored.matches("example.org") and not anchored.matches("mail.example.org")


def test_regex_matches_the_normalised_name() -> None:
    assert DomainName.parse("/^xn--bcher/").matches(normalise_domain("bücher.de"))
    assert DomainName.parse(r"/^\[192\./").matches(normalise_domain("192.0.2.1"))


@pytest.mark.parametrize("text", ["//", "/(/", "/[a-/", "/*x/", "/a{2,1}/"])
def test_bad_regex_names(text: str) -> None:
    with pytest.raises(InvalidDomainError):
        DomainName.parse(text)


def test_exact_and_ip_names_compare_by_key() -> None:
    assert DomainName.parse("EXAMPLE.com") == DomainName.parse("example.com.")
    assert DomainName.parse("192.0.2.1") == DomainName.parse("[192.0.2.1]")
    assert DomainName.parse("/a/") != DomainName.parse("/b/")
