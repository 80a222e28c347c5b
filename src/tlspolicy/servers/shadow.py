"""Shadow evaluation (SEMANTICS section 9): run a candidate configuration beside the live one.

:class:`ShadowResolver` answers every request with the live resolver, then
resolves the same request (same binding, MX host, overrides and fetched
destination inputs) under the candidate and classes each difference as
:func:`~tlspolicy.diff.diff_configs` does (downgrade, review, upgrade).
The live answer is never changed: it is computed first, and
nothing the candidate does (an error included) reaches the caller.

By default the comparison is queued and made by :meth:`ShadowResolver.run_pending`
(call it when idle, or from a worker), so the live answer is not delayed; the
queue is bounded and requests that find it full are shed (counted, not
compared).  ``inline=True`` compares before returning instead.

Logs are bounded: one line per (binding, domain) and class until
:meth:`ShadowResolver.reset` (a new load), at most ``max_keys`` distinct keys
per class; requests past the cap are counted as overflow.

In the socketmap server, :class:`ShadowLookup` compares Postfix answers (with
discovery, :class:`DiscoveryShadowLookup` judges the candidate on the inputs the live
answer was computed from) and
:func:`drain_shadow` makes its queued comparisons after the replies are sent,
in a worker thread and in small batches, and writes the counts to a report
file (read by ``tlspolicy shadow-report``).  Comparisons that do not fit the
bounded queue are shed, so a busy server only loses shadow coverage, never
answer time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Any, Final, Protocol

import attrs

from ..decision import Decision
from ..diff import Change, ChangeClass, Probe, _facets
from ..errors import TlsPolicyError
from ..options import Options
from ..policies.destination import Destination
from ..postfix.replies import ReplyStatus, SocketmapReply
from ..resolver import Resolver

__all__ = ["BATCH", "DEFAULT_MAX_KEYS", "DEFAULT_QUEUE_SIZE", "DiscoveryShadowLookup",
           "ShadowCounts", "ShadowLookup",
           "ShadowResolver", "class_answers", "compare_decisions", "drain_shadow",
           "format_report", "write_report"]

DEFAULT_MAX_KEYS: Final = 10_000
"""Distinct (binding, domain) keys logged per class and load."""

DEFAULT_QUEUE_SIZE: Final = 10_000
"""Requests waiting for comparison before new ones are shed."""

CLASSES: Final = (ChangeClass.DOWNGRADE, ChangeClass.REVIEW, ChangeClass.UPGRADE)

log = logging.getLogger("tlspolicy.shadow")


def compare_decisions(live: Decision, candidate: Decision) -> list[Change]:
    """The changes from ``live`` to ``candidate`` that have a security direction."""
    probe = Probe(live.binding, live.domain, "shadow")
    return [c for c in _facets(probe, live, candidate) if c.cls in CLASSES]


@attrs.frozen(slots=True)
class ShadowCounts:
    """What the shadow has seen since the last load.

    ``requests``: comparisons made; ``differing``: per class, requests with a
    change of that class; ``keys``: per class, distinct (binding, domain)
    keys logged; ``overflow``: per class, requests whose key was past the
    cap; ``shed``: requests not compared because the queue was full;
    ``errors``: requests the candidate could not resolve.
    """

    requests: int
    differing: dict[str, int]
    keys: dict[str, int]
    overflow: dict[str, int]
    shed: int
    errors: int

    def to_dict(self) -> dict[str, Any]:
        """Plain builtins (for a report file or metrics)."""
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> ShadowCounts:
        """The counts :meth:`to_dict` wrote (a report file's), every field checked: a
        count is a whole number of at least 0, a per-class count has every class.  Raises
        ``ValueError`` naming the first field that is not so: a report read wrongly must
        not pass a ``--fail-on-downgrade`` gate."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")

        def count(value: object, name: str) -> int:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} is not a count: {str(value)[:60]!r}")
            return value

        def per_class(name: str) -> dict[str, int]:
            value = data.get(name)
            if not isinstance(value, dict):
                raise ValueError(f"{name} is not an object of counts per class")
            return {cls.value: count(value.get(cls.value), f"{name}.{cls.value}")
                    for cls in CLASSES}

        return cls(count(data.get("requests"), "requests"), per_class("differing"),
                   per_class("keys"), per_class("overflow"), count(data.get("shed"), "shed"),
                   count(data.get("errors"), "errors"))


