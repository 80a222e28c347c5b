"""``serve socketmap --discovery`` on the command line: the extra it needs, and the
discovery run as the flags and a ``[discovery]`` table give it (the run itself is
:mod:`tlspolicy.servers.app_discovery`)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from ..formats.settings import discovery_settings
from ..postfix.levels import PostfixVersion
from ..servers.app_discovery import DiscoveryRun
from ._common import config_paths, needs_extra
from .serve_inputs import serve_options

__all__ = ["discovery_run", "require_discovery"]


def require_discovery() -> None:
    """Raise the error naming the ``tlspolicy[discovery]`` extra when it is not installed."""
    try:
        # the discovery extra
        from .. import discovery  # noqa: F401
    except ImportError as exc:
        raise needs_extra("--discovery", exc, "discovery") from None


def discovery_run(args: argparse.Namespace, table: Mapping[str, Any],
                  version: PostfixVersion) -> DiscoveryRun:
    """Discovery as ``serve socketmap --discovery`` would run it with ``table`` as its
    ``[discovery]`` table (not started)."""
    require_discovery()
    return DiscoveryRun(discovery_settings(table, flags=args), version,
                        options=serve_options(args, config_paths(args)))
