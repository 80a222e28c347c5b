"""The real-Postfix test helpers work: a private receiving Postfix with TLS.

Each test starts its own Postfix on 127.0.0.1 (about three seconds from start
to stop) with certificates made in the test, talks to it with smtplib and
reads the delivery from its log.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from certs_support import CertFiles, TestCA, make_self_signed
from postfix_support import (
    POSTFIX,
    POSTMAP,
    allow_config_directory,
    allowed_config_directories,
    cached_lookup_is_consistent,
    disallow_config_directory,
    find_postfix_binary,
    receiving_postfix,
    requires_postfix,
    requires_postfix_server,
)

pytestmark = [pytest.mark.slow, pytest.mark.postfix, pytest.mark.network,
              pytest.mark.timeout(120)]

MX = "mx.tlspolicy.test"
SMTP_TIMEOUT = 15.0


class NamedSMTP(smtplib.SMTP):
    """smtplib.SMTP that connects to an address but checks the certificate for a name.

    smtplib takes the name for SNI and the certificate check from the host it
    connected to; a server on 127.0.0.1 is known by its MX name instead.
    """

    def __init__(self, address: tuple[str, int], server_name: str) -> None:
        super().__init__(timeout=SMTP_TIMEOUT)
        self.connect(*address)
        self._host = server_name


def _client_context(ca: TestCA) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca.cert_path))


def _send(smtp: smtplib.SMTP, recipient: str) -> None:
    smtp.sendmail("sender@client.test", [recipient],
                  f"From: sender@client.test\r\nTo: {recipient}\r\nSubject: test\r\n\r\nhi\r\n")


def test_binaries_found_or_skip_reason_clear() -> None:
    # Not an equality of the import-time and the live lookup: Postfix may be
    # installed while the suite runs (see cached_lookup_is_consistent).
    assert cached_lookup_is_consistent(POSTFIX, "postfix")
    assert cached_lookup_is_consistent(POSTMAP, "postmap")
    assert find_postfix_binary("no-such-postfix-program") is None
    if POSTFIX is None or POSTMAP is None:
        mark = requires_postfix.mark
        assert mark.kwargs["reason"].startswith("Postfix is not installed")


@requires_postfix_server
def test_alternate_config_directories_edit_is_idempotent(tmp_path: Path) -> None:
    directory = tmp_path / "conf"
    before = allowed_config_directories()
    try:
        allow_config_directory(directory)
        allow_config_directory(directory)
        assert allowed_config_directories().count(str(directory)) == 1
        assert set(before) <= set(allowed_config_directories())
    finally:
        disallow_config_directory(directory)
        disallow_config_directory(directory)
    assert str(directory) not in allowed_config_directories()
    assert allowed_config_directories() == before


@requires_postfix_server
def test_starttls_delivery_with_valid_certificate(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "pki")
    leaf = ca.valid(MX)
    with receiving_postfix(cert=leaf.chain_path, key=leaf.key_path,
                           security_level="may", hostname=MX) as postfix:
        with NamedSMTP((postfix.host, postfix.port), MX) as smtp:
            code, _ = smtp.ehlo("client.test")
            assert code == 250
            assert smtp.has_extn("starttls")
            code, _ = smtp.starttls(context=_client_context(ca))
            assert code == 220
            assert isinstance(smtp.sock, ssl.SSLSocket)
            version = smtp.sock.version()
            assert version in ("TLSv1.2", "TLSv1.3")
            peer = smtp.sock.getpeercert()
            assert peer is not None and ("DNS", MX) in peer["subjectAltName"]
            smtp.ehlo("client.test")
            assert not smtp.has_extn("starttls")
            _send(smtp, "alice@example.test")
        delivery = postfix.wait_for_delivery("alice@example.test")
        assert delivery.status == "sent"
        assert delivery.tls is not None
        assert delivery.tls.protocol == version
        assert delivery.tls.trust == "Anonymous"
        port = postfix.port
        config_dir = postfix.config_dir
        assert postfix.is_running()
    # Stopped: nothing listens, the master is gone, the directory is unlisted.
    assert not postfix.is_running()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert str(config_dir) not in allowed_config_directories()
    assert not config_dir.exists()


@requires_postfix_server
def test_plaintext_delivery_without_tls() -> None:
    with receiving_postfix(security_level="none", hostname=MX) as postfix:
        with smtplib.SMTP(postfix.host, postfix.port, timeout=SMTP_TIMEOUT) as smtp:
            smtp.ehlo("client.test")
            assert not smtp.has_extn("starttls")
            _send(smtp, "bob@example.test")
        delivery = postfix.wait_for_delivery("bob@example.test")
        assert delivery.status == "sent"
        assert delivery.tls is None


@requires_postfix_server
def test_encrypt_level_refuses_plaintext_mail(tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "pki")
    leaf = ca.valid(MX)
    with receiving_postfix(cert=leaf.chain_path, key=leaf.key_path,
                           security_level="encrypt", hostname=MX) as postfix:
        with smtplib.SMTP(postfix.host, postfix.port, timeout=SMTP_TIMEOUT) as smtp:
            smtp.ehlo("client.test")
            assert smtp.has_extn("starttls")
            code, message = smtp.mail("sender@client.test")
            assert code == 530
            assert b"STARTTLS" in message
        with NamedSMTP((postfix.host, postfix.port), MX) as smtp:
            smtp.starttls(context=_client_context(ca))
            _send(smtp, "carol@example.test")
        delivery = postfix.wait_for_delivery("carol@example.test")
        assert delivery.status == "sent" and delivery.tls is not None


def _wrong_name(ca: TestCA, tmp: Path) -> CertFiles:
    return ca.wrong_name(MX)


def _expired(ca: TestCA, tmp: Path) -> CertFiles:
    return ca.expired(MX)


def _self_signed(ca: TestCA, tmp: Path) -> CertFiles:
    return make_self_signed(tmp / "self", MX)


@requires_postfix_server
@pytest.mark.parametrize(
    ("make", "verify_message"),
    [
        (_wrong_name, "Hostname mismatch"),
        (_expired, "certificate has expired"),
        (_self_signed, "self-signed certificate"),
    ],
    ids=["wrong-name", "expired", "self-signed"],
)
def test_bad_certificates_are_served_and_refused_by_a_verifying_client(
    tmp_path: Path, make: Callable[[TestCA, Path], CertFiles], verify_message: str
) -> None:
    ca = TestCA(tmp_path / "pki")
    leaf = make(ca, tmp_path)
    with receiving_postfix(cert=leaf.chain_path, key=leaf.key_path,
                           security_level="may", hostname=MX) as postfix:
        with NamedSMTP((postfix.host, postfix.port), MX) as smtp:
            smtp.ehlo("client.test")
            assert smtp.has_extn("starttls")
            with pytest.raises(ssl.SSLCertVerificationError) as info:
                smtp.starttls(context=_client_context(ca))
            assert verify_message in str(info.value)
        # The same certificate is accepted by a client that does not verify,
        # and the delivery is logged as over TLS.
        unverified = ssl.create_default_context()
        unverified.check_hostname = False
        unverified.verify_mode = ssl.CERT_NONE
        with NamedSMTP((postfix.host, postfix.port), MX) as smtp:
            smtp.starttls(context=unverified)
            assert isinstance(smtp.sock, ssl.SSLSocket)
            served = smtp.sock.getpeercert(binary_form=True)
            _send(smtp, "dave@example.test")
        assert served == leaf.cert.public_bytes(Encoding.DER)
        delivery = postfix.wait_for_delivery("dave@example.test")
        assert delivery.status == "sent" and delivery.tls is not None

