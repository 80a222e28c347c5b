"""``tlspolicy exceptions``: the expiring stanzas of a configuration, with the time left."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..expiry import describe_left, exceptions
from ._common import add_at, add_config_files, add_json, evaluation_time, load_configuration

__all__ = ["register"]


def _cmd_exceptions(args: argparse.Namespace) -> int:
    at = evaluation_time(args)
    found = exceptions(load_configuration(args))
    if args.json:
        json.dump([e.to_dict(at) for e in found], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not found:
        sys.stdout.write("no stanza has 'expires'\n")
        return 0
    for e in found:
        flags = " (expiry weakens: acknowledged)" if e.expiry_weakens else ""
        reason = f"  reason: {e.reason}" if e.reason else "  reason: (none given)"
        sys.stdout.write(f"{e.scope}: expires {e.expires.isoformat()}, "
                         f"{describe_left(e.left(at))}{flags}\n{reason}\n")
    expired = sum(1 for e in found if e.expires <= at)
    sys.stdout.write(f"{len(found)} expiring stanza{'s' if len(found) != 1 else ''}"
                     + (f", {expired} already expired (ignored)" if expired else "") + "\n")
    return 0


def register(sub: Any) -> None:
    """Add ``exceptions`` to the command line's subparsers."""
    parser = sub.add_parser(
        "exceptions", help="list stanzas with 'expires' and the time they have left",
        description="List every domain stanza and floor that carries 'expires', soonest "
                    "first, with the time left (or how long ago it expired) and its reason.")
    add_config_files(parser)
    add_at(parser)
    add_json(parser, "the list")
    parser.set_defaults(func=_cmd_exceptions)
