"""TLSA parsing, lookup classification and DANE chain matching (RFC 6698/7671/7672).

Every vector is computed from certificates made here with cryptography's
CertificateBuilder, so the digests are real and the chains really signed.
"""

from __future__ import annotations

import hashlib
import sys
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from tlspolicy.errors import MissingDependencyError, PolicyInputError
from tlspolicy.policies.dane import (
    DaneApplicability,
    DaneProblem,
    TlsaLookup,
    TlsaLookupStatus,
    TlsaRecord,
    TlsaUsage,
    classify_tlsa,
    dns_name_matches,
    match_chain,
    parse_chain,
)

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
MX = "mx1.example.net"

_Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def _key(kind: str = "ec") -> _Key:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def _cert(
    subject_cn: str,
    key: _Key,
    *,
    issuer_cn: str | None = None,
    issuer_key: _Key | None = None,
    ca: bool = False,
    sans: tuple[str, ...] | None = None,
    not_before: datetime = NOW - timedelta(days=30),
    not_after: datetime = NOW + timedelta(days=30),
) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn or subject_cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False
        )
    signer = issuer_key if issuer_key is not None else key
    algorithm = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signer, algorithm)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class Pki:
    """A root CA, an intermediate and a leaf for ``MX``."""

    def __init__(self, *, leaf_after: datetime = NOW + timedelta(days=30),
                 leaf_sans: tuple[str, ...] = (MX,), kind: str = "ec") -> None:
        self.root_key = _key(kind)
        self.root = _cert("Example Root", self.root_key, ca=True,
                          not_after=NOW + timedelta(days=3650))
        self.int_key = _key(kind)
        self.inter = _cert("Example Intermediate", self.int_key, issuer_cn="Example Root",
                           issuer_key=self.root_key, ca=True)
        self.leaf_key = _key(kind)
        self.leaf = _cert(MX, self.leaf_key, issuer_cn="Example Intermediate",
                          issuer_key=self.int_key, sans=leaf_sans, not_after=leaf_after,
                          not_before=min(NOW - timedelta(days=30), leaf_after - timedelta(1)))

    def chain(self, *, with_root: bool = True) -> list[bytes]:
        chain = [_der(self.leaf), _der(self.inter)]
        if with_root:
            chain.append(_der(self.root))
        return chain


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


def _rec(usage: int, selector: int, mtype: int, cert: x509.Certificate) -> TlsaRecord:
    data = _der(cert) if selector == 0 else _spki(cert)
    if mtype == 1:
        data = hashlib.sha256(data).digest()
    elif mtype == 2:
        data = hashlib.sha512(data).digest()
    return TlsaRecord(usage, selector, mtype, data)


def _match(chain: list[bytes], *records: TlsaRecord, names: tuple[str, ...] = (MX,),
           now: datetime = NOW) -> tuple[TlsaUsage | None, tuple[DaneProblem, ...]]:
    result = match_chain(chain, records, reference_names=names, now=now)
    return result.usage, result.problems


# ----------------------------------------------------------------- parsing


def test_parse_presentation_with_spaces_in_hex() -> None:
    digest = "ab" * 32
    record = TlsaRecord.parse(f"3 1 1 {digest[:10]} {digest[10:40]}\t{digest[40:]}")
    assert record == TlsaRecord(3, 1, 1, bytes.fromhex(digest))
    assert TlsaRecord.parse(record.to_text()) == record


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("3 1 1", "expected 'usage selector"),
        ("256 1 1 " + "00" * 32, "usage '256'"),
        ("3 x 1 " + "00" * 32, "selector 'x'"),
        ("3 1 -1 " + "00" * 32, "matching type '-1'"),
        ("3 1 1 zz" + "00" * 31, "not hexadecimal"),
        ("3 1 1 " + "0" * 63, "odd number"),
        ("3 1 1 " + "00" * 31, "needs 32 bytes of data, found 31"),
        ("3 1 2 " + "00" * 32, "needs 64 bytes of data, found 32"),
        ("3 0 1 " + "00" * 33, "needs 32 bytes"),
    ],
)
def test_parse_rejects(text: str, fragment: str) -> None:
    with pytest.raises(PolicyInputError, match="TLSA record") as info:
        TlsaRecord.parse(text)
    assert fragment in str(info.value)


