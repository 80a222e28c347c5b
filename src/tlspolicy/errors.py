"""The exception hierarchy.

Every error raised for bad input is a :class:`TlsPolicyError`.  Errors about a
configuration carry a :class:`Location` naming the file, the TOML/conf line where
known, the scope path, the option and the offending value, so an operator can
find the mistake without reading a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs

__all__ = [
    "BindingGroupConflictError",
    "ConfigError",
    "ConfigErrors",
    "ConfigSyntaxError",
    "DuplicateScopeError",
    "ExpiryWeakensError",
    "InvalidDomainError",
    "InvalidValueError",
    "Location",
    "MissingDependencyError",
    "OptionScopeError",
    "OptionVersionError",
    "PolicyInputError",
    "RegexError",
    "ResolutionError",
    "TlsPolicyError",
    "UnknownBindingError",
    "UnknownOptionError",
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
        """Render as ``file:line:col: scope: option 'x'`` leaving out unknown parts."""
        parts: list[str] = []
        where = self.file if self.file is not None else "<config>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        parts.append(where)
        if self.scope:
            parts.append(self.scope)
        if self.option:
            parts.append(f"option {self.option!r}")
        return ": ".join(parts)

    def evolve(self, **changes: object) -> Location:
        """Return a copy with some fields replaced (``attrs.evolve`` with typing)."""
        return attrs.evolve(self, **changes)  # type: ignore[arg-type]


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
        text = f"{self.location.describe()}: {self.message}"
        if self.has_value:
            text += f" (value {self.value!r})"
        return text

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


class ConfigSyntaxError(ConfigError):
    """The file is not valid TOML (or ecelerity.conf syntax), or not readable."""


class UnknownOptionError(ConfigError):
    """An option or key this library does not know."""


class InvalidValueError(ConfigError):
    """A value outside the option's set, of the wrong type, or malformed."""


class OptionScopeError(ConfigError):
    """An option set in a scope where it is not valid (``use_dane`` in a binding)."""


class OptionVersionError(ConfigError):
    """An option newer than the configured compatibility version."""


class RegexError(ConfigError):
    """A ``/regex/`` domain Python's ``re`` cannot compile."""


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


class MissingDependencyError(TlsPolicyError, ImportError):
    """An optional dependency (e.g. ``cryptography`` for DANE) is not installed."""
