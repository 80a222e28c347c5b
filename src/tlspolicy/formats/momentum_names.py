"""Momentum's documented configuration names, and near misses of the TLS ones.

The list is the package data file ``momentum-config-options.tsv`` (the
option and scope names of the Momentum 4 manual's configuration summary,
with their kinds and scopes); it is the one place these names live.  The
``ecelerity.conf`` reader skips a documented name with a note and refuses
any other name: a typo such as ``tsl`` or ``domian`` must not silently turn
TLS off.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

__all__ = [
    "MOMENTUM_OPTIONS",
    "MOMENTUM_SCOPES",
    "SCOPE_KEYWORDS",
    "edit_distance",
    "near_miss",
]

_DATA: Final = "momentum-config-options.tsv"


def _load() -> tuple[frozenset[str], frozenset[str]]:
    text = resources.files("tlspolicy").joinpath("data", _DATA).read_text("utf-8")
    options: set[str] = set()
    scopes: set[str] = set()
    for line in text.splitlines():
        if not line or line.startswith("#") or line.startswith("name\t"):
            continue
        name, kind = line.split("\t")[:2]
        (scopes if kind == "scope" else options).add(name.lower())
    return frozenset(options), frozenset(scopes)


MOMENTUM_OPTIONS, MOMENTUM_SCOPES = _load()
"""Documented option names and scope (stanza) names, lower case."""

SCOPE_KEYWORDS: Final = frozenset({"binding_group", "binding", "domain"})
"""The stanza keywords that make policy scopes."""

_MAX_COMPARED: Final = 64


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance of ``a`` and ``b`` (a swap counts as one edit).

    Stops early and returns ``limit + 1`` once the distance must exceed
    ``limit``; names longer than 64 characters are never compared (a
    quadratic table over a stranger's long word is not worth a suggestion).
    """
    if abs(len(a) - len(b)) > limit or max(len(a), len(b)) > _MAX_COMPARED:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            value = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if (i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]):
                value = min(value, previous2[j - 2] + 1)
            current[j] = value
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[len(b)]


def near_miss(name: str, candidates: frozenset[str] | tuple[str, ...]) -> str | None:
    """The candidate ``name`` is most likely a typo of, or ``None``.

    A near miss is at most one edit away for names of up to four letters
    (``tsl`` for ``tls``) and at most two for longer ones (``tls_verfy``,
    ``domian``); the closest candidate wins, ties by name.
    """
    lower = name.lower()
    if lower in candidates:
        return None
    limit = 1 if len(lower) <= 4 else 2
    best: tuple[int, str] | None = None
    for candidate in candidates:
        distance = edit_distance(lower, candidate, limit)
        if distance <= limit and (best is None or (distance, candidate) < best):
            best = (distance, candidate)
    return best[1] if best is not None else None
