"""Compile a configuration once; resolve (binding, domain) pairs fast (SEMANTICS 2, 7).

:mod:`.core` holds :class:`Resolver` and the one precedence order; :mod:`.index` the
per-binding lookup tables it compiles; :mod:`.floors` raising effective values to the
floors; :mod:`.matchcache` the bounded regex match cache.  Nothing here performs I/O or
reads the clock.
"""

from __future__ import annotations

from .core import OVERRIDABLE_OPTIONS, Resolver
from .matchcache import RegexMatchCache

__all__ = ["OVERRIDABLE_OPTIONS", "RegexMatchCache", "Resolver"]
