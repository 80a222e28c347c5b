"""Scopes and the whole configuration (SEMANTICS sections 2 and 8).

:mod:`.models` holds the immutable scope models and :class:`Config` (valid by
construction); :mod:`.builder` turns a raw tree read from a file into a ``Config``,
reporting every problem with its location, and overlays layered files;
:mod:`.stanzas` walks the stanzas, dates them and filters a configuration to an
instant.  Everything is pure.

The package re-exports the models and the three operations on a whole configuration
(build, layer, filter to an instant).  The helpers the other layers share (scope paths,
the ``trusted_*`` constructors, stanza walks and expiry instants, the constants) are
imported from the module that defines them.
"""

from __future__ import annotations

from .builder import build_config, layer_configs
from .models import DEFAULT_NAME, BindingGroupScope, BindingScope, Config, DomainScope, FloorScope
from .stanzas import config_at

__all__ = [
    "DEFAULT_NAME",
    "BindingGroupScope",
    "BindingScope",
    "Config",
    "DomainScope",
    "FloorScope",
    "build_config",
    "config_at",
    "layer_configs",
]
