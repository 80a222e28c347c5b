"""Run a decision's STARTTLS part on a standard-library :class:`smtplib.SMTP`.

>>> result = starttls(decision, "mx.example.net", 25)      # doctest: +SKIP
>>> result.smtp.sendmail(sender, rcpts, msg,
...                      mail_options=result.record.mail_options)  # doctest: +SKIP

:func:`starttls` does EHLO, STARTTLS or not per the plan, the handshake, the
peer check and the EHLO after TLS, acting on every observation exactly as the
decision says.  It returns a :class:`StartTlsResult` (the connection to deliver
on, which is a new one after a FALLBACK that needed a reconnect, and the
:class:`~tlspolicy.adapters.TlsRecord`), or raises
:class:`~tlspolicy.adapters.StartTlsDeferred` /
:class:`~tlspolicy.adapters.StartTlsFailed` after ending the session.
"""

from __future__ import annotations

import contextlib
import datetime
import smtplib
import ssl
from collections.abc import Iterable
from typing import Any

import attrs

from tlspolicy import Action, Decision, Destination, Observation, PlaintextReason

from . import Progress, ResultSink, StartTlsStopped, TlsRecord, plan_failure, record_attempt
from .peer import evaluate_peer, observation_for_verify_code, presented_chain
from .sslcontext import TlsSetupError, Unsupported, build_context

__all__ = ["StartTlsResult", "starttls"]


@attrs.frozen(slots=True)
class StartTlsResult:
    """The session to deliver on and what happened on the way."""

    smtp: smtplib.SMTP
    record: TlsRecord


def _end(smtp: smtplib.SMTP, *, polite: bool) -> None:
    """End a session the decision gives up on; QUIT only when the stream is usable."""
    if polite:
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.quit()
    with contextlib.suppress(OSError):
        smtp.close()


def _greet(smtp: smtplib.SMTP) -> None:
    code, _ = smtp.ehlo()
    if code != 250:
        smtp.helo()


def starttls(
    decision: Decision,
    host: str,
    port: int = 25,
    *,
    smtp: smtplib.SMTP | None = None,
    local_hostname: str | None = None,
    timeout: float = 30.0,
    context: ssl.SSLContext | None = None,
    tlsa_records: Iterable[Any] | None = None,
    now: datetime.datetime | None = None,
    unsupported: Unsupported = "error",
    sink: ResultSink | None = None,
    destination: Destination | None = None,
) -> StartTlsResult:
    """Carry out ``decision`` on a connection to ``host:port``.

    ``smtp`` is a connected session the caller owns (its own delivery loop);
    without it one is opened with ``local_hostname`` and ``timeout``.  EHLO is
    sent when the session has not greeted yet.  ``context`` replaces the one
    built from ``decision.parameters`` (it should not verify, so certificate
    problems can be classified; if it does, a verification failure is still
    classified by its ``verify_code``).  ``tlsa_records`` override the TLSA
    records the decision carries when DANE applies.  ``now`` (timezone-aware) is the time
    certificates are judged at; the clock by default.

    On FALLBACK after a failed handshake the old session is closed and a new
    plaintext one to the same ``host:port`` is returned (``record.reconnected``).
    On DEFER / FAIL the session is ended and the exception raised.

    With ``sink`` (a :class:`~tlspolicy.adapters.ResultSink`) the attempt's
    TLS-RPT result is recorded, on success and on every DEFER / FAIL, under the
    policy :func:`~tlspolicy.report_policy` finds in ``destination`` (the one
    the decision was resolved with).
    """
    try:
        result = _starttls(decision, host, port, smtp=smtp, local_hostname=local_hostname,
                           timeout=timeout, context=context, tlsa_records=tlsa_records, now=now,
                           unsupported=unsupported)
    except StartTlsStopped as stopped:
        record_attempt(sink, decision, destination, stopped.record)
        raise
    record_attempt(sink, decision, destination, result.record)
    return result