def test_constructor_validates_ranges() -> None:
    with pytest.raises(PolicyInputError, match="usage 300"):
        TlsaRecord(300, 1, 1, b"\0" * 32)
    with pytest.raises(PolicyInputError, match="bytes"):
        TlsaRecord(3, 1, 1, "00" * 32)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("usage", "selector", "mtype", "size", "usable"),
    [
        (3, 1, 1, 32, True),
        (2, 0, 2, 64, True),
        (3, 0, 0, 10, True),
        (0, 1, 1, 32, False),  # PKIX-TA unusable for SMTP (RFC 7672 3.1.3)
        (1, 1, 1, 32, False),  # PKIX-EE unusable
        (4, 1, 1, 32, False),  # unknown usage
        (3, 2, 1, 32, False),  # unknown selector
        (3, 1, 3, 32, False),  # unknown matching type
        (3, 1, 1, 20, False),  # wrong digest length from DNS
        (3, 1, 0, 0, False),  # empty data
    ],
)
def test_usability(usage: int, selector: int, mtype: int, size: int, usable: bool) -> None:
    record = TlsaRecord(usage, selector, mtype, b"\1" * size)
    assert record.is_usable is usable
    assert (record.unusable_reason is None) is usable


# ---------------------------------------------------------------- lookups


def test_classification() -> None:
    usable = TlsaRecord(3, 1, 1, b"\0" * 32)
    pkix = TlsaRecord(1, 1, 1, b"\0" * 32)
    assert classify_tlsa(TlsaLookup(TlsaLookupStatus.INSECURE)) is DaneApplicability.INSECURE
    assert classify_tlsa(TlsaLookup(TlsaLookupStatus.NODATA)) is DaneApplicability.NONE
    assert classify_tlsa(TlsaLookup(TlsaLookupStatus.NXDOMAIN)) is DaneApplicability.NONE
    assert classify_tlsa(TlsaLookup(TlsaLookupStatus.FAILED)) is DaneApplicability.FAILED
    assert classify_tlsa(TlsaLookup(TlsaLookupStatus.BOGUS)) is DaneApplicability.FAILED
    lookup = TlsaLookup(TlsaLookupStatus.RECORDS, [pkix, usable])
    assert lookup.classify() is DaneApplicability.USABLE
    assert lookup.usable_records == (usable,)
    only_bad = TlsaLookup(TlsaLookupStatus.RECORDS, (pkix,))
    assert only_bad.classify() is DaneApplicability.UNUSABLE_ONLY


def test_lookup_shape_is_validated() -> None:
    with pytest.raises(PolicyInputError, match="needs at least one record"):
        TlsaLookup(TlsaLookupStatus.RECORDS)
    with pytest.raises(PolicyInputError, match="cannot carry records"):
        TlsaLookup(TlsaLookupStatus.NODATA, (TlsaRecord(3, 1, 1, b"\0" * 32),))


# ----------------------------------------------------------------- DANE-EE


def test_dane_ee_spki_sha256_matches(pki: Pki) -> None:
    assert _match(pki.chain(), _rec(3, 1, 1, pki.leaf)) == (TlsaUsage.DANE_EE, ())


def test_for_certificate_matches_hand_computed(pki: Pki) -> None:
    for selector in (0, 1):
        for mtype in (0, 1, 2):
            computed = TlsaRecord.for_certificate(_der(pki.leaf), 3, selector, mtype)
            assert computed == _rec(3, selector, mtype, pki.leaf)


def test_dane_ee_wrong_key(pki: Pki) -> None:
    other = _cert(MX, _key(), sans=(MX,))
    assert _match(pki.chain(), _rec(3, 1, 1, other)) == (None, (DaneProblem.TLSA_MISMATCH,))


