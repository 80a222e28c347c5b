"""The package version, in a module of its own so that any layer can read it.

``tlspolicy.__version__`` re-exports it; the compiled cache tags its entries with it.
"""

from __future__ import annotations

__version__ = "0.1.0"
