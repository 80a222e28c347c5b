"""Closing periods into RFC 8460 reports and delivering them to every ``rua``.

One :class:`Reporter` per process; any number of nodes may run
:meth:`Reporter.build` and :meth:`Reporter.send` at once against one shared
store: the store's lock makes one of them build a period, and one of them
deliver a report, and the state kept with each report makes every ``rua``
get it once.
"""

from __future__ import annotations

import asyncio
import email.policy
import email.utils
import gzip
import json
import logging
import re
import smtplib
import ssl
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from tlspolicy import (
    Destination,
    Resolver,
    SessionResult,
    TlsPolicyError,
    aggregate_counts,
    build_report,
    normalise_domain,
    report_filename,
)

from ..stores import Store, StoreError, dumps_json, loads_json
from .recording import DAY, RESULTS_NAMESPACE, decode_results, results_key_domain

if TYPE_CHECKING:
    from ..discovery import Discovery

__all__ = [
    "MEDIA_TYPE",
    "REPORTS_NAMESPACE",
    "Delivery",
    "Reporter",
    "ReportingConfig",
    "ReportingError",
    "StoredReport",
    "period_results",
    "report_msg_id",
]

log = logging.getLogger("tlspolicy.reporting")

#: Where built reports and their delivery state live.
REPORTS_NAMESPACE = "tlsrpt-reports"
#: The media type of a gzip-compressed report (RFC 8460 sections 5.3 and 6).
MEDIA_TYPE = "application/tlsrpt+gzip"
#: At most this many ``rua`` URIs of one record are used (the record is a stranger's).
MAX_RUA = 10
#: A mail address in a ``mailto:`` rua: no blanks or control characters, one ``@``.
_ADDRESS_RE = re.compile(r"[^\s@\x00-\x1f\x7f]+@[A-Za-z0-9.-]+")


class ReportingError(TlsPolicyError):
    """A reporting job that cannot run as asked (an open period, bad settings)."""


def _submitter(value: str) -> str:
    return normalise_domain(value)


def _contact(value: object) -> str:
    # RFC 8460 section 4.4: contact-info is an RFC 5322 addr-spec, a bare address; a
    # mailto: URI, a common way to write one, is taken for its address.
    if not isinstance(value, str):
        raise ReportingError(f"reporting option contact_info must be text, not {value!r}")
    text = value.strip()
    if text[:7].lower() == "mailto:":
        text = urllib.parse.unquote(text[7:].split("?", 1)[0])
    if not _ADDRESS_RE.fullmatch(text):
        raise ReportingError(f"reporting option contact_info {value[:80]!r} is not a mail "
                             "address (RFC 8460 section 4.4: an addr-spec such as "
                             "tlsrpt@example.net)")
    return text


def _positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ReportingError(f"reporting option {attribute.name} must be positive, "
                             f"not {value!r}")


