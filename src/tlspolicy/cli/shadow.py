"""``tlspolicy shadow-report``: print the counts a shadowing server wrote."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..formats.files import read_regular_text
from ..servers.shadow import ShadowCounts, format_report
from ._common import EXIT_ERROR, EXIT_FOUND, EXIT_OK

__all__ = ["register"]


def _cmd_shadow_report(args: argparse.Namespace) -> int:
    # A regular file of bounded size (FileReadError, printed with its name, otherwise).
    text = read_regular_text(args.report, what="shadow report")
    try:
        counts = ShadowCounts.from_dict(json.loads(text))
    except (ValueError, RecursionError) as exc:
        why = exc if isinstance(exc, ValueError) else "JSON nested too deeply"
        sys.stderr.write(f"tlspolicy: error: {args.report}: not a shadow report ({why})\n")
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
