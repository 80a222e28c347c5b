"""Scopes and the whole configuration (SEMANTICS sections 2 and 8).

:mod:`.models` holds the immutable scope models and :class:`Config` (valid by
construction); :mod:`.builder` turns a raw tree read from a file into a ``Config``,
reporting every problem with its location, and overlays layered files;
:mod:`.stanzas` walks the stanzas, dates them and filters a configuration to an
instant.  Everything is pure.
"""

from __future__ import annotations

from .builder import build_config, layer_configs
from .models import (
    DEFAULT_MATCH_CACHE_SIZE,
    DEFAULT_NAME,
    FLOOR_OPTIONS,
    BindingGroupScope,
    BindingScope,
    Config,
    DomainScope,
    FloorScope,
    floor_path,
    scope_path,
    trusted_binding,
    trusted_config,
    trusted_domain,
    trusted_group,
)
from .stanzas import (
    config_at,
    has_expiry,
    iter_stanzas,
    next_expiry,
    parse_expires,
    sets_no_option,
    without_stanza,
)

__all__ = [
    "DEFAULT_MATCH_CACHE_SIZE",
    "DEFAULT_NAME",
    "FLOOR_OPTIONS",
    "BindingGroupScope",
    "BindingScope",
    "Config",
    "DomainScope",
    "FloorScope",
    "build_config",
    "config_at",
    "floor_path",
    "has_expiry",
    "iter_stanzas",
    "layer_configs",
    "next_expiry",
    "parse_expires",
    "scope_path",
    "sets_no_option",
    "trusted_binding",
    "trusted_config",
    "trusted_domain",
    "trusted_group",
    "without_stanza",
]
