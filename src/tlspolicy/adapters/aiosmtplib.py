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

Everything else (the rules, the arguments, the record) is the engine's
(:mod:`tlspolicy.adapters.engine`), as for the smtplib driver.
"""

from __future__ import annotations

import contextlib
import ssl
from typing import Unpack

import aiosmtplib
import attrs

from tlspolicy.decision import Decision
from tlspolicy.outcomes import Observation

from . import engine
from .sslcontext import TlsSetupError

__all__ = ["AsyncStartTlsResult", "starttls"]


@attrs.frozen(slots=True)
class AsyncStartTlsResult(engine.ShellResult[aiosmtplib.SMTP]):
    """The :class:`aiosmtplib.SMTP` to deliver on and what happened on the way."""


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


async def starttls(decision: Decision, host: str, port: int = 25, *,
                   smtp: aiosmtplib.SMTP | None = None,
                   **options: Unpack[engine.StartTlsOptions]) -> AsyncStartTlsResult:
    """Carry out ``decision`` on a connection to ``host:port`` (see the smtplib driver).

    ``smtp`` is a connected session the caller owns, created with
    ``start_tls=False`` so aiosmtplib does not upgrade on its own; without it
    one is opened.  Returns the session to deliver on (a new one after a
    FALLBACK that needed a reconnect) and the record; raises
    :class:`~tlspolicy.adapters.StartTlsDeferred` /
    :class:`~tlspolicy.adapters.StartTlsFailed` after ending the session.  The other
    arguments, ``sink`` and ``destination`` included, are the smtplib driver's
    (:class:`~tlspolicy.adapters.engine.StartTlsOptions`).
    """
    attempt = engine.Attempt(decision=decision, host=host, port=port, **options)
    session = _Session(attempt, smtp)
    record = await engine.run_async(attempt.run(), session)
    return AsyncStartTlsResult(session.smtp, record)


class _Session(engine.Shell[aiosmtplib.SMTP]):
    """The engine's requests performed on one :class:`aiosmtplib.SMTP` (replaced on a
    reconnect)."""

    async def open(self) -> engine.Opened:
        if self._smtp is None:
            await self.reconnect()
        smtp = self.smtp
        peer = smtp.get_transport_info("peername")
        self.opened_to(peer)
        return engine.Opened(peer, smtp.get_transport_info("sockname"),
                             greet=smtp.is_ehlo_or_helo_needed)

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
        # To the address, as the session it replaces (see Shell.peer_address), with its
        # EHLO name.
        attempt = self.attempt
        old = self._smtp
        local = attempt.local_hostname
        if local is None and old is not None:
            local = old.local_hostname
        smtp = aiosmtplib.SMTP(hostname=self.reconnect_host(), port=attempt.port,
                               local_hostname=local, timeout=attempt.timeout,
                               use_tls=False, start_tls=False)
        await smtp.connect()
        self._smtp = smtp

    async def upgrade(self, request: engine.UpgradeTls) -> engine.UpgradeAnswer:
        smtp = self.smtp
        try:
            await smtp.starttls(tls_context=request.context, server_hostname=request.sni,
                                validate_certs=False, timeout=self.attempt.timeout)
        except ssl.SSLCertVerificationError as exc:
            return engine.VerifyFailed(exc)
        except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
            # After a non-220 reply the plaintext session is still in step.
            usable = isinstance(exc, aiosmtplib.SMTPResponseException) and smtp.is_connected
            return engine.NotUpgraded(_classify_starttls_error(exc), usable=usable,
                                      cause=exc)
        ssl_object = smtp.get_transport_info("ssl_object")
        if not isinstance(ssl_object, ssl.SSLObject):
            raise TlsSetupError("aiosmtplib reported TLS but the transport has no SSL object")
        return engine.Upgraded(ssl_object)
