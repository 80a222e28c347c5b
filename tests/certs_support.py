"""Test certificates made on the spot with cryptography's CertificateBuilder.

A :class:`TestCA` issues leaf certificates for a name; the variants the TLS
tests need are one call each: a valid chain, a wrong name, an expired
certificate, a self-signed one.  Keys are EC P-256 (fast to generate).
Everything is written as PEM files under a directory the test owns.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertFiles", "TestCA", "make_self_signed"]

_ONE_DAY = datetime.timedelta(days=1)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _san(names: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


@attrs.frozen(slots=True)
class CertFiles:
    """PEM files of one leaf: its certificate, the chain to serve and the key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_path: Path
    #: Leaf followed by the issuing CA (what a server sends); for a
    #: self-signed certificate just the certificate.
    chain_path: Path
    key_path: Path


def _write(directory: Path, stem: str, cert: x509.Certificate,
           key: ec.EllipticCurvePrivateKey, chain_extra: bytes) -> CertFiles:
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / f"{stem}.crt"
    chain_path = directory / f"{stem}-chain.crt"
    key_path = directory / f"{stem}.key"
    cert_path.write_bytes(_cert_pem(cert))
    chain_path.write_bytes(_cert_pem(cert) + chain_extra)
    key_path.write_bytes(_key_pem(key))
    key_path.chmod(0o600)
    return CertFiles(cert, key, cert_path, chain_path, key_path)


class TestCA:
    """A throw-away certificate authority writing its files into ``directory``."""

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, directory: Path, *, name: str = "tlspolicy test CA",
                 key_usage: bool | None = True) -> None:
        """``key_usage``: True for keyCertSign + cRLSign, False for a keyUsage
        without keyCertSign (digitalSignature only), None for no keyUsage at all."""
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.key = _key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _ONE_DAY)
            .not_valid_after(now + 30 * _ONE_DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        )
        if key_usage is not None:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=not key_usage, content_commitment=False,
                    key_encipherment=False, data_encipherment=False, key_agreement=False,
                    key_cert_sign=key_usage, crl_sign=key_usage, encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        self.cert = (
            builder
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_path = directory / "ca.crt"
        self.cert_path.write_bytes(_cert_pem(self.cert))

    @classmethod
    def openssl_req(cls, directory: Path, *, name: str = "tlspolicy openssl CA") -> TestCA:
        """A CA made by the ``openssl`` command with ``req -x509`` defaults: a
        critical basicConstraints cA, key identifiers, and no keyUsage.

        Raises :class:`FileNotFoundError` when there is no ``openssl`` binary.
        """
        binary = shutil.which("openssl")
        if binary is None:
            raise FileNotFoundError("openssl")
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / "ca.crt", directory / "ca.key"
        subprocess.run(
            [binary, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", str(key_path), "-out", str(cert_path), "-subj", f"/CN={name}",
             "-days", "30"],
            check=True, capture_output=True, timeout=30)
        ca = cls.__new__(cls)
        ca.directory = directory
        ca.cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        ca.key = key
        ca.cert_path = cert_path
        return ca

    @property
    def pem(self) -> bytes:
        """The CA certificate in PEM, e.g. for ``ssl.SSLContext.load_verify_locations``."""
        return _cert_pem(self.cert)

    def issue(
        self,
        names: Sequence[str],
        *,
        stem: str | None = None,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        common_name: str | None = None,
    ) -> CertFiles:
        """Issue a server certificate for ``names`` (DNS names or IP addresses).

        The validity defaults to yesterday until thirty days ahead.
        """
        key = _key()
        now = _now()
        cn = common_name if common_name is not None else (names[0] if names else "no-name")
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before if not_before is not None else now - _ONE_DAY)
            .not_valid_after(not_after if not_after is not None else now + 30 * _ONE_DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if names:
            builder = builder.add_extension(_san(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return _write(self.directory, stem or f"leaf-{cert.serial_number:x}", cert, key,
                      self.pem)

    def valid(self, name: str, *, stem: str | None = None) -> CertFiles:
        """A currently valid certificate for ``name``."""
        return self.issue([name], stem=stem)

    def wrong_name(self, name: str, *, stem: str | None = None) -> CertFiles:
        """A valid certificate for a name other than ``name``."""
        return self.issue([f"not-{name}"], stem=stem)

    def expired(self, name: str, *, stem: str | None = None) -> CertFiles:
        """A certificate for ``name`` that expired yesterday."""
        now = _now()
        return self.issue([name], stem=stem, not_before=now - 30 * _ONE_DAY,
                          not_after=now - _ONE_DAY)


def make_self_signed(directory: Path, name: str, *, stem: str = "self-signed") -> CertFiles:
    """A self-signed certificate for ``name``, trusted by nobody."""
    key = _key()
    now = _now()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _ONE_DAY)
        .not_valid_after(now + 30 * _ONE_DAY)
        .add_extension(_san([name]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _write(directory, stem, cert, key, b"")
