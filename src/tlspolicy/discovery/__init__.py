"""Discovery: fetch and cache MTA-STS, DANE and TLS-RPT records (SEMANTICS section 10).

An asyncio I/O layer beside the pure core: DNS through dnspython against the
operator's validating resolver, MTA-STS policies over HTTPS through httpx, a
:mod:`tlspolicy.stores` store for the cache.  What it produces is the core's
:class:`~tlspolicy.Destination`, so::

    async with Discovery(DiscoveryConfig(resolver="127.0.0.1")) as d:
        decision = resolver.resolve(domain, mx_host=mx,
                                    destination=await d.destination(domain, mx))

Needs the ``tlspolicy[discovery]`` extra (and ``tlspolicy[redis]`` for a
shared Redis store).
"""

from __future__ import annotations

from .core import POLICY_NAMESPACE, Discovery, mirror_enforce_policies, redis_cache
from .dns import DnsAnswer, DnsClient, DnsStatus
from .https import MAX_POLICY_BYTES, PolicyFetch, fetch_policy
from .models import (
    DiscoveryConfig,
    DiscoveryError,
    DiscoveryObserver,
    MxLookup,
    StsState,
    TlsRptRecord,
)
from .summary import describe, describe_cache

__all__ = [
    "MAX_POLICY_BYTES",
    "POLICY_NAMESPACE",
    "Discovery",
    "DiscoveryConfig",
    "DiscoveryError",
    "DiscoveryObserver",
    "DnsAnswer",
    "DnsClient",
    "DnsStatus",
    "MxLookup",
    "PolicyFetch",
    "StsState",
    "TlsRptRecord",
    "describe",
    "describe_cache",
    "fetch_policy",
    "mirror_enforce_policies",
    "redis_cache",
]
