"""``tlspolicy discover`` and ``tlspolicy cache``: fetch destination policy, inspect the cache.

``discover`` asks the operator's validating resolver and the domain's MTA-STS
policy host what :mod:`tlspolicy.discovery` would find, prints it, and shows the
decision for each MX host as ``resolve`` does with inputs given by hand. ``cache``
shows, purges or refreshes what the discovery store holds. Both need the
``tlspolicy[discovery]`` extra (and ``tlspolicy[redis]`` with ``--redis``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, TextIO, TypeVar

from ..formats.settings import DISCOVERY_FLAGS, discovery_settings
from ..resolver import Resolver
from ._common import (
    EXIT_FOUND,
    EXIT_OK,
    UsageError,
    add_binding,
    add_config_files,
    add_json,
    load_configuration,
    needs_extra,
    seconds,
    warn,
)
from .resolve import _print_decision

if TYPE_CHECKING:
    from ..discovery import Discovery

__all__ = ["DISCOVERY_OPTIONS", "STORE_OPTIONS", "add_discovery_arguments", "add_setting_flags",
           "open_discovery", "register"]

_T = TypeVar("_T")


DISCOVERY_OPTIONS: Final = ("resolver", "resolver_port", "resolver_trusted", "probe_name",
                            "probe_backoff_max", "cache", "redis", "https_port", "ca_file",
                            "first_wait")
"""Every option :func:`add_discovery_arguments` can add, by its destination: the flags of
:data:`~tlspolicy.formats.settings.DISCOVERY_FLAGS` that say where discovery asks and
caches."""

STORE_OPTIONS: Final = ("cache", "redis")
"""The discovery options of a command that only reads or writes the cache."""

_FETCHING: Final = ("resolver", "resolver_port", "resolver_trusted", "probe_name", "cache",
                    "redis", "https_port", "ca_file")

#: How a flag's value is read, by the type of its key (a string is taken as given); every
#: number key is a time in seconds.
_READERS: Final[Mapping[object, Callable[[str], Any]]] = {int: int, (int, float): seconds}


def add_setting_flags(group: argparse._ActionsContainer, dests: Iterable[str], *,
                      readers: Mapping[str, Callable[[str], Any]] | None = None) -> None:
    """Add to ``group`` the flags of ``[discovery]`` keys, by destination, as
    :data:`~tlspolicy.formats.settings.DISCOVERY_FLAGS` declares them.

    A value is read as its key's type says, unless ``readers`` names another reader for
    its destination.  Every flag defaults to ``None``, so that a flag given is told from
    one left out (the ``[discovery]`` table's value, or the default its help shows,
    applies then; see :func:`~tlspolicy.formats.settings.discovery_settings`).
    """
    for dest in dests:
        flag = DISCOVERY_FLAGS[dest]
        if flag.kind is bool:
            group.add_argument(flag.option, dest=dest, default=None, help=flag.shown_help,
                               action="store_false" if flag.default else "store_true")
            continue
        taking: dict[str, Any] = {"metavar": flag.metavar}
        reader = (readers or {}).get(dest) or _READERS.get(flag.kind)
        if reader is not None:
            taking["type"] = reader
        group.add_argument(flag.option, dest=dest, help=flag.shown_help, **taking)


def add_discovery_arguments(parser: argparse.ArgumentParser,
                            only: Collection[str] = DISCOVERY_OPTIONS) -> None:
    """The options that say where discovery asks and caches (shared with ``serve``).

    ``only`` names the options the command uses (by destination, from
    :data:`DISCOVERY_OPTIONS`); the others are not offered, and keep their defaults.
    Every option defaults to ``None`` (:func:`add_setting_flags`).  Building the parser
    never needs the ``tlspolicy[discovery]`` extra: running the command says what to
    install.
    """
    unknown = set(only) - set(DISCOVERY_OPTIONS)
    if unknown:
        raise ValueError(f"unknown discovery options: {', '.join(sorted(unknown))}")
    wanted = [name for name in DISCOVERY_OPTIONS if name in only]
    title = ("discovery (DNS, MTA-STS and the cache; needs the tlspolicy[discovery] extra)"
             if set(wanted) - set(STORE_OPTIONS) else
             "the discovery cache (needs the tlspolicy[discovery] extra)")
    add_setting_flags(parser.add_argument_group(title), wanted)
    # The options a command does not offer are there too, never given.
    parser.set_defaults(**{name: None for name in DISCOVERY_OPTIONS if name not in only})


async def open_discovery(args: argparse.Namespace, *, probe: bool = True,
                         existing: bool = False) -> Discovery:
    """A started :class:`~tlspolicy.discovery.Discovery` as the options say.

    ``probe`` false skips the resolver probe (for commands that only read the cache).
    ``existing``: the SQLite cache must be there already (a command that only reads or
    forgets entries: SQLite would create an empty cache at a mistyped path, and the
    command would find nothing there and say so).
    """
    from ..discovery import Discovery, redis_cache  # the discovery extra

    settings = discovery_settings(flags=args)
    config = settings.discovery_config()
    if existing and not settings.redis and not os.path.isfile(config.cache_path):
        raise UsageError(f"--cache {config.cache_path}: no such file; name the cache that "
                         "serve, discover or import-cache writes")
    store = None
    if settings.redis:
        store = await redis_cache(settings.redis, config.cache_path)
    discovery = Discovery(config, store=store, close_store=True)
    if probe:
        await discovery.start()
    return discovery


class _ResolverDown(Exception):
    """The resolver gave no answer at all: nothing can be discovered."""


class _Diagnostics(logging.Handler):
    """The library's log lines during one command: each on standard error once, as a
    warning, except those the command's own output already shows."""

    def __init__(self) -> None:
        from ..discovery.core import OUTCOME_LOGGER  # the discovery extra

        super().__init__(logging.WARNING)
        self.seen: set[str] = set()
        self.shown_in_output = OUTCOME_LOGGER

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == self.shown_in_output:
            # The resolver's trust and failed fetches: the command's own output shows them.
            return
        message = record.getMessage()
        if message not in self.seen:
            self.seen.add(message)
            warn(message)


