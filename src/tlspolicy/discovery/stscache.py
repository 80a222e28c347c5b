"""The MTA-STS cache's entries in a store: one JSON record per policy domain under
:data:`POLICY_NAMESPACE`, written and read back, and which of them a fleet's
store mirrors locally."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Callable
from typing import Any, Final, Protocol

import attrs

from .._serialise import loads_json, stored_count, stored_time
from ..errors import PolicyInputError, StoreError
from ..formats.settings import DiscoveryConfig
from ..policies.mtasts import CachedMtaStsPolicy, FetchOutcome, StsMode, parse_policy
from ..policies.ststate import StsState, aware
from .memory import Sharing

__all__ = ["DECODED_KEPT", "POLICY_NAMESPACE", "ScheduleLimits", "StateDecoder", "decode_state",
           "encode_state", "mirror_enforce_policies", "stored_schedule", "stored_states",
           "within_schedule"]

_log = logging.getLogger("tlspolicy.discovery")

#: Store namespace of the MTA-STS cache (one entry per policy domain).
POLICY_NAMESPACE: Final = "mta-sts"
_RECORD_VERSION: Final = 1
#: Decoded entries a :class:`StateDecoder` keeps for their next read.
DECODED_KEPT: Final = 1024


def encode_state(state: StsState) -> dict[str, Any]:
    """``state`` as the JSON value stored for its domain."""
    cached = state.cached
    return {
        "v": _RECORD_VERSION,
        "state": state.state,
        "policy": None if cached is None else cached.policy.render(),
        "fetched_at": None if cached is None else cached.fetched_at.timestamp(),
        "policy_id": None if cached is None else cached.policy_id,
        "enforce": cached is not None and cached.policy.mode is StsMode.ENFORCE,
        "outcome": state.outcome.value,
        "detail": state.detail[:500],
        "txt_id": state.txt_id,
        "next_check": state.next_check,
        "failures": state.failures,
        "retry_at": state.retry_at,
    }


#: Every ``StsState.state``: a stored state holds one of these.
_STATES: Final = frozenset({"policy", "none", "failed", "pending", "unreadable", "unknown"})


def _text_or_none(value: object) -> bool:
    return value is None or type(value) is str


def decode_state(domain: str, data: bytes, share: Sharing | None = None) -> StsState:
    """The state stored for ``domain``; with ``share``, its policy and strings are those
    of equal states already held (see :class:`~tlspolicy.discovery.memory.Sharing`)."""
    try:
        value = loads_json(data)
    except StoreError as exc:
        raise StoreError(f"MTA-STS cache entry for {domain} is corrupt: {exc}") from None
    try:
        if not isinstance(value, dict) or value.get("v") != _RECORD_VERSION:
            raise ValueError("unknown record version")
        cached = None
        state, detail = value["state"], value["detail"]
        policy_id, txt_id = value["policy_id"], value["txt_id"]
        # Written by this package as these types only: anything else is damage, which a
        # state would carry into answers, logs and the next write.
        if state not in _STATES or type(detail) is not str or not _text_or_none(
                policy_id) or not _text_or_none(txt_id):
            raise ValueError("a field of the wrong type or value")
        if share is not None:
            state, detail = share.text(state), share.text(detail)
            policy_id = share.optional(policy_id)
            txt_id = policy_id if txt_id == policy_id else share.optional(txt_id)
        if value["policy"] is not None:
            policy = parse_policy(value["policy"])
            if share is not None:
                policy = share.policy(policy)
            fetched_at = stored_time(value["fetched_at"])
            cached = CachedMtaStsPolicy(
                policy, aware(fetched_at) if share is None else share.moment(fetched_at),
                policy_id)
            cached.expires_at  # noqa: B018 - within a date's range, or corrupt (OverflowError)
        return StsState(domain, state, cached, FetchOutcome(value["outcome"]), detail, txt_id,
                        stored_time(value["next_check"]), stored_count(value["failures"]),
                        None if value["retry_at"] is None else stored_time(value["retry_at"]))
    except (KeyError, TypeError, ValueError, ArithmeticError, PolicyInputError) as exc:
        # ArithmeticError: a number too large for a float (OverflowError).
        raise StoreError(f"MTA-STS cache entry for {domain} is corrupt: {exc}") from None


@attrs.frozen(slots=True)
class ScheduleLimits:
    """How far ahead of now a stored state's next check and retry may lie: the longest
    wait the configuration schedules for a state of its kind.  A time further ahead was
    written by a clock that was fast (a bad RTC, NTP not yet synced), and trusted it would
    leave the domain unchecked for as long (see :func:`within_schedule`)."""

    #: "No policy": kept at most ``no_policy_ttl``.
    none: float
    #: A failure without a policy in force: its backoff's longest wait.
    failed: float
    #: Any other state (a policy's refresh, the TXT record's TTL, a kept policy's backoff
    #: or its "no record" recheck): the longest of them all.
    other: float

    @classmethod
    def of(cls, config: DiscoveryConfig) -> ScheduleLimits:
        """The limits of the waits ``config`` schedules."""
        failed = max(config.backoff_initial, config.backoff_max)
        return cls(config.no_policy_ttl, failed,
                   max(config.refresh_interval, config.max_dns_ttl, config.no_policy_ttl,
                       failed))

    def ahead(self, state: str) -> float:
        """The longest wait for a state of kind ``state``."""
        return self.none if state == "none" else self.failed if state == "failed" \
            else self.other


def _out_of_schedule(state: str, next_check: float, retry_at: float | None, now: float,
                     limits: ScheduleLimits) -> bool:
    latest = now + limits.ahead(state)
    return next_check > latest or (retry_at is not None and retry_at > latest)


def within_schedule(state: StsState, now: float, limits: ScheduleLimits) -> StsState:
    """``state`` as read back at ``now``: a fetch time in the future counts as now (so the
    policy lives at most ``max_age`` from now, as an imported one); a next check or retry
    further ahead than ``limits`` allow makes the state due now.  Due now, not at the
    limit: a limit counted from each read would move with it, and the state, never due,
    would never be checked and written again with the right times."""
    cached = state.cached
    if cached is not None and cached.fetched_at.timestamp() > now:
        moment = aware(now)  # to the microsecond: compared as the datetimes
        if cached.fetched_at > moment:
            cached = attrs.evolve(cached, fetched_at=moment)
    if _out_of_schedule(state.state, state.next_check, state.retry_at, now, limits):
        return attrs.evolve(state, cached=cached, next_check=now,
                            retry_at=None if state.retry_at is None else now)
    return state if cached is state.cached else attrs.evolve(state, cached=cached)


def stored_schedule(data: bytes, now: float | None = None,
                    limits: ScheduleLimits | None = None
                    ) -> tuple[float, float | None] | None:
    """The next check and the failure's retry (or ``None``) of a stored state, read
    without decoding the rest (its policy above all); ``None`` when they cannot be read:
    the entry is then for a refresh to read, and report.  With ``now`` and ``limits``,
    as :func:`within_schedule` reads them."""
    try:
        value = loads_json(data)
        if not isinstance(value, dict) or value.get("v") != _RECORD_VERSION:
            return None
        retry = value["retry_at"]
        next_check = stored_time(value["next_check"])
        retry_at = None if retry is None else stored_time(retry)
        if now is not None and limits is not None and _out_of_schedule(
                str(value["state"]), next_check, retry_at, now, limits):
            return now, None if retry_at is None else now
        return next_check, retry_at
    except Exception:  # whatever is wrong with it (even an overflow), a refresh reports it
        return None


class StateDecoder:
    """:func:`decode_state` with ``share``, keeping the latest states decoded (up to
    :data:`DECODED_KEPT`) each for one more read of the same bytes: the refresh that a
    read starts reads the entry back under its lock, and need not decode it again.  With
    ``clock`` and ``limits``, each state is as :func:`within_schedule` reads it."""

    __slots__ = ("_clock", "_last", "_limits", "_share")

    def __init__(self, share: Sharing, clock: Callable[[], float] | None = None,
                 limits: ScheduleLimits | None = None) -> None:
        self._share = share
        self._last: dict[str, tuple[bytes, StsState]] = {}
        self._clock = clock
        self._limits = limits

    def __call__(self, domain: str, data: bytes) -> StsState:
        """The state stored for ``domain``; :class:`~tlspolicy.errors.StoreError` when
        corrupt."""
        last = self._last.pop(domain, None)
        if last is not None and last[0] == data:
            state = last[1]
        else:
            state = decode_state(domain, data, self._share)
            if len(self._last) >= DECODED_KEPT:
                self._last.clear()
            self._last[domain] = (data, state)
        if self._clock is None or self._limits is None:
            return state
        return within_schedule(state, self._clock(), self._limits)


class _Entry(Protocol):
    """A store's entry, as far as a state is read from it."""

    @property
    def key(self) -> str: ...
    @property
    def value(self) -> bytes: ...


async def stored_states(entries: AsyncIterable[_Entry], now: float,
                        limits: ScheduleLimits) -> list[StsState]:
    """The MTA-STS states of a store's ``entries`` under :data:`POLICY_NAMESPACE`, as
    :func:`within_schedule` reads them at ``now``; an entry that cannot be decoded is
    logged and passed over."""
    states = []
    async for entry in entries:
        try:
            states.append(within_schedule(decode_state(entry.key, entry.value), now, limits))
        except StoreError as exc:
            _log.warning("%s", exc)
    return states


def mirror_enforce_policies(namespace: str, key: str, value: bytes) -> bool:
    """The ``mirror_when`` for :class:`~tlspolicy.stores.MirroredStore`: unexpired enforce
    MTA-STS policies go to the local mirror.  Only an entry that decodes to a state
    holding an enforce policy is selected: a damaged entry, or one of another record
    version, never replaces a good mirrored copy (the copy is served instead)."""
    if namespace != POLICY_NAMESPACE or b'"enforce":true' not in value:
        return False
    try:
        cached = decode_state(key, value).cached
    except StoreError:
        return False
    return cached is not None and cached.policy.mode is StsMode.ENFORCE
