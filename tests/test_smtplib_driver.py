"""The smtplib driver against real aiosmtpd servers on 127.0.0.1 (SEMANTICS section 4).

Every row of both tables runs here; the server records whether each message
came in over TLS, in plaintext, or not at all.
"""

from __future__ import annotations

import datetime
import smtplib
from pathlib import Path

import pytest

from smtp_servers import (
    CERTIFICATE_ROWS,
    DOMAIN,
    MX_HOST,
    NEGOTIATION_ROWS,
    PRIVATE_CA_ROWS,
    CertificateRow,
    CertSet,
    Mode,
    NegotiationRow,
    check_outcome,
    check_reuse_downgrades,
    decision_from_toml,
    make_cert_set,
    make_private_ca_set,
    smtp_server,
    tlsrpt_types,
)
from tlspolicy import Action, Decision, Observation, Tls, Verification
from tlspolicy.adapters import StartTlsFailed, StartTlsStopped, check_reuse
from tlspolicy.adapters.smtplib import starttls
from tlspolicy.decision import Requirements, TlsParameters
from tlspolicy.options import TlsEngine, TlsVersion
from tlspolicy.policies.dane import TlsaRecord
from tlspolicy.reuse import VerifiedAs

pytestmark = [pytest.mark.network, pytest.mark.timeout(60)]

TIMEOUT = 10.0
MESSAGE = b"Subject: tlspolicy adapter test\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_cert_set(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertSet, datetime.datetime]:
    try:
        return make_private_ca_set(tmp_path_factory.mktemp("private-ca"))
    except FileNotFoundError:
        pytest.skip("no openssl binary to make a CA with 'openssl req -x509' defaults")


def _deliver(decision: Decision, port: int, **kwargs: object) -> tuple[object, object]:
    """Run the driver, deliver when it says so; return (record, error)."""
    try:
        result = starttls(decision, "127.0.0.1", port, local_hostname="client.test",
                          timeout=TIMEOUT, **kwargs)  # type: ignore[arg-type]
    except StartTlsStopped as error:
        return None, error
    try:
        result.smtp.sendmail("sender@client.test", [f"rcpt@{DOMAIN}"], MESSAGE,
                             mail_options=list(result.record.mail_options))
    finally:
        result.smtp.quit()
    return result.record, None


@pytest.mark.parametrize("row", NEGOTIATION_ROWS, ids=lambda r: r.id)
def test_negotiation_row(row: NegotiationRow, certs: CertSet) -> None:
    decision = decision_from_toml(tls=row.tls, fallback=row.fallback, ca=certs.ca_path)
    context = certs.context("valid") if row.mode is Mode.TLS else None
    with smtp_server(row.mode, tls_context=context) as server:
        record, error = _deliver(decision, server.port)
        check_outcome(row.expect, record, error, server, decision)
        if row.expect.reconnected:
            assert server.handler.connections == 2


def test_a_fallback_reconnects_to_the_address_with_the_callers_name_and_class() -> None:
    """The session the caller connected goes to 127.0.0.2; ``localhost``, the host name
    given, looks up to another address, where nothing listens.  After the broken
    handshake the plaintext session goes back to 127.0.0.2, as the caller's subclass,
    with the caller's EHLO name (no local_hostname passed to the driver)."""

    class Limited(smtplib.SMTP):
        pass

    decision = decision_from_toml(tls="ifavailable", fallback=True)
    with smtp_server(Mode.BREAK_HANDSHAKE, host="127.0.0.2") as server:
        smtp = Limited("127.0.0.2", server.port, local_hostname="client.test",
                       timeout=TIMEOUT)
        result = starttls(decision, "localhost", server.port, smtp=smtp, timeout=TIMEOUT)
        assert result.record.reconnected and result.smtp is not smtp
        assert type(result.smtp) is Limited
        result.smtp.sendmail("a@client.test", [f"b@{DOMAIN}"], MESSAGE)
        result.smtp.quit()
        [received] = server.messages
        assert not received.tls and received.helo == "client.test"
        assert server.handler.connections == 2


