"""What discovery gives: MX and TLS-RPT lookups, the MTA-STS state of one policy domain and
the observer interface; its settings and error (:mod:`tlspolicy.formats.settings`) are
re-exported."""

from __future__ import annotations

from typing import Final

import attrs

# The settings are read with the [discovery] table, below this layer; kept importable
# from here.
from ..formats.settings import MAX_STATES_IN_MEMORY, DiscoveryConfig, DiscoveryError
from ..policies.mtasts import FetchOutcome
from ..policies.ststate import StsState

__all__ = [
    "MAX_STATES_IN_MEMORY",
    "DiscoveryConfig",
    "DiscoveryError",
    "DiscoveryObserver",
    "MxLookup",
    "StsState",
    "TlsRptRecord",
]


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
