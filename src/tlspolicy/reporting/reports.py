"""Closing periods into RFC 8460 reports and delivering them to every ``rua``.

One :class:`Reporter` per process; any number of nodes may run
:meth:`Reporter.build` and :meth:`Reporter.send` at once against one shared
store: the store's lock makes one of them build a period, and one of them
deliver a report, and the state kept with each report makes every ``rua``
get it once.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import attrs

from tlspolicy.names import normalise_domain
from tlspolicy.policies.tlsrpt import SessionResult, aggregate_counts, build_report, report_filename
from tlspolicy.resolver import Resolver

from ..stores import Store, StoreError
from .recording import RESULTS_NAMESPACE, decode_results, results_key_domain

if TYPE_CHECKING:
    from ..discovery import Discovery

from .delivery import DiscoveryLookups, NoLookups, ReportLookups, ReportSender, Sender
from .models import (
    MAX_RUA,
    REPORTS_NAMESPACE,
    Delivery,
    ReportingConfig,
    ReportingError,
    StoredReport,
    mail_address,
    stamp,
)

__all__ = ["Reporter", "period_results"]

log = logging.getLogger("tlspolicy.reporting")


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


class Reporter:
    """Builds and sends reports from the results in ``store``.

    ``discovery`` looks up ``_smtp._tls`` records, MX hosts and addresses (its
    resolver); ``resolver`` is the operator's configuration, which still
    applies to mailed reports (SEMANTICS 12).  ``clock`` returns epoch seconds.
    ``lookups`` and ``sender`` replace what is built from those
    (:mod:`tlspolicy.reporting.delivery`).
    """

    def __init__(self, store: Store, config: ReportingConfig, *,
                 discovery: Discovery | None = None, resolver: Resolver | None = None,
                 clock: Callable[[], float] = time.time,
                 lookups: ReportLookups | None = None, sender: Sender | None = None) -> None:
        self.store = store
        self.config = config
        self.lookups: ReportLookups = lookups or (
            NoLookups() if discovery is None else DiscoveryLookups(discovery))
        self.sender: Sender = sender or ReportSender(config, self.lookups, resolver=resolver,
                                                     clock=clock)
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
                f"the period {stamp(start):%Y-%m-%d %H:%M} UTC is still open (it closes "
                f"{cfg.grace:g} s after {stamp(end):%Y-%m-%d %H:%M} UTC)")
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
                report_id = f"{stamp(start):%Y-%m-%d}_{domain}_{uuid.uuid4().hex[:12]}"
                report = build_report(
                    organization_name=cfg.organization_name, contact_info=cfg.contact_info,
                    report_id=report_id, start=stamp(start), end=stamp(end), results=results)
                rua, detail = await self._rua(domain)
                now = self._clock()
                stored = StoredReport(
                    key, domain, start, end, report,
                    report_filename(cfg.submitter, domain, stamp(start), stamp(end),
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
            elif scheme == "mailto" and mail_address(uri) is None:
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
        record = await self.lookups.tlsrpt(domain)
        if record.record is not None:
            return record.rua, record.record
        if not record.failed:
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
                tried += await self._send_one(stored.key, lock)
            finally:
                await self.store.release(lock, self._owner)
        return tried

    async def _send_one(self, key: str, lock: str) -> list[Delivery]:
        entry = await self.store.get(REPORTS_NAMESPACE, key)
        if entry is None:
            return []
        stored = StoredReport.from_bytes(key, entry.value)  # re-read under the lock
        last = entry.value  # what the store holds, as this node last read or wrote it
        now = self._clock()
        if stored.rua is None:
            rua, detail = await self._rua(stored.domain)
            if rua is None and now - stored.created >= self.config.retry_window:
                rua, detail = (), f"gave up looking up _smtp._tls: {detail}"
            stored = self._capped(attrs.evolve(stored, rua=rua, rua_detail=detail,
                                               deliveries=self._initial(rua or (), now)))
            last = await self._save(stored, entry.expires_at)
        body = stored.body
        tried: list[Delivery] = []
        deliveries = list(stored.deliveries)
        for index, delivery in enumerate(deliveries):
            if delivery.state != "pending" or delivery.next_at > now:
                continue
            # The lock taken again (so extended) before each delivery: one delivery takes
            # at most four tries of `timeout` and lock_ttl is at least five, so no other
            # node takes the lock and reads the state before this delivery is saved.  The
            # stored state must also still be the one this node last read or wrote: a
            # lock that ran out, was taken by another node and given back is free to take
            # again, but that node may have sent and saved meanwhile.  Either way, the
            # rest is left to the other node.
            if not await self.store.acquire(lock, self._owner, self.config.lock_ttl) or (
                    await self._changed(key, last)):
                log.warning("TLS-RPT: %s: another node took over the report, or it expired; "
                            "its other deliveries are left", key)
                break
            try:
                await self.sender.deliver(delivery.uri, stored, body)
            except Exception as exc:  # every failure is retried, none escapes the job
                attempts = delivery.attempts + 1
                error = f"{type(exc).__name__}: {exc}"[:500]
                if self._clock() - stored.created >= self.config.retry_window:
                    updated = attrs.evolve(delivery, state="gave-up", attempts=attempts,
                                           error=error)
                else:
                    # The exponent capped, as for MTA-STS retries: past it the wait is
                    # backoff_max whatever the count, and 2 ** a large count is slow.
                    wait = min(self.config.backoff_initial * 2 ** min(attempts - 1, 30),
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
            if await self._changed(key, last):
                # Another node wrote the report meanwhile (this node's lock ran out): its
                # state is newer than this node's view, which is not written over it.
                log.warning("TLS-RPT: %s: another node took over the report during a "
                            "delivery, or it expired; the stored state is kept", key)
                break
            # Saved after each one, so a crash never makes a delivered report go again.
            stored = attrs.evolve(stored, deliveries=tuple(deliveries))
            last = await self._save(stored, entry.expires_at)
        return tried

    async def _changed(self, key: str, last: bytes) -> bool:
        entry = await self.store.get(REPORTS_NAMESPACE, key)
        return entry is None or entry.value != last

    async def _save(self, stored: StoredReport, expires_at: float | None) -> bytes:
        """Write ``stored``; the bytes written."""
        data = stored.to_bytes()
        await self.store.set(REPORTS_NAMESPACE, stored.key, data, expires_at=expires_at)
        return data

    def message(self, stored: StoredReport, rcpt: str, body: bytes) -> bytes:
        """The RFC 8460 section 5.3 message for ``rcpt``, DKIM-signed (``d=`` submitter);
        see :meth:`~tlspolicy.reporting.delivery.ReportSender.message`."""
        return self.sender.message(stored, rcpt, body)
