"""What discovery is configured with and what it gives: settings, MX and TLS-RPT lookups,
the MTA-STS state of one policy domain, the observer interface and the errors."""

from __future__ import annotations

import math
from typing import Any, Final

import attrs

from .. import (
    FetchOutcome,
)
from ..errors import TlsPolicyError
from ..formats.discovery_table import DEFAULT_CACHE_PATH
from ..policies.ststate import StsState
from .backoff import DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_MAX
from .memory import DEFAULT_MEMORY_CACHE_SIZE

__all__ = [
    "MAX_STATES_IN_MEMORY",
    "DiscoveryConfig",
    "DiscoveryError",
    "DiscoveryObserver",
    "MxLookup",
    "StsState",
    "TlsRptRecord",
]

#: The largest ``memory_cache_size`` accepted.
_MEMORY_CACHE_CEILING: Final = 1_000_000
#: MTA-STS states held in memory at most, whatever ``memory_cache_size`` says (the
#: store keeps every one, so an evicted domain is read back from it).
MAX_STATES_IN_MEMORY: Final = _MEMORY_CACHE_CEILING


class DiscoveryError(TlsPolicyError):
    """Discovery cannot be set up as configured (bad resolver address, no store)."""


class DiscoveryObserver:
    """What discovery reports as it works, for metrics; every method does nothing here.

    Subclass it and pass an instance as ``Discovery(observer=...)``.  The calls
    are made on the event loop and must return at once (count, never block).
    """

    def cache_lookup(self, result: str) -> None:
        """An MTA-STS state was asked for: ``"hit"`` (fresh state held), ``"stale"``
        (a held policy served while a refresh runs) or ``"miss"`` (nothing usable held)."""

    def policy_fetch(self, outcome: FetchOutcome, seconds: float | None) -> None:
        """An MTA-STS policy fetch ended with ``outcome``; ``seconds`` is the HTTPS
        request's duration, ``None`` when no request was made (TXT lookup failed,
        no address for the policy host)."""

    def single_flight_wait(self, scope: str) -> None:
        """A lookup waited for a fetch someone else started: ``"process"`` (another
        task of this process) or ``"store"`` (another process holding the store's lock)."""

    def resolver_trust(self, trusted: bool) -> None:
        """The resolver was probed: ``trusted`` is whether it validates (DNSSEC)."""

    def dns_lookup_suppressed(self) -> None:
        """A DNS lookup was not sent: the same (name, type) failed moments ago and is in
        its backoff, so that failure is the answer."""


_NO_OBSERVER: Final = DiscoveryObserver()


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 or (
            math.isinf(value) or math.isnan(value)):
        raise DiscoveryError(f"discovery option {attribute.name} must be a positive number, "
                             f"not {value!r}")


