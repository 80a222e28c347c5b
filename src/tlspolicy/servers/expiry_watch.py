"""Recompiling a served policy when a stanza expires (SEMANTICS section 8).

The resolver never reads the clock; a server does.  :class:`ExpiringPolicy`
holds the configuration a server loaded and the evaluation time it compiled
it at, which only ever moves forward (a clock stepped back changes nothing,
so an expired stanza is never revived within a process).
:func:`watch_expiry` checks the wall clock every ``interval`` seconds (60 by
default) and, once an expiry has passed, compiles a new lookup in a worker
thread and swaps it in whole: no request sees a half-built policy.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

from ..formats.loader import load_config
from ..postfix.lookup import PolicyLookup
from ..resolver import Resolver
from ..scopes import Config
from ..scopes.stanzas import next_expiry

__all__ = ["DEFAULT_EXPIRY_INTERVAL", "ExpiringPolicy", "watch_expiry"]

DEFAULT_EXPIRY_INTERVAL: Final = 60.0
"""Seconds between two looks at the wall clock."""

log = logging.getLogger("tlspolicy.servers")

Clock = Callable[[], _dt.datetime]


def _utc_now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC)


class _Swappable(Protocol):
    def swap_lookup(self, lookup: Any) -> None: ...


class ExpiringPolicy:
    """Configuration files compiled at a time that never goes back.

    Calling it (first load, ``SIGHUP``) reads the files and compiles them;
    :meth:`recompile` compiles the configuration already read at the current
    time; :meth:`expiry_due` says whether an expiry has passed since.
    """

    def __init__(self, source: Sequence[str] | Callable[[], Config], *,
                 lookup: Callable[[Resolver], Any] = PolicyLookup,
                 clock: Clock = _utc_now) -> None:
        # ``source``: configuration files, or a callable that reads (and checks) them.
        if callable(source):
            self._load = source
            self.paths: list[str] = []
        else:
            self.paths = list(source)
            self._load = lambda: load_config(*self.paths)
        self._lookup = lookup
        self.clock = clock
        self.config: Config | None = None
        self.at: _dt.datetime | None = None
        self.next: _dt.datetime | None = None
        self.generation = 0

    def __call__(self) -> PolicyLookup:
        config = self._load()
        self.config = config
        self.generation += 1
        return self._compile(config)

    def _compile(self, config: Config) -> PolicyLookup:
        now = self.clock()
        at = now if self.at is None else max(now, self.at)
        self.at = at
        self.next = next_expiry(config, at)
        lookup: PolicyLookup = self._lookup(Resolver(config, at=at))
        return lookup

    def expiry_due(self) -> bool:
        """Whether the clock has reached the next expiry of the compiled configuration."""
        return self.next is not None and self.clock() >= self.next

    def recompile(self) -> PolicyLookup:
        """The loaded configuration compiled at the current time (no file is read)."""
        assert self.config is not None, "load the policy before recompiling it"
        return self._compile(self.config)


async def watch_expiry(server: _Swappable, policy: ExpiringPolicy, *,
                       interval: float = DEFAULT_EXPIRY_INTERVAL,
                       due: Callable[[], bool] | None = None,
                       rebuild: Callable[[], Any] | None = None) -> None:
    """Every ``interval`` seconds, swap in a recompiled lookup once an expiry passed.

    Runs until cancelled.  A reload (``SIGHUP``) that completes while a
    recompile is under way wins: the recompiled lookup is dropped.  ``due``
    and ``rebuild`` replace ``policy.expiry_due`` and ``policy.recompile``
    when the served lookup is made of more than one policy (a shadow).
    """
    is_due = due if due is not None else policy.expiry_due
    build = rebuild if rebuild is not None else policy.recompile
    while True:
        await asyncio.sleep(interval)
        if not is_due():
            continue
        generation = policy.generation
        try:
            lookup = await asyncio.to_thread(build)
        except Exception:  # pragma: no cover - compiling a loaded configuration
            log.exception("socketmap: recompiling after an expiry failed; keeping the lookup")
            continue
        if policy.generation == generation:
            server.swap_lookup(lookup)
            log.info("socketmap: a stanza expired; policy recompiled at %s",
                     policy.at.isoformat() if policy.at else "?")
