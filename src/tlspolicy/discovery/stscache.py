"""The MTA-STS cache's entries in a store: one JSON record per policy domain under
:data:`POLICY_NAMESPACE`, written and read back."""

from __future__ import annotations

from typing import Any, Final

from .._serialise import loads_json
from ..errors import PolicyInputError, StoreError
from ..policies.mtasts import CachedMtaStsPolicy, FetchOutcome, StsMode, parse_policy
from ..policies.ststate import StsState, aware
from .memory import Sharing

__all__ = ["POLICY_NAMESPACE", "decode_state", "encode_state"]

#: Store namespace of the MTA-STS cache (one entry per policy domain).
POLICY_NAMESPACE: Final = "mta-sts"
_RECORD_VERSION: Final = 1


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


def decode_state(domain: str, data: bytes, share: Sharing | None = None) -> StsState:
    """The state stored for ``domain``; with ``share``, its policy and strings are those
    of equal states already held (see :class:`~tlspolicy.discovery.memory.Sharing`)."""
    value = loads_json(data)
    try:
        if not isinstance(value, dict) or value.get("v") != _RECORD_VERSION:
            raise ValueError("unknown record version")
        cached = None
        state, detail = str(value["state"]), str(value["detail"])
        policy_id, txt_id = value["policy_id"], value["txt_id"]
        if share is not None:
            state, detail = share.text(state), share.text(detail)
            policy_id = share.optional(policy_id)
            txt_id = policy_id if txt_id == policy_id else share.optional(txt_id)
        if value["policy"] is not None:
            policy = parse_policy(value["policy"])
            if share is not None:
                policy = share.policy(policy)
            fetched_at = float(value["fetched_at"])
            cached = CachedMtaStsPolicy(
                policy, aware(fetched_at) if share is None else share.moment(fetched_at),
                policy_id)
        return StsState(domain, state, cached, FetchOutcome(value["outcome"]), detail, txt_id,
                        float(value["next_check"]), int(value["failures"]),
                        None if value["retry_at"] is None else float(value["retry_at"]))
    except (KeyError, TypeError, ValueError, PolicyInputError) as exc:
        raise StoreError(f"MTA-STS cache entry for {domain} is corrupt: {exc}") from None

