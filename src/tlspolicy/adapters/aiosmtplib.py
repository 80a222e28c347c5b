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

The rules are the engine's (:mod:`tlspolicy.adapters.engine`); this shell only
performs each step on the session.
"""

from __future__ import annotations

import contextlib
import datetime
import ssl
from collections.abc import Iterable
from typing import Any

import aiosmtplib
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
    run_async,
)
from .sslcontext import TlsSetupError, Unsupported

__all__ = ["AsyncStartTlsResult", "starttls"]


@attrs.frozen(slots=True)
class AsyncStartTlsResult:
    """The session to deliver on and what happened on the way."""

    smtp: aiosmtplib.SMTP
    record: TlsRecord


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
    :class:`~tlspolicy.adapters.StartTlsFailed` after ending the session.  The other
    arguments, ``sink`` and ``destination`` included, are the smtplib driver's.
    """
    try:
        context = prepare(decision, host, port, context, unsupported)
        if smtp is None:
            smtp = await _connect(host, port, local_hostname, timeout)
        progress = Progress(decision, host, port)
        progress.addresses(smtp.get_transport_info("peername"),
                           smtp.get_transport_info("sockname"))
        session = _Session(smtp, host, port, local_hostname, timeout)
        record = await run_async(drive(decision, progress, context, now=now,
                                       tlsa_records=tlsa_records,
                                       greet=smtp.is_ehlo_or_helo_needed), session)
    except StartTlsStopped as stopped:
        record_attempt(sink, decision, destination, stopped.record)
        raise
    record_attempt(sink, decision, destination, record)
    return AsyncStartTlsResult(session.smtp, record)


class _Session:
    """The engine's requests performed on one :class:`aiosmtplib.SMTP` (replaced on a
    reconnect)."""

    def __init__(self, smtp: aiosmtplib.SMTP, host: str, port: int,
                 local_hostname: str | None, timeout: float) -> None:
        self.smtp = smtp
        self.host = host
        self.port = port
        self.local_hostname = local_hostname
        self.timeout = timeout

    async def greet(self) -> None:
        try:
            await self.smtp.ehlo()
        except aiosmtplib.SMTPHeloError:
            await self.smtp.helo()

    async def supports(self, keyword: str) -> bool:
        return self.smtp.supports_extension(keyword)

    async def ehlo_after_tls(self) -> dict[str, str] | None:
        try:
            await self.smtp.ehlo()
        except (aiosmtplib.SMTPException, OSError):
            return None
        return self.smtp.esmtp_extensions

    async def end(self, polite: bool) -> None:
        if polite and self.smtp.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await self.smtp.quit()
        self.smtp.close()

    async def reconnect(self) -> None:
        self.smtp = await _connect(self.host, self.port, self.local_hostname, self.timeout)

    async def upgrade(self, request: UpgradeTls) -> Upgraded | NotUpgraded | VerifyFailed:
        smtp = self.smtp
        try:
            await smtp.starttls(tls_context=request.context, server_hostname=request.sni,
                                validate_certs=False, timeout=self.timeout)
        except ssl.SSLCertVerificationError as exc:
            return VerifyFailed(exc)
        except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
            # After a non-220 reply the plaintext session is still in step.
            usable = isinstance(exc, aiosmtplib.SMTPResponseException) and smtp.is_connected
            return NotUpgraded(_classify_starttls_error(exc), usable=usable, cause=exc)
        ssl_object = smtp.get_transport_info("ssl_object")
        if not isinstance(ssl_object, ssl.SSLObject):
            raise TlsSetupError("aiosmtplib reported TLS but the transport has no SSL object")
        return Upgraded(ssl_object)
