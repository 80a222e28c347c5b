"""Loading configuration files from disk, in layers.

This module reads files; the core never does.  Files ending in ``.conf`` and
``.ecelerity`` are Momentum ``ecelerity.conf``, every other file TOML
(:func:`is_ecelerity`); ``format="toml"`` or ``format="ecelerity"`` overrides the
guess from the name.  :func:`read_discovery_table` reads the ``[discovery]`` tables
of the same files by the same rule.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Final

from .._raw import RawScope
from ..errors import (
    ConfigError,
    ConfigErrors,
    EmptyPolicyError,
    Location,
    NoConfigFilesError,
    TooManyFilesError,
)
from ..expiry import expiry_errors
from ..floors import floor_protocol_errors
from ..options import ScopeKind
from ..scopes import Config, layer_configs
from ..scopes.models import floor_path, scope_path
from ..scopes.stanzas import has_expiry, sets_no_option
from .ecelerity import load_ecelerity_config, read_ecelerity
from .files import ReadBudget, gc_paused, read_regular_text
from .settings import DiscoverySettings, discovery_settings, discovery_table
from .toml import dumps_toml, loads_toml, parse_toml, toml_to_raw, top_level_lines

__all__ = ["LineOf", "dump_toml", "is_ecelerity", "line_finder", "load_config", "load_file",
           "loads_toml", "read_discovery_settings", "read_discovery_table",
           "refuse_empty_policy"]


FORMATS: Final = ("toml", "ecelerity")
"""The configuration file formats ``format=`` accepts."""


def is_ecelerity(path: str | os.PathLike[str], format: str | None) -> bool:
    """Whether ``path`` is read as ``ecelerity.conf``: ``format`` says so, or, without one,
    its name ends in ``.conf`` or ``.ecelerity``.  Every other file is TOML."""
    return format == "ecelerity" or (
        format is None and os.fspath(path).endswith((".conf", ".ecelerity")))


def load_file(path: str | os.PathLike[str], *, format: str | None = None,
              budget: ReadBudget | None = None) -> Config:
    """Load one configuration file, in ``format`` or else the format its name suggests.

    Files are read through ``budget`` (a fresh
    :class:`~tlspolicy.formats.files.ReadBudget` by default): regular files
    only, each at most :data:`~tlspolicy.formats.files.MAX_FILE_BYTES`.
    A file that declares nothing at all (empty, comments only, a bare
    ``[global]``) is an :class:`~tlspolicy.errors.EmptyPolicyError`, except a
    TOML file holding a ``[discovery]`` table, the marker of ``serve``'s
    drop-in mode; :func:`load_config` also refuses a whole load that sets no
    option (see :func:`refuse_empty_policy`).
    """
    return _load_file(path, format, budget)[0]


def _load_file(path: str | os.PathLike[str], format: str | None,
               budget: ReadBudget | None) -> tuple[Config, bool]:
    """The file's configuration, and whether it is a drop-in marker."""
    name = os.fspath(path)
    if format is not None and format not in FORMATS:
        raise ValueError(f"unknown configuration format {format!r} (known: toml, ecelerity)")
    budget = budget if budget is not None else ReadBudget()
    if is_ecelerity(name, format):
        config = load_ecelerity_config(name, budget=budget)
        if _declares_nothing(config):
            refuse_empty_policy(config, name, toml=False)
        return config, False
    text = budget.read_text(name)
    config = loads_toml(text, name)
    marker = sets_no_option(config) and _holds_discovery_table(text)
    if _declares_nothing(config) and not marker:
        refuse_empty_policy(config, name)
    return config, marker


def _declares_nothing(config: Config) -> bool:
    # A file without a single scope or option: emptied, truncated or never written.
    # (A file that only declares scopes may be one layer of several; the whole load
    # is judged by load_config.)
    return sets_no_option(config) and not (config.domains or config.binding_groups
                                           or config.bindings or config.floors)


def _holds_discovery_table(text: str) -> bool:
    # Parsed again only for a file that sets nothing, which loads_toml has already read.
    try:
        data = parse_toml(text)
    except ConfigError:
        return False
    return any(key.lower() == "discovery" for key in data)


def refuse_empty_policy(config: Config, file: str, *, toml: bool = True,
                        why: str | None = None) -> None:
    """Raise :class:`~tlspolicy.errors.EmptyPolicyError` when ``config`` sets no option.

    The one rule for an empty policy (SEMANTICS 11, "Empty policy"): a file
    that is empty, holds only comments or sets no option in any scope would
    mean plaintext for every domain, so it is refused by every loader, and by
    ``check``, ``lint``, ``serve`` and a reload through them; that policy must
    be written out.  ``file`` names the file (or files) in the error; ``toml``
    picks the spelling of the fix the message suggests; ``why`` is added to
    the message.
    """
    if not sets_no_option(config):
        return
    fix = 'tls = "no" under [global]' if toml else "tls = no in the global scope"
    raise EmptyPolicyError(
        "sets no option at all, which would mean plaintext for every domain: refusing an "
        f"empty policy{'; ' + why if why else ''} (if plaintext everywhere is meant, write "
        f"{fix})", Location(file=file))


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
    with gc_paused():
        return _load_layers(paths, format, budget if budget is not None else ReadBudget())


