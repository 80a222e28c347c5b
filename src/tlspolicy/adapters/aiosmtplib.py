"""Run a decision's STARTTLS part on an :class:`aiosmtplib.SMTP` session.

Same semantics and record as :mod:`tlspolicy.adapters.smtplib`:

>>> result = await starttls(decision, "mx.example.net", 25)   # doctest: +SKIP
>>> await result.smtp.sendmail(sender, rcpts, msg,
...                            mail_options=result.record.mail_options)  # doctest: +SKIP

aiosmtplib's ``SMTP.starttls`` sends STARTTLS and upgrades the transport in
one call, so its exceptions are told apart precisely:

* :class:`aiosmtplib.SMTPResponseException` (a reply other than 220) and
  :class:`aiosmtplib.SMTPReadTimeoutError` or a disconnect while waiting for
  the reply (no go-ahead): STARTTLS rejected;
* any other disconnect, timeout, :class:`ssl.SSLError` or :class:`OSError` once
  220 was read: the handshake failed;
* :class:`ssl.SSLCertVerificationError` (only with a verifying context the
  caller passed): the certificate observation of its ``verify_code``.

Whether the 220 had been read is taken from where the disconnect was raised:
inside aiosmtplib's ``read_response`` (no reply) or after it.
"""

from __future__ import annotations

import contextlib
import datetime
import ssl
from collections.abc import Iterable
from typing import Any

import aiosmtplib
import attrs

from tlspolicy import Action, Decision, Destination, Observation, PlaintextReason

from . import Progress, ResultSink, StartTlsStopped, TlsRecord, plan_failure, record_attempt
from .peer import evaluate_peer, observation_for_verify_code, presented_chain
from .sslcontext import TlsSetupError, Unsupported, build_context

__all__ = ["AsyncStartTlsResult", "starttls"]


@attrs.frozen(slots=True)
class AsyncStartTlsResult:
    """The session to deliver on and what happened on the way."""

    smtp: aiosmtplib.SMTP
    record: TlsRecord


async def _end(smtp: aiosmtplib.SMTP, *, polite: bool) -> None:
    if polite and smtp.is_connected:
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await smtp.quit()
    smtp.close()


async def _greet(smtp: aiosmtplib.SMTP) -> None:
    try:
        await smtp.ehlo()
    except aiosmtplib.SMTPHeloError:
        await smtp.helo()


async def _connect(host: str, port: int, local_hostname: str | None,
                   timeout: float) -> aiosmtplib.SMTP:
    smtp = aiosmtplib.SMTP(hostname=host, port=port, local_hostname=local_hostname,
                           timeout=timeout, use_tls=False, start_tls=False)
    await smtp.connect()
    return smtp


def _raised_in(exc: BaseException, function: str) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == function:
            return True
        tb = tb.tb_next
    return False


def _classify_starttls_error(exc: BaseException) -> Observation:
    """STARTTLS_REJECTED when no 220 was read, HANDSHAKE_FAILED after it."""
    if isinstance(exc, aiosmtplib.SMTPResponseException | aiosmtplib.SMTPReadTimeoutError):
        return Observation.STARTTLS_REJECTED
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected) and _raised_in(exc, "read_response"):
        return Observation.STARTTLS_REJECTED
    return Observation.HANDSHAKE_FAILED


async def starttls(
    decision: Decision,
    host: str,
    port: int = 25,
    *,
    smtp: aiosmtplib.SMTP | None = None,
    local_hostname: str | None = None,
    timeout: float = 30.0,
    context: ssl.SSLContext | None = None,
    tlsa_records: Iterable[Any] | None = None,
    now: datetime.datetime | None = None,
    unsupported: Unsupported = "error",
    sink: ResultSink | None = None,
    destination: Destination | None = None,
) -> AsyncStartTlsResult:
    """Carry out ``decision`` on a connection to ``host:port`` (see the smtplib driver).

    ``smtp`` is a connected session the caller owns, created with
    ``start_tls=False`` so aiosmtplib does not upgrade on its own; without it
    one is opened.  Returns the session to deliver on (a new one after a
    FALLBACK that needed a reconnect) and the record; raises
    :class:`~tlspolicy.adapters.StartTlsDeferred` /
    :class:`~tlspolicy.adapters.StartTlsFailed` after ending the session.

    With ``sink`` (a :class:`~tlspolicy.adapters.ResultSink`) the attempt's
    TLS-RPT result is recorded, on success and on every DEFER / FAIL, under the
    policy :func:`~tlspolicy.report_policy` finds in ``destination`` (the one
    the decision was resolved with).
    """
    try:
        result = await _starttls(decision, host, port, smtp=smtp, local_hostname=local_hostname,
                           timeout=timeout, context=context, tlsa_records=tlsa_records, now=now,
                           unsupported=unsupported)
    except StartTlsStopped as stopped:
        record_attempt(sink, decision, destination, stopped.record)
        raise
    record_attempt(sink, decision, destination, result.record)
    return result


