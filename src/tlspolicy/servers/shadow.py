"""Running a shadow candidate in the socketmap server (SEMANTICS section 9).

The server answers with the live policy; :func:`drain_shadow` makes the
queued comparisons of a :class:`~tlspolicy.testing.shadow.ShadowLookup`
after the replies are sent, in a worker thread and in small batches, and
writes the counts to a report file (read by ``tlspolicy shadow-report``).
Comparisons that do not fit the bounded queue are shed, so a busy server
only loses shadow coverage, never answer time.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any, Final, Protocol

from ..testing.shadow import ShadowLookup

__all__ = ["BATCH", "drain_shadow", "write_report"]

BATCH: Final = 256
"""Comparisons made per turn; the loop runs other work between turns."""


class _Serving(Protocol):
    @property
    def lookup(self) -> Any: ...


def write_report(path: str | os.PathLike[str], lookup: ShadowLookup) -> None:
    """Write the lookup's counts as JSON, replacing the file atomically."""
    target = Path(path)
    data = {"written_at": time.time(), **lookup.counts().to_dict()}
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", "utf-8")
    os.replace(tmp, target)


async def drain_shadow(server: _Serving, *, report: str | None = None,
                       pause: float = 0.02, report_every: float = 60.0) -> None:
    """Compare queued shadow requests of whatever lookup the server holds, until cancelled."""
    last = time.monotonic()
    try:
        while True:
            await asyncio.sleep(pause)
            lookup = server.lookup
            if not isinstance(lookup, ShadowLookup):
                continue
            if lookup.pending:
                await asyncio.to_thread(lookup.run_pending, BATCH)
            if report is not None and time.monotonic() - last >= report_every:
                last = time.monotonic()
                await asyncio.to_thread(write_report, report, lookup)
    finally:
        # On shutdown the last counts are written too.
        final = server.lookup
        if report is not None and isinstance(final, ShadowLookup):
            write_report(report, final)