def _progress(line: str) -> None:
    sys.stderr.write(f"tlspolicy: {line}\n")
    sys.stderr.flush()


def _run(args: argparse.Namespace, work: Callable[[Discovery], Awaitable[_T]], *,
         probe: bool = True, existing: bool = False) -> _T:
    """Run ``work`` with a discovery opened as the options say.

    ``probe``: the command asks DNS, so the resolver is asked first (progress on
    standard error); one that does not answer at all raises :class:`_ResolverDown`
    before anything else is tried.
    """
    try:
        # the discovery extra
        from .. import discovery  # noqa: F401
    except ImportError as exc:
        what = " ".join(w for w in (args.command, getattr(args, "action", None)) if w)
        raise needs_extra(what, exc, "discovery") from None

    async def main() -> _T:
        discovery = await open_discovery(args, probe=False, existing=existing)
        try:
            if probe:
                config = discovery.config
                where = f"{config.resolver}:{config.resolver_port}"
                _progress(f"asking the resolver {where} ({config.probe_name!r} SOA)")
                answer = await discovery.dns.probe(config.probe_name)
                if answer.unanswered:
                    raise _ResolverDown(
                        f"the resolver {where} does not answer ({answer.detail}): nothing "
                        "was discovered; start it, or name a running one with --resolver "
                        "and --resolver-port")
                await discovery.start()
            return await work(discovery)
        finally:
            await discovery.close()

    logger = logging.getLogger("tlspolicy")
    handler = _Diagnostics()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        return asyncio.run(main())
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _print_summary(found: dict[str, Any], out: TextIO) -> None:
    resolver = found["resolver"]
    out.write(f"domain        {found['domain']}")
    out.write(f"  (next hop {found['next_hop']})\n" if found["next_hop"] else "\n")
    out.write(f"resolver      {resolver['address']}:{resolver['port']}  "
              f"{'DNSSEC trusted' if resolver['dnssec'] else 'DNSSEC NOT trusted'}: "
              f"{resolver['detail']}\n")
    mx = found["mx"]
    hosts = ", ".join(mx["hosts"]) or "-"
    out.write(f"mx            {mx['kind']}: {hosts}  "
              f"({'secure' if mx['dnssec'] else 'not secure'})"
              f"{'  ' + mx['detail'] if mx['detail'] else ''}\n")
    sts = found["mta_sts"]
    if sts is None:
        out.write("mta-sts       nothing cached\n")
    else:
        policy = sts["policy"]
        if policy is None:
            out.write(f"mta-sts       no policy ({sts['state']})\n")
        else:
            out.write(f"mta-sts       {policy['mode']}  mx {', '.join(policy['mx'])}  "
                      f"id {policy['id']}  expires {policy['expires_at']}"
                      f"{'  EXPIRED' if policy['expired'] else ''}\n")
        fetch = sts["latest_fetch"]
        rpt = f" [tls-rpt {sts['tlsrpt_result_type']}]" if sts["tlsrpt_result_type"] else ""
        out.write(f"  latest fetch {fetch}{rpt}  {sts['detail'] or ''}".rstrip() + "\n")
        out.write(f"  next check   {sts['next_check'] or '-'}  failures {sts['failures']}\n")
    rpt_record = found["tlsrpt"]
    out.write(f"tls-rpt       {rpt_record['record'] or 'none'}"
              f"{'  ' + rpt_record['detail'] if rpt_record['detail'] else ''}\n")
    for host, dest in found["hosts"].items():
        tlsa = dest["tlsa"]
        if tlsa is None:
            described = "not looked up"
        else:
            records = "; ".join(tlsa["records"])
            described = (f"{tlsa['status']} ({tlsa['applicability']})"
                         f"{'  ' + records if records else ''}"
                         f"{'  ' + tlsa['detail'] if tlsa['detail'] else ''}")
        out.write(f"host {host}\n  tlsa         {described}\n")


