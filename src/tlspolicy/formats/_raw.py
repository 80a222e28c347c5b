"""Compatibility import: the raw tree lives in :mod:`tlspolicy._raw` (core side)."""

from .._raw import RawOption, RawScope

__all__ = ["RawOption", "RawScope"]
