"""The MTA-STS refresh state of one policy domain and its transitions (SEMANTICS 10).

:class:`StsState` is what discovery holds and stores per policy domain.  The functions
here say what the next state is after each step of a refresh (the ``_mta-sts`` TXT
lookup, the policy fetch, a failure with its backoff) and when a state is due for a
check.  Everything is pure: the caller does the lookups and fetches and passes ``now``
(seconds since the epoch) and the settings that matter; nothing here reads the clock.
"""

from __future__ import annotations

from datetime import UTC, datetime

import attrs

from .mtasts import CachedMtaStsPolicy, FetchOutcome, policy_in_force

__all__ = [
    "StsState",
    "after_failure",
    "after_fetch",
    "aware",
    "expiry",
    "in_force",
    "needs_check",
    "not_fetched",
    "unchanged",
    "without_record",
]


@attrs.frozen(slots=True)
class StsState:
    """The MTA-STS cache state of one policy domain.

    ``cached`` is the policy held (it applies while unexpired); ``outcome`` is
    the latest fetch's result (its TLS-RPT type via ``outcome.tlsrpt_result_type``);
    ``state`` is ``"policy"``, ``"none"`` (no policy published), ``"failed"``
    (no policy held, latest attempt failed), ``"pending"`` (first fetch still
    running), ``"unreadable"`` (the cache could not be read and no fetch has
    finished) or ``"unknown"``.
    """

    domain: str
    state: str
    cached: CachedMtaStsPolicy | None
    outcome: FetchOutcome
    detail: str
    txt_id: str | None
    next_check: float
    failures: int
    retry_at: float | None


def aware(seconds: float) -> datetime:
    """``seconds`` since the epoch as a timezone-aware UTC ``datetime``."""
    return datetime.fromtimestamp(seconds, UTC)


def needs_check(state: StsState, now: float) -> bool:
    """Whether ``state`` is due for a check (TXT lookup, maybe a fetch) at ``now``."""
    return now >= state.next_check


def due_within(next_check: float, retry_at: float | None, now: float, ahead: float) -> bool:
    """Whether a state checked next at ``next_check`` (a failure's retry at ``retry_at``)
    is due within ``ahead`` seconds of ``now``, for a refresh ahead of time.  A failure's
    retry is not brought forward: the backoff is what keeps an outage at one check per
    domain per wait (SEMANTICS 10, failed domains back off), where refreshing ahead would
    retry a minute early every time."""
    early = 0.0 if retry_at is not None and next_check >= retry_at else ahead
    return now + early >= next_check


def in_force(old: StsState | None, now: float) -> bool:
    """Whether ``old`` holds a policy that is unexpired at ``now``."""
    cached = old.cached if old is not None else None
    return policy_in_force(cached, aware(now)) is not None


def expiry(state: StsState) -> float:
    """When a stored ``state`` may go: once nothing in it is still valid."""
    ends = [state.next_check]
    if state.cached is not None:
        ends.append(state.cached.expires_at.timestamp())
    if state.retry_at is not None:
        ends.append(state.retry_at)
    return max(ends)


def after_failure(domain: str, old: StsState | None, outcome: FetchOutcome, detail: str,
                  txt_id: str | None, now: float, *, initial: float,
                  maximum: float) -> StsState:
    """The state after a failed lookup or fetch: the next attempt waits ``initial``
    seconds doubling per failure up to ``maximum``; an unexpired policy is kept
    (``state`` ``"policy"``), else the state is ``"failed"``."""
    failures = (old.failures if old is not None else 0) + 1
    wait = min(initial * 2 ** min(failures - 1, 30), maximum)
    cached = old.cached if old is not None else None
    kept = in_force(old, now)
    until = now + wait  # one float for both fields: one object less per state held
    return StsState(domain, "policy" if kept else "failed", cached, outcome, detail,
                    txt_id if txt_id is not None else (old.txt_id if old else None),
                    until, failures, until)


def without_record(domain: str, old: StsState | None, why: str, now: float,
                   until: float) -> StsState:
    """The state when no single ``v=STSv1`` TXT record is published (``why``): a held
    unexpired policy is never evicted by a missing record (RFC 8461 3.3), else there is
    no policy until ``until``."""
    if old is not None and in_force(old, now):
        return attrs.evolve(old, state="policy", next_check=until,
                            detail=f"TXT record gone ({why}); cached policy kept")
    return StsState(domain, "none", None, FetchOutcome.OK, f"no policy: {why}", None,
                    until, 0, None)


def unchanged(old: StsState | None, record_id: str, now: float, txt_until: float, *,
              refresh_interval: float, force: bool) -> StsState | None:
    """The state when no fetch is needed after the TXT lookup, else ``None``.

    An unexpired policy with the record's id is kept until its refresh is due (the
    sooner of ``refresh_interval`` and half its ``max_age`` after it was fetched); a
    failed domain waits out its backoff.  ``force`` always fetches.
    """
    if force or old is None:
        return None
    cached = old.cached
    if in_force(old, now) and cached is not None and cached.policy_id == record_id:
        refresh_at = cached.fetched_at.timestamp() + min(
            refresh_interval, cached.policy.max_age / 2)
        if now < refresh_at:
            return attrs.evolve(old, next_check=min(txt_until, refresh_at), txt_id=record_id)
    if old.retry_at is not None and now < old.retry_at:
        return attrs.evolve(old, next_check=old.retry_at)
    return None


def after_fetch(domain: str, fetched: CachedMtaStsPolicy, detail: str, now: float,
                txt_until: float, *, refresh_interval: float) -> StsState:
    """The state after a policy was fetched: checked again when the TXT record's TTL
    runs out or the refresh is due, whichever comes first."""
    refresh_at = now + min(refresh_interval, fetched.policy.max_age / 2)
    return StsState(domain, "policy", fetched, FetchOutcome.OK, detail,
                    fetched.policy_id, min(txt_until, refresh_at), 0, None)


def not_fetched(domain: str, now: float, *, unreadable: bool, timeout: float) -> StsState:
    """The state answered while a domain's first fetch is still running after
    ``timeout`` seconds: ``"unreadable"`` when the cache could not be read either."""
    if unreadable:
        # Nothing known: the cache could not be read and no fetch has finished.
        return StsState(domain, "unreadable", None, FetchOutcome.OK,
                        "the cache could not be read and the fetch is still running",
                        None, now, 0, None)
    return StsState(domain, "pending", None, FetchOutcome.OK,
                    f"first fetch still running after {timeout:g} s", None, now, 0, None)