def _starttls(
    decision: Decision,
    host: str,
    port: int = 25,
    *,
    smtp: smtplib.SMTP | None = None,
    local_hostname: str | None = None,
    timeout: float = 30.0,
    context: ssl.SSLContext | None = None,
    tlsa_records: Iterable[Any] | None = None,
    now: datetime.datetime | None = None,
    unsupported: Unsupported = "error",
) -> StartTlsResult:
    failure = plan_failure(decision, host, port)
    if failure is not None:
        raise failure
    if decision.plan is Action.ATTEMPT and context is None:
        # Built before connecting so a bad tls_ca or cipher list fails first.
        context = build_context(decision.parameters, unsupported=unsupported)
    if smtp is None:
        smtp = smtplib.SMTP(host, port, local_hostname=local_hostname, timeout=timeout)
    progress = Progress(decision, host, port)
    if smtp.sock is not None:
        with contextlib.suppress(OSError):
            progress.addresses(smtp.sock.getpeername(), smtp.sock.getsockname())
    if smtp.helo_resp is None and smtp.ehlo_resp is None:
        _greet(smtp)

    if decision.plan is Action.SKIP:
        return StartTlsResult(smtp, progress.record(
            progress.plaintext(PlaintextReason.NOT_ATTEMPTED)))
    assert context is not None

    progress.starttls_advertised = smtp.has_extn("starttls")
    if not progress.starttls_advertised:
        step = progress.observe(Observation.STARTTLS_NOT_ADVERTISED)
        security = progress.plaintext(PlaintextReason.NOT_ADVERTISED)
        if step.action is Action.SKIP:
            return StartTlsResult(smtp, progress.record(security))
        _end(smtp, polite=True)
        raise progress.stop(security)

    try:
        code, _reply = smtp.docmd("STARTTLS")
    except (smtplib.SMTPServerDisconnected, OSError):
        # No reply at all is no go-ahead either; the connection is gone.
        code = None
    if code != 220:
        return _after_failure(progress, smtp, Observation.STARTTLS_REJECTED,
                              usable=code is not None, local_hostname=local_hostname,
                              timeout=timeout)

    sni = decision.parameters.sni
    if smtp.sock is None:
        return _after_failure(progress, smtp, Observation.HANDSHAKE_FAILED, usable=False,
                              local_hostname=local_hostname, timeout=timeout)
    try:
        tls_sock = context.wrap_socket(smtp.sock, server_hostname=sni)
    except ssl.SSLCertVerificationError as exc:
        # Only a caller-supplied verifying context gets here; classify, never
        # call it a handshake failure.
        step = progress.observe(observation_for_verify_code(exc.verify_code))
        _end(smtp, polite=False)
        if step.action in (Action.DEFER, Action.FAIL):
            raise progress.stop(progress.plaintext(PlaintextReason.HANDSHAKE_FAILED)) from exc
        raise TlsSetupError(
            f"the context passed verifies during the handshake, which aborted on "
            f"{step.observation.value if step.observation else 'a certificate'}; under "
            f"tls_verify = {decision.verification.value} delivery should have gone on: "
            "pass a non-verifying context (the default)") from exc
    except (ssl.SSLError, OSError) as exc:
        return _after_failure(progress, smtp, Observation.HANDSHAKE_FAILED, usable=False,
                              local_hostname=local_hostname, timeout=timeout, cause=exc)
    smtp.sock = tls_sock
    smtp.file = None
    # RFC 3207 4.2: forget everything learnt before TLS.
    smtp.helo_resp = None
    smtp.ehlo_resp = None
    smtp.esmtp_features = {}
    smtp.does_esmtp = False
    progress.tls_version = tls_sock.version()
    cipher = tls_sock.cipher()
    progress.cipher = cipher[0] if cipher else None

    chain, complete = presented_chain(tls_sock)
    evaluation = evaluate_peer(
        decision, chain, now=now or datetime.datetime.now(datetime.UTC),
        chain_complete=complete, tlsa_records=tlsa_records)
    step = progress.certificate(evaluation)
    tls_facts = progress.tls(chain, complete=complete)
    if step.action is not Action.PROCEED:
        _end(smtp, polite=True)
        raise progress.stop(tls_facts)

    try:
        code, _ = smtp.ehlo()
    except (smtplib.SMTPServerDisconnected, OSError):
        code = None
    if code != 250:
        return _after_failure(progress, smtp, Observation.HANDSHAKE_FAILED, usable=False,
                              local_hostname=local_hostname, timeout=timeout)

    # The keywords after STARTTLS, recorded so a later message's REQUIRETLS
    # check can re-run on this connection.
    tls_facts = progress.tls(chain, complete=complete, ehlo_keywords=smtp.esmtp_features)
    if decision.requiretls:
        progress.requiretls_advertised = smtp.has_extn("requiretls")
        if not progress.requiretls_advertised:
            progress.observe(Observation.REQUIRETLS_NOT_ADVERTISED)
            _end(smtp, polite=True)
            raise progress.stop(tls_facts)
    progress.proceed()
    return StartTlsResult(smtp, progress.record(tls_facts))


def _after_failure(
    progress: Progress,
    smtp: smtplib.SMTP,
    observation: Observation,
    *,
    usable: bool,
    local_hostname: str | None,
    timeout: float,
    cause: BaseException | None = None,
) -> StartTlsResult:
    """Act on a refused STARTTLS or a failed handshake: FALLBACK, DEFER or FAIL."""
    step = progress.observe(observation)
    security = progress.plaintext(PlaintextReason.REFUSED
                                  if observation is Observation.STARTTLS_REJECTED
                                  else PlaintextReason.HANDSHAKE_FAILED)
    if step.action is not Action.FALLBACK:
        _end(smtp, polite=usable)
        raise progress.stop(security) from cause
    if not usable:
        _end(smtp, polite=False)
        smtp = smtplib.SMTP(progress.host, progress.port, local_hostname=local_hostname,
                            timeout=timeout)
        _greet(smtp)
        progress.reconnected = True
    return StartTlsResult(smtp, progress.record(security))
