"""What discovery keeps in memory per policy domain, kept small (issue 25).

- :class:`StateMemory`: the MTA-STS states held in memory, a bounded LRU mapping
  (name -> state) in front of the store.  The store keeps every state; one evicted
  here is read back from it when next asked for (never fetched again for that).
- :class:`Sharing`: equal values held once.  Policies published by many domains
  (a mail provider's), their ``mx`` patterns, TXT ids and the few state and detail
  strings are shared between the states that hold them, through bounded tables.

No I/O and no clock here.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, TypeVar

import attrs

from ..formats.settings import DEFAULT_MEMORY_CACHE_SIZE
from ..policies.mtasts import MtaStsPolicy, policy_in_force

if TYPE_CHECKING:
    from .models import StsState

__all__ = ["DEFAULT_MEMORY_CACHE_SIZE", "Sharing", "StateMemory"]

#: Entries of each sharing table; a full table starts again empty (nothing is lost:
#: a value no longer in the table is simply not shared with later ones).
_TABLE_SIZE: Final = 1024

T = TypeVar("T")


class StateMemory(OrderedDict[str, "StsState"]):
    """MTA-STS states by domain, least recently used first, at most ``limit`` of them.

    :meth:`remember` inserts (evicting the least recently used past the limit);
    :meth:`touch` marks a hit.  Otherwise a plain mapping (reads do not reorder).
    """

    def __init__(self, limit: int = DEFAULT_MEMORY_CACHE_SIZE) -> None:
        super().__init__()
        self.limit = limit
        #: States evicted to stay within the limit, since start.
        self.evicted = 0

    def remember(self, name: str, state: StsState, *, limit: int | None = None) -> None:
        """Hold ``state`` for ``name`` as the most recently used."""
        self[name] = state
        self.move_to_end(name)
        bound = self.limit if limit is None else limit
        while len(self) > bound:
            self.popitem(last=False)
            self.evicted += 1

    def touch(self, name: str) -> None:
        """``name`` was used: it is evicted last."""
        self.move_to_end(name)

    def forget_without_policy(self, now: datetime) -> int:
        """Drop every state without an MTA-STS policy in force at ``now``; how many."""
        names = [n for n, s in self.items() if policy_in_force(s.cached, now) is None]
        for name in names:
            del self[name]
        return len(names)


class Sharing:
    """Bounded tables through which equal strings and policies are held once."""

    __slots__ = ("_moments", "_numbers", "_policies", "_strings")

    def __init__(self) -> None:
        self._strings: dict[str, str] = {}
        self._numbers: dict[int, int] = {}
        self._policies: dict[MtaStsPolicy, MtaStsPolicy] = {}
        self._moments: dict[float, datetime] = {}

    def moment(self, seconds: float) -> datetime:
        """The one UTC ``datetime`` of ``seconds`` since the epoch: policies imported
        from another daemon's cache (and fetched in one pass) share their fetch time."""
        table = self._moments
        found = table.get(seconds)
        if found is None:
            if len(table) >= _TABLE_SIZE:
                table.clear()
            found = table[seconds] = datetime.fromtimestamp(seconds, UTC)
        return found

    def text(self, value: str) -> str:
        """The one copy of ``value``."""
        table = self._strings
        found = table.get(value)
        if found is not None:
            return found
        if len(table) >= _TABLE_SIZE:
            table.clear()
        table[value] = value
        return value

    def optional(self, value: str | None) -> str | None:
        return None if value is None else self.text(value)

    def policy(self, policy: MtaStsPolicy) -> MtaStsPolicy:
        """The one copy of an equal policy (same mode, ``mx`` patterns and ``max_age``),
        its patterns shared with other policies'."""
        table = self._policies
        found = table.get(policy)
        if found is not None and found.notes == policy.notes:
            return found
        patterns = tuple(self.text(p) for p in policy.mx)
        max_age = self._numbers.setdefault(policy.max_age, policy.max_age)
        if len(self._numbers) >= _TABLE_SIZE:
            self._numbers.clear()
        if max_age is not policy.max_age or any(
                a is not b for a, b in zip(patterns, policy.mx, strict=True)):
            policy = attrs.evolve(policy, mx=patterns, max_age=max_age)
        if len(table) >= _TABLE_SIZE:
            table.clear()
        table[policy] = policy
        return policy

