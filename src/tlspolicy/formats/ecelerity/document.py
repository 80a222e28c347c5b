"""What reading ``ecelerity.conf`` gives: the document, its warnings, its errors,
and the reader's limits."""

from __future__ import annotations

from typing import Final

import attrs

from ..._raw import RawScope
from ...errors import (
    ConfigSyntaxError,
    Location,
    excerpt,
)

# How much of a token a message quotes.
_TOKEN_EXCERPT: Final = 20

MAX_NESTING_DEPTH: Final = 64
"""Deepest stanza nesting accepted (a guard against runaway input, not a Momentum limit)."""

MAX_INCLUDE_DEPTH: Final = 32
"""Deepest chain of ``include`` directives accepted."""


class EcelerityStructureError(ConfigSyntaxError):
    """A stanza nested where Momentum does not allow it, or a scope stanza without a name."""


class EcelerityUnknownStanzaError(EcelerityStructureError):
    """A stanza that is no policy scope, no documented Momentum scope and no module.

    Inside a ``binding_group``, ``binding`` or ``domain`` only documented
    scopes may sit; at top level an unknown stanza is taken for a module
    unless it is a near miss of a scope keyword or a TLS option (``domian``).
    """


class EcelerityIncludeError(ConfigSyntaxError):
    """An ``include`` that cannot be followed: missing or unreadable file, cycle, too deep."""


@attrs.frozen(slots=True)
class EcelerityWarning:
    """One item of the file that the reader skipped because it is not a TLS policy option.

    ``kind`` is ``"option"`` or ``"stanza"``; ``name`` is written as in the
    file, ``argument`` is the stanza's argument if any.  ``suggestion`` names
    a TLS option the skipped option name closely resembles (a likely typo).
    """

    location: Location
    kind: str
    name: str
    argument: str | None = None
    suggestion: str | None = None

    def describe(self) -> str:
        """A one-line message: ``file:line:col: scope: skipped option 'x' (...)``."""
        what = f"{self.kind} {excerpt(self.name, _TOKEN_EXCERPT)}"
        if self.argument is not None:
            what += f" {excerpt(self.argument, _TOKEN_EXCERPT)}"
        text = f"{self.location.describe()}: skipped {what}: not an outbound TLS policy item"
        if self.suggestion is not None:
            text += f" (did you mean {self.suggestion!r}?)"
        return text


@attrs.frozen(slots=True)
class EcelerityDocument:
    """The result of reading an ``ecelerity.conf``.

    ``tree`` is the raw scope tree for :func:`tlspolicy.scopes.build_config`
    (repeated ``binding_group`` stanzas already merged into the first);
    ``warnings`` lists every skipped option and stanza in file order;
    ``has_dane_module`` tells whether a top-level ``dane`` module stanza is
    present (Momentum ignores ``use_dane`` without it); ``files`` lists every
    file read, the main one first.
    """

    tree: RawScope
    warnings: tuple[EcelerityWarning, ...]
    has_dane_module: bool
    files: tuple[str, ...]