async def _starttls(
    decision: Decision,
    host: str,
    port: int = 25,
    *,
    smtp: aiosmtplib.SMTP | None = None,
    local_hostname: str | None = None,
    timeout: float = 30.0,
    context: ssl.SSLContext | None = None,
    tlsa_records: Iterable[Any] | None = None,
    now: datetime.datetime | None = None,
    unsupported: Unsupported = "error",
) -> AsyncStartTlsResult:
    failure = plan_failure(decision, host, port)
    if failure is not None:
        raise failure
    if decision.plan is Action.ATTEMPT and context is None:
        context = build_context(decision.parameters, unsupported=unsupported)
    if smtp is None:
        smtp = await _connect(host, port, local_hostname, timeout)
    progress = Progress(decision, host, port)
    progress.addresses(smtp.get_transport_info("peername"), smtp.get_transport_info("sockname"))
    if smtp.is_ehlo_or_helo_needed:
        await _greet(smtp)

    if decision.plan is Action.SKIP:
        return AsyncStartTlsResult(smtp, progress.record(
            progress.plaintext(PlaintextReason.NOT_ATTEMPTED)))
    assert context is not None

    progress.starttls_advertised = smtp.supports_extension("starttls")
    if not progress.starttls_advertised:
        step = progress.observe(Observation.STARTTLS_NOT_ADVERTISED)
        security = progress.plaintext(PlaintextReason.NOT_ADVERTISED)
        if step.action is Action.SKIP:
            return AsyncStartTlsResult(smtp, progress.record(security))
        await _end(smtp, polite=True)
        raise progress.stop(security)

    try:
        await smtp.starttls(tls_context=context, server_hostname=decision.parameters.sni,
                            validate_certs=False, timeout=timeout)
    except ssl.SSLCertVerificationError as exc:
        step = progress.observe(observation_for_verify_code(exc.verify_code))
        await _end(smtp, polite=False)
        if step.action in (Action.DEFER, Action.FAIL):
            raise progress.stop(progress.plaintext(PlaintextReason.HANDSHAKE_FAILED)) from exc
        raise TlsSetupError(
            "the context passed verifies during the handshake, which aborted on a "
            f"certificate problem; under tls_verify = {decision.verification.value} delivery "
            "should have gone on: pass a non-verifying context (the default)") from exc
    except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
        observation = _classify_starttls_error(exc)
        # After a non-220 reply the plaintext session is still in step.
        usable = isinstance(exc, aiosmtplib.SMTPResponseException) and smtp.is_connected
        return await _after_failure(progress, smtp, observation, usable=usable,
                                    local_hostname=local_hostname, timeout=timeout, cause=exc)

    ssl_object = smtp.get_transport_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject):
        raise TlsSetupError("aiosmtplib reported TLS but the transport has no SSL object")
    progress.tls_version = ssl_object.version()
    cipher = ssl_object.cipher()
    progress.cipher = cipher[0] if cipher else None
    chain, complete = presented_chain(ssl_object)
    evaluation = evaluate_peer(
        decision, chain, now=now or datetime.datetime.now(datetime.UTC),
        chain_complete=complete, tlsa_records=tlsa_records)
    step = progress.certificate(evaluation)
    tls_facts = progress.tls(chain, complete=complete)
    if step.action is not Action.PROCEED:
        await _end(smtp, polite=True)
        raise progress.stop(tls_facts)

    try:
        await smtp.ehlo()
        ehlo_ok = True
    except (aiosmtplib.SMTPException, OSError):
        ehlo_ok = False
    if not ehlo_ok:
        return await _after_failure(progress, smtp, Observation.HANDSHAKE_FAILED, usable=False,
                                    local_hostname=local_hostname, timeout=timeout)

    # The keywords after STARTTLS, recorded so a later message's REQUIRETLS
    # check can re-run on this connection.
    tls_facts = progress.tls(chain, complete=complete, ehlo_keywords=smtp.esmtp_extensions)
    if decision.requiretls:
        progress.requiretls_advertised = smtp.supports_extension("requiretls")
        if not progress.requiretls_advertised:
            progress.observe(Observation.REQUIRETLS_NOT_ADVERTISED)
            await _end(smtp, polite=True)
            raise progress.stop(tls_facts)
    progress.proceed()
    return AsyncStartTlsResult(smtp, progress.record(tls_facts))


async def _after_failure(
    progress: Progress,
    smtp: aiosmtplib.SMTP,
    observation: Observation,
    *,
    usable: bool,
    local_hostname: str | None,
    timeout: float,
    cause: BaseException | None = None,
) -> AsyncStartTlsResult:
    step = progress.observe(observation)
    security = progress.plaintext(PlaintextReason.REFUSED
                                  if observation is Observation.STARTTLS_REJECTED
                                  else PlaintextReason.HANDSHAKE_FAILED)
    if step.action is not Action.FALLBACK:
        await _end(smtp, polite=usable)
        raise progress.stop(security) from cause
    if not usable:
        await _end(smtp, polite=False)
        smtp = await _connect(progress.host, progress.port, local_hostname, timeout)
        await _greet(smtp)
        progress.reconnected = True
    return AsyncStartTlsResult(smtp, progress.record(security))