def test_a_fallback_reconnects_with_smtplib_when_the_callers_class_is_built_otherwise(
        ) -> None:
    """A caller's subclass whose constructor is not smtplib's cannot be made by the driver:
    the new session is a plain smtplib.SMTP, to the same address, as before."""

    class Mine(smtplib.SMTP):
        def __init__(self, host: str, port: int) -> None:
            super().__init__(host, port, local_hostname="client.test", timeout=TIMEOUT)

    decision = decision_from_toml(tls="ifavailable", fallback=True)
    with smtp_server(Mode.BREAK_HANDSHAKE, host="127.0.0.2") as server:
        result = starttls(decision, "localhost", server.port,
                          smtp=Mine("127.0.0.2", server.port), timeout=TIMEOUT)
        assert result.record.reconnected and type(result.smtp) is smtplib.SMTP
        result.smtp.sendmail("a@client.test", [f"b@{DOMAIN}"], MESSAGE)
        result.smtp.quit()
        [received] = server.messages
        assert received.helo == "client.test"


@pytest.mark.parametrize("row", CERTIFICATE_ROWS, ids=lambda r: r.id)
def test_certificate_row(row: CertificateRow, certs: CertSet) -> None:
    decision = decision_from_toml(tls="ifavailable", verify=row.verify, fallback=True,
                                  ca=certs.ca_path)
    with smtp_server(Mode.TLS, tls_context=certs.context(row.cert)) as server:
        record, error = _deliver(decision, server.port)
        check_outcome(row.expect, record, error, server, decision)
        assert server.handler.connections == 1, "a certificate problem never reconnects"


def test_optional_reports_every_problem(certs: CertSet, tmp_path: Path) -> None:
    """A self-signed, expired certificate for another name: three reports, delivery goes on."""
    from certs_support import make_self_signed

    bad = make_self_signed(tmp_path, "elsewhere.test")
    from smtp_servers import server_context

    decision = decision_from_toml(tls="required", verify="optional", ca=certs.ca_path)
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=365)
    with smtp_server(Mode.TLS, tls_context=server_context(bad.chain_path, bad.key_path)) as srv:
        record, error = _deliver(decision, srv.port, now=later)
        assert error is None
        assert [s.observation for s in record.reports] == [  # type: ignore[attr-defined]
            Observation.CHAIN_NOT_TRUSTED, Observation.CERTIFICATE_EXPIRED,
            Observation.NAME_MISMATCH]
        assert record.tlsrpt_result_types == (  # type: ignore[attr-defined]
            "certificate-not-trusted", "certificate-expired", "certificate-host-mismatch")
        assert srv.messages[0].tls


def test_existing_session_from_the_callers_loop(certs: CertSet) -> None:
    decision = decision_from_toml(tls="required", verify="host", ca=certs.ca_path)
    with smtp_server(Mode.TLS, tls_context=certs.context("valid")) as server:
        smtp = smtplib.SMTP("127.0.0.1", server.port, local_hostname="client.test",
                            timeout=TIMEOUT)
        smtp.ehlo()
        result = starttls(decision, "127.0.0.1", server.port, smtp=smtp)
        assert result.smtp is smtp
        assert result.record.encrypted
        assert check_reuse(decision, result.record).permitted
        smtp.sendmail("a@client.test", [f"b@{DOMAIN}"], MESSAGE)
        smtp.quit()
        assert server.messages[0].tls and server.handler.connections == 1


def test_plan_fail_never_connects(certs: CertSet) -> None:
    decision = Decision.build(
        Requirements(Tls.REQUIRED, Verification.HOST, False, (DOMAIN, MX_HOST),
                     plan_failure=__import__("tlspolicy").Reason.MX_NOT_PERMITTED),
        domain=DOMAIN, binding="default", binding_group="default", mx_host=MX_HOST,
        parameters=_parameters(certs), effective={}, explanation={})
    with smtp_server(Mode.TLS, tls_context=certs.context("valid")) as server:
        with pytest.raises(StartTlsFailed) as info:
            starttls(decision, "127.0.0.1", server.port, timeout=TIMEOUT)
        assert str(info.value.status) == "451 4.7.5 MX host not permitted by MTA-STS policy"
        assert server.handler.connections == 0


def _parameters(certs: CertSet) -> TlsParameters:
    return TlsParameters(ca_file=str(certs.ca_path), certificate_file=None, key_file=None,
                         ciphers=None, tls13_ciphersuites=None,
                         protocols=frozenset(TlsVersion), sni=MX_HOST, engine=TlsEngine.OPENSSL)