class _Shadow:
    """What both shadows keep: the counts under one lock, the logged keys per class (at
    most ``max_keys``) and the bounded queue of comparisons waiting (past ``queue_size``,
    requests are shed).  A subclass compares one queued item in :meth:`_compare_queued`."""

    def __init__(self, max_keys: int, queue_size: int, logger: logging.Logger | None) -> None:
        self.max_keys = max_keys
        self.log = logger if logger is not None else log
        self._queue: deque[Any] = deque()
        self._queue_size = queue_size
        self._lock = threading.Lock()
        self._clear()

    def _clear(self) -> None:
        with self._lock:
            self._requests = 0
            self._errors = 0
            self._shed = 0
            self._differing = dict.fromkeys(CLASSES, 0)
            self._overflow = dict.fromkeys(CLASSES, 0)
            self._seen: dict[ChangeClass, set[Hashable]] = {c: set() for c in CLASSES}

    def _offer(self, item: object) -> None:
        if len(self._queue) < self._queue_size:
            self._queue.append(item)
        else:
            with self._lock:
                self._shed += 1

    @property
    def pending(self) -> int:
        """Requests waiting for comparison."""
        return len(self._queue)

    def run_pending(self, limit: int | None = None) -> int:
        """Compare up to ``limit`` queued requests (all when ``None``); return how many."""
        done = 0
        while limit is None or done < limit:
            try:
                item = self._queue.popleft()
            except IndexError:
                break
            done += 1
            self._compare_queued(item)
        return done

    def _compare_queued(self, item: Any) -> None:  # pragma: no cover - both shadows have one
        raise NotImplementedError

    def _count_error(self) -> None:
        with self._lock:
            self._requests += 1
            self._errors += 1

    def _count(self, classes: Iterable[ChangeClass], key: Hashable) -> list[ChangeClass]:
        """Count one compared request differing in ``classes``; the classes in which
        ``key`` is logged now (the first time, while fewer than ``max_keys`` are)."""
        to_log: list[ChangeClass] = []
        with self._lock:
            self._requests += 1
            for cls in classes:
                self._differing[cls] += 1
                seen = self._seen[cls]
                if key in seen:
                    continue
                if len(seen) >= self.max_keys:
                    self._overflow[cls] += 1
                    continue
                seen.add(key)
                to_log.append(cls)
        return to_log

    def counts(self) -> ShadowCounts:
        """A snapshot of the counts since the last reset (for a lookup: since it was built,
        one load)."""
        with self._lock:
            return ShadowCounts(
                requests=self._requests,
                differing={c.value: n for c, n in self._differing.items()},
                keys={c.value: len(s) for c, s in self._seen.items()},
                overflow={c.value: n for c, n in self._overflow.items()},
                shed=self._shed,
                errors=self._errors,
            )


