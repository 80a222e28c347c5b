"""``tlspolicy check`` and ``tlspolicy lint``: does a configuration load, and is it sensible."""

from __future__ import annotations

import argparse
import datetime
import sys
from typing import Any

from ..errors import ConfigError
from ..formats.lint import lint_file
from ..formats.loader import line_finder, load_config
from ..formats.tlsfiles import check_tls_files
from ..scopes import Config
from ..scopes.stanzas import iter_stanzas, sets_no_option
from ._common import (
    EXIT_FOUND,
    EXIT_OK,
    UsageError,
    add_config_files,
    add_no_file_checks,
    config_format,
    config_paths,
    evaluation_time,
    format_hint,
    note,
    print_errors,
    warn,
)

__all__ = ["register"]


def _files(args: argparse.Namespace) -> list[str]:
    # check and lint judge files one by one, so the bundled example is never implied.
    paths = config_paths(args)
    if not paths:
        raise UsageError(f"{args.command} needs configuration files (FILE or --config FILE)")
    return paths


def _expired(path: str, config: Config, now: datetime.datetime) -> None:
    # Already expired: ignored from now on, so the stanza is only clutter (SEMANTICS 8).
    for scope, stanza in iter_stanzas(config):
        if stanza.expires is not None and stanza.expires <= now:
            warn(f"{path}: {scope}: expired {stanza.expires.isoformat()}; it is ignored, "
                 "remove it")


def _cmd_check(args: argparse.Namespace) -> int:
    now = evaluation_time(args)
    failures = 0
    for path in _files(args):
        try:
            config = load_config(path, format=config_format(args))
            if not args.no_file_checks:
                check_tls_files(config, filename=path,
                                line_of=line_finder(path, format=config_format(args)))
        except ConfigError as exc:
            failures += print_errors(exc, sys.stdout, prefix="")
            _hint(exc, args)
        else:
            sys.stdout.write(f"{path}: ok\n")
            if sets_no_option(config):
                # Only a [discovery] table loads without setting an option.
                note(f"{path}: holds no policy, only a [discovery] table (the drop-in "
                     "marker of serve socketmap --discovery)")
            _expired(path, config, now)
    if failures:
        sys.stdout.write(f"{failures} error{'s' if failures != 1 else ''}\n")
        return EXIT_FOUND
    return EXIT_OK


def _cmd_lint(args: argparse.Namespace) -> int:
    found = 0
    notes = 0
    errors = 0
    for path in _files(args):
        try:
            warnings = lint_file(path, format=config_format(args))
        except ConfigError as exc:
            errors += print_errors(exc, prefix="")
            _hint(exc, args)
            continue
        for warning in warnings:
            sys.stdout.write(f"{warning.describe()}\n")
        found += sum(1 for w in warnings if not w.informational)
        notes += sum(1 for w in warnings if w.informational)
    # The summary line is printed on success too, so "no output" never has to mean "clean".
    counts = [f"{found} warning{'s' if found != 1 else ''}"]
    if errors:
        # A file that does not load is what check reports: exit 1 as check does.
        counts.insert(0, f"{errors} error{'s' if errors != 1 else ''}")
    if notes:
        # Informational findings (e.g. a floor raising a binding) never fail --strict.
        counts.append(f"{notes} informational")
    sys.stdout.write(", ".join(counts) + "\n")
    if errors:
        return EXIT_FOUND
    return EXIT_FOUND if found and args.strict else EXIT_OK


def _hint(exc: ConfigError, args: argparse.Namespace) -> None:
    hint = format_hint(exc, config_format(args))
    if hint:
        note(hint)


def _add_files(parser: argparse.ArgumentParser) -> None:
    add_config_files(parser, what="configuration file (TOML or ecelerity.conf), judged on "
                                  "its own, not layered")


def register(sub: Any) -> None:
    """Add ``check`` and ``lint`` to the command line's subparsers."""
    check = sub.add_parser("check", help="validate configuration files, print every error")
    _add_files(check)
    add_no_file_checks(check, "for a file meant for another machine")
    check.set_defaults(func=_cmd_check)

    lint = sub.add_parser(
        "lint", help="warn about configurations that load but are probably wrong")
    _add_files(lint)
    lint.add_argument("--strict", action="store_true",
                      help="exit with status 1 when there is any warning")
    lint.set_defaults(func=_cmd_lint)
