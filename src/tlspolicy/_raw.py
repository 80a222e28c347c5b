"""The neutral tree every file format is read into before validation.

TOML and ``ecelerity.conf`` readers both produce a :class:`RawScope` tree whose
leaves are raw option values with their :class:`~tlspolicy.errors.Location`.
One validator (:func:`tlspolicy.scopes.build_config`) turns that tree into
models, so both formats give the same errors for the same mistakes.
"""

from __future__ import annotations

import attrs

from .errors import Location
from .options import ScopeKind

__all__ = ["RawOption", "RawScope"]


@attrs.frozen(slots=True)
class RawOption:
    """One ``key = value`` as written, before the option name or value is checked."""

    name: str
    value: object
    location: Location


@attrs.frozen(slots=True)
class RawScope:
    """One container as written: its kind, name, options and nested containers.

    The root has kind ``GLOBAL`` and name ``None``; its ``settings`` hold
    file-level keys that are not options (``compatibility``,
    ``match_cache_size``); a domain's or floor's ``settings`` hold its stanza
    attributes (``expires``, ``reason``, ``expiry_weakens``).  ``children``
    keep declaration order, which matters for regex domains; ``floors`` (root
    only) are the ``floor`` stanzas, each a ``DOMAIN``-kind scope.
    """

    kind: ScopeKind
    name: str | None
    location: Location
    options: tuple[RawOption, ...] = ()
    children: tuple[RawScope, ...] = ()
    settings: tuple[RawOption, ...] = ()
    floors: tuple[RawScope, ...] = ()
