"""One check of a domain's MTA-STS state (SEMANTICS 10): the ``_mta-sts`` TXT lookup,
the policy fetch when the record's id asks for one, and the state that follows, a
failure's with its backoff and warning."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..policies import ststate
from ..policies.mtasts import CachedMtaStsPolicy, FetchOutcome
from ..policies.ststate import aware
from .dane import addresses
from .dns import DnsAnswer, DnsStatus
from .https import fetch_policy, make_client
from .models import StsState
from .records import sts_record

if TYPE_CHECKING:
    from .core import Discovery

__all__ = ["check"]


def _failure(d: Discovery, domain: str, old: StsState | None, outcome: FetchOutcome,
             detail: str, txt_id: str | None, now: float) -> StsState:
    state = ststate.after_failure(domain, old, outcome, detail, txt_id, now,
                                  initial=d.config.backoff_initial,
                                  maximum=d.config.backoff_max)
    assert state.retry_at is not None
    if state.state == "policy":
        d.failure_log.warn(domain, now, state.retry_at,
                           "MTA-STS %s: %s; cached policy kept until it expires",
                           domain, detail)
    else:
        d.failure_log.warn(domain, now, state.retry_at, "MTA-STS %s: %s", domain, detail)
    return state


def _txt_used(d: Discovery, state: StsState, txt: DnsAnswer) -> StsState:
    # A policy kept after its check, whose next check is when the _mta-sts TXT answer
    # it came from runs out (or later): nothing asks for that answer before then, so
    # it is not held until its TTL ends (an answer with its records costs more than
    # the state itself).
    if state.next_check >= txt.expires_at:
        d.dns.drop(txt.name, "TXT")
    return state


async def check(d: Discovery, domain: str, old: StsState | None, force: bool) -> StsState:
    """The state after one check of ``domain`` (``old``: the state held before it;
    ``force``: fetch the policy whatever the TXT record's id)."""
    config = d.config
    now = d._clock()
    txt = await d.dns.query(f"_mta-sts.{domain}", "TXT")
    if txt.status is DnsStatus.FAILED:
        d.observer.policy_fetch(FetchOutcome.FETCH_ERROR, None)
        return _failure(d, domain, old, FetchOutcome.FETCH_ERROR,
                        f"_mta-sts TXT lookup failed: {txt.detail}", None, now)
    record, why = sts_record(txt)
    if record is None:
        until = min(now + config.no_policy_ttl, max(now, txt.expires_at))
        return ststate.without_record(domain, old, why, now, until)
    txt_until = max(now, txt.expires_at)
    kept = ststate.unchanged(old, record.id, now, txt_until,
                             refresh_interval=config.refresh_interval, force=force)
    if kept is not None:
        return _txt_used(d, kept, txt)
    found: list[str] = []
    host = f"mta-sts.{domain}"
    a, aaaa = await addresses(d.dns, host)
    for answer in (a, aaaa):
        if answer.status is DnsStatus.RECORDS:
            found.extend(r.address for r in answer.records)
    d.fetches[domain] = d.fetches.get(domain, 0) + 1
    if not found:
        detail = a.detail or aaaa.detail or f"{host} has no address"
        d.observer.policy_fetch(FetchOutcome.FETCH_ERROR, None)
        return _failure(d, domain, old, FetchOutcome.FETCH_ERROR, detail, record.id, now)
    started = time.monotonic()
    if d._http is None:
        d._http = make_client(d._ssl)
    result = await fetch_policy(domain, found, port=config.https_port,
                                context=d._ssl, timeout=config.https_timeout,
                                client=d._http)
    d.observer.policy_fetch(result.outcome, time.monotonic() - started)
    if result.policy is None:
        return _failure(d, domain, old, result.outcome, result.detail, record.id, now)
    # What served this fetch is not asked for again before the state's next check,
    # when the TXT record's TTL has run out anyway (the policy host's addresses: a
    # refresh interval away, or a new id): not worth holding until their TTLs end.
    d.dns.drop(host, "A")
    d.dns.drop(host, "AAAA")
    d.dns.drop(f"_mta-sts.{domain}", "TXT")
    fetched = CachedMtaStsPolicy(d._share.policy(result.policy), aware(now),
                                 d._share.text(record.id))
    return ststate.after_fetch(domain, fetched, result.detail, now, txt_until,
                               refresh_interval=config.refresh_interval)
