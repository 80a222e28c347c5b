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

The rules, the arguments' defaults and the TLS-RPT recording are the engine's
(:mod:`tlspolicy.adapters.engine`); this shell performs each step on an
:class:`smtplib.SMTP`.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from typing import Unpack

import attrs

from tlspolicy.decision import Decision
from tlspolicy.outcomes import Observation

from . import engine

__all__ = ["StartTlsResult", "starttls"]


@attrs.frozen(slots=True)
class StartTlsResult(engine.ShellResult[smtplib.SMTP]):
    """The :class:`smtplib.SMTP` to deliver on and what happened on the way."""


def starttls(decision: Decision, host: str, port: int = 25, *, smtp: smtplib.SMTP | None = None,
             **options: Unpack[engine.StartTlsOptions]) -> StartTlsResult:
    """Carry out ``decision`` on a connection to ``host:port``.

    ``smtp`` is a connected session the caller owns (its own delivery loop);
    without it one is opened with ``local_hostname`` and ``timeout``.  EHLO is
    sent when the session has not greeted yet.  ``context`` replaces the one
    built from ``decision.parameters`` (it should not verify, so certificate
    problems can be classified; if it does, a verification failure is still
    classified by its ``verify_code``).  ``tlsa_records`` override the TLSA
    records the decision carries when DANE applies.  ``now`` (timezone-aware) is the time
    certificates are judged at; the clock by default.  The keywords and their defaults
    are :class:`~tlspolicy.adapters.engine.StartTlsOptions`.

    On FALLBACK after a failed handshake the old session is closed and a new
    plaintext one is returned (``record.reconnected``): to the address the old one
    was connected to (not a new lookup of ``host``) and ``port``, with its EHLO name
    unless ``local_hostname`` is given, and of its class when that class keeps
    :class:`smtplib.SMTP`'s constructor.
    On DEFER / FAIL the session is ended and the exception raised.

    With ``sink`` (a :class:`~tlspolicy.adapters.ResultSink`) the attempt's
    TLS-RPT result is recorded, on success and on every DEFER / FAIL, under the
    policy :func:`~tlspolicy.policies.tlsrpt.report_policy` finds in ``destination`` (the one
    the decision was resolved with).
    """
    attempt = engine.Attempt(decision=decision, host=host, port=port, **options)
    session = _Session(attempt, smtp)
    record = engine.run_sync(attempt.run(), session)
    return StartTlsResult(session.smtp, record)


class _Session(engine.Shell[smtplib.SMTP]):
    """The engine's requests performed on one :class:`smtplib.SMTP` (replaced on a
    reconnect)."""

    def open(self) -> engine.Opened:
        if self._smtp is None:
            self.reconnect()
        smtp = self.smtp
        peer = local = None
        if smtp.sock is not None:
            with contextlib.suppress(OSError):
                peer, local = smtp.sock.getpeername(), smtp.sock.getsockname()
        self.opened_to(peer)
        greet = smtp.helo_resp is None and smtp.ehlo_resp is None
        return engine.Opened(peer, local, greet=greet)

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
        # To the address, as the session it replaces (see Shell.peer_address), with its
        # EHLO name and, when that class is built as smtplib.SMTP is, its class (a
        # caller's subclass keeps its own limits; one built otherwise cannot be made here).
        attempt = self.attempt
        old = self._smtp
        kind: type[smtplib.SMTP] = smtplib.SMTP
        if old is not None and type(old).__init__ is smtplib.SMTP.__init__:
            kind = type(old)
        local = attempt.local_hostname
        if local is None and old is not None:
            local = old.local_hostname
        self._smtp = kind(self.reconnect_host(), attempt.port, local_hostname=local,
                          timeout=attempt.timeout)

    def upgrade(self, request: engine.UpgradeTls) -> engine.UpgradeAnswer:
        smtp = self.smtp
        try:
            code, _reply = smtp.docmd("STARTTLS")
        except (smtplib.SMTPServerDisconnected, OSError):
            # No reply at all is no go-ahead either; the connection is gone.
            code = None
        if code != 220:
            return engine.NotUpgraded(Observation.STARTTLS_REJECTED,
                                      usable=code is not None)
        if smtp.sock is None:
            return engine.NotUpgraded(Observation.HANDSHAKE_FAILED, usable=False)
        try:
            tls_sock = request.context.wrap_socket(smtp.sock, server_hostname=request.sni)
        except ssl.SSLCertVerificationError as exc:
            return engine.VerifyFailed(exc)
        except (ssl.SSLError, OSError) as exc:
            return engine.NotUpgraded(Observation.HANDSHAKE_FAILED, usable=False,
                                      cause=exc)
        smtp.sock = tls_sock
        smtp.file = None
        # RFC 3207 4.2: forget everything learnt before TLS.
        smtp.helo_resp = None
        smtp.ehlo_resp = None
        smtp.esmtp_features = {}
        smtp.does_esmtp = False
        return engine.Upgraded(tls_sock)