def _built(certs: CertSet, verification: Verification, *, requiretls: bool = False) -> Decision:
    return Decision.build(
        Requirements(Tls.REQUIRED, verification, False, (MX_HOST,), requiretls=requiretls),
        domain=DOMAIN, binding="default", binding_group="default", mx_host=MX_HOST,
        parameters=_parameters(certs), effective={}, explanation={})


@pytest.mark.parametrize("requiretls_advertised", [True, False])
def test_requiretls(certs: CertSet, requiretls_advertised: bool) -> None:
    decision = _built(certs, Verification.HOST, requiretls=True)
    with smtp_server(Mode.TLS, tls_context=certs.context("valid"),
                     advertise_requiretls=requiretls_advertised) as server:
        record, error = _deliver(decision, server.port)
        if requiretls_advertised:
            assert error is None
            assert record.mail_options == ("REQUIRETLS",)  # type: ignore[attr-defined]
            assert server.messages[0].tls and server.messages[0].requiretls
        else:
            assert isinstance(error, StartTlsFailed)
            assert str(error.status) == "451 4.7.30 REQUIRETLS support required"
            assert error.observation is Observation.REQUIRETLS_NOT_ADVERTISED
            assert server.messages == []


@pytest.mark.parametrize("matching", [True, False])
@pytest.mark.parametrize("cert", ["self-signed", "wrong-name"])
def test_dane_ee(certs: CertSet, cert: str, matching: bool) -> None:
    """DANE-EE ignores trust, names and dates; only the TLSA match counts."""
    der = certs.files[cert if matching else "valid"].cert.public_bytes(
        __import__("cryptography.hazmat.primitives.serialization",
                   fromlist=["Encoding"]).Encoding.DER)
    record = TlsaRecord.for_certificate(der, 3, 1, 1)
    decision = _built(certs, Verification.DANE)
    with smtp_server(Mode.TLS, tls_context=certs.context(cert)) as server:
        result, error = _deliver(decision, server.port, tlsa_records=[record])
        if matching:
            assert error is None
            assert result.verified is VerifiedAs.DANE  # type: ignore[attr-defined]
            assert server.messages[0].tls
            # The DANE-EE connection never carries a message whose decision
            # is a PKIX host check (SEMANTICS 4.2).
            assert check_reuse(decision, result,  # type: ignore[arg-type]
                               tlsa_records=[record]).permitted
            pkix = check_reuse(_built(certs, Verification.HOST), result)  # type: ignore[arg-type]
            assert not pkix.permitted and pkix.reached is Action.FAIL
        else:
            assert isinstance(error, StartTlsFailed)
            assert error.observation is Observation.TLSA_MISMATCH
            assert str(error.status) == "451 4.7.5 certificate does not match any TLSA record"
            assert error.record.action is Action.FAIL
            assert server.messages == []


def test_recorded_facts_are_rechecked_for_other_messages(certs: CertSet) -> None:
    decision = decision_from_toml(tls="required", verify="optional", ca=certs.ca_path)
    with smtp_server(Mode.TLS, tls_context=certs.context("wrong-name")) as server:
        record, error = _deliver(decision, server.port)
    assert error is None
    check_reuse_downgrades(record, certs.ca_path)


@pytest.mark.parametrize("row", PRIVATE_CA_ROWS, ids=lambda r: r.id)
def test_private_ca_without_key_usage(
        row: CertificateRow, private_ca: tuple[CertSet, datetime.datetime]) -> None:
    """A tls_ca made with `openssl req -x509` defaults (no keyUsage) is trusted;
    wrong-name and expired peers under it get their own status and TLS-RPT type."""
    certs, at = private_ca
    decision = decision_from_toml(tls="ifavailable", verify=row.verify, ca=certs.ca_path)
    with smtp_server(Mode.TLS, tls_context=certs.context(row.cert)) as server:
        record, error = _deliver(decision, server.port, now=at)
        check_outcome(row.expect, record, error, server)
        done = record if error is None else error.record
        assert done.tlsrpt_result_types == tlsrpt_types(row.expect)
        assert done.peer is not None and done.peer.trusted