def _port(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    # Ports and the DNS TTL cap: whole numbers from 1 to 65535.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise DiscoveryError(f"discovery option {attribute.name} must be a port, not {value!r}")


def _not_below_initial(instance: Any, attribute: attrs.Attribute[float],
                       value: float) -> None:
    if value < instance.dns_backoff_initial:
        raise DiscoveryError(f"discovery option dns_backoff_max ({value!r}) must not be "
                             f"below dns_backoff_initial ({instance.dns_backoff_initial!r})")


def _cache_size(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not (
            0 < value <= _MEMORY_CACHE_CEILING):
        raise DiscoveryError(f"discovery option {attribute.name} must be a whole number from 1 "
                             f"to {_MEMORY_CACHE_CEILING:,}, not {value!r}")


@attrs.frozen(slots=True)
class DiscoveryConfig:
    """How discovery queries and caches.  Every time is in seconds.

    - ``resolver`` / ``resolver_port``: the validating resolver (loopback, or
      ``resolver_trusted`` for one the operator vouches for); DNSSEC status is its
      AD bit, checked at :meth:`Discovery.start` on ``probe_name``.
    - ``https_port`` and ``ca_file``: 443 and the system store in production;
      tests point them at a loopback server and its CA.
    - ``first_wait``: how long a lookup on a cold cache waits for the policy
      before answering as if there were none (the fetch carries on).
    - ``no_policy_ttl``: how long "no policy" is remembered (never longer than
      the DNS answer that said so).
    - ``refresh_interval``: proactive refresh period; a policy is also
      refreshed once half its ``max_age`` has passed, so refreshes start well
      before expiry.
    - ``backoff_initial`` / ``backoff_max``: waits after consecutive failed
      fetches of one domain (doubling).
    - ``lock_ttl``: the single-flight lock's expiry (a dead holder blocks
      others no longer than this).
    - ``probe_backoff_initial`` / ``probe_backoff_max``: waits between probes of a
      resolver that does not validate (doubling, at most a minute by default);
      ``probe_interval``: between probes of one that does.
    - ``dns_backoff_initial`` / ``dns_backoff_max``: how long a failed DNS lookup
      (SERVFAIL, timeout, malformed answer) of one (name, type) is not sent again
      (doubling while it keeps failing); meanwhile the failure is the answer.
    - ``memory_cache_size``: MTA-STS states held in memory (least recently used
      evicted first); the store keeps every state and an evicted one is read back
      from it.
    """

    resolver: str = "127.0.0.1"
    resolver_port: int = attrs.field(default=53, validator=_port)
    resolver_trusted: bool = False
    probe_name: str = "."
    dns_timeout: float = attrs.field(default=3.0, validator=_positive)
    max_dns_ttl: int = attrs.field(default=3600, validator=_port)
    https_port: int = attrs.field(default=443, validator=_port)
    ca_file: str | None = None
    https_timeout: float = attrs.field(default=10.0, validator=_positive)
    first_wait: float = attrs.field(default=5.0, validator=_positive)
    no_policy_ttl: float = attrs.field(default=300.0, validator=_positive)
    refresh_interval: float = attrs.field(default=86400.0, validator=_positive)
    backoff_initial: float = attrs.field(default=60.0, validator=_positive)
    backoff_max: float = attrs.field(default=3600.0, validator=_positive)
    lock_ttl: float = attrs.field(default=30.0, validator=_positive)
    probe_backoff_initial: float = attrs.field(default=1.0, validator=_positive)
    probe_backoff_max: float = attrs.field(default=60.0, validator=_positive)
    probe_interval: float = attrs.field(default=60.0, validator=_positive)
    dns_backoff_initial: float = attrs.field(default=DEFAULT_BACKOFF_INITIAL,
                                             validator=_positive)
    dns_backoff_max: float = attrs.field(default=DEFAULT_BACKOFF_MAX,
                                         validator=[_positive, _not_below_initial])
    memory_cache_size: int = attrs.field(default=DEFAULT_MEMORY_CACHE_SIZE,
                                         validator=_cache_size)
    cache_path: str = DEFAULT_CACHE_PATH
    resolv_conf: str | None = "/etc/resolv.conf"


@attrs.frozen(slots=True)
class MxLookup:
    """The MX hosts of a domain, best preference first, and whether the RRset is secure.

    ``kind``: ``"mx"`` (records), ``"implicit"`` (NODATA: the domain itself),
    ``"null"`` (RFC 7505: no mail), ``"nxdomain"`` (configuration only),
    ``"failed"`` (lookup failed), ``"smarthost"`` (a ``[host]:port`` next hop).
    """

    kind: str
    hosts: tuple[str, ...]
    secure: bool
    detail: str = ""


@attrs.frozen(slots=True)
class TlsRptRecord:
    """The domain's ``_smtp._tls`` record (exactly one ``v=TLSRPTv1``), or why none;
    ``failed`` when the lookup itself failed (worth retrying), not when it found none."""

    record: str | None
    rua: tuple[str, ...]
    detail: str = ""
    failed: bool = False
