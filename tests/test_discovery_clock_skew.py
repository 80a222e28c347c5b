"""A stored MTA-STS state written while the host's clock was wrong (a bad RTC, NTP not yet
synced): read back, its times never lie further ahead than the configuration could have
scheduled them, so a domain is checked again within the longest interval, never years
later; a policy "fetched in the future" counts as fetched now, so it lives at most
``max_age`` from now (as ``import-cache`` treats such a fetch time)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from test_discovery import Clock, _settle
from tlspolicy.discovery import Discovery, DiscoveryConfig
from tlspolicy.discovery.memory import Sharing
from tlspolicy.discovery.stscache import (
    POLICY_NAMESPACE,
    ScheduleLimits,
    StateDecoder,
    encode_state,
    stored_schedule,
)
from tlspolicy.policies import ststate
from tlspolicy.policies.mtasts import CachedMtaStsPolicy, FetchOutcome, parse_policy
from tlspolicy.policies.ststate import StsState, aware
from tlspolicy.stores import SqliteStore, dumps_json

pytestmark = pytest.mark.timeout(60)

YEARS_AHEAD = 5 * 365 * 86400
CONFIG = DiscoveryConfig(resolver="127.0.0.1", resolver_port=9, resolv_conf=None,
                         dns_timeout=0.2, https_port=9)
POLICY = "version: STSv1\nmode: enforce\nmx: mx.skew.example\nmax_age: 604800\n"


async def _write_ahead(path: Path, state: StsState, skewed: float) -> None:
    store = SqliteStore(path, clock=lambda: skewed)
    await store.set(POLICY_NAMESPACE, state.domain, dumps_json(encode_state(state)),
                    expires_at=ststate.expiry(state))
    await store.close()


def _states(skewed: float) -> dict[str, StsState]:
    """What discovery writes at ``skewed`` (the clock five years fast): no record, a
    fetched policy, a failure."""
    fetched = CachedMtaStsPolicy(parse_policy(POLICY), aware(skewed), "id1")
    return {
        "none": ststate.without_record("none.example", None, "NXDOMAIN", skewed,
                                       skewed + CONFIG.no_policy_ttl),
        "policy": ststate.after_fetch("policy.example", fetched, "fetched", skewed,
                                      skewed + 3600, refresh_interval=CONFIG.refresh_interval),
        "failed": ststate.after_failure("failed.example", None, FetchOutcome.FETCH_ERROR,
                                        "timeout", None, skewed,
                                        initial=CONFIG.backoff_initial,
                                        maximum=CONFIG.backoff_max),
    }


@pytest.mark.parametrize("kind", ["none", "policy", "failed"])
def test_a_state_scheduled_by_a_clock_years_fast_is_due_within_the_longest_interval(
        tmp_path: Path, kind: str) -> None:
    clock = Clock()
    state = _states(clock.now + YEARS_AHEAD)[kind]
    longest = max(CONFIG.refresh_interval, CONFIG.max_dns_ttl, CONFIG.no_policy_ttl,
                  CONFIG.backoff_max, CONFIG.backoff_initial)

    async def main() -> tuple[bool, StsState]:
        # Not held: the stored schedule, read at once (the file already open).
        await _write_ahead(tmp_path / "a.sqlite3", state, clock.now + YEARS_AHEAD)
        store = SqliteStore(tmp_path / "a.sqlite3", clock=clock)
        d = Discovery(CONFIG, store=store, clock=clock)
        try:
            assert await store.get(POLICY_NAMESPACE, "other.example") is None
            before = d.refresh_if_due(state.domain, ahead=longest)
        finally:
            await d.close()
            await store.close()
        # Read (and checked, when that makes it due now).
        await _write_ahead(tmp_path / "b.sqlite3", state, clock.now + YEARS_AHEAD)
        store = SqliteStore(tmp_path / "b.sqlite3", clock=clock)
        d = Discovery(CONFIG, store=store, clock=clock)
        try:
            read = await d.sts_state(state.domain)
        finally:
            await d.close()
            await store.close()
        return before, read

    before, read = asyncio.run(main())
    assert before
    assert read.next_check <= clock.now + longest
    assert read.retry_at is None or read.retry_at <= clock.now + longest
    if read.cached is not None:
        # Fetched "in the future": counted as fetched now, so it lives max_age from now.
        assert read.cached.fetched_at <= aware(clock.now)
        assert read.cached.expires_at <= aware(clock.now) + timedelta(seconds=604800)


@pytest.mark.parametrize("kind", ["none", "policy", "failed"])
def test_a_state_scheduled_by_a_clock_years_fast_is_checked_and_stored_right_again(
        tmp_path: Path, kind: str) -> None:
    # Read after the clock was corrected, the state is checked (here the check fails: no
    # resolver answers) and written back with times the configuration schedules, so the
    # store converges, rather than the state being pushed ahead again at every read.
    clock = Clock()
    state = _states(clock.now + YEARS_AHEAD)[kind]
    longest = max(CONFIG.refresh_interval, CONFIG.max_dns_ttl, CONFIG.no_policy_ttl,
                  CONFIG.backoff_max, CONFIG.backoff_initial)

    async def main() -> tuple[float, float | None] | None:
        path = tmp_path / "cache.sqlite3"
        await _write_ahead(path, state, clock.now + YEARS_AHEAD)
        store = SqliteStore(path, clock=clock)
        d = Discovery(CONFIG, store=store, clock=clock)
        try:
            await d.sts_state(state.domain)
            await _settle(d)
            entry = await store.get(POLICY_NAMESPACE, state.domain)
        finally:
            await d.close()
            await store.close()
        assert entry is not None
        return stored_schedule(entry.value)  # as stored, not as read

    stored = asyncio.run(main())
    assert stored is not None
    next_check, retry_at = stored
    assert next_check <= clock.now + longest
    assert retry_at is None or retry_at <= clock.now + longest


_TIMES = st.floats(min_value=0, max_value=2**34, allow_nan=False)
_LIMITS = st.builds(ScheduleLimits, st.floats(1, 10**6), st.floats(1, 10**6),
                    st.floats(1, 10**7))


@st.composite
def _stored(draw: st.DrawFn) -> StsState:
    kind = draw(st.sampled_from(["policy", "none", "failed", "pending", "unreadable",
                                 "unknown"]))
    cached = None
    if draw(st.booleans()):
        max_age = draw(st.integers(0, 31557600))
        cached = CachedMtaStsPolicy(
            parse_policy(f"version: STSv1\nmode: enforce\nmx: mx.example\n"
                         f"max_age: {max_age}\n"), aware(draw(_TIMES)), "id1")
    retry = draw(st.none() | _TIMES)
    return StsState("p.example", kind, cached, FetchOutcome.OK, "d", None, draw(_TIMES),
                    draw(st.integers(0, 40)), retry)


@given(state=_stored(), now=st.floats(min_value=10**9, max_value=4 * 10**9),
       limits=_LIMITS)
def test_a_state_read_back_is_never_scheduled_beyond_the_limits(
        state: StsState, now: float, limits: ScheduleLimits) -> None:
    data = dumps_json(encode_state(state))
    read = StateDecoder(Sharing(), lambda: now, limits)("p.example", data)
    latest = now + limits.ahead(state.state)
    assert read.next_check <= latest
    assert read.retry_at is None or read.retry_at <= latest
    assert (read.retry_at is None) == (state.retry_at is None)
    schedule = stored_schedule(data, now, limits)
    assert schedule == (read.next_check, read.retry_at)
    if read.cached is not None:
        assert state.cached is not None
        assert read.cached.fetched_at <= aware(now)
        assert read.cached.policy == state.cached.policy
    # A state within its schedule is read as it was written (a fetch time in the past).
    if state.next_check <= latest and (state.retry_at is None or state.retry_at <= latest) \
            and (state.cached is None or state.cached.fetched_at <= aware(now)):
        assert read == state
    else:
        assert read.next_check <= max(now, state.next_check)
