"""Peer evaluation of presented chains: trust, dates and names judged independently."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from certs_support import TestCA, make_self_signed
from smtp_servers import DOMAIN, MX_HOST, decision_from_toml
from tlspolicy import Observation
from tlspolicy.adapters.peer import evaluate_peer, observation_for_verify_code
from tlspolicy.policies.dane import TlsaRecord
from tlspolicy.reuse import VerifiedAs

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "ca")


def _decision(ca: TestCA, verify: str = "optional") -> object:
    return decision_from_toml(tls="required", verify=verify, ca=ca.cert_path)


def _issue(issuer_cert: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey, *,
           cn: str, names: list[str] | None, is_ca: bool = False
           ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(issuer_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - DAY).not_valid_after(NOW + 10 * DAY)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer_key.public_key()), critical=False)
    )
    if is_ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True).add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if names is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def test_valid_chain_verifies_as_host(ca: TestCA) -> None:
    leaf = ca.valid(MX_HOST)
    result = evaluate_peer(_decision(ca), [_der(leaf.cert), _der(ca.cert)], now=NOW)  # type: ignore[arg-type]
    assert result.problems == () and result.verified is VerifiedAs.HOST
    assert result.matched_name == MX_HOST


def test_the_recipient_domain_matches_too(ca: TestCA) -> None:
    leaf = ca.issue([DOMAIN])
    result = evaluate_peer(_decision(ca), [_der(leaf.cert)], now=NOW)  # type: ignore[arg-type]
    assert result.problems == () and result.matched_name == DOMAIN


def test_wildcard_only_as_whole_leftmost_label(ca: TestCA) -> None:
    ok = ca.issue(["*.example.test"])
    bad = ca.issue(["m*.example.test", "*.test"])
    d = _decision(ca)
    assert evaluate_peer(d, [_der(ok.cert)], now=NOW).problems == ()  # type: ignore[arg-type]
    assert evaluate_peer(d, [_der(bad.cert)], now=NOW).problems == (  # type: ignore[arg-type]
        Observation.NAME_MISMATCH,)


def test_common_name_counts_only_without_dnsname(ca: TestCA) -> None:
    cn_only = ca.issue([], common_name=MX_HOST)
    cn_and_other_san = ca.issue(["other.test"], common_name=MX_HOST)
    d = _decision(ca)
    assert evaluate_peer(d, [_der(cn_only.cert)], now=NOW).problems == ()  # type: ignore[arg-type]
    assert evaluate_peer(d, [_der(cn_and_other_san.cert)], now=NOW).problems == (  # type: ignore[arg-type]
        Observation.NAME_MISMATCH,)


def test_intermediate_presented_and_missing(ca: TestCA) -> None:
    # The test CA has pathLenConstraint 0: an intermediate under it is refused.
    inter, inter_key = _issue(ca.cert, ca.key, cn="intermediate", names=None, is_ca=True)
    leaf, _ = _issue(inter, inter_key, cn=MX_HOST, names=[MX_HOST])
    d = _decision(ca)
    refused = evaluate_peer(d, [_der(leaf), _der(inter)], now=NOW)  # type: ignore[arg-type]
    assert refused.problems == (Observation.CHAIN_NOT_TRUSTED,)
    assert "path" in " ".join(refused.details).lower()
    # A root without that constraint, written as the tls_ca bundle.
    root_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "unconstrained root")])
    root = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(root_key.public_key()).serial_number(1)
            .not_valid_before(NOW - DAY).not_valid_after(NOW + 30 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()),
                           critical=False)
            .sign(root_key, hashes.SHA256()))
    bundle = ca.directory / "root.pem"
    bundle.write_bytes(root.public_bytes(Encoding.PEM))
    d = decision_from_toml(tls="required", verify="host", ca=bundle)
    inter, inter_key = _issue(root, root_key, cn="intermediate", names=None, is_ca=True)
    leaf, _ = _issue(inter, inter_key, cn=MX_HOST, names=[MX_HOST])
    full = evaluate_peer(d, [_der(leaf), _der(inter)], now=NOW)  # type: ignore[arg-type]
    assert full.problems == () and full.trusted
    alone = evaluate_peer(d, [_der(leaf)], now=NOW)  # type: ignore[arg-type]
    assert alone.problems == (Observation.CHAIN_NOT_TRUSTED,)


def test_a_leaf_cannot_issue(ca: TestCA) -> None:
    """A non-CA certificate signing another is not a trusted path (basicConstraints)."""
    leaf = ca.valid(MX_HOST)
    child, _ = _issue(leaf.cert, leaf.key, cn=MX_HOST, names=[MX_HOST])
    result = evaluate_peer(_decision(ca), [_der(child), _der(leaf.cert)], now=NOW)  # type: ignore[arg-type]
    assert Observation.CHAIN_NOT_TRUSTED in result.problems


def test_expiry_is_independent_of_trust(ca: TestCA, tmp_path: Path) -> None:
    expired = ca.expired(MX_HOST)
    result = evaluate_peer(_decision(ca), [_der(expired.cert)], now=NOW)  # type: ignore[arg-type]
    assert result.problems == (Observation.CERTIFICATE_EXPIRED,)
    assert result.trusted and not result.in_dates
    not_yet = evaluate_peer(_decision(ca), [_der(ca.valid(MX_HOST).cert)],  # type: ignore[arg-type]
                            now=NOW - 2 * DAY)
    assert Observation.CERTIFICATE_EXPIRED in not_yet.problems


def test_self_signed_untrusted_but_named(ca: TestCA, tmp_path: Path) -> None:
    cert = make_self_signed(tmp_path, MX_HOST).cert
    result = evaluate_peer(_decision(ca), [_der(cert)], now=NOW)  # type: ignore[arg-type]
    assert result.problems == (Observation.CHAIN_NOT_TRUSTED,)
    assert result.verified is VerifiedAs.NONE and result.matched_name == MX_HOST


def test_verify_no_checks_nothing(ca: TestCA, tmp_path: Path) -> None:
    cert = make_self_signed(tmp_path, "elsewhere.test").cert
    result = evaluate_peer(_decision(ca, "no"), [_der(cert)], now=NOW)  # type: ignore[arg-type]
    assert result.problems == () and not result.checked


@pytest.mark.parametrize(("code", "observation"), [
    (10, Observation.CERTIFICATE_EXPIRED), (9, Observation.CERTIFICATE_EXPIRED),
    (62, Observation.NAME_MISMATCH), (18, Observation.CHAIN_NOT_TRUSTED),
    (19, Observation.CHAIN_NOT_TRUSTED), (20, Observation.CHAIN_NOT_TRUSTED),
    (21, Observation.CHAIN_NOT_TRUSTED),
])
def test_verify_codes(code: int, observation: Observation) -> None:
    assert observation_for_verify_code(code) is observation


def test_dane_ta_through_evaluate_peer(ca: TestCA) -> None:
    from tlspolicy import Decision, Tls, Verification
    from tlspolicy.decision import Requirements

    leaf = ca.valid(MX_HOST)
    d = _decision(ca)
    decision = Decision.build(
        Requirements(Tls.REQUIRED, Verification.DANE, False, (MX_HOST,)),
        domain=DOMAIN, binding="default", binding_group="default", mx_host=MX_HOST,
        parameters=d.parameters, effective={}, explanation={})  # type: ignore[attr-defined]
    anchor = TlsaRecord.for_certificate(_der(ca.cert), 2, 1, 1)
    chain = [_der(leaf.cert), _der(ca.cert)]
    ok = evaluate_peer(decision, chain, now=NOW, tlsa_records=[anchor])
    assert ok.problems == () and ok.verified is VerifiedAs.DANE
    late = evaluate_peer(decision, chain, now=NOW + 60 * DAY, tlsa_records=[anchor])
    assert Observation.CERTIFICATE_EXPIRED in late.problems
    with pytest.raises(Exception, match="tlsa_records"):
        evaluate_peer(decision, chain, now=NOW)


# ------------------------------------------ private CAs without keyUsage (RFC 5280)

def _ca_without_key_usage(kind: str, directory: Path) -> TestCA:
    if kind == "openssl-req":
        try:
            return TestCA.openssl_req(directory)
        except FileNotFoundError:
            pytest.skip("no openssl binary to make a CA with 'openssl req -x509' defaults")
    return TestCA(directory, key_usage=None)


@pytest.mark.parametrize("kind", ["openssl-req", "no-key-usage"])
def test_ca_without_key_usage_is_trusted_as_openssl_trusts_it(kind: str, tmp_path: Path) -> None:
    """RFC 5280 6.1.4 (n): keyUsage is checked only when present."""
    ca = _ca_without_key_usage(kind, tmp_path / "ca")
    assert not any(isinstance(e.value, x509.KeyUsage) for e in ca.cert.extensions)
    start = ca.cert.not_valid_before_utc
    # Judged two days into the CA's life: the expired leaf lived one day of it
    # (an openssl-made CA starts now, so "expired yesterday" would predate it).
    at = start + 2 * DAY
    expired_leaf = ca.issue([MX_HOST], not_before=start, not_after=start + DAY)

    def judge(files: object) -> object:
        chain = [_der(files.cert), _der(ca.cert)]  # type: ignore[attr-defined]
        return evaluate_peer(_decision(ca), chain, now=at)  # type: ignore[arg-type]

    valid = judge(ca.valid(MX_HOST))
    assert valid.problems == () and valid.trusted  # type: ignore[attr-defined]
    assert valid.verified is VerifiedAs.HOST  # type: ignore[attr-defined]
    wrong = judge(ca.wrong_name(MX_HOST))
    assert wrong.problems == (Observation.NAME_MISMATCH,) and wrong.trusted  # type: ignore[attr-defined]
    expired = judge(expired_leaf)
    assert expired.problems == (Observation.CERTIFICATE_EXPIRED,)  # type: ignore[attr-defined]
    assert expired.trusted  # type: ignore[attr-defined]


def test_intermediate_without_key_usage_is_trusted(tmp_path: Path) -> None:
    root = TestCA(tmp_path / "root", key_usage=None)
    key = ec.generate_private_key(ec.SECP256R1())
    # The test CA allows no intermediate (pathLenConstraint 0): this one is
    # signed by a root without that limit, and neither has keyUsage.
    root_key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "root without keyUsage")])
    root_cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                 .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
                 .not_valid_before(NOW - DAY).not_valid_after(NOW + 10 * DAY)
                 .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                 .sign(root_key, hashes.SHA256()))
    root.cert_path.write_bytes(root_cert.public_bytes(Encoding.PEM))
    inter = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "intermediate")]))
             .issuer_name(subject).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(NOW - DAY).not_valid_after(NOW + 10 * DAY)
             .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
             .sign(root_key, hashes.SHA256()))
    leaf, _ = _issue(inter, key, cn=MX_HOST, names=[MX_HOST])
    result = evaluate_peer(_decision(root), [_der(leaf), _der(inter)], now=NOW)  # type: ignore[arg-type]
    assert result.problems == () and result.trusted


def test_ca_whose_key_usage_lacks_key_cert_sign_is_not_trusted(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca", key_usage=False)
    leaf = ca.valid(MX_HOST)
    result = evaluate_peer(_decision(ca), [_der(leaf.cert), _der(ca.cert)], now=NOW)  # type: ignore[arg-type]
    assert result.problems == (Observation.CHAIN_NOT_TRUSTED,) and not result.trusted


def test_an_unparseable_leaf_is_untrusted_unnamed_and_undated(ca: TestCA) -> None:
    result = evaluate_peer(_decision(ca), [b"\x30\x03junk", _der(ca.cert)], now=NOW)  # type: ignore[arg-type]
    assert result.problems == (Observation.CHAIN_NOT_TRUSTED, Observation.CERTIFICATE_EXPIRED,
                               Observation.NAME_MISMATCH)
    assert result.verified is VerifiedAs.NONE
    assert result.details == ("the leaf certificate cannot be parsed",)


def test_an_unparseable_certificate_after_the_leaf_is_passed_over(ca: TestCA) -> None:
    leaf = ca.valid(MX_HOST)
    result = evaluate_peer(_decision(ca), [_der(leaf.cert), b"not DER", _der(ca.cert)],  # type: ignore[arg-type]
                           now=NOW)
    assert result.problems == () and result.verified is VerifiedAs.HOST