def _cmd_discover(args: argparse.Namespace) -> int:
    from ..discovery import describe  # the discovery extra

    config = load_configuration(args)
    resolver = Resolver(config)
    # An unknown binding is an error before anything is fetched.
    resolver.binding_group_of(args.binding or "default")

    async def work(discovery: Discovery) -> dict[str, Any]:
        return await describe(discovery, args.domain, args.mx_host, progress=_progress)

    try:
        found = _run(args, work)
    except _ResolverDown as exc:
        sys.stderr.write(f"tlspolicy: error: {exc}\n")
        return EXIT_FOUND
    destinations = found.pop("_destinations")
    decisions = {host: resolver.resolve(args.domain, args.binding, mx_host=host,
                                        destination=destination)
                 for host, destination in destinations.items()}
    out = sys.stdout
    if args.json:
        json.dump({"discovery": found,
                   "decisions": {h: d.to_dict() for h, d in decisions.items()}},
                  out, indent=2)
        out.write("\n")
        return EXIT_OK
    _print_summary(found, out)
    if not decisions:
        out.write("\nno MX host to decide for: configuration alone applies\n")
    for host, decision in decisions.items():
        out.write(f"\n---- decision for {host}\n")
        _print_decision(decision, out)
    return EXIT_OK


def _cmd_cache_show(args: argparse.Namespace) -> int:
    from ..discovery import describe_cache  # the discovery extra

    async def work(discovery: Discovery) -> list[dict[str, Any]]:
        return await describe_cache(discovery, args.domain)

    states = _run(args, work, probe=False, existing=True)
    out = sys.stdout
    if args.json:
        json.dump(states, out, indent=2)
        out.write("\n")
        return EXIT_OK
    if not states:
        out.write("nothing cached" + (f" for {args.domain}" if args.domain else "") + "\n")
    rows: list[list[str]] = []
    for state in states:
        policy = state["policy"]
        rpt = f" [tls-rpt {state['tlsrpt_result_type']}]" if state["tlsrpt_result_type"] else ""
        rows.append([
            state["domain"],
            "no policy" if policy is None else policy["mode"],
            "" if policy is None else f"id {policy['id']}",
            "" if policy is None else (f"expires {policy['expires_at']}"
                                       f"{' EXPIRED' if policy['expired'] else ''}"),
            f"latest fetch {state['latest_fetch']}{rpt}",
            f"next check {state['next_check'] or '-'}",
        ])
    _print_columns(rows, out)
    return EXIT_OK


