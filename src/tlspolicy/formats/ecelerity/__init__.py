"""Momentum's ``ecelerity.conf`` dialect: reading (:mod:`.parser`, over the
:mod:`.lexer`), what reading gives (:mod:`.document`) and writing (:mod:`.writer`).

The package re-exports what callers outside it use: reading (and the include loader it
takes), writing, the document and the errors.  The limits are :mod:`.document`'s."""

from __future__ import annotations

from .document import (
    EcelerityDocument,
    EcelerityIncludeError,
    EcelerityStructureError,
    EcelerityUnknownStanzaError,
    EcelerityWarning,
)
from .parser import (
    Loader,
    load_ecelerity_config,
    loads_ecelerity_config,
    parse_ecelerity,
    read_ecelerity,
)
from .writer import EcelerityExportError, dumps_ecelerity, ecelerity_export_losses

__all__ = [
    "EcelerityDocument",
    "EcelerityExportError",
    "EcelerityIncludeError",
    "EcelerityStructureError",
    "EcelerityUnknownStanzaError",
    "EcelerityWarning",
    "Loader",
    "dumps_ecelerity",
    "ecelerity_export_losses",
    "load_ecelerity_config",
    "loads_ecelerity_config",
    "parse_ecelerity",
    "read_ecelerity",
]
