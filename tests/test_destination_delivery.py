"""Destination policies end to end: resolver decision -> smtplib driver -> real server.

The decisions here come from a TOML configuration plus a Destination, exactly as
an MTA would build them; the driver takes the TLSA records from the decision.
"""

from __future__ import annotations

import smtplib

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from smtp_servers import DOMAIN, MX_HOST, CertSet, Mode, make_cert_set, smtp_server
from tlspolicy import (
    Action,
    Destination,
    MtaStsPolicy,
    Observation,
    Resolver,
    StsMode,
    TlsaLookup,
    TlsaLookupStatus,
    TlsaRecord,
    loads_toml,
)
from tlspolicy.adapters import StartTlsFailed
from tlspolicy.adapters.smtplib import starttls
from tlspolicy.reuse import VerifiedAs

TIMEOUT = 10.0


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_cert_set(tmp_path_factory.mktemp("certs"))
MESSAGE = b"Subject: destination policy\r\n\r\nbody\r\n"


def _resolver(ca: object) -> Resolver:
    return Resolver(loads_toml(f"""
[global]
tls = "ifavailable"
tls_verify = "no"
use_mta_sts = true
use_dane = true
tls_ca = "{ca}"
"""))


def _send(decision: object, port: int) -> tuple[object, object]:
    try:
        result = starttls(decision, "127.0.0.1", port,  # type: ignore[arg-type]
                          local_hostname="client.test", timeout=TIMEOUT)
    except StartTlsFailed as error:
        return None, error
    try:
        result.smtp.sendmail("sender@client.test", [f"rcpt@{DOMAIN}"], MESSAGE,
                             mail_options=list(result.record.mail_options))
    finally:
        result.smtp.quit()
    return result.record, None


@pytest.mark.parametrize("matching", [True, False])
def test_dane_ee_from_resolver(certs: CertSet, matching: bool) -> None:
    # The self-signed certificate is not PKIX-trusted: only DANE can accept it.
    presented = certs.files["self-signed"].cert.public_bytes(Encoding.DER)
    other = certs.files["valid"].cert.public_bytes(Encoding.DER)
    record = TlsaRecord.for_certificate(presented if matching else other, 3, 1, 1)
    decision = _resolver(certs.ca_path).resolve(DOMAIN, mx_host=MX_HOST, destination=Destination(
        tlsa=TlsaLookup(TlsaLookupStatus.RECORDS, (record,))))
    assert decision.tlsa_records == (record,)
    with smtp_server(Mode.TLS, tls_context=certs.context("self-signed")) as server:
        result, error = _send(decision, server.port)
        if matching:
            assert error is None
            assert result.verified is VerifiedAs.DANE  # type: ignore[attr-defined]
            assert [m.tls for m in server.messages] == [True]
        else:
            assert isinstance(error, StartTlsFailed)
            assert error.observation is Observation.TLSA_MISMATCH
            assert server.messages == []


def test_dane_no_starttls_is_never_plaintext(certs: CertSet) -> None:
    record = TlsaRecord.parse("3 1 1 " + "00" * 32)
    decision = _resolver(certs.ca_path).resolve(DOMAIN, mx_host=MX_HOST, destination=Destination(
        tlsa=TlsaLookup(TlsaLookupStatus.RECORDS, (record,))))
    with smtp_server(Mode.NO_STARTTLS) as server:
        _, error = _send(decision, server.port)
        assert isinstance(error, StartTlsFailed)
        assert error.observation is Observation.STARTTLS_NOT_ADVERTISED
        assert server.messages == []


@pytest.mark.parametrize("cert", ["valid", "wrong-name"])
def test_mta_sts_enforce_checks_mx_name(certs: CertSet, cert: str) -> None:
    policy = MtaStsPolicy(StsMode.ENFORCE, (MX_HOST,), 86400)
    decision = _resolver(certs.ca_path).resolve(DOMAIN, mx_host=MX_HOST,
                                                destination=Destination(mta_sts=policy))
    with smtp_server(Mode.TLS, tls_context=certs.context(cert)) as server:
        result, error = _send(decision, server.port)
        if cert == "valid":
            assert error is None
            assert result.verified is VerifiedAs.HOST  # type: ignore[attr-defined]
            assert [m.tls for m in server.messages] == [True]
        else:
            assert isinstance(error, StartTlsFailed)
            assert error.observation is Observation.NAME_MISMATCH
            assert server.messages == []


def test_plan_fail_connects_nowhere(certs: CertSet) -> None:
    policy = MtaStsPolicy(StsMode.ENFORCE, ("other.example",), 86400)
    decision = _resolver(certs.ca_path).resolve(DOMAIN, mx_host=MX_HOST,
                                                destination=Destination(mta_sts=policy))
    assert decision.plan is Action.FAIL
    with smtp_server(Mode.TLS, tls_context=certs.context("valid")) as server:
        _, error = _send(decision, server.port)
        assert isinstance(error, StartTlsFailed)
        assert server.handler.connections == 0


@pytest.mark.parametrize("advertised", [True, False])
def test_requiretls_from_resolver(certs: CertSet, advertised: bool) -> None:
    decision = _resolver(certs.ca_path).resolve(DOMAIN, mx_host=MX_HOST, destination=Destination(
        requiretls=True, mx_dnssec=True))
    with smtp_server(Mode.TLS, tls_context=certs.context("valid"),
                     advertise_requiretls=advertised) as server:
        result, error = _send(decision, server.port)
        if advertised:
            assert error is None
            assert result.mail_options == ("REQUIRETLS",)  # type: ignore[attr-defined]
            assert [m.tls for m in server.messages] == [True]
        else:
            assert isinstance(error, StartTlsFailed)
            assert (error.status.code, error.status.enhanced) == (451, "4.7.30")
            assert server.messages == []


def test_smtplib_is_real() -> None:
    # Guard: these tests talk to real sockets, never a patched smtplib.
    assert smtplib.SMTP.__module__ == "smtplib"
