"""``serve socketmap --discovery``: the discovery run of one server and what a reload
reads again (the ``[discovery]`` table, Postfix's version, its DANE prerequisites and, in
drop-in mode, its own level)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Final

from ..formats.discovery_table import read_discovery_table
from ..postfix.levels import PostfixVersion
from ..postfix.lookup import PolicyLookup, parse_postfix_version
from ..scopes import Config
from ..servers.discovered import DEFAULT_ANSWER_DEADLINE, DiscoveryLookup
from ..servers.postfix_checks import PostconfError, read_dane_prerequisites, read_own_level
from ..servers.postfix_routes import (
    FileStamp,
    PostfixRoutes,
)
from ._common import UsageError, needs_extra
from .serve_inputs import ServeMode, postconf_version

#: [discovery] keys a reload applies; every other one needs a restart.
_LIVE_TABLE_KEYS: Final = frozenset({"answer_deadline", "sts_mx_patterns", "postfix_version"})


class Reloads:
    """What a reload reads again besides the files and routes: Postfix's version and the
    ``[discovery]`` table (SEMANTICS 11: routes, DANE prerequisites and Postfix's own
    level are read by the load and by :meth:`DiscoveryRun.wrap`).  What changed but needs a
    restart is named in the log, and the running value stays."""

    def __init__(self, args: argparse.Namespace, paths: list[str], table: dict[str, Any],
                 use_discovery: bool, version: PostfixVersion) -> None:
        self.args = args
        self.paths = paths
        self.table = table
        self.use_discovery = use_discovery
        self.version = version
        self.loaded = False
        #: The route tables' files as of the routes in use (watched for changes).
        self.stamps: FileStamp = ()

    def routes_read(self, found: PostfixRoutes) -> None:
        self.stamps = found.stamps

    def _read_version(self, table: dict[str, Any]) -> PostfixVersion:
        args = self.args
        if args.postfix_version is not None:
            return args.postfix_version  # type: ignore[no-any-return]
        if self.use_discovery and "postfix_version" in table:
            return parse_postfix_version(table["postfix_version"])
        given = dict(args.postfix_setting or ())
        if "mail_version" in given:
            return parse_postfix_version(given["mail_version"])
        return postconf_version(config_dir=args.postfix_config_dir)

    def refresh(self, run: DiscoveryRun | None) -> Callable[[], None]:
        """Read the ``[discovery]`` table and Postfix's version again; what raises fails
        the reload (the previous policy stays).  The version is in force for the load
        that follows; the returned callable applies the rest once that load succeeded."""
        table = read_discovery_table(self.paths)
        version = self._read_version(table)
        previous = self.version
        self.version = version

        def commit() -> None:
            self._commit(run, table, previous)

        return commit

    def undo(self, version: PostfixVersion) -> None:
        """A reload that failed: the version in force stays."""
        self.version = version

    def _commit(self, run: DiscoveryRun | None, table: dict[str, Any],
                previous: PostfixVersion) -> None:
        log = logging.getLogger("tlspolicy")
        version = self.version
        if table != self.table:
            changed = sorted(k for k in {*table, *self.table}
                             if table.get(k) != self.table.get(k))
            later = [k for k in changed if k not in _LIVE_TABLE_KEYS]
            if later:
                log.warning("reload: [discovery] %s changed, which takes effect only after a "
                            "restart (the running values stay)",
                            ", ".join(f"{k} ({self.table.get(k)!r} -> {table.get(k)!r})"
                                      for k in later))
            if run is not None:
                run.apply_table(table)
            self.table = table
        if version != previous:
            log.info("reload: Postfix version %s (was %s): answers are written for it",
                     ".".join(map(str, version)), ".".join(map(str, previous)))
        if run is not None:
            run.version = version


def warn_unused_discovery(config: Config) -> None:
    """Discovery only feeds scopes that switch DANE or MTA-STS on (use_dane, use_mta_sts,
    off by default as in Momentum): say so when none does, or every answer is the
    configuration's alone while the operator believes otherwise."""
    for _scope, options in config.iter_options():
        if options.use_dane is True or options.use_mta_sts is True:
            return
    logging.getLogger("tlspolicy").warning(
        "--discovery: no scope sets use_dane = true or use_mta_sts = true, so DANE and "
        "MTA-STS never apply and every answer is the configuration's alone (set them under "
        "[global])")


