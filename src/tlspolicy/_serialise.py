"""Plain-dict (JSON) building blocks shared by the core's ``to_dict`` methods, and the
compact JSON bytes that stores hold (:func:`dumps_json` / :func:`loads_json`).

This module sits below :mod:`.decision` (it imports only :mod:`.options` and
:mod:`.errors`), so the dependency goes one way: a model renders itself with these
helpers, and nothing here needs to know the models.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from typing import Any, Final

import cattrs

from .errors import StoreError
from .options import OPTION_SPECS, UNSET

__all__ = ["FIRST_TIME", "LAST_TIME", "LONGEST_SETTING", "converter", "dumps_json",
           "effective_to_dict", "is_setting_time", "loads_json", "stored_count",
           "stored_time"]

#: Unstructures the core's attrs models to builtins; enums become their values.
converter = cattrs.Converter()
converter.register_unstructure_hook(enum.Enum, lambda e: e.value)


def effective_to_dict(values: Mapping[str, object]) -> dict[str, Any]:
    """Effective option values in their configuration spelling (``None`` when unset)."""
    return {name: (None if value is None or value is UNSET else OPTION_SPECS[name].dump(value))
            for name, value in values.items()}


# One encoder for every write: json.dumps with these arguments builds a new one each call.
_ENCODE: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


def dumps_json(value: object) -> bytes:
    """Encode a JSON value compactly (sorted keys, so equal values give equal bytes)."""
    return _ENCODE(value).encode()


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):  # the literal is too large for a float
        raise ValueError(f"{text[:30]} is too large for a float")
    return number


def loads_json(data: bytes) -> object:
    """Decode what :func:`dumps_json` wrote; a corrupt value raises :class:`StoreError`.

    ``NaN``, ``Infinity`` and a number too large for a float (``1e400``, which Python
    reads as an infinity) are corrupt: no writer here produces them, a time that is never
    reached would leave an entry unchecked for as long as it is kept, and written back
    they would be ``Infinity``, which this reader refuses, so the entry would be lost
    then.  Readers of times also bound them with :func:`stored_time`.
    """
    try:
        return json.loads(data, parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"stored value is not JSON: {exc}") from None
    except RecursionError:
        # Nesting no writer of this package produces (a damaged or foreign entry).
        raise StoreError("stored value is JSON nested too deeply") from None


#: The first and last seconds a datetime holds (0001-01-01 00:00:00 and 9999-12-31
#: 23:59:59 UTC): a time outside them cannot be a date, and converting it would fail.
FIRST_TIME: Final = -62_135_596_800
LAST_TIME: Final = 253_402_300_799


#: The longest time a setting may give (ten years, in seconds): a wait or a lifetime
#: added to the clock must give a time a store can hold (see :func:`stored_time`), or
#: every entry written with it would be refused when read back.
LONGEST_SETTING: Final = 10 * 365 * 86400


def is_setting_time(value: object) -> bool:
    """Whether ``value`` may be a time a setting gives, in seconds: a number (not a
    boolean), positive and at most :data:`LONGEST_SETTING` (NaN and the infinities are
    not).  The one rule of every time setting, in a file, a flag or the API."""
    return not isinstance(value, bool) and isinstance(value, int | float) and (
        0 < value <= LONGEST_SETTING)


def stored_time(value: object) -> float:
    """``value`` as a float within a datetime's range (seconds since the epoch), else
    ``ValueError`` (``OverflowError`` for an integer too large): for times read back from
    a store, which this package writes as JSON numbers only (a string or a boolean is
    damage, not a time)."""
    if type(value) is not float and type(value) is not int:
        raise ValueError(f"{_shown(value)} is not a time")
    number = float(value)
    if not FIRST_TIME <= number <= LAST_TIME:  # NaN and the infinities fail too
        raise ValueError(f"{number} is not a time")
    return number


def stored_count(value: object, limit: int = 2**31 - 1) -> int:
    """``value`` as a count read back from a store: an integer from 0 to ``limit``,
    else ``ValueError`` (a float, a string, a boolean or a negative count is damage)."""
    if type(value) is not int or not 0 <= value <= limit:
        raise ValueError(f"{_shown(value)} is not a count")
    return value


def _shown(value: object) -> str:
    # A damaged value may be a list of a million items: its start is enough to name it.
    if type(value) is int and value.bit_length() > 256:
        return "a number too large"  # its repr would cost more than it says
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:60]}..."
