"""Momentum's ``ecelerity.conf`` dialect: reading (:mod:`.parser`, over the
:mod:`.lexer`), what reading gives (:mod:`.document`) and writing (:mod:`.writer`)."""

from __future__ import annotations

from .document import (
    MAX_INCLUDE_DEPTH,
    MAX_NESTING_DEPTH,
    EcelerityDocument,
    EcelerityIncludeError,
    EcelerityStructureError,
    EcelerityUnknownStanzaError,
    EcelerityWarning,
    Loader,
)
from .parser import (
    load_ecelerity_config,
    loads_ecelerity_config,
    parse_ecelerity,
    read_ecelerity,
)
from .writer import EcelerityExportError, dumps_ecelerity, ecelerity_export_losses

__all__ = [
    "MAX_INCLUDE_DEPTH",
    "MAX_NESTING_DEPTH",
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
