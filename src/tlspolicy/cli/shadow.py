"""``tlspolicy shadow-report``: print the counts a shadowing server wrote."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..servers.shadow import ShadowCounts, format_report
from ._common import EXIT_ERROR, EXIT_FOUND, EXIT_OK

__all__ = ["register"]

_FIELDS = ("requests", "differing", "keys", "overflow", "shed", "errors")


def _cmd_shadow_report(args: argparse.Namespace) -> int:
    try:
        with open(args.report, encoding="utf-8") as handle:
            data = json.load(handle)
        counts = ShadowCounts(**{k: data[k] for k in _FIELDS})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        sys.stderr.write(f"tlspolicy: error: {args.report}: not a shadow report ({exc})\n")
        return EXIT_ERROR
    sys.stdout.write(format_report(counts))
    if args.fail_on_downgrade and counts.differing.get("downgrade"):
        return EXIT_FOUND
    return EXIT_OK


def register(sub: Any) -> None:
    """Add ``shadow-report`` to the command line's subparsers."""
    parser = sub.add_parser(
        "shadow-report", help="print the counts of a server running with --shadow",
        description="Read the JSON file 'serve socketmap --shadow-report PATH' writes and "
                    "print how many requests the candidate configuration would answer "
                    "differently, by class.")
    parser.add_argument("report", metavar="PATH", help="the report file")
    parser.add_argument("--fail-on-downgrade", action="store_true",
                        help="exit 1 when the candidate downgraded any request")
    parser.set_defaults(func=_cmd_shadow_report)
