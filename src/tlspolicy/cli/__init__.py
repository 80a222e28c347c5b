"""The ``tlspolicy`` command line: one module per command group.

Each module named in :data:`COMMAND_MODULES` has ``register(subparsers)``,
which adds its commands; what they share (configuration files, error output,
exit statuses) lives in :mod:`tlspolicy.cli._common`. Adding a command is
adding a module here, its name to that tuple and its commands to :data:`COMMANDS`.

Running a command imports only the module that registers it (``serve`` starts
without the modules of ``lint``, ``report`` or ``convert``); ``--help`` and a
word that is no command get the parser with every command.

Exit statuses, for every command: 0 done; 1 a check found something; 2 an
input or operational error. No input or operational error ends in a
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

from .._version import __version__
from ..errors import TlsPolicyError
from ..formats.bundled import example_config, example_text
from ._common import (
    EXIT_ERROR,
    UsageError,
    config_format,
    format_hint,
    load_configuration,
    note,
    print_errors,
)
from .resolve import DEPRECATED_FLAGS

__all__ = ["COMMANDS", "COMMAND_MODULES", "DEPRECATED_OPTIONS", "build_parser",
           "example_config", "example_text", "load_configuration", "main"]

COMMAND_MODULES: Final[tuple[str, ...]] = (
    "resolve",
    "check",
    "convert",
    "serve",
    "policytests",
    "discover",
    "report",
    "exceptions",
    "shadow",
    "importcache",
    "example",
)
"""The command-group modules of this package, in the order ``--help`` lists them."""


DEPRECATED_OPTIONS: Final[frozenset[str]] = frozenset(DEPRECATED_FLAGS)
"""Old option spellings that still work but are hidden from ``--help``."""


COMMANDS: Final[Mapping[str, str]] = MappingProxyType({
    "resolve": "resolve",
    "check": "check",
    "lint": "check",
    "convert": "convert",
    "serve": "serve",
    "test": "policytests",
    "diff": "policytests",
    "tree": "policytests",
    "discover": "discover",
    "cache": "discover",
    "report": "report",
    "exceptions": "exceptions",
    "shadow-report": "shadow",
    "import-cache": "importcache",
    "example": "example",
})
"""Each command and the module of :data:`COMMAND_MODULES` that registers it."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with every command.

    With ``command``, the parser with the commands of that command's module only,
    which parses that command's words as the whole parser does, imports no other
    command's module, and falls back to the whole parser for a name it does not know.
    """
    modules = COMMAND_MODULES
    if command is not None and command in COMMANDS:
        modules = (COMMANDS[command],)
    parser = argparse.ArgumentParser(
        prog="tlspolicy",
        description="Decide what an SMTP client does about STARTTLS for a delivery attempt.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                help="what to do (tlspolicy COMMAND --help for its arguments)")
    for name in modules:
        module: Any = importlib.import_module(f"{__name__}.{name}")
        module.register(sub)
    if modules is not COMMAND_MODULES and command not in sub.choices:
        # COMMANDS names a module that does not register the command: every command.
        return build_parser()
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    words = list(sys.argv[1:] if argv is None else argv)
    # A command's own parser when the first word names one; anything else (an option
    # such as --help or --version, a misspelt command, no words) meets every command.
    parser = build_parser(words[0] if words else None)
    args, extras = parser.parse_known_args(words)
    # argparse hands a positional list only the words before the first option, so
    # ``resolve DOMAIN --binding B FILE`` would leave FILE over; such words belong to
    # the command's list of files (named by ``intermixed``), in order.
    spill = getattr(args, "intermixed", None)
    if extras and spill and not any(word.startswith("-") for word in extras):
        setattr(args, spill, [*(getattr(args, spill) or ()), *extras])
    elif extras:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    try:
        result: int = args.func(args)
        return result
    except TlsPolicyError as exc:
        print_errors(exc)
        hint = format_hint(exc, config_format(args))
        if hint:
            note(hint)
        return EXIT_ERROR
    except UsageError as exc:
        sys.stderr.write(f"tlspolicy: error: {exc}\n")
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader (e.g. ``| head``) went away; that is not an error of ours.
        sys.stderr.close()
        return 0
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        sys.stderr.write(f"tlspolicy: error: {exc.strerror or exc}{where}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
