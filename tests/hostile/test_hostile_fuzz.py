"""Fuzz every parser of the library: only its own error types may escape.

Each parser gets generated text (arbitrary Unicode, and text built from the
characters and words its format is made of, so the parser gets deep), and
must either return or raise a :class:`~tlspolicy.errors.TlsPolicyError`.
No ``ValueError``, ``MemoryError``, ``RecursionError`` or ``KeyError`` from
inside may reach the caller.  The example budget is modest in the ``ci``
profile (this runs in CI beside the rest) and small locally.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategies import examples
from tlspolicy import TlsaRecord, TlsPolicyError, loads_toml
from tlspolicy.formats.ecelerity import loads_ecelerity_config, parse_ecelerity
from tlspolicy.names import DomainName, normalise_domain
from tlspolicy.options import CompatVersion, TlsProtocols
from tlspolicy.policies.mtasts import parse_policy, parse_txt_record, select_txt_record
from tlspolicy.policytests.reader import loads_expectations
from tlspolicy.postfix.netstring import NetstringDecoder
from tlspolicy.servers.socketmap import parse_postfix_key

EXAMPLES = examples(ci=300, default=50)
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def _words(*words: str) -> st.SearchStrategy[str]:
    """Text made of a format's own tokens, glued by its separators."""
    token = st.one_of(st.sampled_from(words), st.text(max_size=8),
                      st.integers(-10, 10**6).map(str), st.just("9" * 5000))
    return st.lists(token, max_size=40).map("".join)


def _only_library_errors(parse: Callable[[str], object], text: str) -> None:
    with contextlib.suppress(TlsPolicyError):
        parse(text)


TOML_WORDS = ("[", "]", "[[", "]]", "global", "domain", "binding", "binding_group", "name",
              " = ", "\"", "'", "\n", "tls", "tls_verify", "required", "\"/", "/\"", "{", "}",
              "compatibility", "match_cache_size", ".", ",", "true", "#", "\ufeff", "(a+)+$",
              "\\\\", "4.8", "\"\"\"")
ECELERITY_WORDS = ("{", "}", "(", ")", " = ", "\"", "'", "\n", " ", "domain", "binding",
                   "binding_group", "tls", "required", "include", "/*", "*/", "#", "dane",
                   "tsl", "domian", "\\", "/", "Host", "esmtp_listener", "\ufeff", "0", "-1")
TXT_WORDS = ("v=STSv1", ";", " ", "id=", "=", "ext", "\t", "v=", "20240101")
POLICY_WORDS = ("version: STSv1", "mode: ", "enforce", "testing", "none", "mx: ", "max_age: ",
                "*.", "example.com", "\n", "\r\n", "\r", ":", "31557601", "\x00", "\ufeff")
TLSA_WORDS = ("3", "1", "2", "0", "256", " ", "ab", "cd", "zz", "\t", "-", "9" * 5000)
KEY_WORDS = ("[", "]", ":", ".", "example", "com", "ipv6:", "::1", "127.0.0.1", "25",
             "smtp", "*", "-", "_", " ", "\x00", "xn--")
NAME_WORDS = (".", "a", "-", "_", "[", "]", "ipv6:", "xn--", "ß", "١", "1", "/", "(", ")", "+",
              "*", "\\", "?", "{", "}", "$", "^", "|")
VERSION_WORDS = ("4", ".", "8", "０", "٤", "1", "0", "9" * 5000, " ")
PROTOCOL_WORDS = ("+", "-", "ALL", "SSLv3", "TLSv1.2", ":", "TLSv1.3", "TLSv1", "x")
EXPECT_WORDS = ("[[case]]", "domain = ", "\"", "plan", "skip", "config", "\n", "mx_host",
                "source.", "tls", "=", "[", "]")


@FUZZ
@given(st.one_of(st.text(), _words(*TOML_WORDS)))
def test_toml(text: str) -> None:
    _only_library_errors(lambda t: loads_toml(t, "fuzz.toml"), text)


@FUZZ
@given(st.one_of(st.text(), _words(*ECELERITY_WORDS)))
def test_ecelerity(text: str) -> None:
    def loader(path: str) -> str:
        raise FileNotFoundError(path)

    _only_library_errors(lambda t: parse_ecelerity(t, filename="f.conf", loader=loader), text)
    _only_library_errors(lambda t: loads_ecelerity_config(t, "f.conf", loader=loader), text)


@FUZZ
@given(st.one_of(st.text(), _words(*TXT_WORDS)))
def test_mta_sts_txt(text: str) -> None:
    _only_library_errors(parse_txt_record, text)
    _only_library_errors(lambda t: select_txt_record([t, t]), text)
    _only_library_errors(lambda t: select_txt_record([t]), text)


@FUZZ
@given(st.one_of(st.text(), _words(*POLICY_WORDS), st.binary(max_size=200)))
def test_mta_sts_policy(document: str | bytes) -> None:
    _only_library_errors(parse_policy, document)  # type: ignore[arg-type]


@FUZZ
@given(st.one_of(st.text(), _words(*TLSA_WORDS)))
def test_tlsa(text: str) -> None:
    _only_library_errors(TlsaRecord.parse, text)


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=30),
                          st.sampled_from([b"0:,", b"5:hello,", b"99999999999:", b":", b",",
                                           b"3:ab", b"-1:", b"\x00", b"12"])), max_size=20),
       st.integers(0, 1000))
def test_netstring(chunks: list[bytes], limit: int) -> None:
    decoder = NetstringDecoder(limit)
    try:
        for chunk in chunks:
            decoder.feed(chunk)
            while decoder.next_payload() is not None:
                pass
    except TlsPolicyError:
        pass


@FUZZ
@given(st.one_of(st.text(), _words(*KEY_WORDS)))
def test_postfix_keys(text: str) -> None:
    _only_library_errors(parse_postfix_key, text)


@FUZZ
@given(st.one_of(st.text(), _words(*NAME_WORDS)))
def test_domain_names(text: str) -> None:
    _only_library_errors(normalise_domain, text)
    _only_library_errors(DomainName.parse, text)
    _only_library_errors(lambda t: DomainName.parse(f"/{t}/"), text)


@FUZZ
@given(st.one_of(st.text(), _words(*VERSION_WORDS), _words(*PROTOCOL_WORDS)))
def test_option_values(text: str) -> None:
    _only_library_errors(CompatVersion.parse, text)
    _only_library_errors(TlsProtocols.parse, text)


@FUZZ
@given(st.one_of(st.text(), _words(*EXPECT_WORDS)))
def test_expectation_files(text: str) -> None:
    _only_library_errors(lambda t: loads_expectations(t, "fuzz-expect.toml"), text)
