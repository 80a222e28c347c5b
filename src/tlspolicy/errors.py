"""The exception hierarchy.

Every error raised for bad input is a :class:`TlsPolicyError`.  Errors about a
configuration carry a :class:`Location` naming the file, the TOML/conf line where
known, the scope path, the option and the offending value, so an operator can
find the mistake without reading a traceback.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence

import attrs

__all__ = [
    "EXCERPT_CHARS",
    "BindingGroupConflictError",
    "ConfigError",
    "ConfigErrors",
    "ConfigSyntaxError",
    "DuplicateScopeError",
    "EmptyPolicyError",
    "ExpiryWeakensError",
    "FileReadError",
    "FileTooLargeError",
    "InvalidDomainError",
    "InvalidValueError",
    "Location",
    "MissingDependencyError",
    "NoConfigFilesError",
    "NotRegularFileError",
    "OptionScopeError",
    "OptionVersionError",
    "PolicyInputError",
    "RegexError",
    "ResolutionError",
    "StoreError",
    "StoreUnavailableError",
    "TlsFileError",
    "TlsPolicyError",
    "TooManyFilesError",
    "UnknownBindingError",
    "UnknownOptionError",
    "excerpt",
]


@attrs.frozen(slots=True)
class Location:
    """Where a configuration problem sits.

    Every field is optional because some errors are found before the scope or
    option is known (a file that is not TOML has no scope path).
    """

    file: str | None = None
    line: int | None = None
    column: int | None = None
    scope: str | None = None
    option: str | None = None

    def describe(self) -> str:
        """Render as ``file:line:col: scope: option 'x'`` leaving out unknown parts
        (``line 3`` when the text came from no file; empty when nothing is known)."""
        parts: list[str] = []
        where = self.file if self.file is not None else ""
        if self.line is not None:
            where += f":{self.line}" if where else f"line {self.line}"
            if self.column is not None:
                where += f":{self.column}"
        if where:
            parts.append(where)
        if self.scope:
            parts.append(self.scope)
        if self.option:
            parts.append(f"option {self.option!r}")
        return ": ".join(parts)

    def evolve(self, **changes: object) -> Location:
        """Return a copy with some fields replaced (``attrs.evolve`` with typing)."""
        return attrs.evolve(self, **changes)  # type: ignore[arg-type]


EXCERPT_CHARS = 60
"""The most characters of a value or of file content an error message quotes."""


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)`` cut to about ``limit`` characters, saying how long the whole was.

    Messages quote values from files and from strangers; a short excerpt
    locates the mistake without echoing a whole file (or a secret) back.
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f"{len(value)} characters" if isinstance(value, str) else type(value).__name__
    return f"{text[:limit]}... ({size})"


def _show_value(value: object) -> str:
    """A value as a configuration file writes it (``true``, ``'x'``, ``{ a = 1 }``), for
    messages an operator reads; never a Python repr of a container or a boolean."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing"
    if isinstance(value, str | int | float):
        return repr(value)
    if isinstance(value, enum.Enum):
        return _show_value(value.value)
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{k} = {_show_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show_value(v) for v in value) + "]"
    return str(value)


def _cut(value: object, limit: int = EXCERPT_CHARS) -> str:
    # A value quoted in a message, as a file writes it; long ones are cut, saying how long.
    # The cut is in the middle: a path's file name, at its end, stays readable.
    text = _show_value(value)
    if len(text) <= limit:
        return text
    size = f"{len(value)} characters" if isinstance(value, str) else type(value).__name__
    head = limit * 2 // 3
    return f"{text[:head]}...{text[head - limit:]} ({size})"


class TlsPolicyError(Exception):
    """Base class of every error this library raises on purpose."""


class ConfigError(TlsPolicyError):
    """A configuration that cannot be used, with its :class:`Location`."""

    def __init__(
        self,
        message: str,
        location: Location | None = None,
        *,
        value: object = None,
        has_value: bool = False,
    ) -> None:
        self.message = message
        self.location = location if location is not None else Location()
        self.value = value
        self.has_value = has_value
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = self.location.describe()
        text = f"{where}: {self.message}" if where else self.message
        if self.has_value:
            text += f" (value {_cut(self.value)})"
        return text

    def __reduce__(self) -> tuple[object, ...]:
        # Pickle by fields (errors cross process boundaries, e.g. a reload in a worker).
        return (_restore_config_error,
                (type(self), self.message, self.location, self.value, self.has_value))

    def located(self, location: Location) -> ConfigError:
        """Return a copy of this error with missing location fields filled in."""
        own = self.location
        merged = Location(
            file=own.file if own.file is not None else location.file,
            line=own.line if own.line is not None else location.line,
            column=own.column if own.column is not None else location.column,
            scope=own.scope if own.scope is not None else location.scope,
            option=own.option if own.option is not None else location.option,
        )
        clone = type(self).__new__(type(self))
        ConfigError.__init__(
            clone, self.message, merged, value=self.value, has_value=self.has_value
        )
        return clone


def _restore_config_error(cls: type[ConfigError], message: str, location: Location,
                          value: object, has_value: bool) -> ConfigError:
    error = cls.__new__(cls)
    ConfigError.__init__(error, message, location, value=value, has_value=has_value)
    return error


