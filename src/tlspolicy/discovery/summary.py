"""JSON-able summaries of what discovery found, for a command line or a log."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..policies.dane import TlsaLookup
from ..policies.destination import Destination
from .core import Discovery
from .models import MxLookup, StsState

__all__ = ["describe", "describe_cache", "describe_state"]


def _time(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def describe_state(state: StsState | None, now: float) -> dict[str, Any] | None:
    """One MTA-STS cache state as plain data (times in ISO 8601 UTC)."""
    if state is None:
        return None
    cached = state.cached
    policy = None
    if cached is not None:
        policy = {
            "mode": cached.policy.mode.value,
            "mx": list(cached.policy.mx),
            "max_age": cached.policy.max_age,
            "id": cached.policy_id,
            "fetched_at": cached.fetched_at.isoformat(timespec="seconds"),
            "expires_at": cached.expires_at.isoformat(timespec="seconds"),
            "expired": cached.expires_at.timestamp() <= now,
            "text": cached.policy.render(),
        }
    return {
        "domain": state.domain,
        "state": state.state,
        "policy": policy,
        "latest_fetch": state.outcome.value,
        "tlsrpt_result_type": state.outcome.tlsrpt_result_type,
        "detail": state.detail,
        "txt_id": state.txt_id,
        "next_check": _time(state.next_check),
        "failures": state.failures,
        "retry_at": _time(state.retry_at),
    }


def _mx(lookup: MxLookup) -> dict[str, Any]:
    return {"kind": lookup.kind, "hosts": list(lookup.hosts), "dnssec": lookup.secure,
            "detail": lookup.detail}


def _tlsa(lookup: TlsaLookup | None) -> dict[str, Any] | None:
    if lookup is None:
        return None
    return {
        "status": lookup.status.value,
        "applicability": lookup.classify().value,
        "base_domain": lookup.base_domain,
        "records": [record.to_text() for record in lookup.records],
        "detail": lookup.detail,
    }


def _destination(destination: Destination) -> dict[str, Any]:
    return {
        "mta_sts_mode": None if destination.mta_sts is None else destination.mta_sts.mode.value,
        "mta_sts_fetch": destination.mta_sts_fetch.value,
        "mx_dnssec": destination.mx_dnssec,
        "tlsa": _tlsa(destination.tlsa),
    }


async def describe(discovery: Discovery, domain: str, mx_host: str | None = None, *,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Everything discovery finds for ``domain``: resolver trust, MX hosts, per host the
    TLSA lookup and the resulting :class:`~tlspolicy.Destination`, the MTA-STS cache
    state and the TLS-RPT record.  Plain data (``json.dumps`` works on it).

    Per host, ``"destination"`` is the object to hand to ``Resolver.resolve``
    (under the key ``"_destinations"``, omitted by JSON callers).  ``progress`` is
    told each step before it starts (a line of text, e.g. for standard error).
    """
    say = progress if progress is not None else (lambda _line: None)
    now = discovery._clock()
    policy_domain, _, smart = discovery._next_hop(domain)
    if not smart:
        say(f"looking up the MX hosts of {policy_domain}")
    mx = (MxLookup("smarthost", (policy_domain,), False) if smart
          else await discovery.mx(policy_domain))
    hosts = [mx_host] if mx_host is not None else list(mx.hosts[:10])
    destinations: dict[str, Destination] = {}
    for number, host in enumerate(hosts, start=1):
        say(f"looking up TLSA and the MTA-STS policy for {host} ({number} of {len(hosts)})")
        destinations[host] = await discovery.destination(domain, host)
    state = await discovery.cache_entry(policy_domain)
    if state is None:
        say(f"fetching the MTA-STS policy of {policy_domain}")
        state = await discovery.sts_state(policy_domain)
    say(f"looking up the TLS-RPT record of {policy_domain}")
    rpt = await discovery.tlsrpt(policy_domain)
    return {
        "domain": policy_domain,
        "next_hop": domain if smart else None,
        "resolver": {"address": discovery.config.resolver, "port": discovery.config.resolver_port,
                     "dnssec": discovery.dnssec, "detail": discovery.dnssec_detail},
        "mx": _mx(mx),
        "hosts": {host: _destination(d) for host, d in destinations.items()},
        "mta_sts": describe_state(state, now),
        "tlsrpt": {"record": rpt.record, "rua": list(rpt.rua), "detail": rpt.detail},
        "_destinations": destinations,
    }


async def describe_cache(discovery: Discovery, domain: str | None = None) -> list[dict[str, Any]]:
    """The stored MTA-STS states (one domain, or all) as plain data, for ``cache show``."""
    now = discovery._clock()
    if domain is not None:
        state = await discovery.cache_entry(domain)
        described = describe_state(state, now)
        return [] if described is None else [described]
    return [d for s in await discovery.cache_entries()
            if (d := describe_state(s, now)) is not None]