@attrs.frozen(slots=True)
class ReportingConfig:
    """Who reports and how.  Times are in seconds.

    - ``organization_name``, ``contact_info``: the report's own fields;
      ``contact_info`` is a mail address (a ``mailto:`` URI is taken for its
      address, as RFC 8460 section 4.4 asks for an addr-spec).
    - ``submitter``: the reporting domain: the file name's sender, the DKIM
      ``d=`` and the ``TLS-Report-Submitter`` header.
    - ``mail_from``: the envelope sender and ``From:`` of mailed reports.
    - ``period`` (a UTC day) and ``grace``: a period is built only once
      ``grace`` has passed after its end, so every node has flushed.
    - ``retention``: how long built reports (and their state) are kept.
    - ``max_report_bytes``: the cap on the gzip body; larger reports are kept
      but not sent (``too-large``).
    - ``retry_window`` (24 h, RFC 8460 section 5.5), ``backoff_initial`` and
      ``backoff_max``: retries of a failed delivery, doubling.
    - ``dkim_selector``, ``dkim_key_file``: the DKIM key for mailed reports
      (its record must carry ``s=tlsrpt``); without a key no report is mailed.
    - ``smtp_port``, ``https_port``: 25 and the URI's port in production.
    - ``ca_file``: a CA bundle for HTTPS receivers (the system store if unset).
    """

    organization_name: str
    contact_info: str = attrs.field(converter=_contact)
    submitter: str = attrs.field(converter=_submitter)
    mail_from: str
    period: int = DAY
    grace: float = attrs.field(default=900.0, validator=_positive)
    retention: float = attrs.field(default=30 * DAY, validator=_positive)
    max_report_bytes: int = attrs.field(default=10 * 1024 * 1024, validator=_positive)
    retry_window: float = attrs.field(default=DAY, validator=_positive)
    backoff_initial: float = attrs.field(default=300.0, validator=_positive)
    backoff_max: float = attrs.field(default=3600.0, validator=_positive)
    dkim_selector: str = "tlsrpt"
    dkim_key_file: str | None = None
    smtp_port: int = 25
    https_port: int | None = None
    ca_file: str | None = None
    timeout: float = attrs.field(default=60.0, validator=_positive)
    lock_ttl: float = attrs.field(default=900.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.period <= 0 or DAY % self.period:
            raise ReportingError(f"reporting period {self.period!r} must divide a day")


@attrs.frozen(slots=True)
class Delivery:
    """The state of one report for one ``rua``.

    ``state``: ``pending``, ``delivered``, ``gave-up`` (the retry window
    passed), ``too-large``, ``unsupported`` (a scheme other than https/mailto)
    or ``no-dkim-key``.
    """

    uri: str
    state: str = "pending"
    attempts: int = 0
    next_at: float = 0.0
    error: str = ""
    delivered_at: float | None = None


@attrs.frozen(slots=True)
class StoredReport:
    """A built report, its file name and where it goes."""

    key: str
    domain: str
    start: int
    end: int
    report: dict[str, Any]
    filename: str
    created: float
    rua: tuple[str, ...] | None
    rua_detail: str
    deliveries: tuple[Delivery, ...]

    @property
    def body(self) -> bytes:
        """The gzip-compressed JSON (fixed mtime, so every node makes the same bytes)."""
        return gzip.compress(json.dumps(self.report, indent=None).encode(), mtime=0)

    def to_bytes(self) -> bytes:
        """The stored form."""
        return dumps_json({
            "v": 1, "domain": self.domain, "start": self.start, "end": self.end,
            "report": self.report, "filename": self.filename, "created": self.created,
            "rua": None if self.rua is None else list(self.rua), "rua_detail": self.rua_detail,
            "deliveries": [attrs.asdict(d) for d in self.deliveries]})

    @classmethod
    def from_bytes(cls, key: str, data: bytes) -> StoredReport:
        """Read the stored form; a corrupt value raises ``StoreError``."""
        value = loads_json(data)
        try:
            assert isinstance(value, dict) and value["v"] == 1
            rua = value["rua"]
            stored = cls(key, value["domain"], int(value["start"]), int(value["end"]),
                         value["report"], value["filename"], float(value["created"]),
                         None if rua is None else tuple(rua), value["rua_detail"],
                         tuple(Delivery(**d) for d in value["deliveries"]))
        except (AssertionError, KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"stored TLS-RPT report {key!r} is malformed: {exc}") from None
        # A shared store's report must be the one its key names, for a normalised domain.
        try:
            domain_ok = normalise_domain(stored.domain) == stored.domain
        except (TlsPolicyError, TypeError):
            domain_ok = False
        if not domain_ok or key != f"{stored.start}/{stored.domain}" or not isinstance(
                stored.report, dict) or not isinstance(stored.filename, str) or any(
                c in stored.filename for c in '/\\"\r\n'):
            raise StoreError(f"stored TLS-RPT report {key[:200]!r} is malformed: its key, "
                             "domain or file name do not agree")
        return stored


async def period_results(store: Store, start: int,
                         domains: Iterable[str] | None = None) -> dict[str, list[SessionResult]]:
    """Every result recorded in the period starting at ``start``, summed, per policy domain."""
    wanted = None if domains is None else {normalise_domain(d) for d in domains}
    items: dict[str, list[tuple[SessionResult, int]]] = {}
    async for entry in store.entries(RESULTS_NAMESPACE, f"{start}/"):
        # The store may be a fleet's: a key or row that a sink would not write is skipped.
        domain = results_key_domain(entry.key, start)
        if domain is None:
            log.warning("TLS-RPT: skipping stored results %r: not a key a sink writes "
                        "(period/domain/node/sequence)", entry.key[:200])
            continue
        if wanted is not None and domain not in wanted:
            continue
        try:
            pairs = decode_results(entry.value)
        except StoreError as exc:
            log.warning("TLS-RPT: skipping stored results %s: %s", entry.key, exc)
            continue
        strays = sorted({r.policy_domain for r, _n in pairs if r.policy_domain != domain})
        if strays:
            log.warning("TLS-RPT: skipping stored results %s: they are for %s, not %s",
                        entry.key, ", ".join(strays)[:200], domain)
            continue
        items.setdefault(domain, []).extend(pairs)
    return {domain: aggregate_counts(pairs) for domain, pairs in sorted(items.items())}


# RFC 5322 atext: what a dot-atom-text may hold besides the dots between atoms.
_ATEXT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                   "!#$%&'*+-/=?^_`{|}~")