def discovery_resolver(args: argparse.Namespace, table: dict[str, Any]) -> tuple[str, int]:
    """The (address, port) discovery asks, as :class:`DiscoveryRun` picks them."""
    address = args.resolver if args.resolver != "127.0.0.1" or "resolver" not in table \
        else table["resolver"]
    port = args.resolver_port if args.resolver_port != 53 or "resolver_port" not in table \
        else table["resolver_port"]
    return str(address), int(port)


def discovery_run(args: argparse.Namespace, table: dict[str, Any],
                  version: PostfixVersion) -> DiscoveryRun:
    """Discovery as ``serve socketmap --discovery`` would run it (not started)."""
    return DiscoveryRun(args, table, version)


class DiscoveryRun:
    """Discovery for ``serve socketmap --discovery``: opened in the server's loop before the
    first load, closed after it stops; wraps every loaded policy (first load, SIGHUP,
    expiry recompiles) into a :class:`~tlspolicy.servers.discovered.DiscoveryLookup`
    sharing the domains in use, whose MTA-STS policies are refreshed in the background."""

    def __init__(self, args: argparse.Namespace, table: dict[str, Any],
                 version: PostfixVersion, *, observer: Any = None,
                 mode: ServeMode | None = None) -> None:
        try:
            from ..discovery import DiscoveryConfig  # the discovery extra
        except ImportError as exc:
            raise needs_extra("--discovery", exc, "discovery") from None
        defaults = DiscoveryConfig()

        def pick(flag: str, key: str, default: Any) -> Any:
            # A flag given with a value other than its default wins over the table.
            value = getattr(args, flag)
            return table[key] if value == default and key in table else value

        try:
            self.config = DiscoveryConfig(
                resolver=pick("resolver", "resolver", defaults.resolver),
                resolver_port=pick("resolver_port", "resolver_port", defaults.resolver_port),
                resolver_trusted=pick("resolver_trusted", "resolver_trusted", False),
                probe_name=pick("probe_name", "probe_name", defaults.probe_name),
                https_port=pick("https_port", "https_port", defaults.https_port),
                ca_file=pick("ca_file", "ca_file", None),
                first_wait=float(pick("first_wait", "first_wait", defaults.first_wait)),
                cache_path=pick("cache", "cache", defaults.cache_path),
                dns_timeout=float(table.get("dns_timeout", defaults.dns_timeout)),
                https_timeout=float(table.get("https_timeout", defaults.https_timeout)),
                probe_backoff_initial=float(table.get("probe_backoff_initial",
                                                      defaults.probe_backoff_initial)),
                probe_backoff_max=float(pick("probe_backoff_max", "probe_backoff_max",
                                             defaults.probe_backoff_max)),
                probe_interval=float(table.get("probe_interval", defaults.probe_interval)),
                dns_backoff_initial=float(table.get("dns_backoff_initial",
                                                    defaults.dns_backoff_initial)),
                dns_backoff_max=float(table.get("dns_backoff_max", defaults.dns_backoff_max)),
                memory_cache_size=int(table.get("memory_cache_size",
                                                defaults.memory_cache_size)))
        except (TypeError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        self.redis: str | None = args.redis or table.get("redis")
        deadline = args.answer_deadline if args.answer_deadline is not None else \
            float(table.get("answer_deadline", DEFAULT_ANSWER_DEADLINE))
        if not 0 < deadline <= 90:
            raise UsageError(f"the answer deadline must be above 0 and at most 90 s (Postfix "
                             f"gives up after 100 s), got {deadline:g}")
        self.deadline = deadline
        #: The server's answer timeout is set from the deadline at start.
        self.start_deadline = deadline
        self.sts_mx_patterns = args.sts_mx_patterns if args.sts_mx_patterns is not None \
            else bool(table.get("sts_mx_patterns", True))
        self.version = version
        self.observer = observer
        self.args = args
        # Checked at start (serve refuses to start without them, except in drop-in mode)
        # and on every reload.
        self.dane_ready = True
        self.mode = mode if mode is not None else ServeMode()
        #: Postfix's own smtp_tls_security_level (drop-in mode), read at start and reload.
        self.own_level: str | None = None
        self.discovery: Any = None
        self.current: Any = None
        self.in_use: Any = None
        self._refresher: asyncio.Task[None] | None = None
        self._trust: asyncio.Task[None] | None = None

    def apply_table(self, table: dict[str, Any]) -> None:
        """A reloaded ``[discovery]`` table's live settings (flags given still win): the
        answer deadline (up to the one at start, which sized the server's answer
        timeout) and ``sts_mx_patterns``; raises :class:`UsageError` for a bad deadline."""
        args = self.args
        deadline = args.answer_deadline if args.answer_deadline is not None else \
            float(table.get("answer_deadline", DEFAULT_ANSWER_DEADLINE))
        if not 0 < deadline <= 90:
            raise UsageError(f"the answer deadline must be above 0 and at most 90 s (Postfix "
                             f"gives up after 100 s), got {deadline:g}")
        if deadline > self.start_deadline:
            logging.getLogger("tlspolicy").warning(
                "reload: an answer deadline of %g s above the %g s at start takes effect only "
                "after a restart; %g s applies", deadline, self.start_deadline,
                self.start_deadline)
            deadline = self.start_deadline
        self.deadline = deadline
        self.sts_mx_patterns = args.sts_mx_patterns if args.sts_mx_patterns is not None \
            else bool(table.get("sts_mx_patterns", True))

    async def startup(self) -> None:
        from ..discovery import Discovery, redis_cache  # the discovery extra

        store = await redis_cache(self.redis, self.config.cache_path) if self.redis else None
        self.discovery = Discovery(self.config, store=store, close_store=True,
                                   observer=self.observer)
        await self.discovery.start()
        loop = asyncio.get_running_loop()
        self._refresher = loop.create_task(self._refresh())
        # DANE comes on by itself once the resolver validates (a boot-order race otherwise
        # leaves it off for the life of the process); a resolver that stops is noticed.
        self._trust = loop.create_task(self.discovery.watch_trust())

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(60.0)
            current = self.current
            if current is not None:
                try:
                    await current.refresh_once(ahead=60.0)
                except Exception:  # never let one bad pass end the refreshing
                    logging.getLogger("tlspolicy").exception("proactive refresh failed")

    async def shutdown(self) -> None:
        for task in (self._refresher, self._trust):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if self.discovery is not None:
            await self.discovery.close()

    def recheck_postfix(self) -> None:
        """Read Postfix's DANE prerequisites again (a reload): while they are not met no
        answer is dane or dane-only (SEMANTICS 10); logged once per change."""
        if self.args.no_postfix_checks:
            return

        log = logging.getLogger("tlspolicy")
        try:
            findings = read_dane_prerequisites(
                config_dir=self.args.postfix_config_dir,
                settings=dict(self.args.postfix_setting or ()))
        except PostconfError as exc:
            log.error("Postfix's DANE settings could not be read again (%s): DANE answers "
                      "stay %s", exc, "on" if self.dane_ready else "off")
            return
        ready = not findings
        if ready != self.dane_ready:
            if ready:
                log.info("Postfix meets its DANE prerequisites again: DANE answers on")
            else:
                log.error("Postfix cannot do DANE now, so no answer is dane or dane-only "
                          "until it can: %s", "; ".join(str(f) for f in findings))
        self.dane_ready = ready

    def read_own_level(self) -> None:
        """Read Postfix's own level again (drop-in mode: NOTFOUND leaves it in force)."""
        given = dict(self.args.postfix_setting or ())
        if self.args.no_postfix_checks and "smtp_tls_security_level" not in given:
            level, where = None, "not read (--no-postfix-checks)"
        else:
            level, where = read_own_level(config_dir=self.args.postfix_config_dir,
                                          settings=given)
        if level is None:
            logging.getLogger("tlspolicy").warning(
                "drop-in mode: Postfix's own TLS security level is %s: answers assume the "
                "strictest (testing-mode policies NOTFOUND, dane as dane-only)", where)
        self.own_level = level

    def wrap(self, live: PolicyLookup) -> Any:
        if self.current is not None:
            self.recheck_postfix()  # a reload: Postfix's settings may have changed too
            if self.mode.drop_in:
                self.read_own_level()
            # Policies imported into the store since (import-cache) take effect now.
            dropped = self.discovery.forget_without_policy()
            if dropped:
                logging.getLogger("tlspolicy").info(
                    "reload: %d domains without an MTA-STS policy in memory are read from "
                    "the store again", dropped)
        lookup = DiscoveryLookup(live, self.discovery, postfix_version=self.version,
                                 deadline=self.deadline,
                                 dane_ready=self.dane_ready,
                                 mx_patterns_enforced=self.sts_mx_patterns,
                                 on_answer=(self.observer.count_rule
                                            if self.observer is not None else None),
                                 on_temp=(self.observer.count_temp
                                          if self.observer is not None else None),
                                 drop_in=self.mode.drop_in, own_level=self.own_level)
        if self.in_use is None:
            self.in_use = lookup.in_use
        lookup.in_use = self.in_use  # shared across reloads
        self.current = lookup
        return lookup