class ShadowResolver(_Shadow):
    """The live resolver's answers, with a candidate's differences counted on the side.

    ``resolve`` takes the arguments of :meth:`Resolver.resolve` and returns
    exactly the live decision (or raises exactly the live error).
    """

    def __init__(self, live: Resolver, candidate: Resolver, *,
                 max_keys: int = DEFAULT_MAX_KEYS, queue_size: int = DEFAULT_QUEUE_SIZE,
                 inline: bool = False, logger: logging.Logger | None = None) -> None:
        if max_keys < 0 or queue_size < 0:
            raise ValueError("max_keys and queue_size must be >= 0")
        super().__init__(max_keys, queue_size, logger)
        self.live = live
        self.candidate = candidate
        self.inline = inline

    def reset(self) -> None:
        """Forget counts and logged keys (call on each load of either configuration)."""
        self._clear()

    def resolve(self, domain: str, binding: str | None = None, *,
                mx_host: str | None = None, overrides: Options | None = None,
                destination: Destination | None = None) -> Decision:
        """The live decision; the candidate's is compared later (or now, if inline)."""
        decision = self.live.resolve(domain, binding, mx_host=mx_host, overrides=overrides,
                                     destination=destination)
        request = {"mx_host": mx_host, "overrides": overrides, "destination": destination}
        if self.inline:
            self._compare(decision, domain, binding, request)
        else:
            self._offer((decision, domain, binding, request))
        return decision

    def _compare_queued(self, item: Any) -> None:
        self._compare(*item)

    def _compare(self, decision: Decision, domain: str, binding: str | None,
                 request: dict[str, Any]) -> None:
        try:
            other = self.candidate.resolve(domain, binding, **request)
        except TlsPolicyError as exc:
            self._count_error()
            self.log.info("shadow: candidate cannot resolve binding %r -> %s: %s",
                          decision.binding, decision.domain, exc)
            return
        changes = compare_decisions(decision, other)
        differing = [cls for cls in CLASSES if any(c.cls is cls for c in changes)]
        for cls in self._count(differing, (decision.binding, decision.domain)):
            facets = "; ".join(f"{c.facet} {c.old} -> {c.new}" for c in changes if c.cls is cls)
            self.log.warning("shadow: %s binding %r -> %s: %s", cls.value, decision.binding,
                             decision.domain, facets)


# ------------------------------------------------------------------ Postfix answers

_LEVEL_RANK: Final = {"none": 0, "may": 1, "encrypt": 2, "verify": 3, "secure": 4}


def class_answers(live: SocketmapReply, candidate: SocketmapReply) -> ChangeClass | None:
    """How a socketmap answer changes, or ``None`` when it does not.

    Postfix levels rank ``none < may < encrypt < verify < secure``; ``dane``
    (opportunistic DANE, ``may`` without usable TLSA records) ranks above
    ``may`` only: against ``encrypt`` and above, and for the same level with
    other attributes or a different reply status, the change needs review.
    """
    if live == candidate:
        return None
    if live.status is not ReplyStatus.OK or candidate.status is not ReplyStatus.OK:
        return ChangeClass.REVIEW
    old, new = live.text.split()[0], candidate.text.split()[0]
    if old == new:
        return ChangeClass.REVIEW
    if "dane" in (old, new):
        other = new if old == "dane" else old
        if other in ("none", "may"):
            up = new == "dane"
            return ChangeClass.UPGRADE if up else ChangeClass.DOWNGRADE
        return ChangeClass.REVIEW
    if old not in _LEVEL_RANK or new not in _LEVEL_RANK:
        return ChangeClass.REVIEW
    return (ChangeClass.UPGRADE if _LEVEL_RANK[new] > _LEVEL_RANK[old]
            else ChangeClass.DOWNGRADE)


class ShadowLookup(_Shadow):
    """A socketmap lookup answering with ``live`` and comparing ``candidate``'s answers.

    Call it as the server calls a lookup; queued comparisons are made by
    :meth:`run_pending` (the server runs it after replies are sent).  Counts
    and bounded logs as for :class:`ShadowResolver`; the key is (map name,
    lookup key).
    """

    def __init__(self, live: Callable[[str, str], SocketmapReply],
                 candidate: Callable[[str, str], SocketmapReply], *,
                 max_keys: int = DEFAULT_MAX_KEYS, queue_size: int = DEFAULT_QUEUE_SIZE,
                 logger: logging.Logger | None = None) -> None:
        super().__init__(max_keys, queue_size, logger)
        self.live = live
        self.candidate = candidate

    def __call__(self, map_name: str, key: str) -> SocketmapReply:
        reply = self.live(map_name, key)
        self._enqueue(map_name, key, reply, None)
        return reply

    def _enqueue(self, map_name: str, key: str, reply: SocketmapReply,
                 inputs: object) -> None:
        self._offer((map_name, key, reply, inputs))

    def _candidate_reply(self, map_name: str, key: str, inputs: object) -> SocketmapReply:
        """The candidate's reply to a queued request (``inputs``: what the live reply was
        computed from, where the lookup tells)."""
        return self.candidate(map_name, key)

    def _compare_queued(self, item: Any) -> None:
        map_name, key, reply, inputs = item
        try:
            other = self._candidate_reply(map_name, key, inputs)
        except Exception as exc:
            self._count_error()
            self.log.debug("shadow: candidate cannot answer map %r key %r: %s",
                           map_name, key, exc)
            return
        cls = class_answers(reply, other)
        for logged in self._count(() if cls is None else (cls,), (map_name, key)):
            self.log.warning("shadow: %s map %r key %r: %r -> %r", logged.value, map_name,
                             key, reply.to_text(), other.to_text())


