"""Failure is cheap: failed DNS lookups remembered for a bounded backoff, and failure
warnings rate-limited into counts (SEMANTICS 10, "Caching" and "Outages").

:class:`FailureBackoff` remembers a failed lookup per key (a ``(name, type)`` pair for
DNS) with a wait that doubles from ``initial`` up to ``maximum`` seconds while the
failures go on; during the wait the lookup is not sent again and the remembered failure
is the answer, so everything computed from it (a cached MTA-STS policy kept in force,
DANE inputs unknown) is exactly what the failed lookup itself gives.  A success forgets
the key at once.

:class:`FailureLog` writes failure warnings at most once per name per backoff window
and at most ``lines`` lines per ``interval`` overall; what it holds back is counted and
said in one summary line per interval.

Neither reads a clock: every call takes ``now`` (seconds, from the caller's clock).
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Hashable
from typing import Final, Generic, TypeVar

import attrs

from ..formats.settings import DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_MAX

__all__ = [
    "DEFAULT_BACKOFF_INITIAL",
    "DEFAULT_BACKOFF_MAX",
    "FailureBackoff",
    "FailureLog",
]

#: Failures remembered at most (every name asked about could fail).
MAX_REMEMBERED: Final = 100_000

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@attrs.define(slots=True)
class _Failure(Generic[V]):
    until: float
    wait: float
    value: V


class FailureBackoff(Generic[K, V]):
    """Failed lookups per key, each held back until its wait runs out.

    The first failure of a key waits ``initial`` seconds; a failure at the end of a
    wait doubles it, up to ``maximum``; a failure long after the last wait ended
    (more than ``maximum`` seconds) starts again from ``initial``.  At most
    ``max_entries`` keys are remembered (those whose wait ended go first, then the
    oldest).  :attr:`suppressed` counts the lookups not sent.
    """

    __slots__ = ("_entries", "_swept", "initial", "max_entries", "maximum", "suppressed")

    def __init__(self, initial: float = DEFAULT_BACKOFF_INITIAL,
                 maximum: float = DEFAULT_BACKOFF_MAX, *,
                 max_entries: int = MAX_REMEMBERED) -> None:
        if not 0 < initial <= maximum:
            raise ValueError(f"backoff must satisfy 0 < initial <= maximum, got {initial!r} "
                             f"and {maximum!r}")
        self.initial = float(initial)
        self.maximum = float(maximum)
        self.max_entries = max_entries
        self._entries: dict[K, _Failure[V]] = {}
        self.suppressed = 0
        self._swept = -math.inf

    def __len__(self) -> int:
        return len(self._entries)

    def held(self, key: K, now: float) -> V | None:
        """The remembered failure of ``key`` while its wait runs (the lookup is then not
        to be sent: counted in :attr:`suppressed`), else ``None``."""
        entry = self._entries.get(key)
        if entry is None or now >= entry.until:
            return None
        self.suppressed += 1
        return entry.value

    def until(self, key: K) -> float | None:
        """When the wait of ``key`` ends, or ``None`` when no failure is remembered."""
        entry = self._entries.get(key)
        return None if entry is None else entry.until

    def failed(self, key: K, value: V, now: float) -> float:
        """Remember that ``key`` failed with ``value`` at ``now``; returns the wait."""
        entries = self._entries
        if now >= self._swept + self.maximum:
            self._sweep(now)
        entry = entries.pop(key, None)
        if entry is None or now >= entry.until + self.maximum:
            wait = self.initial
        else:
            wait = min(entry.wait * 2, self.maximum)
        if entry is None and len(entries) >= self.max_entries:
            self._shrink(now)
        entries[key] = _Failure(now + wait, wait, value)
        return wait

    def succeeded(self, key: K) -> None:
        """``key`` answered: forget its failures."""
        if self._entries:
            self._entries.pop(key, None)

    def release(self, key: K, until: float) -> bool:
        """Forget the failure of ``key`` when its wait ends no later than ``until``
        (something else holds the lookup back that long); returns whether it went."""
        entry = self._entries.get(key)
        if entry is None or entry.until > until:
            return False
        del self._entries[key]
        return True

    def forget(self, which: Callable[[K], bool] | None = None) -> None:
        """Forget every remembered failure, or those whose key ``which`` accepts."""
        if which is None:
            self._entries.clear()
            return
        for key in [k for k in self._entries if which(k)]:
            del self._entries[key]

    def _sweep(self, now: float) -> None:
        # A failure more than ``maximum`` seconds past its wait is as good as forgotten
        # (the next failure starts again from ``initial``): without this, every name
        # that ever failed would stay until the table filled (about 500 bytes each).
        # Insertion order is the order of the failures, so the first entries failed
        # longest ago; those that failed over two maximum waits ago (their wait ended
        # over ``maximum`` ago) go, at most once per ``maximum`` seconds.
        self._swept = now
        entries = self._entries
        horizon = now - 2 * self.maximum
        gone = list(itertools.takewhile(lambda item: item[1].until - item[1].wait <= horizon,
                                        entries.items()))
        for key, _ in gone:
            del entries[key]

    def _shrink(self, now: float) -> None:
        entries = self._entries
        for key in [k for k, e in entries.items() if now >= e.until]:
            del entries[key]
        if len(entries) >= self.max_entries:
            # Insertion order is the order of the latest failures: the oldest go.
            for key in list(itertools.islice(entries, max(1, self.max_entries // 10))):
                del entries[key]


class FailureLog:
    """Failure warnings for ``logger``: one line per name per window, ``lines`` lines per
    ``interval`` at most, and one summary line per interval counting the rest.

    :meth:`warn` takes the end of the name's window (its backoff): until then the
    name's further failures are only counted.  :meth:`count_suppressed` adds lookups
    that were not sent at all (backoff) to the summary; :meth:`tick` writes the summary
    once the interval is over (any call does it).
    """

    def __init__(self, logger: logging.Logger, *, interval: float = 60.0, lines: int = 100,
                 what: str = "discovery", max_names: int = MAX_REMEMBERED) -> None:
        if not interval > 0 or lines < 1:
            raise ValueError("interval must be positive and lines at least 1")
        self._logger = logger
        self.interval = interval
        self.lines = lines
        self.what = what
        self._max_names = max_names
        self._quiet: dict[str, float] = {}
        self._period_end: float | None = None
        self._logged = 0
        #: Warnings not written in this interval: within their name's window, over the cap.
        self.repeated = 0
        self.over_cap = 0
        #: Lookups not sent in this interval (their failure was remembered).
        self.suppressed = 0
        #: Summary lines written so far.
        self.summaries = 0

    def warn(self, name: str, now: float, window_end: float, message: str,
             *args: object) -> bool:
        """Log ``message % args`` at WARNING unless ``name`` was logged in its current
        window or the interval's lines are used up; returns whether it was written."""
        self.tick(now)
        quiet = self._quiet
        if quiet.get(name, -1.0) > now:
            self.repeated += 1
            return False
        if len(quiet) >= self._max_names and name not in quiet:
            for old in [n for n, end in quiet.items() if end <= now]:
                del quiet[old]
            if len(quiet) >= self._max_names:
                quiet.clear()
        quiet[name] = window_end
        if self._logged >= self.lines:
            self.over_cap += 1
            return False
        self._logged += 1
        self._logger.warning(message, *args)
        return True

    def release(self, name: str, window_end: float) -> bool:
        """Forget ``name``'s window when it ends no later than ``window_end`` (the
        caller holds the name's next failure back until then); returns whether it went."""
        end = self._quiet.get(name)
        if end is None or end > window_end:
            return False
        del self._quiet[name]
        return True

    def count_suppressed(self, now: float, count: int = 1) -> None:
        """``count`` lookups were not sent (their failure is remembered)."""
        self.suppressed += count
        if self._period_end is None or now >= self._period_end:
            self.tick(now)

    def tick(self, now: float) -> str | None:
        """Write the summary of the interval that ended, if it held anything back;
        returns the line written."""
        end = self._period_end
        if end is None:
            self._period_end = now + self.interval
            return None
        if now < end:
            return None
        return self.flush(now)

    def flush(self, now: float) -> str | None:
        """Write the summary of what was held back since the interval began (at the
        end of an interval, or when closing), and begin a new interval."""
        line = None
        if self.repeated or self.over_cap or self.suppressed:
            began = now - self.interval if self._period_end is None else \
                self._period_end - self.interval
            line = (f"{self.what}: in the last {max(0.0, now - began):.0f} s, "
                    f"{self.repeated + self.over_cap} failure warnings not logged "
                    f"({self.repeated} repeats within a name's backoff, {self.over_cap} "
                    f"over {self.lines} lines), {self.suppressed} DNS lookups not sent "
                    "(failed recently, in backoff)")
            self._logger.warning("%s", line)
            self.summaries += 1
        self.repeated = self.over_cap = self.suppressed = self._logged = 0
        self._period_end = now + self.interval
        # Names whose window ended would otherwise stay until the table filled.
        quiet = self._quiet
        for name in [n for n, end in quiet.items() if end <= now]:
            del quiet[name]
        return line
