"""Delivering built reports, behind two small interfaces.

:class:`ReportLookups` answers what delivery needs from DNS (the ``_smtp._tls`` record,
MX hosts, addresses): :class:`DiscoveryLookups` over the discovery layer, or
:class:`NoLookups` where there is none.  :class:`Sender` is what the reporter delivers
through; :class:`ReportSender`, the real one, POSTs to ``https:`` and mails to
``mailto:`` URIs (DKIM-signed, over the library's own STARTTLS driver, with the
operator's configuration applied as with ``TLS-Required: No``).
"""

from __future__ import annotations

import asyncio
import email.policy
import email.utils
import smtplib
import ssl
import time
import urllib.parse
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

from tlspolicy.errors import TlsPolicyError
from tlspolicy.names import normalise_domain
from tlspolicy.options import Options, Tls
from tlspolicy.policies.destination import Destination
from tlspolicy.resolver import Resolver
from tlspolicy.scopes import Config

from ..adapters.smtplib import starttls
from ..discovery.https import make_ssl_context
from ..discovery.models import TlsRptRecord
from .bounded_smtp import BoundedSMTP, bounded
from .models import (
    MEDIA_TYPE,
    ReportingConfig,
    ReportingError,
    StoredReport,
    mail_address,
    report_msg_id,
    stamp,
)

if TYPE_CHECKING:
    from ..discovery import Discovery

__all__ = ["DiscoveryLookups", "NoLookups", "ReportLookups", "ReportSender", "Sender"]

#: Addresses one report is tried at for one rua, each exchange bounded by the timeout:
#: an ``https:`` host's, or a ``mailto:`` domain's over all its MX hosts.
_ADDRESSES: Final = 4


class ReportLookups(Protocol):
    """What delivering a report asks DNS."""

    async def tlsrpt(self, domain: str) -> TlsRptRecord:
        """The domain's ``_smtp._tls`` record, or why there is none (``failed`` when the
        lookup failed and is worth retrying)."""

    async def mx_hosts(self, domain: str) -> tuple[str, ...]:
        """The hosts to mail ``domain`` through, best first; raises
        :class:`ReportingError` when it accepts no mail or the lookup failed."""

    async def addresses(self, host: str) -> list[str]:
        """The addresses of ``host``; raises :class:`ReportingError` when it has none."""


class Sender(Protocol):
    """Delivers one built report to one ``rua``."""

    async def deliver(self, uri: str, stored: StoredReport, body: bytes) -> None:
        """Deliver ``body`` (the gzip report) to ``uri``; raise on failure (retried)."""

    def message(self, stored: StoredReport, rcpt: str, body: bytes) -> bytes:
        """The mail a ``mailto:`` rua gets."""


class DiscoveryLookups:
    """:class:`ReportLookups` through the discovery layer (its resolver)."""

    def __init__(self, discovery: Discovery) -> None:
        self.discovery = discovery

    async def tlsrpt(self, domain: str) -> TlsRptRecord:
        return await self.discovery.tlsrpt(domain)

    async def mx_hosts(self, domain: str) -> tuple[str, ...]:
        mx = await self.discovery.mx(domain)
        if mx.kind == "null":
            raise ReportingError(f"{domain} accepts no mail (null MX)")
        if mx.kind == "failed":
            raise ReportingError(f"MX lookup of {domain} failed: {mx.detail}")
        return mx.hosts or (domain,)

    async def addresses(self, host: str) -> list[str]:
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            answer = await self.discovery.dns.query(host, rdtype)
            found += [r.address for r in answer.records]
        if not found:
            raise ReportingError(f"{host} has no address")
        return found


class NoLookups:
    """:class:`ReportLookups` without DNS: no record is found (retried later), a mail
    domain is its own host and a host name is connected to as given."""

    async def tlsrpt(self, domain: str) -> TlsRptRecord:
        return TlsRptRecord(None, (), "no discovery to look up _smtp._tls", failed=True)

    async def mx_hosts(self, domain: str) -> tuple[str, ...]:
        return (domain,)

    async def addresses(self, host: str) -> list[str]:
        return [host]