class _Replaying(Protocol):
    """A discovery lookup (:class:`~tlspolicy.servers.discovered.DiscoveryLookup`): it
    tells its ``shadow`` what each reply was computed from, and replays that for a
    candidate."""

    shadow: Callable[[str, str, SocketmapReply, Any], None] | None

    def __call__(self, map_name: str, key: str) -> Any: ...

    def replay(self, map_name: str, key: str, fetched: Any) -> SocketmapReply: ...


class DiscoveryShadowLookup(ShadowLookup):
    """A shadow with discovery (SEMANTICS 9): ``live`` and ``candidate`` are discovery
    lookups over one :class:`~tlspolicy.discovery.Discovery`; the live one answers (an
    awaitable where it fetches), and the candidate is judged, after the reply, on the very
    inputs the live reply was computed from (the same ``Destination`` per MX host), never
    on a fetch of its own.  Counts, bounded logs and shedding as :class:`ShadowLookup`."""

    def __init__(self, live: _Replaying, candidate: _Replaying, *,
                 max_keys: int = DEFAULT_MAX_KEYS, queue_size: int = DEFAULT_QUEUE_SIZE,
                 logger: logging.Logger | None = None) -> None:
        super().__init__(live, candidate, max_keys=max_keys, queue_size=queue_size,
                         logger=logger)
        self._replaying = candidate
        live.shadow = self._enqueue

    def __call__(self, map_name: str, key: str) -> Any:
        # The live lookup reports each reply with its inputs (see _enqueue).
        return self.live(map_name, key)

    def _candidate_reply(self, map_name: str, key: str, inputs: object) -> SocketmapReply:
        return self._replaying.replay(map_name, key, inputs)


def format_report(counts: ShadowCounts) -> str:
    """A short text report of shadow counts (``tlspolicy shadow-report``)."""
    lines = [f"compared {counts.requests} request{'s' if counts.requests != 1 else ''}"
             f" ({counts.shed} shed, {counts.errors} candidate errors)"]
    for cls in CLASSES:
        name = cls.value
        lines.append(f"{name:<9} {counts.differing[name]} requests, {counts.keys[name]} "
                     f"distinct keys logged, {counts.overflow[name]} past the key cap")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ in the server

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


def _unwrapped(lookup: Any) -> Any:
    # A lookup wrapped for metrics names what it wraps.
    return getattr(lookup, "__wrapped__", lookup)


async def drain_shadow(server: _Serving, *, report: str | None = None,
                       pause: float = 0.02, report_every: float = 60.0) -> None:
    """Compare queued shadow requests of whatever lookup the server holds, until cancelled."""
    last = time.monotonic()
    try:
        while True:
            await asyncio.sleep(pause)
            lookup = _unwrapped(server.lookup)
            if not isinstance(lookup, ShadowLookup):
                continue
            if lookup.pending:
                await asyncio.to_thread(lookup.run_pending, BATCH)
            if report is not None and time.monotonic() - last >= report_every:
                last = time.monotonic()
                await asyncio.to_thread(write_report, report, lookup)
    finally:
        # On shutdown the last counts are written too.
        final = _unwrapped(server.lookup)
        if report is not None and isinstance(final, ShadowLookup):
            write_report(report, final)
