"""``serve socketmap --discovery``: the discovery run of one server and what a reload
reads again (the ``[discovery]`` table, Postfix's version, its DANE prerequisites and, in
drop-in mode, its own level)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Final

from ..formats.settings import DiscoverySettings
from ..postfix.levels import PostfixVersion
from ..postfix.lookup import PolicyLookup
from ..scopes import Config
from .app_inputs import ServeMode, ServeOptions
from .discovered import DiscoveryLookup
from .postfix_checks import PostconfError, read_dane_prerequisites, read_own_level
from .postfix_routes import FileStamp, PostfixRoutes

__all__ = ["DiscoveryRun", "Reloads", "warn_unused_discovery"]

#: [discovery] keys a reload applies; every other one needs a restart.
_LIVE_TABLE_KEYS: Final = frozenset({"answer_deadline", "sts_mx_patterns", "postfix_version"})


class Reloads:
    """What a reload reads again besides the files and routes: Postfix's version and the
    ``[discovery]`` table (SEMANTICS 11: routes, DANE prerequisites and Postfix's own
    level are read by the load and by :meth:`DiscoveryRun.wrap`).  What changed but needs a
    restart is named in the log, and the running value stays."""

    def __init__(self, settings: DiscoverySettings, version: PostfixVersion, *,
                 read_settings: Callable[[], DiscoverySettings],
                 read_version: Callable[[DiscoverySettings], PostfixVersion]) -> None:
        self.settings = settings
        self.version = version
        self.read_settings = read_settings
        self.read_version = read_version
        self.loaded = False
        #: The route tables' files as of the routes in use (watched for changes).
        self.stamps: FileStamp = ()

    def routes_read(self, found: PostfixRoutes) -> None:
        self.stamps = found.stamps

    def refresh(self, run: DiscoveryRun | None) -> Callable[[], None]:
        """Read the ``[discovery]`` table (``read_settings``) and Postfix's version
        (``read_version``) again; what raises fails the reload (the previous policy
        stays).  The version is in force for the load that follows; the returned callable
        applies the rest once that load succeeded."""
        settings = self.read_settings()
        version = self.read_version(settings)
        previous = self.version
        self.version = version

        def commit() -> None:
            self._commit(run, settings, previous)

        return commit

    def undo(self, version: PostfixVersion) -> None:
        """A reload that failed: the version in force stays."""
        self.version = version

    def _commit(self, run: DiscoveryRun | None, settings: DiscoverySettings,
                previous: PostfixVersion) -> None:
        log = logging.getLogger("tlspolicy")
        version = self.version
        # The tables as written are compared: a key changed there is named, whether or
        # not a flag overrides it.
        table, before = settings.table, self.settings.table
        if table != before:
            changed = sorted(k for k in {*table, *before} if table.get(k) != before.get(k))
            later = [k for k in changed if k not in _LIVE_TABLE_KEYS]
            if later:
                log.warning("reload: [discovery] %s changed, which takes effect only after a "
                            "restart (the running values stay)",
                            ", ".join(f"{k} ({before.get(k)!r} -> {table.get(k)!r})"
                                      for k in later))
            if run is not None:
                run.apply_settings(settings)
            self.settings = settings
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


class DiscoveryRun:
    """Discovery for ``serve socketmap --discovery``: opened in the server's loop before the
    first load, closed after it stops; wraps every loaded policy (first load, SIGHUP,
    expiry recompiles) into a :class:`~tlspolicy.servers.discovered.DiscoveryLookup`
    sharing the domains in use, whose MTA-STS policies are refreshed in the background."""

    def __init__(self, settings: DiscoverySettings, version: PostfixVersion, *,
                 options: ServeOptions, observer: Any = None,
                 mode: ServeMode | None = None) -> None:
        self.config = settings.discovery_config()
        self.redis: str | None = settings.redis or None
        deadline = settings.checked_deadline()
        self.deadline = deadline
        #: The server's answer timeout is set from the deadline at start.
        self.start_deadline = deadline
        self.sts_mx_patterns = settings.sts_mx_patterns
        self.version = version
        self.observer = observer
        self.options = options
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

    def apply_settings(self, settings: DiscoverySettings) -> None:
        """A reloaded ``[discovery]`` table's live settings (flags given still win): the
        answer deadline (up to the one at start, which sized the server's answer
        timeout) and ``sts_mx_patterns``; raises
        :class:`~tlspolicy.formats.settings.DiscoveryError` for a bad deadline."""
        deadline = settings.checked_deadline()
        if deadline > self.start_deadline:
            logging.getLogger("tlspolicy").warning(
                "reload: an answer deadline of %g s above the %g s at start takes effect only "
                "after a restart; %g s applies", deadline, self.start_deadline,
                self.start_deadline)
            deadline = self.start_deadline
        self.deadline = deadline
        self.sts_mx_patterns = settings.sts_mx_patterns

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
                    # Due ones only: a check started before its state is due finds
                    # nothing to do (an unchanged TXT record gives the same next check).
                    await current.refresh_once()
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
        if self.options.no_postfix_checks:
            return

        log = logging.getLogger("tlspolicy")
        try:
            findings = read_dane_prerequisites(
                config_dir=self.options.postfix_config_dir,
                settings=dict(self.options.postfix_setting or ()))
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
        given = dict(self.options.postfix_setting or ())
        if self.options.no_postfix_checks and "smtp_tls_security_level" not in given:
            level, where = None, "not read (--no-postfix-checks)"
        else:
            level, where = read_own_level(config_dir=self.options.postfix_config_dir,
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
