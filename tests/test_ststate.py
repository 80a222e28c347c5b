"""The MTA-STS refresh state's transitions, pure: no DNS, no HTTPS, no clock."""

from __future__ import annotations

from datetime import UTC, datetime

from tlspolicy.policies import ststate
from tlspolicy.policies.mtasts import CachedMtaStsPolicy, FetchOutcome, parse_policy
from tlspolicy.policies.ststate import StsState

NOW = 1_800_000_000.0
POLICY = parse_policy(b"version: STSv1\nmode: enforce\nmx: *.example.net\nmax_age: 86400\n")


def held(fetched_at: float, *, policy_id: str = "id1", retry_at: float | None = None,
         failures: int = 0) -> StsState:
    cached = CachedMtaStsPolicy(POLICY, datetime.fromtimestamp(fetched_at, UTC), policy_id)
    return StsState("example.net", "policy", cached, FetchOutcome.OK, "", policy_id,
                    fetched_at + 3600, failures, retry_at)


def test_failures_double_the_wait_up_to_the_maximum_and_keep_a_policy_in_force() -> None:
    state = None
    waits = []
    for _ in range(6):
        state = ststate.after_failure("example.net", state, FetchOutcome.FETCH_ERROR, "down",
                                      None, NOW, initial=60.0, maximum=600.0)
        assert state.retry_at is not None
        waits.append(state.retry_at - NOW)
    assert waits == [60.0, 120.0, 240.0, 480.0, 600.0, 600.0]
    assert state is not None and state.state == "failed" and state.failures == 6
    kept = ststate.after_failure("example.net", held(NOW - 10), FetchOutcome.FETCH_ERROR,
                                 "down", None, NOW, initial=60.0, maximum=600.0)
    assert kept.state == "policy" and kept.cached is not None and kept.txt_id == "id1"


def test_a_missing_record_never_evicts_a_policy_in_force() -> None:
    kept = ststate.without_record("example.net", held(NOW - 10), "0 records", NOW, NOW + 300)
    assert kept.state == "policy" and kept.cached is not None and kept.next_check == NOW + 300
    gone = ststate.without_record("example.net", held(NOW - 10 * 86400), "0 records", NOW,
                                  NOW + 300)
    assert gone.state == "none" and gone.cached is None


def test_an_unchanged_id_waits_for_the_refresh_and_force_always_fetches() -> None:
    old = held(NOW - 10)
    same = ststate.unchanged(old, "id1", NOW, NOW + 300, refresh_interval=3600.0, force=False)
    assert same is not None and same.next_check == NOW + 300
    assert ststate.unchanged(old, "id2", NOW, NOW + 300, refresh_interval=3600.0,
                             force=False) is None
    assert ststate.unchanged(old, "id1", NOW, NOW + 300, refresh_interval=3600.0,
                             force=True) is None
    backing_off = held(NOW - 10 * 86400, retry_at=NOW + 50, failures=2)
    waits = ststate.unchanged(backing_off, "id2", NOW, NOW + 300, refresh_interval=3600.0,
                              force=False)
    assert waits is not None and waits.next_check == NOW + 50


def test_a_fetch_is_checked_again_at_the_sooner_of_ttl_and_refresh() -> None:
    fetched = CachedMtaStsPolicy(POLICY, datetime.fromtimestamp(NOW, UTC), "id1")
    state = ststate.after_fetch("example.net", fetched, "ok", NOW, NOW + 300,
                                refresh_interval=3600.0)
    assert state.state == "policy" and state.next_check == NOW + 300 and state.failures == 0
    assert ststate.needs_check(state, NOW + 300) and not ststate.needs_check(state, NOW)
    assert ststate.expiry(state) == fetched.expires_at.timestamp()


def test_a_refresh_ahead_never_brings_a_failures_retry_forward() -> None:
    # A check due in 30 s is due within a minute ahead; one in 90 s is not.
    assert ststate.due_within(NOW + 30, None, NOW, 60)
    assert not ststate.due_within(NOW + 90, None, NOW, 60)
    # A failure's retry (the next check is the retry) is due only once it is reached.
    assert not ststate.due_within(NOW + 30, NOW + 30, NOW, 60)
    assert ststate.due_within(NOW + 30, NOW + 30, NOW + 30, 60)
    # A next check sooner than the retry is not the retry: it is brought forward.
    assert ststate.due_within(NOW + 30, NOW + 100, NOW, 60)
    assert ststate.due_within(NOW, None, NOW, 0) and not ststate.due_within(NOW + 1, None, NOW, 0)