def _load_layers(paths: Sequence[str | os.PathLike[str]], format: str | None,
                 budget: ReadBudget) -> Config:
    configs: list[Config] = []
    errors: list[ConfigError] = []
    markers = 0
    for path in paths:
        try:
            config, marker = _load_file(path, format, budget)
            configs.append(config)
            markers += marker
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
    if not markers:
        # Scopes declared without any option, in one file or over all layers.
        toml = not all(is_ecelerity(p, format) for p in paths)
        refuse_empty_policy(layered, where, toml=toml)
    if len(configs) > 1 and layered.floors:
        # A floor of one layer meets the protocols of another only here.
        ConfigErrors.raise_if_any([e.located(Location(file=where))
                                   for e in floor_protocol_errors(layered)])
    if len(configs) > 1 and has_expiry(layered):
        # Layers change what an expiry does: judge it again on the whole (SEMANTICS 8).
        ConfigErrors.raise_if_any([e.located(Location(file=where))
                                   for e in expiry_errors(layered)])
    return layered


def dump_toml(config: Config) -> str:
    """Render a configuration as TOML (see :mod:`tlspolicy.formats.toml`)."""
    return dumps_toml(config)


LineOf = Callable[[str, str | None], int | None]
"""``line_of(scope_path, option)``: the line of a scope's option (or, with ``None`` or an
option the scope does not set, of the scope itself) in one file, or ``None``."""


def _raw_lines(tree: RawScope) -> dict[tuple[str, str | None], int]:
    lines: dict[tuple[str, str | None], int] = {}

    def add(path: str, scope: RawScope) -> None:
        own = [o.location.line for o in (*scope.options, *scope.settings)
               if o.location.line is not None]
        if scope.location.line is not None:
            lines.setdefault((path, None), scope.location.line)
        elif own:
            # A scope without a header line of its own (the global scope, which may be
            # written without [global]): its first option.
            lines.setdefault((path, None), min(own))
        for option in (*scope.options, *scope.settings):
            if option.location.line is not None:
                lines.setdefault((path, option.name.lower()), option.location.line)

    def visit(scope: RawScope, parts: tuple[tuple[ScopeKind, str], ...]) -> None:
        add(scope_path(*parts), scope)
        for child in scope.children:
            if isinstance(child.name, str):
                visit(child, (*parts, (child.kind, child.name)))

    visit(tree, ())
    for floor in tree.floors:
        if isinstance(floor.name, str):
            add(floor_path(floor.name), floor)
    return lines


def line_finder(path: str | os.PathLike[str], *, format: str | None = None) -> LineOf:
    """Where each scope and option of one configuration file is, for messages found
    after loading (file checks, lint warnings) that know only the scope path.

    The file is read again on the first question only; a file that no longer reads
    answers ``None`` everywhere (the message keeps its file and scope).
    """
    name = os.fspath(path)
    index: dict[tuple[str, str | None], int] | None = None

    def build() -> dict[tuple[str, str | None], int]:
        try:
            if is_ecelerity(name, format):
                return _raw_lines(read_ecelerity(name).tree)
            return _raw_lines(toml_to_raw(ReadBudget().read_text(name), name))
        except (ConfigError, OSError, UnicodeError):
            return {}

    def line_of(scope: str, option: str | None = None) -> int | None:
        nonlocal index
        if index is None:
            index = build()
        if option is not None and (scope, option.lower()) in index:
            return index[(scope, option.lower())]
        return index.get((scope, None))

    return line_of


def read_discovery_table(paths: Sequence[str | os.PathLike[str]], *,
                         format: str | None = None) -> dict[str, Any]:
    """The ``[discovery]`` settings of the TOML files among ``paths`` (told apart from
    ``ecelerity.conf`` as :func:`load_config` tells them, ``format`` included), later
    files winning key by key.

    Each file is read and parsed as its load reads it (a byte order mark dropped, the
    table's name in any case), and whatever does not read or parse raises its located
    error: a table passed over would leave discovery off, or at its defaults, unsaid.
    Raises the located errors of
    :func:`~tlspolicy.formats.settings.check_discovery_table` too."""
    merged: dict[str, Any] = {}
    errors: list[ConfigError] = []
    for path in paths:
        if is_ecelerity(path, format):
            continue
        name = os.fspath(path)
        text = read_regular_text(name)
        table, found = discovery_table(parse_toml(text, name), name, top_level_lines(text))
        errors += found
        merged.update(table)
    ConfigErrors.raise_if_any(errors)
    return merged


def read_discovery_settings(paths: Sequence[str | os.PathLike[str]], *,
                            format: str | None = None,
                            flags: object = None) -> DiscoverySettings:
    """:func:`~tlspolicy.formats.settings.discovery_settings` from the ``[discovery]``
    tables of ``paths`` (:func:`read_discovery_table`) and the flags given."""
    return discovery_settings(read_discovery_table(paths, format=format), flags=flags)
