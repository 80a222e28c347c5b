"""What every command shares: taking configuration files, reporting errors, exit statuses.

Every command that reads a configuration takes it the same way: ``--config FILE``
(repeatable; later files override earlier ones, option by option), and, where the
command has no other list of files to take, the same files as positional arguments;
``--format toml|ecelerity`` says how to read them when their names do not.
Without any file, the inspecting commands use the bundled example and say so on
standard error; ``check``, ``lint`` and ``serve``, which judge or serve the operator's
own files, refuse to run without files.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
from collections.abc import Callable, Sequence
from typing import Final, TextIO

from .._serialise import LONGEST_SETTING, is_setting_time
from ..errors import ConfigError, ConfigErrors, MissingDependencyError, TlsPolicyError
from ..formats.bundled import EXAMPLE_NAME, example_config
from ..formats.loader import FORMATS, load_config
from ..scopes import Config

__all__ = [
    "EXIT_ERROR",
    "EXIT_FOUND",
    "EXIT_OK",
    "UsageError",
    "add_at",
    "add_binding",
    "add_config_files",
    "add_format",
    "add_json",
    "add_no_file_checks",
    "config_format",
    "config_paths",
    "evaluation_time",
    "format_hint",
    "load_configuration",
    "needs_extra",
    "note",
    "print_errors",
    "seconds",
    "terminal_progress",
    "warn",
]

EXIT_OK: Final = 0
"""The command did what was asked and found nothing to complain about."""
EXIT_FOUND: Final = 1
"""A check found something: a failed case, a downgrade, a warning under ``--strict``."""
EXIT_ERROR: Final = 2
"""An input or operational error: a file that does not load, a port in use."""


class UsageError(Exception):
    """The command line asks for something the command cannot do (exit status 2)."""


_LAYERED: Final = ("configuration file, TOML or ecelerity.conf; several are layered in order, "
                   "later files override earlier ones")


def add_config_files(parser: argparse.ArgumentParser, *, positional: bool = True,
                     what: str = _LAYERED) -> None:
    """Add the configuration file arguments: positional ``FILE...``, ``--config FILE``
    and ``--format``."""
    if positional:
        # A default makes argparse treat FILE as optional, so that a missing DOMAIN is
        # reported alone, not as "DOMAIN, FILE are required".
        parser.add_argument("files", nargs="*", metavar="FILE", default=[], help=what)
        parser.set_defaults(intermixed="files")
    parser.add_argument("--config", "-c", action="append", dest="config_files", metavar="FILE",
                        help=f"{what} (repeatable; the same as a positional FILE)")
    add_format(parser)


def add_format(parser: argparse.ArgumentParser) -> None:
    """Add ``--format toml|ecelerity``, for every configuration file the command reads."""
    parser.add_argument("--format", choices=FORMATS, dest="config_format",
                        help="read every configuration file as this format (default: by "
                             "name, .conf and .ecelerity are ecelerity.conf, the rest TOML)")


def add_binding(parser: argparse.ArgumentParser, *,
                help: str = "binding name (default: the default binding)") -> None:
    """Add ``--binding``/``-b``: the binding the command decides or writes for."""
    parser.add_argument("--binding", "-b", help=help)


def add_json(parser: argparse.ArgumentParser, what: str) -> None:
    """Add ``--json``: print ``what`` as JSON instead of text."""
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON")


def add_no_file_checks(parser: argparse.ArgumentParser, why: str) -> None:
    """Add ``--no-file-checks``, said of a command where ``why`` it is wanted."""
    parser.add_argument("--no-file-checks", action="store_true",
                        help="do not check that every tls_ca, tls_certificate and tls_key is a "
                             f"readable PEM file of its kind ({why})")


def config_format(args: argparse.Namespace) -> str | None:
    """The ``--format`` given, or ``None`` (each file's name decides)."""
    fmt: str | None = getattr(args, "config_format", None)
    return fmt


def config_paths(args: argparse.Namespace) -> list[str]:
    """The configuration files named on the command line, positional ones first."""
    return [*(getattr(args, "files", None) or ()), *(args.config_files or ())]


def load_configuration(args: argparse.Namespace | Sequence[str], *,
                       example_allowed: bool = True, command: str = "this command",
                       format: str | None = None) -> Config:
    """Load the files named on the command line, or the bundled example (said on stderr).

    ``args`` is the parsed command line (its files and ``--format``) or a list
    of paths read in ``format``.
    """
    if isinstance(args, argparse.Namespace):
        paths, fmt = config_paths(args), config_format(args)
    else:
        paths, fmt = list(args), format
    if paths:
        return load_config(*paths, format=fmt)
    if not example_allowed:
        raise UsageError(f"{command} needs configuration files (FILE or --config FILE)")
    note(f"no configuration file given: using the bundled example ({EXAMPLE_NAME})")
    return example_config()


_PACKAGES: Final = {"dns": "dnspython", "prometheus_client": "prometheus-client",
                    "psycopg": "psycopg"}
"""Distribution names of modules whose import name differs from the package's."""


def needs_extra(what: str, exc: ImportError, extra: str) -> MissingDependencyError:
    """The error for ``what`` when an import failed with ``exc``: it names the package
    that is missing and how to install the ``extra`` that brings it."""
    module = (exc.name or "").split(".")[0]
    if isinstance(exc, MissingDependencyError) and exc.name:
        package = exc.name  # already the distribution name
    elif module:
        package = _PACKAGES.get(module, module)
    else:
        package = f"the {extra} extra's packages"
    return MissingDependencyError.for_extra(what, package, extra)


def seconds(text: str) -> float:
    """A flag's time in seconds: positive and at most ten years (what every time setting
    may be, see :data:`~tlspolicy._serialise.LONGEST_SETTING`), else a usage error."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not is_setting_time(value):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, at most "
                                         f"{LONGEST_SETTING:,} (ten years), got {text!r}")
    return value


def note(message: str) -> None:
    """A remark on standard error that does not change the exit status."""
    sys.stderr.write(f"tlspolicy: note: {message}\n")


def warn(message: str) -> None:
    """A warning on standard error."""
    sys.stderr.write(f"tlspolicy: warning: {message}\n")


def print_errors(exc: TlsPolicyError, stream: TextIO | None = None, *,
                 prefix: str = "tlspolicy: error: ") -> int:
    """Write every error ``exc`` holds, one a line; return how many there were."""
    out = sys.stderr if stream is None else stream
    errors = exc.errors if isinstance(exc, ConfigErrors) else (exc,)
    for error in errors:
        out.write(f"{prefix}{error}\n")
    return len(errors)


def format_hint(exc: TlsPolicyError, fmt: str | None) -> str | None:
    """A hint when a TOML file was read as ``ecelerity.conf`` because of its name."""
    if fmt is not None or not isinstance(exc, ConfigError):
        return None
    errors = exc.errors if isinstance(exc, ConfigErrors) else (exc,)
    for error in errors:
        name = error.location.file
        if name is None or not name.endswith((".conf", ".ecelerity")):
            continue
        try:
            with open(name, encoding="utf-8") as handle:
                # A line opening with '[' is a TOML table header; ecelerity.conf has none.
                looks_toml = any(line.lstrip().startswith("[") for line in handle)
        except (OSError, UnicodeDecodeError):
            continue
        if looks_toml:
            return (f"{name} was read as ecelerity.conf because of its name; if it is TOML, "
                    "pass --format toml")
    return None


def terminal_progress(label: str, *, after: float = 2.0,
                      stream: TextIO | None = None) -> Callable[[int, int], None] | None:
    """A ``progress(done, total)`` callback drawing one line on a terminal.

    ``None`` when standard error is not a terminal (CI logs stay clean).  Nothing
    is drawn until ``after`` seconds have passed, so quick runs print nothing;
    the line is cleared when ``done`` reaches ``total``.
    """
    out = sys.stderr if stream is None else stream
    if not out.isatty():
        return None
    start = time.monotonic()
    drawn = False

    def progress(done: int, total: int) -> None:
        nonlocal drawn
        if done >= total:
            if drawn:
                out.write("\r\x1b[K")
                out.flush()
            return
        if time.monotonic() - start < after:
            return
        drawn = True
        share = f" ({100 * done // total}%)" if total else ""
        out.write(f"\r{label}: {done:,} of {total:,}{share}")
        out.flush()

    return progress


def add_at(parser: argparse.ArgumentParser) -> None:
    """Add ``--at TIME``: the instant stanzas' ``expires`` are judged at (default: now)."""
    parser.add_argument(
        "--at", metavar="TIME",
        help="evaluate as at this instant (a date, meaning 00:00:00Z, or a date-time with "
             "an offset, e.g. 2026-12-15T12:00:00Z); default: now. Stanzas whose 'expires' "
             "has passed are ignored")


def evaluation_time(args: argparse.Namespace | None = None) -> _dt.datetime:
    """The ``--at`` instant, or the clock (UTC) when none was given."""
    text = getattr(args, "at", None) if args is not None else None
    if not text:
        return _dt.datetime.now(_dt.UTC)
    try:
        if len(text.strip()) == 10:
            day = _dt.date.fromisoformat(text.strip())
            return _dt.datetime(day.year, day.month, day.day, tzinfo=_dt.UTC)
        when = _dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--at {text!r}: not a date (2026-12-15) or a date-time with an "
                         "offset (2026-12-15T12:00:00Z)") from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise UsageError(f"--at {text!r} has no offset; say Z or +HH:MM (a local time would "
                         "depend on this machine)")
    try:
        return when.astimezone(_dt.UTC)
    except OverflowError:
        raise UsageError(f"--at {text!r} is outside the instants a date-time can hold in UTC "
                         "(years 1 to 9999)") from None
