"""``tlspolicy report``: build, send and show TLS-RPT reports (RFC 8460, SEMANTICS 12).

Every subcommand reads a settings file (TOML)::

    [reporting]                      # tlspolicy.reporting.ReportingConfig fields
    organization_name = "Example Mail"
    contact_info = "tlsrpt@example.net"
    submitter = "example.net"
    mail_from = "tlsrpt@example.net"
    dkim_key_file = "/etc/tlspolicy/tlsrpt-dkim.pem"

    [store]                          # where the recording MTAs write
    sqlite = "/var/lib/tlspolicy/tlsrpt.sqlite3"   # or: redis = "redis://host:6379/0"

    [discovery]                      # the validating resolver: keys of serve's [discovery]
    resolver = "127.0.0.1"

``build`` closes a period (a UTC day by default) and writes each report as
a file named per RFC 8460 section 5.1; ``send`` delivers what is due;
``show`` prints what was recorded and what will be or was sent.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs

from ..errors import ConfigErrors
from ..formats.files import read_regular_text
from ..formats.settings import check_discovery_table, discovery_settings
from ..formats.toml import parse_toml
from ..resolver import Resolver
from ..stores import SqliteStore, StoreError
from ..stores.redis import RedisStore
from ._common import (
    EXIT_OK,
    UsageError,
    add_config_files,
    config_paths,
    load_configuration,
    note,
)

__all__ = ["register"]

_SECTIONS = {"reporting", "store", "discovery"}
#: What a ``[reporting]`` value of each field type must be, and how to say so.
_KINDS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "str": (str, "a string"), "int": (int, "a whole number"),
    "float": ((int, float), "a number")}


def _settings(path: str) -> dict[str, dict[str, Any]]:
    from ..reporting import ReportingError  # the reporting extra

    # A regular file of bounded size (not a FIFO, not /dev/zero), parsed as every TOML
    # file is: what does not read or parse is a located error.
    data = parse_toml(read_regular_text(path, what="report settings file"), path)
    unknown = set(data) - _SECTIONS
    if unknown:
        raise ReportingError(f"{path}: unknown section(s) {', '.join(sorted(unknown))} "
                             f"(expected {', '.join(sorted(_SECTIONS))})")
    for name, value in data.items():
        if not isinstance(value, dict):
            raise ReportingError(f"{path}: [{name}] must be a table")
    return data


def _reporting_config(path: str, table: dict[str, Any]) -> Any:
    from ..reporting import ReportingConfig, ReportingError  # the reporting extra

    fields = {f.name: f for f in attrs.fields(ReportingConfig)}
    unknown = set(table) - set(fields)
    if unknown:
        raise ReportingError(f"{path}: [reporting] unknown option(s) "
                             f"{', '.join(sorted(unknown))}")
    for name, value in table.items():
        # ReportingConfig is also built by callers' code, with its types; a file's values
        # are checked here (a true is no 1-second period, a number no organization name).
        wanted = _KINDS[str(fields[name].type).removesuffix(" | None")]
        if isinstance(value, bool) or not isinstance(value, wanted[0]):
            raise ReportingError(f"{path}: [reporting] {name} must be {wanted[1]}, "
                                 f"not {value!r}")
    try:
        return ReportingConfig(**table)
    except (TypeError, ReportingError) as exc:
        # The settings' own checks name the option; the file is named here.
        raise ReportingError(f"{path}: [reporting]: {exc}") from None


@asynccontextmanager
async def _store(path: str, table: dict[str, Any]) -> AsyncIterator[Any]:
    from ..reporting import ReportingError  # the reporting extra

    if set(table) - {"sqlite", "redis", "prefix"} or ("sqlite" in table) == ("redis" in table):
        raise ReportingError(f"{path}: [store] needs exactly one of sqlite = PATH or "
                             "redis = URL (and optionally prefix)")
    if "redis" in table:
        try:
            store: Any = await RedisStore.connect(str(table["redis"]),
                                                  prefix=str(table.get("prefix", "tlspolicy:")))
        except StoreError as exc:
            raise ReportingError(f"{path}: [store] redis: {exc}") from None
    else:
        sqlite = str(table["sqlite"])
        if sqlite != ":memory:" and not Path(sqlite).is_file():
            # SQLite would create an empty store here and every command would find nothing.
            raise ReportingError(
                f"{path}: [store] sqlite = {sqlite!r}: no such file; name the store the "
                "recording MTAs write (BufferedSink's SqliteStore), which exists once they "
                "have recorded a session")
        store = SqliteStore(sqlite)
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def _reporter(args: argparse.Namespace, *, network: bool) -> AsyncIterator[Any]:
    from ..reporting import Reporter  # the reporting extra

    settings = _settings(args.settings)
    config = _reporting_config(args.settings, settings.get("reporting", {}))
    async with _store(args.settings, settings.get("store", {})) as store:
        if not network:
            yield Reporter(store, config)
            return
        from ..discovery import Discovery  # the discovery extra

        resolver = None
        if config_paths(args):
            resolver = Resolver(load_configuration(args, example_allowed=False))
        # The keys of serve's [discovery] table, read and checked alike.
        table = settings.get("discovery", {})
        ConfigErrors.raise_if_any(check_discovery_table(table, args.settings))
        discovery_config = discovery_settings(table).discovery_config()
        # Discovery's own cache is not needed for reporting lookups: keep it private.
        async with Discovery(discovery_config, store=SqliteStore(":memory:")) as discovery:
            yield Reporter(store, config, discovery=discovery, resolver=resolver)


def _day(text: str | None) -> datetime.date:
    if text is None:
        return (datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)).date()
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--date {text!r} is not a date (YYYY-MM-DD)") from None


def _start(day: datetime.date) -> int:
    return int(datetime.datetime(day.year, day.month, day.day, tzinfo=datetime.UTC).timestamp())


def _cmd_build(args: argparse.Namespace) -> int:
    from ..reporting import period_results  # the reporting extra

    day = _day(args.date)
    start = _start(day)
    wanted = {d.lower().rstrip(".") for d in args.domain or ()}
    which = f" for {', '.join(sorted(wanted))}" if wanted else ""

    async def recorded() -> bool:
        # Asked before anything touches the network: with nothing recorded there is
        # nothing to build, and the operator is told why rather than shown nothing.
        async with _reporter(args, network=False) as reporter:
            if await period_results(reporter.store, start, args.domain or None):
                return True
            return any(not wanted or s.domain in wanted for s in await reporter.stored(start))

    async def run() -> int:
        written = 0
        async with _reporter(args, network=True) as reporter:
            made = await reporter.build(start, domains=args.domain or None)
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            for stored in await reporter.stored(start):
                if wanted and stored.domain not in wanted:
                    continue
                (out / stored.filename).write_bytes(stored.body)
                new = "built" if any(m.key == stored.key for m in made) else "exists"
                print(f"{new}\t{stored.domain}\t{out / stored.filename}")
                written += 1
        if not written:
            note(f"no report built for {day} (UTC){which}: the sessions recorded make no "
                 "report (see tlspolicy report show)")
        return EXIT_OK

    if not asyncio.run(recorded()):
        note(f"no report built for {day} (UTC){which}: no TLS session was recorded in the "
             f"store for that day (--date picks another; the default is yesterday)")
        return EXIT_OK
    return asyncio.run(run())


def _cmd_send(args: argparse.Namespace) -> int:
    async def run() -> int:
        async with _reporter(args, network=True) as reporter:
            for delivery in await reporter.send():
                print(f"{delivery.state}\t{delivery.attempts}\t{delivery.uri}"
                      + (f"\t{delivery.error}" if delivery.error else ""))
        return EXIT_OK
    return asyncio.run(run())


def _table(rows: list[tuple[str, ...]], out: Any) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                  .rstrip() + "\n")


def _cmd_show(args: argparse.Namespace) -> int:
    from ..reporting import period_results  # the reporting extra

    async def run() -> int:
        async with _reporter(args, network=False) as reporter:
            start = _start(_day(args.date))
            recorded = await period_results(reporter.store, start, args.domain or None)
            out = sys.stdout
            out.write(f"Recorded {datetime.datetime.fromtimestamp(start, datetime.UTC):%Y-%m-%d}"
                      " (UTC):\n")
            rows: list[tuple[str, ...]] = [("DOMAIN", "POLICY", "RESULT", "SESSIONS")]
            for domain, results in recorded.items():
                for result in sorted(results, key=lambda r: (r.policy_type.value,
                                                             r.result_type or "")):
                    rows.append((domain, result.policy_type.value,
                                 result.result_type or "success", str(result.count)))
            if len(rows) > 1:
                _table(rows, out)
            else:
                out.write("  nothing recorded\n")
            out.write("\nReports:\n")
            rows = [("DOMAIN", "REPORT FILE", "RUA", "STATE", "ATTEMPTS")]
            for stored in await reporter.stored(start):
                if args.domain and stored.domain not in args.domain:
                    continue
                if not stored.deliveries:
                    rows.append((stored.domain, stored.filename,
                                 "(none)" if stored.rua is not None else "(lookup pending)",
                                 stored.rua_detail[:40] if stored.rua == () else "-", "-"))
                for d in stored.deliveries:
                    rows.append((stored.domain, stored.filename, d.uri, d.state,
                                 str(d.attempts)))
            if len(rows) > 1:
                _table(rows, out)
            else:
                out.write("  none built (run 'tlspolicy report build' once the day is over)\n")
        return EXIT_OK
    return asyncio.run(run())


def register(sub: Any) -> None:
    """Add ``report build|send|show`` to the command line's subparsers."""
    report = sub.add_parser("report", help="TLS-RPT reports: build, send, show (RFC 8460)")
    commands = report.add_subparsers(dest="report_command", required=True, metavar="ACTION",
                                     help="what to do with the reports")

    def settings(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--settings", "-s", required=True, metavar="FILE",
                            help="report settings (TOML: [reporting], [store], [discovery])")

    def common(parser: argparse.ArgumentParser) -> None:
        settings(parser)
        parser.add_argument("--date", metavar="YYYY-MM-DD",
                            help="the UTC day (default: yesterday)")
        parser.add_argument("--domain", action="append", metavar="DOMAIN",
                            help="only this policy domain (repeatable)")

    build = commands.add_parser("build", help="close a day: one report per policy domain, "
                                "written as files")
    common(build)
    build.add_argument("--out", "-o", default=".", metavar="DIR",
                       help="where to write the report files (default: .)")
    add_config_files(build, positional=False)
    build.set_defaults(func=_cmd_build)

    send = commands.add_parser("send", help="deliver due reports to every rua (retries "
                               "for 24 hours)")
    settings(send)
    add_config_files(send, positional=False)
    send.set_defaults(func=_cmd_send)

    show = commands.add_parser("show", help="a table of what was recorded and what is sent")
    common(show)
    show.set_defaults(func=_cmd_show)