def test_dane_ee_wrong_selector(pki: Pki) -> None:
    # A full-certificate digest published as if it were an SPKI digest never matches.
    good = _rec(3, 0, 1, pki.leaf)
    swapped = TlsaRecord(3, 1, 1, good.data)
    assert _match(pki.chain(), swapped) == (None, (DaneProblem.TLSA_MISMATCH,))
    assert _match(pki.chain(), good) == (TlsaUsage.DANE_EE, ())


def test_dane_ee_ignores_expiry_and_names() -> None:
    expired = Pki(leaf_after=NOW - timedelta(days=400), leaf_sans=("other.example.org",))
    assert _match(expired.chain(), _rec(3, 1, 1, expired.leaf)) == (TlsaUsage.DANE_EE, ())


def test_dane_ee_sha512_and_full_cert(pki: Pki) -> None:
    assert _match(pki.chain(), _rec(3, 1, 2, pki.leaf)) == (TlsaUsage.DANE_EE, ())
    assert _match(pki.chain(), _rec(3, 0, 0, pki.leaf)) == (TlsaUsage.DANE_EE, ())


def test_dane_ee_matches_leaf_only(pki: Pki) -> None:
    # A 3 x x record for the intermediate does not authenticate the leaf.
    assert _match(pki.chain(), _rec(3, 1, 1, pki.inter)) == (None, (DaneProblem.TLSA_MISMATCH,))


def test_self_signed_leaf_with_dane_ee() -> None:
    key = _key("ed25519")
    leaf = _cert(MX, key, sans=(MX,))
    assert _match([_der(leaf)], _rec(3, 1, 1, leaf)) == (TlsaUsage.DANE_EE, ())


# ----------------------------------------------------------------- DANE-TA


def test_dane_ta_good_chain_root(pki: Pki) -> None:
    result = match_chain(pki.chain(), [_rec(2, 1, 1, pki.root)], reference_names=[MX], now=NOW)
    assert result.ok and result.usage is TlsaUsage.DANE_TA and result.anchor_index == 2


def test_dane_ta_good_chain_intermediate(pki: Pki) -> None:
    assert _match(pki.chain(), _rec(2, 0, 2, pki.inter)) == (TlsaUsage.DANE_TA, ())


def test_dane_ta_full_cert_selector0_mtype0(pki: Pki) -> None:
    assert _match(pki.chain(), _rec(2, 0, 0, pki.root)) == (TlsaUsage.DANE_TA, ())


def test_dane_ta_anchor_omitted_but_in_record(pki: Pki) -> None:
    # RFC 7671 5.2.2: with 2 0 0 / 2 1 0 the server may leave the anchor out.
    chain = pki.chain(with_root=False)
    assert _match(chain, _rec(2, 0, 0, pki.root)) == (TlsaUsage.DANE_TA, ())
    result = match_chain(chain, [_rec(2, 1, 0, pki.root)], reference_names=[MX], now=NOW)
    assert result.ok and result.anchor_index is None


def test_a_chain_is_parsed_leaf_first_passing_over_what_cannot_be_on_a_path(pki: Pki) -> None:
    chain = pki.chain()
    certs = parse_chain([chain[0], b"not DER", chain[1]])
    assert certs[0] == pki.leaf and certs[1] is None and certs[2] == pki.inter
    with pytest.raises(PolicyInputError, match="certificate 0 of the chain is not a DER"):
        parse_chain([b"not DER", chain[1]])


def test_dane_ta_with_an_unparseable_extra_certificate(pki: Pki) -> None:
    chain = pki.chain()
    assert _match([*chain, b"junk"], _rec(2, 1, 1, pki.root)) == (TlsaUsage.DANE_TA, ())


def test_dane_ta_anchor_not_in_chain(pki: Pki) -> None:
    chain = pki.chain(with_root=False)
    assert _match(chain, _rec(2, 1, 1, pki.root)) == (None, (DaneProblem.TLSA_MISMATCH,))


def test_dane_ta_does_not_match_leaf(pki: Pki) -> None:
    # The leaf is not self-issued, so a 2 x x record for it is no anchor.
    assert _match(pki.chain(), _rec(2, 1, 1, pki.leaf)) == (None, (DaneProblem.TLSA_MISMATCH,))


