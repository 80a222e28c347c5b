"""Expiring exceptions (SEMANTICS section 8): expiry must never be a downgrade on a timer.

:func:`expiry_errors` finds every ``expires`` whose passing would make some
(binding, domain) decision weaker, as :func:`~tlspolicy.diff.diff_configs`
classes it, on a stanza that does not say ``expiry_weakens = true``.
:func:`exceptions` lists the expiring stanzas with the time left.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable

import attrs

from .diff import ChangeClass, diff_configs
from .errors import ConfigError, ExpiryWeakensError, Location
from .scopes import Config, DomainScope, FloorScope
from .scopes.stanzas import iter_stanzas, without_stanza

__all__ = ["ExpiringStanza", "exceptions", "expiry_errors"]


def expiry_errors(config: Config, *,
                  line_of: Callable[[DomainScope | FloorScope], int | None] | None = None
                  ) -> list[ConfigError]:
    """One :class:`~tlspolicy.errors.ExpiryWeakensError` per expiring stanza whose
    removal would weaken a decision (unless it says ``expiry_weakens = true``).

    Each stanza is judged on its own against the whole configuration.
    ``line_of`` gives the file line of a stanza's ``expires``, where known.
    """
    errors: list[ConfigError] = []
    for path, stanza in iter_stanzas(config):
        if stanza.expires is None or stanza.expiry_weakens:
            continue
        downgrades = diff_configs(config, without_stanza(config, stanza)).of(
            ChangeClass.DOWNGRADE)
        if not downgrades:
            continue
        first = downgrades[0]
        where = (f'binding "{first.probe.binding}" -> {first.probe.domain}: '
                 if first.probe is not None else "")
        more = f" and {len(downgrades) - 1} more" if len(downgrades) > 1 else ""
        errors.append(ExpiryWeakensError(
            f"when this stanza expires ({stanza.expires.isoformat()}) decisions get weaker "
            f"({where}{first.facet} {first.old} -> {first.new}{more}); expiry must not be a "
            "downgrade on a timer: add 'expiry_weakens = true' if that is intended",
            Location(line=line_of(stanza) if line_of is not None else None, scope=path,
                     option="expires")))
    return errors


@attrs.frozen(slots=True)
class ExpiringStanza:
    """One expiring stanza: where it is, when it ends, why it exists."""

    scope: str
    expires: _dt.datetime
    reason: str | None
    expiry_weakens: bool

    def left(self, at: _dt.datetime) -> _dt.timedelta:
        """Time left at ``at`` (negative once expired)."""
        return self.expires - at

    def to_dict(self, at: _dt.datetime) -> dict[str, object]:
        """Plain builtins for ``--json``."""
        return {"scope": self.scope, "expires": self.expires.isoformat(),
                "seconds_left": int(self.left(at).total_seconds()),
                "expired": self.expires <= at, "reason": self.reason,
                "expiry_weakens": self.expiry_weakens}


def exceptions(config: Config) -> list[ExpiringStanza]:
    """Every stanza with ``expires``, soonest first."""
    found = [ExpiringStanza(path, s.expires, s.reason, s.expiry_weakens)
             for path, s in iter_stanzas(config) if s.expires is not None]
    return sorted(found, key=lambda e: (e.expires, e.scope))


def describe_left(left: _dt.timedelta) -> str:
    """``3d 4h left``, ``12m left``, or ``expired 2d ago``."""
    seconds = int(left.total_seconds())
    past = seconds <= 0
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [f"{days}d"] if days else []
    if hours or days:
        parts.append(f"{hours}h")
    if not days:
        parts.append(f"{minutes}m")
    text = " ".join(parts)
    return f"expired {text} ago" if past else f"{text} left"
