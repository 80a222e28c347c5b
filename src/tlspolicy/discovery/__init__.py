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

The package re-exports what callers outside it use: the service, its settings, the
values and errors it gives, the DNS client it is given, the cache helpers.  The rest
(``TlsRptRecord``, ``DnsAnswer``, the policy fetch) is imported from its module.
"""

from __future__ import annotations

from .core import POLICY_NAMESPACE, Discovery, redis_cache
from .dns import DnsClient, DnsStatus
from .models import DiscoveryConfig, DiscoveryError, DiscoveryObserver, MxLookup, StsState
from .summary import describe, describe_cache

__all__ = [
    "POLICY_NAMESPACE",
    "Discovery",
    "DiscoveryConfig",
    "DiscoveryError",
    "DiscoveryObserver",
    "DnsClient",
    "DnsStatus",
    "MxLookup",
    "StsState",
    "describe",
    "describe_cache",
    "redis_cache",
]