class ConfigSyntaxError(ConfigError):
    """The file is not valid TOML (or ecelerity.conf syntax), or not readable."""


class FileReadError(ConfigSyntaxError):
    """A configuration (or certificate) file that cannot be read safely.

    Raised for a missing or unreadable file and, through the subclasses, for
    what the readers refuse on purpose.  Messages never quote the file's
    content.
    """


class NotRegularFileError(FileReadError):
    """A path that is a FIFO, a device, a directory or a socket, not a regular file."""


class FileTooLargeError(FileReadError):
    """A file larger than the reader's size cap (or a load over its total byte cap)."""


class TooManyFilesError(FileReadError):
    """A load that would read more files than its cap (include fan-out)."""


class TlsFileError(ConfigError):
    """A ``tls_ca``, ``tls_certificate`` or ``tls_key`` file that cannot be used.

    Missing, unreadable, not a regular file, not PEM of the right kind, or a
    key that does not match its certificate; located at the scope path and
    option, with the file name as the value.
    """


class NoConfigFilesError(ConfigError):
    """A load given no file at all: never an empty (all-plaintext) policy."""


class EmptyPolicyError(ConfigError):
    """A configuration file (or a whole load) that sets no option at all.

    An empty or comment-only file would mean plaintext for every domain; that
    policy must be written out (``tls = "no"`` under ``[global]``), never implied
    by a file truncated or emptied by mistake.
    """


class UnknownOptionError(ConfigError):
    """An option or key this library does not know."""


class InvalidValueError(ConfigError):
    """A value outside the option's set, of the wrong type, or malformed."""


class OptionScopeError(ConfigError):
    """An option set in a scope where it is not valid (``use_dane`` in a binding)."""


class OptionVersionError(ConfigError):
    """An option newer than the configured compatibility version."""


class RegexError(ConfigError):
    """A ``/regex/`` domain RE2 cannot compile (backreferences, lookaround, too large)."""


class DuplicateScopeError(ConfigError):
    """The same scope declared twice in one file."""


class BindingGroupConflictError(ConfigError):
    """A binding that is placed in two binding groups."""


class ExpiryWeakensError(ConfigError):
    """An ``expires`` whose passing would make some decision weaker, not acknowledged
    with ``expiry_weakens = true`` (SEMANTICS section 8)."""


class ConfigErrors(ConfigError):
    """Several configuration errors found in one pass; ``errors`` lists them all."""

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors: tuple[ConfigError, ...] = tuple(errors)
        if not self.errors:
            raise ValueError("ConfigErrors needs at least one error")
        first = self.errors[0]
        super().__init__(first.message, first.location, value=first.value,
                         has_value=first.has_value)

    def __str__(self) -> str:
        count = len(self.errors)
        head = f"{count} configuration error{'s' if count != 1 else ''}:"
        return "\n".join([head, *(f"  {e}" for e in self.errors)])

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.errors,))

    @classmethod
    def raise_if_any(cls, errors: Sequence[ConfigError]) -> None:
        """Raise the only error, or a :class:`ConfigErrors` of several; no-op if empty."""
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise cls(errors)


class ResolutionError(TlsPolicyError):
    """A resolution request that cannot be answered (bad domain, unknown binding)."""


class UnknownBindingError(ResolutionError, LookupError):
    """The binding named in a request is not declared; never a silent fallback."""


class InvalidDomainError(ResolutionError, ValueError):
    """A domain name that cannot be normalised (bad IDNA, empty label, ...)."""


class PolicyInputError(TlsPolicyError, ValueError):
    """A destination-policy input (MTA-STS policy, TLSA record, ...) that is malformed."""


def strings_tuple(value: Iterable[str], *, one_string: str,
                  not_a_string: Callable[[object], str]) -> tuple[str, ...]:
    """``value`` as a tuple of strings, for a model's converter; a lone string (which
    would iterate as characters) raises :class:`PolicyInputError` with ``one_string``,
    an item that is no string with ``not_a_string(item)``."""
    if isinstance(value, str):
        raise PolicyInputError(one_string)
    items = tuple(value)
    for item in items:
        if not isinstance(item, str):
            raise PolicyInputError(not_a_string(item))
    return items


class StoreError(TlsPolicyError):
    """A store operation that cannot be done (bad name, corrupt value, refused setup)."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached right now (Redis down, database locked too long)."""


class MissingDependencyError(TlsPolicyError, ImportError):
    """An optional dependency (e.g. ``cryptography`` for DANE) is not installed.

    Build it with :meth:`for_extra`, which names the package that is missing and
    the extra that installs it; ``name`` (as on :class:`ImportError`) is the
    package and ``extra`` the extra.
    """

    extra: str | None = None

    @classmethod
    def for_extra(cls, what: str, package: str, extra: str) -> MissingDependencyError:
        """``WHAT needs PACKAGE, which is not installed: pip install 'tlspolicy[EXTRA]'
        (from a clone: pip install -e '.[EXTRA]')``."""
        error = cls(f"{what} needs {package}, which is not installed: install the "
                    f"'{extra}' extra, pip install 'tlspolicy[{extra}]' (from a clone of "
                    f"the repository: pip install -e '.[{extra}]')", name=package)
        error.extra = extra
        return error
