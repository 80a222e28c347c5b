"""Loading configuration files from disk, in layers.

This module reads files; the core never does.  Files ending in ``.toml`` are
TOML; ``.conf`` and ``.ecelerity`` files are Momentum ``ecelerity.conf``.
"""

from __future__ import annotations

import os

from ..errors import ConfigError, ConfigErrors, ConfigSyntaxError, Location
from ..scopes import Config, has_expiry, layer_configs
from .toml import dumps_toml, loads_toml

__all__ = ["dump_toml", "load_config", "load_file", "loads_toml"]


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except UnicodeDecodeError as exc:
        raise ConfigSyntaxError(f"file is not UTF-8 text: {exc.reason}",
                                Location(file=path)) from None
    except OSError as exc:
        raise ConfigSyntaxError(f"cannot read file: {exc.strerror or exc}",
                                Location(file=path)) from None


def load_file(path: str | os.PathLike[str]) -> Config:
    """Load one configuration file, choosing the format by its name."""
    name = os.fspath(path)
    if name.endswith((".conf", ".ecelerity")):
        from .ecelerity import load_ecelerity_config

        return load_ecelerity_config(name)
    return loads_toml(_read_text(name), name)


def load_config(*paths: str | os.PathLike[str]) -> Config:
    """Load and layer configuration files: later files override earlier ones.

    Errors of every file are reported together.
    """
    configs: list[Config] = []
    errors: list[ConfigError] = []
    for path in paths:
        try:
            configs.append(load_file(path))
        except ConfigErrors as many:
            errors.extend(many.errors)
        except ConfigError as one:
            errors.append(one)
    ConfigErrors.raise_if_any(errors)
    where = ", ".join(os.fspath(p) for p in paths)
    try:
        layered = layer_configs(configs)
    except ConfigError as exc:
        raise exc.located(Location(file=where)) from None
    if len(configs) > 1 and has_expiry(layered):
        # Layers change what an expiry does: judge it again on the whole (SEMANTICS 8).
        from ..testing.expiry import expiry_errors

        ConfigErrors.raise_if_any([e.located(Location(file=where))
                                   for e in expiry_errors(layered)])
    return layered


def dump_toml(config: Config) -> str:
    """Render a configuration as TOML (see :mod:`tlspolicy.formats.toml`)."""
    return dumps_toml(config)
