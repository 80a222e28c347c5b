"""Loading configuration files from disk, in layers.

This module reads files; the core never does.  Files ending in ``.toml`` are
TOML; ``.conf`` and ``.ecelerity`` files are Momentum ``ecelerity.conf``.
``format="toml"`` or ``format="ecelerity"`` overrides the guess from the name.
"""

from __future__ import annotations

import os
from typing import Final

from ..errors import ConfigError, ConfigErrors, Location, NoConfigFilesError, TooManyFilesError
from ..scopes import Config, has_expiry, layer_configs
from .files import ReadBudget
from .toml import dumps_toml, loads_toml

__all__ = ["dump_toml", "load_config", "load_file", "loads_toml"]


FORMATS: Final = ("toml", "ecelerity")
"""The configuration file formats ``format=`` accepts."""


def load_file(path: str | os.PathLike[str], *, format: str | None = None,
              budget: ReadBudget | None = None) -> Config:
    """Load one configuration file, in ``format`` or else the format its name suggests.

    Files are read through ``budget`` (a fresh
    :class:`~tlspolicy.formats.files.ReadBudget` by default): regular files
    only, each at most :data:`~tlspolicy.formats.files.MAX_FILE_BYTES`.
    """
    name = os.fspath(path)
    if format is not None and format not in FORMATS:
        raise ValueError(f"unknown configuration format {format!r} (known: toml, ecelerity)")
    budget = budget if budget is not None else ReadBudget()
    if format == "ecelerity" or (format is None and name.endswith((".conf", ".ecelerity"))):
        from .ecelerity import load_ecelerity_config

        return load_ecelerity_config(name, budget=budget)
    return loads_toml(budget.read_text(name), name)


def load_config(*paths: str | os.PathLike[str], format: str | None = None,
                budget: ReadBudget | None = None) -> Config:
    """Load and layer configuration files: later files override earlier ones.

    ``format`` (``"toml"`` or ``"ecelerity"``) applies to every file; without
    it each file's name decides.  Errors of every file are reported together.
    All files, includes counted, share one
    :class:`~tlspolicy.formats.files.ReadBudget`.  No file at all is a
    :class:`~tlspolicy.errors.NoConfigFilesError`, never an empty
    (all-plaintext) policy.
    """
    if not paths:
        raise NoConfigFilesError("no configuration file given: refusing to load an empty "
                                 "(all-plaintext) policy")
    budget = budget if budget is not None else ReadBudget()
    configs: list[Config] = []
    errors: list[ConfigError] = []
    for path in paths:
        try:
            configs.append(load_file(path, format=format, budget=budget))
        except ConfigErrors as many:
            errors.extend(many.errors)
        except TooManyFilesError as over:
            errors.append(over)
            break
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