def test_dane_ta_self_issued_leaf_is_anchor() -> None:
    key = _key()
    leaf = _cert(MX, key, sans=(MX,))
    assert _match([_der(leaf)], _rec(2, 1, 1, leaf)) == (TlsaUsage.DANE_TA, ())
    assert _match([_der(leaf)], _rec(2, 1, 1, leaf), names=("mx9.example.net",)) == (
        TlsaUsage.DANE_TA, (DaneProblem.NAME_MISMATCH,))


def test_dane_ta_expired_leaf_fails() -> None:
    expired = Pki(leaf_after=NOW - timedelta(days=1))
    assert _match(expired.chain(), _rec(2, 1, 1, expired.root)) == (
        TlsaUsage.DANE_TA, (DaneProblem.CERTIFICATE_EXPIRED,))


def test_dane_ta_not_yet_valid_leaf_fails(pki: Pki) -> None:
    assert _match(pki.chain(), _rec(2, 1, 1, pki.root), now=NOW - timedelta(days=60)) == (
        TlsaUsage.DANE_TA, (DaneProblem.CERTIFICATE_EXPIRED,))


def test_dane_ta_name_mismatch(pki: Pki) -> None:
    assert _match(pki.chain(), _rec(2, 1, 1, pki.root), names=("mx2.example.net",)) == (
        TlsaUsage.DANE_TA, (DaneProblem.NAME_MISMATCH,))


def test_dane_ta_either_reference_name(pki: Pki) -> None:
    names = ("base.example.org", "MX1.EXAMPLE.NET.")
    assert _match(pki.chain(), _rec(2, 1, 1, pki.root), names=names) == (TlsaUsage.DANE_TA, ())


def test_dane_ta_wildcard_san() -> None:
    pki = Pki(leaf_sans=("*.example.net",))
    assert _match(pki.chain(), _rec(2, 1, 1, pki.root)) == (TlsaUsage.DANE_TA, ())
    assert _match(pki.chain(), _rec(2, 1, 1, pki.root), names=("a.mx1.example.net",)) == (
        TlsaUsage.DANE_TA, (DaneProblem.NAME_MISMATCH,))


def test_dane_ta_cn_only_without_dnsname() -> None:
    pki = Pki(leaf_sans=())
    assert _match(pki.chain(), _rec(2, 1, 1, pki.root)) == (TlsaUsage.DANE_TA, ())
    # With a dNSName present the CN no longer counts.
    other = Pki(leaf_sans=("other.example.net",))
    assert _match(other.chain(), _rec(2, 1, 1, other.root)) == (
        TlsaUsage.DANE_TA, (DaneProblem.NAME_MISMATCH,))


def test_dane_ta_badly_signed_chain() -> None:
    good = Pki()
    # A leaf with the right names claiming the intermediate as issuer but signed by another key.
    forged = _cert(MX, _key(), issuer_cn="Example Intermediate", issuer_key=_key(), sans=(MX,))
    chain = [_der(forged), _der(good.inter), _der(good.root)]
    assert _match(chain, _rec(2, 1, 1, good.root)) == (None, (DaneProblem.TLSA_MISMATCH,))


def test_dane_ta_non_ca_intermediate_rejected() -> None:
    root_key, mid_key = _key(), _key()
    root = _cert("Root", root_key, ca=True)
    mid = _cert("Mid", mid_key, issuer_cn="Root", issuer_key=root_key, ca=False)
    leaf = _cert(MX, _key(), issuer_cn="Mid", issuer_key=mid_key, sans=(MX,))
    chain = [_der(leaf), _der(mid), _der(root)]
    assert _match(chain, _rec(2, 1, 1, root)) == (None, (DaneProblem.TLSA_MISMATCH,))
    # The anchor itself may be anything the domain says: anchoring at "Mid" works.
    assert _match(chain, _rec(2, 1, 1, mid)) == (TlsaUsage.DANE_TA, ())


def test_dane_ta_rsa_chain() -> None:
    pki = Pki(kind="rsa")
    assert _match(pki.chain(), _rec(2, 1, 1, pki.root)) == (TlsaUsage.DANE_TA, ())


