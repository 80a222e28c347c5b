"""The aiosmtplib driver against real aiosmtpd servers on 127.0.0.1 (SEMANTICS section 4).

The same rows and server-side checks as the smtplib driver tests; each run is
bounded by ``asyncio.wait_for``.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import aiosmtplib
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
    server_context,
    smtp_server,
    tlsrpt_types,
)
from tlspolicy import Action, Decision, Observation, Tls, Verification
from tlspolicy.adapters import StartTlsFailed, StartTlsStopped, check_reuse
from tlspolicy.adapters.aiosmtplib import starttls
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


async def _run(decision: Decision, port: int, **kwargs: Any) -> tuple[Any, Any]:
    try:
        result = await starttls(decision, "127.0.0.1", port, local_hostname="client.test",
                                timeout=TIMEOUT, **kwargs)
    except StartTlsStopped as error:
        return None, error
    try:
        await result.smtp.sendmail("sender@client.test", [f"rcpt@{DOMAIN}"], MESSAGE,
                                   mail_options=list(result.record.mail_options))
    finally:
        await result.smtp.quit()
    return result.record, None


def _deliver(decision: Decision, port: int, **kwargs: Any) -> tuple[Any, Any]:
    return asyncio.run(asyncio.wait_for(_run(decision, port, **kwargs), 30))


@pytest.mark.parametrize("row", NEGOTIATION_ROWS, ids=lambda r: r.id)
def test_negotiation_row(row: NegotiationRow, certs: CertSet) -> None:
    decision = decision_from_toml(tls=row.tls, fallback=row.fallback, ca=certs.ca_path)
    context = certs.context("valid") if row.mode is Mode.TLS else None
    with smtp_server(row.mode, tls_context=context) as server:
        record, error = _deliver(decision, server.port)
        check_outcome(row.expect, record, error, server, decision)
        if row.expect.reconnected:
            assert server.handler.connections == 2


def test_a_fallback_reconnects_to_the_address_with_the_callers_name() -> None:
    """As the smtplib driver: after the broken handshake the plaintext session goes back
    to the address the caller's session was connected to (127.0.0.2), not to a lookup
    of ``localhost``, with the caller's EHLO name."""
    decision = decision_from_toml(tls="ifavailable", fallback=True)

    async def run(port: int) -> bool:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.2", port=port, local_hostname="client.test",
                               timeout=TIMEOUT, start_tls=False)
        await smtp.connect()
        result = await starttls(decision, "localhost", port, smtp=smtp, timeout=TIMEOUT)
        await result.smtp.sendmail("a@client.test", [f"b@{DOMAIN}"], MESSAGE)
        await result.smtp.quit()
        return result.record.reconnected

    with smtp_server(Mode.BREAK_HANDSHAKE, host="127.0.0.2") as server:
        assert asyncio.run(asyncio.wait_for(run(server.port), 30))
        [received] = server.messages
        assert not received.tls and received.helo == "client.test"
        assert server.handler.connections == 2


@pytest.mark.parametrize("row", CERTIFICATE_ROWS, ids=lambda r: r.id)
def test_certificate_row(row: CertificateRow, certs: CertSet) -> None:
    decision = decision_from_toml(tls="ifavailable", verify=row.verify, fallback=True,
                                  ca=certs.ca_path)
    with smtp_server(Mode.TLS, tls_context=certs.context(row.cert)) as server:
        record, error = _deliver(decision, server.port)
        check_outcome(row.expect, record, error, server, decision)
        assert server.handler.connections == 1, "a certificate problem never reconnects"


def test_optional_reports_every_problem(certs: CertSet, tmp_path: Any) -> None:
    from certs_support import make_self_signed

    bad = make_self_signed(tmp_path, "elsewhere.test")
    decision = decision_from_toml(tls="required", verify="optional", ca=certs.ca_path)
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=365)
    with smtp_server(Mode.TLS, tls_context=server_context(bad.chain_path, bad.key_path)) as srv:
        record, error = _deliver(decision, srv.port, now=later)
        assert error is None
        assert [s.observation for s in record.reports] == [
            Observation.CHAIN_NOT_TRUSTED, Observation.CERTIFICATE_EXPIRED,
            Observation.NAME_MISMATCH]
        assert srv.messages[0].tls


def test_existing_session_from_the_callers_loop(certs: CertSet) -> None:
    decision = decision_from_toml(tls="required", verify="host", ca=certs.ca_path)

    async def scenario(port: int) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False,
                               timeout=TIMEOUT)
        await smtp.connect()
        await smtp.ehlo()
        result = await starttls(decision, "127.0.0.1", port, smtp=smtp)
        assert result.smtp is smtp
        assert result.record.verified is VerifiedAs.HOST
        assert check_reuse(decision, result.record).permitted
        await smtp.sendmail("a@client.test", [f"b@{DOMAIN}"], MESSAGE)
        await smtp.quit()

    with smtp_server(Mode.TLS, tls_context=certs.context("valid")) as server:
        asyncio.run(asyncio.wait_for(scenario(server.port), 30))
        assert server.messages[0].tls and server.handler.connections == 1


def _built(certs: CertSet, verification: Verification, *, requiretls: bool = False) -> Decision:
    parameters = TlsParameters(
        ca_file=str(certs.ca_path), certificate_file=None, key_file=None, ciphers=None,
        tls13_ciphersuites=None, protocols=frozenset(TlsVersion), sni=MX_HOST,
        engine=TlsEngine.OPENSSL)
    return Decision.build(
        Requirements(Tls.REQUIRED, verification, False, (MX_HOST,), requiretls=requiretls),
        domain=DOMAIN, binding="default", binding_group="default", mx_host=MX_HOST,
        parameters=parameters, effective={}, explanation={})


@pytest.mark.parametrize("requiretls_advertised", [True, False])
def test_requiretls(certs: CertSet, requiretls_advertised: bool) -> None:
    decision = _built(certs, Verification.HOST, requiretls=True)
    with smtp_server(Mode.TLS, tls_context=certs.context("valid"),
                     advertise_requiretls=requiretls_advertised) as server:
        record, error = _deliver(decision, server.port)
        if requiretls_advertised:
            assert error is None and record.mail_options == ("REQUIRETLS",)
            assert server.messages[0].tls and server.messages[0].requiretls
        else:
            assert isinstance(error, StartTlsFailed)
            assert str(error.status) == "451 4.7.30 REQUIRETLS support required"
            assert server.messages == []


@pytest.mark.parametrize("matching", [True, False])
def test_dane_ee(certs: CertSet, matching: bool) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    der = certs.files["self-signed" if matching else "valid"].cert.public_bytes(Encoding.DER)
    decision = _built(certs, Verification.DANE)
    tlsa = [TlsaRecord.for_certificate(der, 3, 1, 1)]
    with smtp_server(Mode.TLS, tls_context=certs.context("self-signed")) as server:
        record, error = _deliver(decision, server.port, tlsa_records=tlsa)
        if matching:
            assert error is None and record.verified is VerifiedAs.DANE
            assert server.messages[0].tls
            # The DANE-EE connection never carries a message whose decision
            # is a PKIX host check (SEMANTICS 4.2).
            assert check_reuse(decision, record, tlsa_records=tlsa).permitted
            pkix = check_reuse(_built(certs, Verification.HOST), record)
            assert not pkix.permitted and pkix.reached is Action.FAIL
        else:
            assert isinstance(error, StartTlsFailed)
            assert error.observation is Observation.TLSA_MISMATCH
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