class ReportSender:
    """The real :class:`Sender`: HTTPS POST and DKIM-signed mail.

    ``resolver`` is the operator's configuration, which still applies to mailed
    reports (opportunistic TLS without one); ``clock`` returns epoch seconds.
    """

    def __init__(self, config: ReportingConfig, lookups: ReportLookups, *,
                 resolver: Resolver | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.lookups = lookups
        self.resolver = resolver
        self._clock = clock

    async def deliver(self, uri: str, stored: StoredReport, body: bytes) -> None:
        """POST to an ``https:`` rua, mail to any other (``mailto:``)."""
        if uri.lower().startswith("https:"):
            await self.post(uri, body)
        else:
            await self.mail(uri, stored, body)

    async def post(self, uri: str, body: bytes) -> None:
        """POST the gzip body to an ``https:`` rua (RFC 8460 section 5.4)."""
        import httpx  # the discovery extra


        parts = urllib.parse.urlsplit(uri)
        host = parts.hostname
        if parts.scheme.lower() != "https" or not host:
            raise ReportingError(f"{uri!r} is not an https URI")
        port = self.config.https_port or parts.port or 443
        context = make_ssl_context(self.config.ca_file)
        last: Exception | None = None
        for address in (await self.lookups.addresses(host))[:_ADDRESSES]:
            netloc = f"[{address}]" if ":" in address else address
            target = urllib.parse.urlunsplit(("https", f"{netloc}:{port}", parts.path or "/",
                                              parts.query, ""))
            try:
                # The whole exchange is bounded, and the answer's body is never read:
                # a receiver is a stranger and may trickle or flood.
                async with asyncio.timeout(self.config.timeout), httpx.AsyncClient(
                        verify=context, follow_redirects=False, trust_env=False,
                        timeout=httpx.Timeout(self.config.timeout)) as c:
                    request = c.build_request(
                        "POST", target, content=body,
                        headers={"Host": host if port == 443 else f"{host}:{port}",
                                 "Content-Type": MEDIA_TYPE, "User-Agent": "tlspolicy"},
                        extensions={"sni_hostname": host})
                    response = await c.send(request, stream=True)
                    await response.aclose()
                if 200 <= response.status_code < 300:
                    return
                last = ReportingError(f"{uri[:200]}: HTTP {response.status_code}")
            except TimeoutError:
                last = ReportingError(f"{uri[:200]}: no answer within "
                                      f"{self.config.timeout:g} s")
            except (httpx.HTTPError, OSError, ssl.SSLError) as exc:
                last = exc
        raise last or ReportingError(f"{uri}: not delivered")

    def message(self, stored: StoredReport, rcpt: str, body: bytes) -> bytes:
        """The RFC 8460 section 5.3 message for ``rcpt``, DKIM-signed (``d=`` submitter)."""
        import dkim  # type: ignore[import-untyped]  # the reporting extra

        cfg = self.config
        if cfg.dkim_key_file is None:
            raise ReportingError("mailed reports need dkim_key_file")
        msg = EmailMessage(policy=email.policy.SMTP)
        msg["From"] = cfg.mail_from
        msg["To"] = rcpt
        # RFC 8460 section 5.3: the subject ends with an RFC 5322 msg-id, id-left "@" id-right.
        msg["Subject"] = (f"Report Domain: {stored.domain} Submitter: {cfg.submitter} "
                          f"Report-ID: {report_msg_id(stored.report['report-id'], cfg.submitter)}")
        msg["Date"] = email.utils.formatdate(self._clock(), usegmt=True)
        msg["Message-ID"] = email.utils.make_msgid(domain=cfg.submitter)
        msg["TLS-Report-Domain"] = stored.domain
        msg["TLS-Report-Submitter"] = cfg.submitter
        msg.set_content(
            f"This is an aggregate TLS report (RFC 8460) from {cfg.organization_name} for "
            f"{stored.domain}, {stamp(stored.start):%Y-%m-%d %H:%M} to "
            f"{stamp(stored.end):%Y-%m-%d %H:%M} UTC.\n")
        msg.add_attachment(body, maintype="application", subtype="tlsrpt+gzip",
                           filename=stored.filename)
        # No boundary is set here: the generator picks a random one once the parts are
        # known, and one that occurs in none of them (an organization_name may hold
        # "--boundary" lines).  Reading it before that gave the literal "None".
        msg.set_type("multipart/report")
        msg.set_param("report-type", "tlsrpt")
        raw = msg.as_bytes()
        key = Path(cfg.dkim_key_file).read_bytes()
        headers = [b"From", b"To", b"Subject", b"Date", b"Message-ID", b"TLS-Report-Domain",
                   b"TLS-Report-Submitter", b"MIME-Version", b"Content-Type"]
        signature = dkim.sign(raw, cfg.dkim_selector.encode(), cfg.submitter.encode(), key,
                              include_headers=headers, length=False, tlsrpt=True)
        return bytes(signature) + raw

    async def mail(self, uri: str, stored: StoredReport, body: bytes) -> None:
        """Mail the report to a ``mailto:`` rua through its MX hosts (section 5.3)."""
        rcpt = mail_address(uri)
        if rcpt is None:
            raise ReportingError(f"{uri[:100]!r} has no mail address")
        domain = normalise_domain(rcpt.rsplit("@", 1)[1])
        message = self.message(stored, rcpt, body)
        hosts = await self.lookups.mx_hosts(domain)
        errors: list[str] = []
        # At most _ADDRESSES sessions, and lookups of as many MX hosts, each session
        # bounded as a whole by the timeout, as for HTTPS: the stranger's MX list does
        # not set the total.  A host without an address is passed over.
        tries = 0
        for host in hosts[:_ADDRESSES]:
            try:
                addresses = await self.lookups.addresses(host)
            except TlsPolicyError as exc:
                errors.append(f"{host}: {exc}")
                continue
            for address in addresses[:_ADDRESSES - tries]:
                tries += 1
                try:
                    await asyncio.to_thread(self._smtp, domain, host, address, rcpt, message)
                    return
                except (OSError, smtplib.SMTPException, TlsPolicyError) as exc:
                    errors.append(f"{host} [{address}]: {type(exc).__name__}: {exc}")
            if tries >= _ADDRESSES:
                break
        raise ReportingError("; ".join(errors)[:500] or f"no MX host for {domain}")

    def _smtp(self, domain: str, host: str, address: str, rcpt: str, message: bytes) -> None:
        """One SMTP delivery of a report through the library's own driver, not recorded.

        The decision ignores MTA-STS and DANE as with ``TLS-Required: No``
        (RFC 8460 section 5.3); the configuration and floors still apply.
        """
        resolver = self.resolver
        if resolver is None:
            resolver = Resolver(Config(options=Options(tls=Tls.IFAVAILABLE)))
        decision = resolver.resolve(domain, mx_host=host,
                                    destination=Destination(tls_required_no=True))
        # The whole session, a fallback's new one included, within the timeout, and no
        # reply longer than 64 KiB: the MX is a stranger's (see bounded_smtp).
        with bounded(self.config.timeout):
            smtp = BoundedSMTP(timeout=self.config.timeout,
                               local_hostname=self.config.submitter)
            try:
                smtp.connect(address, self.config.smtp_port)
            except BaseException:
                smtp.close()
                raise
            result = starttls(decision, host, self.config.smtp_port, smtp=smtp,
                              timeout=self.config.timeout)
            try:
                result.smtp.sendmail(self.config.mail_from, [rcpt], message,
                                     mail_options=list(result.record.mail_options))
            finally:
                try:
                    result.smtp.quit()
                except (OSError, smtplib.SMTPException):
                    result.smtp.close()
