"""``tlspolicy import-cache``: carry another daemon's MTA-STS cache into the discovery store.

Switching from postfix-mta-sts-resolver or postfix-tlspol keeps trust on first use: every
unexpired policy its cache holds is written into tlspolicy's discovery store
(``--cache``, or ``--redis`` with its local mirror), so the first lookup of each
domain after the switch is already answered with it. Needs the
``tlspolicy[discovery]`` extra (and ``tlspolicy[redis]`` for a Redis source or
store, ``tlspolicy[postgres]`` for a PostgreSQL source).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from ._common import EXIT_OK, UsageError, needs_extra
from .discover import STORE_OPTIONS, add_discovery_arguments, open_discovery

__all__ = ["SOURCES", "register"]

#: ``--from`` kinds and what SOURCE names for each.
SOURCES = {
    "mta-sts-resolver-sqlite": "the SQLite file of postfix-mta-sts-resolver's sqlite cache "
                               "(its cache.options.filename)",
    "mta-sts-resolver-redis": "the redis:// URL of postfix-mta-sts-resolver's redis cache "
                              "(its cache.options.url)",
    "mta-sts-resolver-postgres": "the libpq connection string of postfix-mta-sts-resolver's "
                                 "postgres cache (its cache.options.dsn)",
    "postfix-tlspol": "postfix-tlspol's cache file (its server.cache-file, by default "
                      "/var/lib/postfix-tlspol/cache.db); stop postfix-tlspol first, it "
                      "rewrites the file on exit",
}


#: Longest name or reason printed from the source, in characters (after escaping).
_SHOWN_CHARS = 200


def _shown(text: str) -> str:
    """``text`` from the source as one printable line: a backslash and every character
    that is not printable (control characters, line and paragraph separators, format
    characters) escaped as Python does, cut to :data:`_SHOWN_CHARS` characters."""
    escaped = "".join(c if c.isprintable() and c != "\\" else
                      c.encode("unicode_escape").decode("ascii") for c in str(text))
    if len(escaped) <= _SHOWN_CHARS:
        return escaped
    return f"{escaped[:_SHOWN_CHARS]}... ({len(escaped)} characters)"


def _cmd_import_cache(args: argparse.Namespace) -> int:
    try:
        from ..discovery import importcache as _ic  # the discovery extra
    except ImportError as exc:
        raise needs_extra("import-cache", exc, "discovery") from None

    async def main() -> Any:
        if args.source_kind == "mta-sts-resolver-sqlite":
            source: Any = _ic.read_mta_sts_resolver_sqlite(args.source)
        elif args.source_kind == "mta-sts-resolver-postgres":
            source = _ic.read_mta_sts_resolver_postgres(args.source)
        elif args.source_kind == "postfix-tlspol":
            source = _ic.read_postfix_tlspol(args.source)
        else:
            try:
                # the redis extra
                import redis  # noqa: F401
            except ImportError:
                raise UsageError("a redis source needs the tlspolicy[redis] extra") from None
            source = _ic.read_mta_sts_resolver_redis(args.source)
        discovery = await open_discovery(args, probe=False)
        try:
            return await _ic.import_policies(discovery.store, source)
        finally:
            await discovery.close()

    report = asyncio.run(main())
    out = sys.stdout
    out.write(f"imported {len(report.imported)} unexpired policies, kept {len(report.kept)} "
              f"newer ones already cached, passed over {len(report.expired)} expired, "
              f"skipped {len(report.skipped)}"
              + (f", capped the expiry of {len(report.capped)}" if report.capped else "")
              + "\n")
    # Every name and reason comes from the source: escaped, so that none can add a line
    # or reach the terminal as a control sequence.
    for domain in report.imported:
        out.write(f"  imported {_shown(domain)}\n")
    for domain in report.kept:
        out.write(f"  kept     {_shown(domain)} (the cache holds a policy as new or newer)\n")
    for domain, why in report.capped:
        out.write(f"  capped   {_shown(domain)}: {_shown(why)}\n")
    for domain, why in report.id_dropped:
        out.write(f"  no id    {_shown(domain)}: {_shown(why)}\n")
    for domain, why in report.skipped:
        out.write(f"  skipped  {_shown(domain)}: {_shown(why)}\n")
    return EXIT_OK


def register(sub: Any) -> None:
    """Add ``import-cache`` to the command line's subparsers."""
    parser = sub.add_parser(
        "import-cache", help="import another policy daemon's unexpired MTA-STS policies into "
                             "the discovery cache",
        description="Read the MTA-STS cache of postfix-mta-sts-resolver (sqlite, redis or "
                    "postgres) or postfix-tlspol "
                    "and write every "
                    "unexpired policy into the discovery cache, so switching keeps trust on "
                    "first use. The source is opened read-only; policies the cache already "
                    "holds from a later fetch are kept.",
        epilog="sources: " + "; ".join(f"{k}: {v}" for k, v in SOURCES.items()))
    parser.add_argument("--from", dest="source_kind", required=True, choices=sorted(SOURCES),
                        help="what kind of cache SOURCE is")
    parser.add_argument("source", metavar="SOURCE", help="the cache to read (file or URL)")
    add_discovery_arguments(parser, STORE_OPTIONS)
    parser.set_defaults(func=_cmd_import_cache)
