"""The discovery lookup's proactive refresh: the MTA-STS policies of the domains it
answered for, checked in the background within a minute of falling due."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import TlsPolicyError

if TYPE_CHECKING:
    from ..discovery import Discovery


class _Refreshing:
    """The lookup's refresh (a part of :class:`~tlspolicy.servers.discovered.DiscoveryLookup`)."""

    discovery: Discovery
    in_use: dict[str, float]
    _clock: Callable[[], float]

    async def refresh_in_use(self, *, interval: float = 60.0, ahead: float = 0.0,
                             window: float = 7 * 86400.0, batch: int = 64) -> None:
        """Refresh, forever, every ``interval`` seconds, the MTA-STS policies of domains
        answered for within ``window`` seconds that are due for their check (or will be
        within ``ahead`` seconds: a refresh started early finds nothing due yet and ends
        at its store read), started ``batch`` at a time with a pause between, and never
        more in flight than discovery's ``max_background_checks``."""
        while True:
            await asyncio.sleep(interval)
            await self.refresh_once(ahead=ahead, window=window, batch=batch)

    async def refresh_once(self, *, ahead: float = 0.0, window: float = 7 * 86400.0,
                           batch: int = 64) -> int:
        """One pass of :meth:`refresh_in_use`; returns how many refreshes it started."""
        now = self._clock()
        started = examined = 0
        # Over a copy of the names only: a pass waits for room between checks, and a
        # copy of the (name, time) pairs would hold a tuple a domain (some 1.2 MiB at
        # 20,000 domains) for as long as the pass.  A name let go meanwhile is skipped.
        for domain in list(self.in_use):
            used = self.in_use.get(domain)
            if used is None:
                continue
            if now - used > window:
                self.in_use.pop(domain, None)
                continue
            # At most the discovery's bound of checks in flight: a pass over many
            # domains starts them as fast as they finish, never all at once.
            await self.discovery.wait_background_room()
            examined += 1
            try:
                now_started = self.discovery.refresh_if_due(domain, ahead=ahead)
            except TlsPolicyError:
                self.in_use.pop(domain, None)
                continue
            started += now_started
            if now_started and started % batch == 0:
                # Let the refreshes (and the answers) run before starting more.
                await asyncio.sleep(0.05)
            elif examined % batch == 0:
                # A domain not held costs a store read on this thread: let answers run.
                await asyncio.sleep(0)
        return started
