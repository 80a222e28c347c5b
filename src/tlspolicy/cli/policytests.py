"""``tlspolicy test``, ``diff`` and ``tree``: policy tests for operators.

Exit statuses: ``test`` gives 0 when every case passed, 1 when any case
failed, 2 when a file or case could not be run (a configuration or
expectation error, an unknown binding); ``diff`` gives 1 when
``--fail-on-downgrade`` (or ``--fail-on-review``) finds such a change, 2 on
unreadable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..diff import ChangeClass, diff_configs, format_diff
from ..errors import ConfigError, ConfigErrors
from ..policytests.expectations import Case
from ..policytests.reader import load_expectations
from ..policytests.runner import (
    CaseResult,
    config_errors,
    config_for,
    format_report,
    junit_xml,
    run_file,
)
from ..policytests.tree import render_tree
from ..scopes import Config, config_at
from ._common import (
    UsageError,
    add_at,
    add_config_files,
    add_format,
    add_json,
    config_format,
    config_paths,
    evaluation_time,
    format_hint,
    load_configuration,
    note,
    terminal_progress,
)

__all__ = ["register"]


def _errors_of(exc: ConfigError) -> tuple[ConfigError, ...]:
    return exc.errors if isinstance(exc, ConfigErrors) else (exc,)


def _loader(args: argparse.Namespace) -> Callable[[tuple[str, ...]], Config]:
    def load(paths: tuple[str, ...]) -> Config:
        # No paths: the bundled example, said on standard error.
        return load_configuration(list(paths), format=config_format(args))

    return load


def _cmd_test(args: argparse.Namespace) -> int:
    """Run expectation files; print a report; write JUnit XML when asked."""
    suites: dict[str, list[CaseResult]] = {}
    at = evaluation_time(args)
    load_errors = 0
    configs: dict[tuple[str, ...], Config | ConfigError] = {}
    out = sys.stdout
    for path in args.expectations:
        try:
            expectations = load_expectations(path)
        except ConfigError as exc:
            for error in _errors_of(exc):
                out.write(f"{error}\n")
            load_errors += 1
            suites[path] = [_file_error(path, exc)]
            continue
        paths = tuple(config_paths(args)) or expectations.config
        if paths not in configs:
            try:
                configs[paths] = config_for(expectations, config_paths(args), _loader(args))[0]
            except ConfigError as exc:
                configs[paths] = exc
        config = configs[paths]
        if isinstance(config, ConfigError):
            messages = config_errors(expectations, config, config_paths(args))
            for message in messages:
                out.write(f"{message}\n")
            hint = format_hint(config, config_format(args))
            if hint:
                note(hint)
            load_errors += 1
            # Located at the 'config' key when the file's own key named the configuration.
            line = (config.location.line if config_paths(args) or not expectations.config
                    else expectations.config_line)
            suites[path] = [_file_error(path, config, "\n".join(messages), line)]
            continue
        described = ", ".join(paths) if paths else "the bundled example configuration"
        results = run_file(expectations, config_at(config, at))
        suites[path] = results
        out.write(f"{path}: {len(results)} case{'s' if len(results) != 1 else ''} against "
                  f"{described}\n")
        out.write(format_report(results, verbose=args.verbose) + "\n")
    if args.junit_xml:
        try:
            junit_xml(suites, args.junit_xml)
        except OSError as exc:
            # A failed write (a full disk) names no file of its own.
            raise UsageError(f"--junit-xml {args.junit_xml}: cannot write: "
                             f"{exc.strerror or exc}") from None
    results_all = [r for rs in suites.values() for r in rs]
    failed = sum(1 for r in results_all if r.status == "failed")
    errors = sum(1 for r in results_all if r.status == "error")
    if len(args.expectations) > 1:
        passed = sum(1 for r in results_all if r.passed)
        out.write(f"total: {passed} passed, {failed} failed, {errors} errors\n")
    if errors or load_errors:
        return 2
    return 1 if failed else 0


def _file_error(path: str, exc: ConfigError, message: str | None = None,
                line: int | None = None) -> CaseResult:
    # A file that cannot be read still shows up in JUnit XML as one erroring test.
    placeholder = Case(file=path, index=0, name="(loading)",
                       line=line if message is not None else exc.location.line, domain="-")
    return CaseResult(placeholder, error=message if message is not None else str(exc))


def _side(positional: str | None, repeated: Sequence[str] | None, what: str) -> list[str]:
    files = list(repeated or [])
    if positional is not None:
        files.insert(0, positional)
    if not files:
        raise UsageError(f"no {what} configuration given (positional {what.upper()} or "
                          f"--{what} FILE)")
    return files


def _cmd_diff(args: argparse.Namespace) -> int:
    """Compare two configurations decision by decision."""
    old_files = _side(args.old, args.old_files, "old")
    new_files = _side(args.new, args.new_files, "new")
    at = evaluation_time(args)
    old = config_at(load_configuration(old_files, format=config_format(args)), at)
    new = config_at(load_configuration(new_files, format=config_format(args)), at)
    result = diff_configs(old, new, progress=terminal_progress("comparing decisions"))
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_diff(result, old_name=", ".join(old_files),
                                     new_name=", ".join(new_files)))
    if args.fail_on_downgrade and result.count(ChangeClass.DOWNGRADE):
        return 1
    if args.fail_on_review and result.count(ChangeClass.REVIEW):
        return 1
    return 0


def _cmd_tree(args: argparse.Namespace) -> int:
    """Print the scope tree of a configuration."""
    config = config_at(load_configuration(args), evaluation_time(args))
    sys.stdout.write(render_tree(config, values=not args.names_only))
    return 0


def register(subparsers: Any) -> None:
    """Add ``test``, ``diff`` and ``tree`` to the command line's subparsers."""
    test = subparsers.add_parser(
        "test", help="check expectation files against a configuration",
        description="Run every case of the expectation files against the configuration "
                    "(--config, else each file's own 'config' key, else the bundled example). "
                    "Exit status 0: all passed; 1: a case failed; 2: an error.")
    test.add_argument("expectations", nargs="+", metavar="EXPECTATIONS",
                      help="expectation file (TOML with [[case]] tables)")
    add_config_files(test, positional=False)
    test.add_argument("--junit-xml", metavar="PATH", help="also write JUnit XML to PATH")
    test.add_argument("--verbose", "-v", action="store_true", help="list passing cases too")
    add_at(test)
    test.set_defaults(func=_cmd_test, intermixed="expectations")

    diff = subparsers.add_parser(
        "diff", help="compare two configurations decision by decision",
        description="Resolve every binding x domain named in either configuration (and a "
                    "domain no stanza names) with both, and class each change of decision as "
                    "downgrade, upgrade, neutral or review.")
    diff.add_argument("old", nargs="?", metavar="OLD", help="the current configuration file")
    diff.add_argument("new", nargs="?", metavar="NEW", help="the proposed configuration file")
    diff.add_argument("--old", dest="old_files", action="append", metavar="FILE",
                      help="old configuration file (repeat to layer files)")
    diff.add_argument("--new", dest="new_files", action="append", metavar="FILE",
                      help="new configuration file (repeat to layer files)")
    diff.add_argument("--fail-on-downgrade", action="store_true",
                      help="exit 1 when any change is a downgrade (for CI gates)")
    diff.add_argument("--fail-on-review", action="store_true",
                      help="exit 1 when any change needs review")
    add_format(diff)
    add_json(diff, "the changes")
    add_at(diff)
    diff.set_defaults(func=_cmd_diff)

    tree = subparsers.add_parser(
        "tree", help="print the scope tree of a configuration",
        description="Print global, global domains, binding groups, bindings and their domain "
                    "stanzas with what each sets.")
    add_config_files(tree)
    tree.add_argument("--names-only", action="store_true",
                      help="show scope names without the options they set")
    add_at(tree)
    tree.set_defaults(func=_cmd_tree)
