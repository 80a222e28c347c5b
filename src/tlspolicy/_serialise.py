"""Plain-dict (JSON) building blocks shared by the core's ``to_dict`` methods.

This module sits below :mod:`.decision` (it imports only :mod:`.options`), so
the dependency goes one way: a model renders itself with these helpers, and
nothing here needs to know the models.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import cattrs

from .options import OPTION_SPECS, UNSET

__all__ = ["converter", "effective_to_dict"]

#: Unstructures the core's attrs models to builtins; enums become their values.
converter = cattrs.Converter()
converter.register_unstructure_hook(enum.Enum, lambda e: e.value)


def effective_to_dict(values: Mapping[str, object]) -> dict[str, Any]:
    """Effective option values in their configuration spelling (``None`` when unset)."""
    return {name: (None if value is None or value is UNSET else OPTION_SPECS[name].dump(value))
            for name, value in values.items()}
