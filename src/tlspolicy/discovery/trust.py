"""The resolver's DNSSEC trust, as :class:`~tlspolicy.discovery.Discovery` keeps it: one
probe for the AD bit, the state it sets (what changes with it is dropped), and the
watch that probes again (SEMANTICS 10: one failed probe never turns DANE off for good).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from .dns import DnsClient, DnsStatus
from .models import DiscoveryConfig, DiscoveryObserver

__all__ = ["OUTCOME_LOGGER", "ResolverTrust"]

_log = logging.getLogger("tlspolicy.discovery")
#: The logger of lines that restate a lookup's result (the resolver's trust, a failed
#: MTA-STS fetch): a caller that shows those results itself can leave it out.
OUTCOME_LOGGER: Final = "tlspolicy.discovery.outcome"
_outcome_log = logging.getLogger(OUTCOME_LOGGER)


class ResolverTrust:
    """Whether the resolver's DNSSEC answers are trusted (:attr:`dnssec`), why
    (:attr:`dnssec_detail`), and how often that changed (:attr:`trust_epoch`): the probe
    and the watch of :class:`~tlspolicy.discovery.Discovery`, which sets these up."""

    config: DiscoveryConfig
    dns: DnsClient
    observer: DiscoveryObserver
    dnssec: bool
    dnssec_detail: str
    #: Bumped whenever the resolver's trust changes (answers keyed by it go stale).
    trust_epoch: int
    _resolver_vouched: bool
    _probed: int
    _mx_memo: dict[str, Any]
    _tlsa_memo: dict[Any, Any]

    async def probe(self) -> bool:
        """Ask the resolver once whether it validates; update :attr:`dnssec` and, on a
        change, :attr:`trust_epoch` (answers derived under the old trust are dropped).
        Logged once per change; the observer is told every result."""
        config = self.config
        if not self._resolver_vouched:
            detail = (f"resolver {config.resolver} is not on loopback and not marked "
                      "trusted: DNSSEC ignored, DANE off (a server counts DANE inputs as "
                      "unknown)")
            self._set_trust(False, detail)
            return False
        self.dns.trusted = True
        answer = await self.dns.probe(config.probe_name)
        trusted = answer.status is not DnsStatus.FAILED and answer.secure
        if trusted:
            detail = f"resolver {config.resolver}:{config.resolver_port} validates"
        else:
            self.dns.trusted = False
            detail = (f"resolver {config.resolver}:{config.resolver_port} did not set AD for "
                      f"{config.probe_name!r} ({answer.detail or answer.status.value}): "
                      "DNSSEC ignored, DANE off until it validates (a server counts DANE "
                      "inputs as unknown meanwhile)")
        self._set_trust(trusted, detail)
        return trusted

    def _set_trust(self, trusted: bool, detail: str) -> None:
        changed = trusted != self.dnssec or self._probed == 0
        self.dnssec = trusted
        self.dns.trusted = trusted
        self.dnssec_detail = detail
        self._probed += 1
        self.observer.resolver_trust(trusted)
        if not changed:
            return
        if self._probed > 1:
            # Everything derived from answers judged under the old trust goes.
            self.dns.forget()
            self._mx_memo.clear()
            self._tlsa_memo.clear()
        self.trust_epoch += 1
        if trusted:
            _outcome_log.info("DNSSEC: %s", detail)
        else:
            _outcome_log.error("DNSSEC: %s", detail)

    async def watch_trust(self) -> None:
        """Probe the resolver forever: while it is not trusted, after a backoff that
        doubles from ``probe_backoff_initial`` up to ``probe_backoff_max`` seconds; while
        it is, every ``probe_interval`` seconds, so that a resolver that stops validating
        is noticed.  Never raises for what the resolver does."""
        config = self.config
        wait = config.probe_backoff_initial
        while True:
            if self.dnssec:
                await asyncio.sleep(config.probe_interval)
                wait = config.probe_backoff_initial
            else:
                await asyncio.sleep(wait)
                wait = min(wait * 2, config.probe_backoff_max)
            try:
                await self.probe()
            except Exception:  # a probe must never end the watch
                _log.exception("DNSSEC probe failed unexpectedly")
