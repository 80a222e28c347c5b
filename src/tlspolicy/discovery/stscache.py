"""The MTA-STS cache's entries in a store: one JSON record per policy domain under
:data:`POLICY_NAMESPACE`, written and read back, and which of them a fleet's
store mirrors locally."""

from __future__ import annotations

from typing import Any, Final

from .._serialise import loads_json, stored_count, stored_time
from ..errors import PolicyInputError, StoreError
from ..policies.mtasts import CachedMtaStsPolicy, FetchOutcome, StsMode, parse_policy
from ..policies.ststate import StsState, aware
from .memory import Sharing

__all__ = ["DECODED_KEPT", "POLICY_NAMESPACE", "StateDecoder", "decode_state", "encode_state",
           "mirror_enforce_policies", "stored_schedule"]

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


def stored_schedule(data: bytes) -> tuple[float, float | None] | None:
    """The next check and the failure's retry (or ``None``) of a stored state, read
    without decoding the rest (its policy above all); ``None`` when they cannot be read:
    the entry is then for a refresh to read, and report."""
    try:
        value = loads_json(data)
        if not isinstance(value, dict) or value.get("v") != _RECORD_VERSION:
            return None
        retry = value["retry_at"]
        return stored_time(value["next_check"]), None if retry is None else stored_time(retry)
    except Exception:  # whatever is wrong with it (even an overflow), a refresh reports it
        return None


class StateDecoder:
    """:func:`decode_state` with ``share``, keeping the latest states decoded (up to
    :data:`DECODED_KEPT`) each for one more read of the same bytes: the refresh that a
    read starts reads the entry back under its lock, and need not decode it again."""

    __slots__ = ("_last", "_share")

    def __init__(self, share: Sharing) -> None:
        self._share = share
        self._last: dict[str, tuple[bytes, StsState]] = {}

    def __call__(self, domain: str, data: bytes) -> StsState:
        """The state stored for ``domain``; :class:`~tlspolicy.errors.StoreError` when
        corrupt."""
        last = self._last.pop(domain, None)
        if last is not None and last[0] == data:
            return last[1]
        state = decode_state(domain, data, self._share)
        if len(self._last) >= DECODED_KEPT:
            self._last.clear()
        self._last[domain] = (data, state)
        return state


def mirror_enforce_policies(namespace: str, key: str, value: bytes) -> bool:
    """The ``mirror_when`` for :class:`~tlspolicy.stores.MirroredStore`: unexpired enforce
    MTA-STS policies go to the local mirror."""
    return namespace == POLICY_NAMESPACE and b'"enforce":true' in value
