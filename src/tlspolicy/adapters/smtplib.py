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

The rules are the engine's (:mod:`tlspolicy.adapters.engine`); this shell only
performs each step on the session.
"""

from __future__ import annotations

import contextlib
import datetime
import smtplib
import ssl
from collections.abc import Iterable
from typing import Any

import attrs

from tlspolicy.decision import Decision
from tlspolicy.outcomes import Observation
from tlspolicy.policies.destination import Destination

from . import Progress, ResultSink, StartTlsStopped, TlsRecord, record_attempt
from .engine import (
    NotUpgraded,
    Upgraded,
    UpgradeTls,
    VerifyFailed,
    drive,
    prepare,
    run_sync,
)
from .sslcontext import Unsupported

__all__ = ["StartTlsResult", "starttls"]


@attrs.frozen(slots=True)
class StartTlsResult:
    """The session to deliver on and what happened on the way."""

    smtp: smtplib.SMTP
    record: TlsRecord


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
    policy :func:`~tlspolicy.policies.tlsrpt.report_policy` finds in ``destination`` (the one
    the decision was resolved with).
    """
    try:
        context = prepare(decision, host, port, context, unsupported)
        if smtp is None:
            smtp = smtplib.SMTP(host, port, local_hostname=local_hostname, timeout=timeout)
        progress = Progress(decision, host, port)
        if smtp.sock is not None:
            with contextlib.suppress(OSError):
                progress.addresses(smtp.sock.getpeername(), smtp.sock.getsockname())
        session = _Session(smtp, host, port, local_hostname, timeout)
        record = run_sync(drive(decision, progress, context, now=now,
                                tlsa_records=tlsa_records,
                                greet=smtp.helo_resp is None and smtp.ehlo_resp is None),
                          session)
    except StartTlsStopped as stopped:
        record_attempt(sink, decision, destination, stopped.record)
        raise
    record_attempt(sink, decision, destination, record)
    return StartTlsResult(session.smtp, record)


class _Session:
    """The engine's requests performed on one :class:`smtplib.SMTP` (replaced on a
    reconnect)."""

    def __init__(self, smtp: smtplib.SMTP, host: str, port: int, local_hostname: str | None,
                 timeout: float) -> None:
        self.smtp = smtp
        self.host = host
        self.port = port
        self.local_hostname = local_hostname
        self.timeout = timeout

    def greet(self) -> None:
        code, _ = self.smtp.ehlo()
        if code != 250:
            self.smtp.helo()

    def supports(self, keyword: str) -> bool:
        return self.smtp.has_extn(keyword)

    def ehlo_after_tls(self) -> dict[str, str] | None:
        try:
            code, _ = self.smtp.ehlo()
        except (smtplib.SMTPServerDisconnected, OSError):
            return None
        return self.smtp.esmtp_features if code == 250 else None

    def end(self, polite: bool) -> None:
        if polite:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self.smtp.quit()
        with contextlib.suppress(OSError):
            self.smtp.close()

    def reconnect(self) -> None:
        self.smtp = smtplib.SMTP(self.host, self.port, local_hostname=self.local_hostname,
                                 timeout=self.timeout)

    def upgrade(self, request: UpgradeTls) -> Upgraded | NotUpgraded | VerifyFailed:
        smtp = self.smtp
        try:
            code, _reply = smtp.docmd("STARTTLS")
        except (smtplib.SMTPServerDisconnected, OSError):
            # No reply at all is no go-ahead either; the connection is gone.
            code = None
        if code != 220:
            return NotUpgraded(Observation.STARTTLS_REJECTED, usable=code is not None)
        if smtp.sock is None:
            return NotUpgraded(Observation.HANDSHAKE_FAILED, usable=False)
        try:
            tls_sock = request.context.wrap_socket(smtp.sock, server_hostname=request.sni)
        except ssl.SSLCertVerificationError as exc:
            return VerifyFailed(exc)
        except (ssl.SSLError, OSError) as exc:
            return NotUpgraded(Observation.HANDSHAKE_FAILED, usable=False, cause=exc)
        smtp.sock = tls_sock
        smtp.file = None
        # RFC 3207 4.2: forget everything learnt before TLS.
        smtp.helo_resp = None
        smtp.ehlo_resp = None
        smtp.esmtp_features = {}
        smtp.does_esmtp = False
        return Upgraded(tls_sock)