def test_dane_ta_expired_anchor_is_ignored() -> None:
    root_key, leaf_key = _key(), _key()
    root = _cert("Old Root", root_key, ca=True, not_after=NOW - timedelta(days=1),
                 not_before=NOW - timedelta(days=900))
    leaf = _cert(MX, leaf_key, issuer_cn="Old Root", issuer_key=root_key, sans=(MX,))
    assert _match([_der(leaf), _der(root)], _rec(2, 1, 1, root)) == (TlsaUsage.DANE_TA, ())


def test_ee_record_wins_over_failing_ta(pki: Pki) -> None:
    records = (_rec(2, 1, 1, _cert("Elsewhere", _key(), ca=True)), _rec(3, 1, 1, pki.leaf))
    assert _match(pki.chain(), *records) == (TlsaUsage.DANE_EE, ())


def test_best_ta_candidate_wins(pki: Pki) -> None:
    # Two anchors match; both paths are fine, so the result is clean.
    assert _match(pki.chain(), _rec(2, 1, 1, pki.root), _rec(2, 1, 1, pki.inter)) == (
        TlsaUsage.DANE_TA, ())


# ------------------------------------------------------------ input errors


def test_match_input_errors(pki: Pki) -> None:
    good = _rec(3, 1, 1, pki.leaf)
    with pytest.raises(PolicyInputError, match="empty"):
        match_chain([], [good], reference_names=[MX], now=NOW)
    with pytest.raises(PolicyInputError, match="no usable TLSA"):
        match_chain(pki.chain(), [TlsaRecord(1, 1, 1, good.data)], reference_names=[MX], now=NOW)
    with pytest.raises(PolicyInputError, match="timezone-aware"):
        match_chain(pki.chain(), [good], reference_names=[MX], now=datetime(2030, 1, 1))
    with pytest.raises(PolicyInputError, match="certificate 0"):
        match_chain([b"\x30\x03junk"], [good], reference_names=[MX], now=NOW)
    with pytest.raises(PolicyInputError, match="reference_names"):
        match_chain(pki.chain(), [good], reference_names=[], now=NOW)


def test_missing_cryptography_names_the_extra(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "cryptography", None)
    monkeypatch.setitem(sys.modules, "cryptography.x509", None)
    with pytest.raises(MissingDependencyError, match=r"tlspolicy\[dane\]"):
        match_chain(pki.chain(), [_rec(3, 1, 1, pki.leaf)], reference_names=[MX], now=NOW)


# ------------------------------------------------------------------ names


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("mx1.example.net", "MX1.example.net.", True),
        ("*.example.net", "mx1.example.net", True),
        ("*.example.net", "example.net", False),
        ("*.example.net", "a.b.example.net", False),
        ("*.net", "example.net", False),
        ("mx*.example.net", "mx1.example.net", False),
        ("*.*.example.net", "a.b.example.net", False),
        ("mx1.example.net", "*.example.net", False),
        ("", "example.net", False),
    ],
)
def test_dns_name_matches(pattern: str, name: str, expected: bool) -> None:
    assert dns_name_matches(pattern, name) is expected


_label = st.from_regex(r"[a-z0-9]{1,10}", fullmatch=True)


@given(_label, _label, _label, _label)
def test_wildcard_never_spans_two_labels(a: str, b: str, c: str, d: str) -> None:
    assert not dns_name_matches(f"*.{c}.{d}", f"{a}.{b}.{c}.{d}")
    assert dns_name_matches(f"*.{c}.{d}", f"{a}.{c}.{d}")


@given(st.binary(min_size=1, max_size=80), st.sampled_from([0, 1, 2]))
def test_presentation_roundtrip(data: bytes, mtype: int) -> None:
    if mtype == 1:
        data = hashlib.sha256(data).digest()
    elif mtype == 2:
        data = hashlib.sha512(data).digest()
    record = TlsaRecord(3, 1, mtype, data)
    assert TlsaRecord.parse(record.to_text()) == record