def _print_columns(rows: list[list[str]], out: TextIO) -> None:
    """Rows of cells, each column as wide as its widest cell, two spaces apart."""
    if not rows:
        return
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True) if width]
        out.write("  ".join(cells).rstrip() + "\n")


def _cmd_cache_purge(args: argparse.Namespace) -> int:
    if (args.domain is None) == (not args.all):
        raise UsageError("cache purge needs a DOMAIN or --all (not both)")

    async def work(discovery: Discovery) -> int:
        return await discovery.purge(None if args.all else args.domain)

    count = _run(args, work, probe=False, existing=True)
    sys.stdout.write(f"purged {count} cached polic{'y' if count == 1 else 'ies'}\n")
    return EXIT_OK


def _cmd_cache_refresh(args: argparse.Namespace) -> int:
    from ..discovery.summary import describe_state  # the discovery extra

    async def work(discovery: Discovery) -> dict[str, Any] | None:
        _progress(f"fetching the MTA-STS policy of {args.domain}")
        state = await discovery.refresh(args.domain)
        return describe_state(state, discovery._clock())

    try:
        state = _run(args, work)
    except _ResolverDown as exc:
        sys.stderr.write(f"tlspolicy: error: {exc}\n")
        return EXIT_FOUND
    assert state is not None
    # A fetch that failed is a finding, whatever the cache still holds.
    status = EXIT_OK if state["latest_fetch"] == "ok" else EXIT_FOUND
    if args.json:
        json.dump(state, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return status
    policy = state["policy"]
    shown = "no policy" if policy is None else f"{policy['mode']} policy id {policy['id']}"
    sys.stdout.write(f"{state['domain']}: {shown}; latest fetch {state['latest_fetch']}"
                     f"{'  ' + state['detail'] if state['detail'] else ''}\n")
    return status


def register(sub: Any) -> None:
    """Add ``discover`` and ``cache show|purge|refresh`` to the command line's subparsers."""
    discover = sub.add_parser(
        "discover", help="fetch a domain's MTA-STS, DANE and TLS-RPT records and show the "
                         "decision for each MX host",
        description="Ask the validating resolver and the MTA-STS policy host what discovery "
                    "finds for DOMAIN (or a [host]:port next hop), update the cache, and "
                    "print it with the decision for each MX host.")
    discover.add_argument("domain", metavar="DOMAIN",
                          help="recipient domain, or a [host]:port next hop")
    discover.add_argument("--mx-host", dest="mx_host", metavar="HOST",
                          help="decide for this MX host only (default: every MX host, "
                               "at most 10)")
    add_binding(discover)
    add_json(discover, "what was found and the decisions")
    add_config_files(discover)
    # --probe-backoff-max is for a server that keeps probing; discover asks once.
    add_discovery_arguments(discover, [*_FETCHING, "first_wait"])
    discover.set_defaults(func=_cmd_discover)

    cache = sub.add_parser("cache", help="show, purge or refresh the discovery cache")
    actions = cache.add_subparsers(dest="action", required=True, metavar="ACTION",
                                   help="what to do with the cache")
    show = actions.add_parser("show", help="print cached MTA-STS states")
    show.add_argument("domain", nargs="?", metavar="DOMAIN",
                      help="one domain (default: every cached domain)")
    add_json(show, "the states")
    add_discovery_arguments(show, STORE_OPTIONS)
    show.set_defaults(func=_cmd_cache_show)
    purge = actions.add_parser("purge", help="forget cached policy and DNS answers")
    purge.add_argument("domain", nargs="?", metavar="DOMAIN", help="the domain to forget")
    purge.add_argument("--all", action="store_true", help="forget every cached domain")
    add_discovery_arguments(purge, STORE_OPTIONS)
    purge.set_defaults(func=_cmd_cache_purge)
    refresh = actions.add_parser("refresh", help="fetch a domain's policy now, ignoring the "
                                                 "cache's schedule")
    refresh.add_argument("domain", metavar="DOMAIN", help="the domain to refresh")
    add_json(refresh, "the new state")
    # A refresh waits for the whole fetch: --first-wait does not apply.
    add_discovery_arguments(refresh, _FETCHING)
    refresh.set_defaults(func=_cmd_cache_refresh)
