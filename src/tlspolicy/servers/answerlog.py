"""Logging the answers an operator must act on: every non-OK socketmap reply.

A ``PERM`` makes Postfix defer the mail (an unknown map name, a malformed key, a policy
Postfix cannot be given), a ``TEMP`` or ``TIMEOUT`` makes it try again later: each is
logged once per map name, key and cause, at WARNING (the server did its job; the
operator has something to change or to watch), and the lines are rate-limited, so that
a flood of distinct bad keys costs a count, not a log line each.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from ..postfix.replies import ReplyStatus, SocketmapReply

__all__ = ["NonOkLog"]

log = logging.getLogger("tlspolicy")

#: How many (map name, key, cause) triples are remembered as already logged.
DEFAULT_REMEMBERED: Final = 4096
#: Log lines per second at most, over a burst of ``DEFAULT_BURST``.
DEFAULT_RATE: Final = 5.0
DEFAULT_BURST: Final = 20.0
# Characters of a key or reason shown: keys come from socket clients.
_SHOWN: Final = 200


class NonOkLog:
    """Logs non-OK replies once per map name, key and cause, at most ``rate`` lines a
    second (a token bucket of ``burst``); what is held back is counted and said in the
    next line logged.  ``counts`` holds every non-OK reply by status, logged or not."""

    def __init__(self, *, remembered: int = DEFAULT_REMEMBERED, rate: float = DEFAULT_RATE,
                 burst: float = DEFAULT_BURST,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._remembered = remembered
        self._rate = rate
        self._burst = burst
        self._tokens = burst
        self._clock = clock
        self._last = clock()
        self.held_back = 0
        self.counts: dict[str, int] = {}

    def note(self, name: str, key: str, reply: SocketmapReply) -> None:
        """Log ``reply`` to ``name``/``key`` when it is not OK or NOTFOUND and was not
        logged for the same cause before."""
        status = reply.status
        if status in (ReplyStatus.OK, ReplyStatus.NOTFOUND):
            return
        self.counts[status.value] = self.counts.get(status.value, 0) + 1
        cause = reply.text[:_SHOWN]
        triple = (name[:_SHOWN], key[:_SHOWN], cause)
        if triple in self._seen:
            self._seen.move_to_end(triple)
            return
        self._seen[triple] = None
        if len(self._seen) > self._remembered:
            self._seen.popitem(last=False)
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1.0:
            self.held_back += 1
            return
        self._tokens -= 1.0
        held, self.held_back = self.held_back, 0
        log.warning("socketmap: answered %s to %r %r: %s (Postfix defers the mail%s)%s",
                    status.value, triple[0], triple[1], cause or "(no reason)",
                    "; asking again gives the same answer" if status is ReplyStatus.PERM
                    else " and asks again later",
                    f" [{held} more non-OK answers not logged]" if held else "")