def _dot_atom(text: str) -> str:
    atoms = ["".join(c if c in _ATEXT else "-" for c in atom) for atom in text.split(".")]
    return ".".join(a for a in atoms if a) or "report"


def report_msg_id(report_id: str, submitter: str) -> str:
    """The ``Report-ID`` of a report mail's subject: an RFC 5322 ``msg-id``.

    RFC 8460 section 5.3 ends the subject with ``"<" id-left "@" id-right ">"``:
    the report's ``report-id`` (characters a ``dot-atom-text`` cannot hold
    replaced by ``-``) at the submitting domain.
    """
    return f"<{_dot_atom(report_id)}@{_dot_atom(submitter)}>"


def _mail_address(uri: str) -> str | None:
    """The address of a ``mailto:`` URI (RFC 6068, without its query), or ``None``."""
    address = urllib.parse.unquote(uri[len("mailto:"):].split("?", 1)[0])
    return address if _ADDRESS_RE.fullmatch(address) else None


def _stamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class Reporter:
    """Builds and sends reports from the results in ``store``.

    ``discovery`` looks up ``_smtp._tls`` records, MX hosts and addresses (its
    resolver); ``resolver`` is the operator's configuration, which still
    applies to mailed reports (SEMANTICS 12).  ``clock`` returns epoch seconds.
    """

    def __init__(self, store: Store, config: ReportingConfig, *,
                 discovery: Discovery | None = None, resolver: Resolver | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.config = config
        self.discovery = discovery
        self.resolver = resolver
        self._clock = clock
        self._owner = uuid.uuid4().hex

    # ------------------------------------------------------------------ build

    async def build(self, start: int, *, domains: Iterable[str] | None = None
                    ) -> list[StoredReport]:
        """Close the period starting at ``start``: one report per policy domain, made once.

        Raises :class:`ReportingError` while the period (plus ``grace``) is not
        over.  Returns the reports this call made (none when another node holds
        the period's lock or every report exists already).
        """
        cfg = self.config
        if start % cfg.period:
            raise ReportingError(f"{start} is not the start of a {cfg.period} s period")
        end = start + cfg.period
        if self._clock() < end + cfg.grace:
            raise ReportingError(
                f"the period {_stamp(start):%Y-%m-%d %H:%M} UTC is still open (it closes "
                f"{cfg.grace:g} s after {_stamp(end):%Y-%m-%d %H:%M} UTC)")
        lock = f"tlsrpt-build-{start}"
        if not await self.store.acquire(lock, self._owner, cfg.lock_ttl):
            log.info("TLS-RPT: period %s is being built by another node", start)
            return []
        made: list[StoredReport] = []
        try:
            for domain, results in (await period_results(self.store, start, domains)).items():
                key = f"{start}/{domain}"
                if await self.store.get(REPORTS_NAMESPACE, key) is not None:
                    continue
                report_id = f"{_stamp(start):%Y-%m-%d}_{domain}_{uuid.uuid4().hex[:12]}"
                report = build_report(
                    organization_name=cfg.organization_name, contact_info=cfg.contact_info,
                    report_id=report_id, start=_stamp(start), end=_stamp(end), results=results)
                rua, detail = await self._rua(domain)
                now = self._clock()
                stored = StoredReport(
                    key, domain, start, end, report,
                    report_filename(cfg.submitter, domain, _stamp(start), _stamp(end),
                                    uuid.uuid4().hex[:8]),
                    now, rua, detail,
                    self._initial(rua or (), now))
                stored = self._capped(stored)
                await self.store.set(REPORTS_NAMESPACE, key, stored.to_bytes(),
                                     expires_at=now + cfg.retention)
                made.append(stored)
        finally:
            await self.store.release(lock, self._owner)
        return made

    def _initial(self, rua: Iterable[str], now: float) -> tuple[Delivery, ...]:
        out = []
        for index, uri in enumerate(dict.fromkeys(rua)):
            scheme = uri.split(":", 1)[0].lower()
            if index >= MAX_RUA:
                log.warning("TLS-RPT: more than %d rua URIs, %r and later ones ignored",
                            MAX_RUA, uri[:100])
                break
            if scheme not in ("https", "mailto"):
                out.append(Delivery(uri[:300], "unsupported", error=f"scheme {scheme[:20]!r}"))
            elif scheme == "mailto" and _mail_address(uri) is None:
                out.append(Delivery(uri[:300], "unsupported", error="not a mail address"))
            elif scheme == "mailto" and self.config.dkim_key_file is None:
                out.append(Delivery(uri, "no-dkim-key",
                                    error="mailed reports must be DKIM-signed"))
            else:
                out.append(Delivery(uri, next_at=now))
        return tuple(out)

    def _capped(self, stored: StoredReport) -> StoredReport:
        size = len(stored.body)
        if size <= self.config.max_report_bytes:
            return stored
        log.warning("TLS-RPT: report %s is %d bytes, over the cap of %d: not sent",
                    stored.key, size, self.config.max_report_bytes)
        return attrs.evolve(stored, deliveries=tuple(
            attrs.evolve(d, state="too-large", error=f"{size} bytes")
            if d.state == "pending" else d for d in stored.deliveries))

    async def _rua(self, domain: str) -> tuple[tuple[str, ...] | None, str]:
        """The domain's ``rua`` list; ``None`` when the lookup failed (retried later)."""
        if self.discovery is None:
            return None, "no discovery to look up _smtp._tls"
        record = await self.discovery.tlsrpt(domain)
        if record.record is not None:
            return record.rua, record.record
        if "v=TLSRPTv1 records" in record.detail:
            return (), record.detail  # none or several records: nobody to send to
        return None, record.detail

    # ------------------------------------------------------------------- show

    async def stored(self, start: int | None = None) -> list[StoredReport]:
        """Built reports (of one period, or all), oldest first."""
        out = []
        async for entry in self.store.entries(REPORTS_NAMESPACE,
                                              "" if start is None else f"{start}/"):
            try:
                out.append(StoredReport.from_bytes(entry.key, entry.value))
            except StoreError as exc:
                log.warning("TLS-RPT: %s", exc)
        return sorted(out, key=lambda r: (r.start, r.domain))

    # ------------------------------------------------------------------- send

    async def send(self) -> list[Delivery]:
        """Deliver every report whose deliveries are due; the deliveries tried."""
        tried: list[Delivery] = []
        for stored in await self.stored():
            if stored.rua is not None and not any(d.state == "pending"
                                                  for d in stored.deliveries):
                continue
            lock = f"tlsrpt-send-{stored.key}"
            if not await self.store.acquire(lock, self._owner, self.config.lock_ttl):
                continue
            try:
                tried += await self._send_one(stored.key)
            finally:
                await self.store.release(lock, self._owner)
        return tried

    async def _send_one(self, key: str) -> list[Delivery]:
        entry = await self.store.get(REPORTS_NAMESPACE, key)
        if entry is None:
            return []
        stored = StoredReport.from_bytes(key, entry.value)  # re-read under the lock
        now = self._clock()
        if stored.rua is None:
            rua, detail = await self._rua(stored.domain)
            if rua is None and now - stored.created >= self.config.retry_window:
                rua, detail = (), f"gave up looking up _smtp._tls: {detail}"
            stored = self._capped(attrs.evolve(stored, rua=rua, rua_detail=detail,
                                               deliveries=self._initial(rua or (), now)))
            await self._save(stored, entry.expires_at)
        body = stored.body
        tried: list[Delivery] = []
        deliveries = list(stored.deliveries)
        for index, delivery in enumerate(deliveries):
            if delivery.state != "pending" or delivery.next_at > now:
                continue
            try:
                if delivery.uri.lower().startswith("https:"):
                    await self._post(delivery.uri, body)
                else:
                    await self._mail(delivery.uri, stored, body)
            except Exception as exc:  # every failure is retried, none escapes the job
                attempts = delivery.attempts + 1
                error = f"{type(exc).__name__}: {exc}"[:500]
                if self._clock() - stored.created >= self.config.retry_window:
                    updated = attrs.evolve(delivery, state="gave-up", attempts=attempts,
                                           error=error)
                else:
                    wait = min(self.config.backoff_initial * 2 ** (attempts - 1),
                               self.config.backoff_max)
                    updated = attrs.evolve(delivery, attempts=attempts,
                                           next_at=self._clock() + wait, error=error)
                log.warning("TLS-RPT: delivering %s to %s failed: %s", key, delivery.uri, error)
            else:
                updated = attrs.evolve(delivery, state="delivered",
                                       attempts=delivery.attempts + 1, error="",
                                       delivered_at=self._clock())
            deliveries[index] = updated
            tried.append(updated)
            # Saved after each one, so a crash never makes a delivered report go again.
            stored = attrs.evolve(stored, deliveries=tuple(deliveries))
            await self._save(stored, entry.expires_at)
        return tried

    async def _save(self, stored: StoredReport, expires_at: float | None) -> None:
        await self.store.set(REPORTS_NAMESPACE, stored.key, stored.to_bytes(),
                             expires_at=expires_at)

    async def _addresses(self, host: str) -> list[str]:
        if self.discovery is None:
            return [host]
        found: list[str] = []
        for rdtype in ("A", "AAAA"):
            answer = await self.discovery.dns.query(host, rdtype)
            found += [r.address for r in answer.records]
        if not found:
            raise ReportingError(f"{host} has no address")
        return found

    async def _post(self, uri: str, body: bytes) -> None:
        import httpx

        from ..discovery.https import make_ssl_context

        parts = urllib.parse.urlsplit(uri)
        host = parts.hostname
        if parts.scheme.lower() != "https" or not host:
            raise ReportingError(f"{uri!r} is not an https URI")
        port = self.config.https_port or parts.port or 443
        context = make_ssl_context(self.config.ca_file)
        last: Exception | None = None
        for address in (await self._addresses(host))[:4]:
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
        import dkim  # type: ignore[import-untyped]

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
            f"{stored.domain}, {_stamp(stored.start):%Y-%m-%d %H:%M} to "
            f"{_stamp(stored.end):%Y-%m-%d %H:%M} UTC.\n")
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

    async def _mail(self, uri: str, stored: StoredReport, body: bytes) -> None:
        rcpt = _mail_address(uri)
        if rcpt is None:
            raise ReportingError(f"{uri[:100]!r} has no mail address")
        domain = normalise_domain(rcpt.rsplit("@", 1)[1])
        message = self.message(stored, rcpt, body)
        hosts: tuple[str, ...] = (domain,)
        if self.discovery is not None:
            mx = await self.discovery.mx(domain)
            if mx.kind == "null":
                raise ReportingError(f"{domain} accepts no mail (null MX)")
            if mx.kind == "failed":
                raise ReportingError(f"MX lookup of {domain} failed: {mx.detail}")
            hosts = mx.hosts or (domain,)
        errors = []
        for host in hosts:
            for address in await self._addresses(host):
                try:
                    await asyncio.to_thread(self._smtp, domain, host, address, rcpt, message)
                    return
                except (OSError, smtplib.SMTPException, TlsPolicyError) as exc:
                    errors.append(f"{host} [{address}]: {type(exc).__name__}: {exc}")
        raise ReportingError("; ".join(errors)[:500] or f"no MX host for {domain}")

    def _smtp(self, domain: str, host: str, address: str, rcpt: str, message: bytes) -> None:
        """One SMTP delivery of a report through the library's own driver, not recorded.

        The decision ignores MTA-STS and DANE as with ``TLS-Required: No``
        (RFC 8460 section 5.3); the configuration and floors still apply.
        """
        from ..adapters.smtplib import starttls

        resolver = self.resolver
        if resolver is None:
            from tlspolicy import Resolver as _Resolver
            from tlspolicy import loads_toml

            resolver = _Resolver(loads_toml('[global]\ntls = "ifavailable"\n'))
        decision = resolver.resolve(domain, mx_host=host,
                                    destination=Destination(tls_required_no=True))
        smtp = smtplib.SMTP(timeout=self.config.timeout, local_hostname=self.config.submitter)
        smtp.connect(address, self.config.smtp_port)
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
