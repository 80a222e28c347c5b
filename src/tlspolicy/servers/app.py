"""``serve socketmap`` composed: the served policy, the discovery run, metrics, the shadow
candidate, the watchers and reloads, around :func:`~tlspolicy.servers.running.run_forever`.

The command line reads its flags into :class:`~tlspolicy.servers.app_inputs.ServeOptions`
and :class:`~tlspolicy.formats.settings.DiscoverySettings` and calls
:func:`serve_socketmap`; this module wires the rest.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from ..errors import EmptyPolicyError
from ..formats.compiled import load_config_cached
from ..formats.loader import load_config, refuse_empty_policy
from ..formats.postfix import load_transport_table
from ..formats.settings import DiscoverySettings
from ..formats.tlsfiles import check_tls_files
from ..postfix.dropin import DROP_IN_CONFIG
from ..postfix.levels import PostfixVersion
from ..postfix.lookup import PolicyLookup
from ..postfix.transport import RouteTable, parse_transport_table
from ..resolver import Resolver
from ..scopes import Config
from ..scopes.stanzas import sets_no_option
from . import running as _running
from . import socketmap as _sm
from . import systemd as _systemd
from .app_discovery import DiscoveryRun, Reloads, warn_unused_discovery
from .app_inputs import ServeMode, ServeOptions, UnixListen
from .expiry_watch import ExpiringPolicy, watch_expiry
from .postfix_checks import PostfixSettingsError, Severity, check_postfix_settings
from .postfix_routes import PostfixRoutes, read_postfix_routes, watch_route_tables
from .shadow import DiscoveryShadowLookup, ShadowLookup, drain_shadow

__all__ = ["DANE_CHECKS", "lookup_factory", "postfix_checks", "route_reader",
           "serve_socketmap"]

_DROP_IN_HINT = ("for drop-in mode (MTA-STS and DANE alone) give no file, or one holding only "
                 "a [discovery] table, with --discovery")


def lookup_factory(paths: Sequence[str], *, format: str | None = None,
                   file_checks: bool = True, transport_maps: Sequence[str] = (),
                   relayhost: str | None = None,
                   postfix_version: PostfixVersion | None = None,
                   first_load_check: Callable[[Config], None] | None = None,
                   compiled_cache: str | None = None,
                   mode: ServeMode | None = None,
                   route_reader: Callable[[], PostfixRoutes] | None = None,
                   on_unattributed: Callable[[str], None] | None = None,
                   postfix_version_source: Callable[[], PostfixVersion | None] | None = None,
                   ) -> ExpiringPolicy:
    """The served policy: calling it (first load and SIGHUP) reads the configuration files
    and transport tables and builds a fresh :class:`~tlspolicy.postfix.lookup.PolicyLookup`;
    :meth:`~tlspolicy.servers.expiry_watch.ExpiringPolicy.recompile` builds it again when a stanza
    expires.  ``relayhost`` (main.cf's, e.g. ``[smart.example]:587``) routes every domain,
    like a ``*`` transport entry.

    With ``file_checks`` every ``tls_ca``, ``tls_certificate`` and ``tls_key`` must be a
    readable PEM file of its kind, or the load fails (a reload keeps the old policy):
    Postfix would otherwise find a missing CA file only when it sends mail.
    ``first_load_check`` is called with the first configuration loaded (the start-up
    checks of Postfix's settings, :func:`postfix_checks`); what it raises stops the start.

    With ``compiled_cache`` (a directory) the configuration is read through
    :func:`~tlspolicy.formats.compiled.load_config_cached`: unchanged files are
    not parsed again.

    With a ``mode`` allowing drop-in mode (``serve socketmap --discovery``), no files,
    or files setting no option beside their ``[discovery]`` table, load
    :data:`~tlspolicy.postfix.dropin.DROP_IN_CONFIG` and set ``mode.drop_in``
    (SEMANTICS 11, "Drop-in mode"); any other empty policy is refused.

    Without ``transport_maps`` and ``relayhost``, ``route_reader`` (see
    :func:`route_reader`) reads Postfix's own routes at every load, except in drop-in
    mode, which has no routed stanzas; what it raises (a route that cannot be read, its
    loss not accepted) fails the load.  ``on_unattributed`` is called with the reason of
    each next-hop key no route names (a metric).  ``postfix_version_source``, when
    given, is asked for the version at every load instead of ``postfix_version`` (a
    reload reads ``mail_version`` again).
    """
    files = list(paths)
    pending = [first_load_check] if first_load_check is not None else []
    tables = list(transport_maps)
    routes = [RouteTable()]
    losses: list[tuple[str, ...]] = [()]

    def load() -> Config:
        config = _load_files()
        if mode is not None:
            mode.drop_in = config is DROP_IN_CONFIG
        while pending:
            pending[0](config)
            pending.clear()
        return config

    def _load_files() -> Config:
        if not files and mode is not None and mode.drop_in_allowed:
            routes[0] = RouteTable()
            return DROP_IN_CONFIG
        try:
            if compiled_cache is not None:
                config, _hit = load_config_cached(*files, cache_dir=compiled_cache,
                                                  format=format)
            else:
                config = load_config(*files, format=format)
        except EmptyPolicyError as exc:
            if mode is None or not mode.drop_in_allowed:
                raise
            raise EmptyPolicyError(f"{exc.message}; {_DROP_IN_HINT}", exc.location) from None
        # Files holding only a [discovery] table load as an empty policy: the drop-in
        # marker with discovery on; any other empty policy would be plaintext everywhere.
        if mode is not None and mode.drop_in_allowed and mode.table_given and \
                sets_no_option(config):
            routes[0] = RouteTable()
            return DROP_IN_CONFIG
        refuse_empty_policy(config, ", ".join(files),
                            why=_DROP_IN_HINT if mode is not None else None)
        if file_checks:
            # Anchors expired now are refused too: Postfix's tafile ignores their expiry.
            check_tls_files(config, filename=", ".join(files),
                            at=datetime.now(UTC))
        found = RouteTable()
        lost: tuple[str, ...] = ()
        for table in tables:
            found = found + load_transport_table(table)
        if relayhost is not None:
            found = found + parse_transport_table(f"* smtp:{relayhost}\n", file="--relayhost")
        if not tables and relayhost is None and route_reader is not None:
            read = route_reader()
            found, lost = read.routes, read.loss_summary()
        routes[0] = found  # the tables as of this load; an expiry recompile keeps them
        losses[0] = lost
        return config

    def lookup(resolver: Resolver) -> PolicyLookup:
        version = postfix_version_source() if postfix_version_source is not None \
            else postfix_version
        return PolicyLookup(resolver, routes=routes[0], postfix_version=version,
                            route_losses=losses[0], on_unattributed=on_unattributed)

    # Compiled at the clock's time, which never goes back within the process.
    return ExpiringPolicy(load, lookup=lookup)


def route_reader(options: ServeOptions, *,
                 on_read: Callable[[PostfixRoutes], None] | None = None,
                 summary: Callable[[str], None] | None = None
                 ) -> Callable[[], PostfixRoutes]:
    """Postfix's own routes as ``serve socketmap`` reads them (``--postfix-config-dir``,
    ``--accept-route-loss``): every call reads them again, reports what it found (a
    line to ``summary``, logged at INFO by default; accepted losses as warnings) and
    passes it to ``on_read``."""
    accepted = tuple(options.accept_route_loss or ())
    log = logging.getLogger("tlspolicy")
    report = summary if summary is not None else log.info

    def read() -> PostfixRoutes:
        found = read_postfix_routes(options.postfix_config_dir, accept_loss=accepted)
        hops = found.routes.by_nexthop()
        where = options.postfix_config_dir or "postconf's default configuration directory"
        plural = "" if len(hops) == 1 else "s"
        report(f"routes: {len(hops)} next hop{plural} read from Postfix's settings ({where})")
        for loss in found.losses:
            log.warning("routes: %s; loss accepted (--accept-route-loss %s): next hops it "
                        "routes are answered with the host's own policy, each logged once "
                        "and counted", loss, loss.parameter)
        if on_read is not None:
            on_read(found)
        return found

    return read


def postfix_checks(options: ServeOptions, config: Config, *, discovery: bool = False,
                   discovery_resolver: tuple[str, int] | None = None,
                   postfix_version: PostfixVersion | None = None,
                   dane_optional: bool = False) -> bool:
    """The start-up checks of Postfix's settings for ``serve socketmap`` (SEMANTICS 11).

    Warnings are logged; errors raise
    :class:`~tlspolicy.servers.postfix_checks.PostfixSettingsError` (exit status 2), each
    naming the setting, its value and the line that fixes it.  ``discovery`` says the
    answers include DANE; ``discovery_resolver`` is the (address, port) discovery asks.
    With ``dane_optional`` (drop-in mode) what stops DANE is one warning naming every
    fix, and DANE stays off.  Returns whether the answers may use DANE.
    """
    log = logging.getLogger("tlspolicy")
    if options.no_postfix_checks:
        log.warning("--no-postfix-checks: Postfix's own settings (smtp_dns_support_level, "
                    "tls_required_enable, chroot paths, resolver) are not checked; one of "
                    "them can undo the answers")
        return True
    listen = options.listen
    findings = check_postfix_settings(
        config, discovery=discovery, config_dir=options.postfix_config_dir,
        settings=dict(options.postfix_setting or ()),
        unix_socket=listen.path if isinstance(listen, UnixListen) else None,
        socket_mode=_sm.DEFAULT_SOCKET_MODE if options.socket_mode is None else options.socket_mode,
        accept_tls_required_loss=options.accept_tls_required_loss,
        discovery_resolver=discovery_resolver, postfix_version=postfix_version)
    errors = [f for f in findings if f.severity is Severity.ERROR]
    dane_ready = True
    if dane_optional:
        lacking = [f for f in errors if f.check in DANE_CHECKS]
        errors = [f for f in errors if f.check not in DANE_CHECKS]
        if lacking:
            dane_ready = False
            log.warning("DANE is off: Postfix cannot do DANE as set up (MTA-STS is served "
                        "all the same). To turn DANE on, change: %s; then reload",
                        "; ".join(f"{f.fix} ({f.setting} is {f.value or '(empty)'})"
                                  for f in lacking))
    for finding in findings:
        if finding.severity is Severity.WARNING:
            log.warning("%s", finding)
    if errors:
        raise PostfixSettingsError(errors)
    return dane_ready


#: The findings that stop only DANE (its prerequisites and Postfix's resolver), which
#: drop-in mode reports as one warning.
DANE_CHECKS = frozenset({"dns-support-level", "dane-prerequisite", "resolver"})


def serve_socketmap(options: ServeOptions, settings: DiscoverySettings,
                    version: PostfixVersion, *,
                    read_settings: Callable[[], DiscoverySettings],
                    read_version: Callable[[DiscoverySettings], PostfixVersion],
                    host: str, port: int, unix_path: str | None,
                    sock: socket.socket | None = None) -> int:
    """Serve until stopped (SIGTERM): 0.  ``settings`` are the ``[discovery]`` settings
    (discovery on when ``settings.enabled``) and ``version`` the Postfix version at start;
    a reload reads them again with ``read_settings`` and ``read_version``.  Where to
    listen: ``host``/``port``, ``unix_path``, or ``sock`` (socket activation).  What the
    first load raises (a configuration error) reaches the caller."""
    paths = list(options.paths)
    use_discovery = settings.enabled
    metrics: Any = None
    metrics_listen = options.metrics_listen

    # The start's route summary waits until the server listens, so that a start that
    # fails (a busy port, say) ends with its error alone; a reload's is logged at once.
    held: list[str] | None = []

    def route_summary(line: str) -> None:
        if held is None:
            logging.getLogger("tlspolicy").info("%s", line)
        else:
            held.append(line)

    def ready(server: _sm.SocketmapServer) -> None:
        nonlocal held
        if metrics is not None:
            metrics.bind_server(server)
        sys.stdout.write(f"listening on {server.listen_address}\n")
        sys.stdout.flush()
        for line in held or ():
            logging.getLogger("tlspolicy").info("%s", line)
        held = None
        start_watchers(server)
        _systemd.notify(f"READY=1\nSTATUS=listening on {server.listen_address}\n"
                        f"MAINPID={os.getpid()}")

    def stopping() -> None:
        _systemd.notify("STOPPING=1")

    resolver = (settings.resolver, settings.resolver_port) if use_discovery else None
    mode = ServeMode(drop_in_allowed=use_discovery, table_given=bool(settings.table))
    discovered: list[DiscoveryRun] = []

    def check(config: Config) -> None:
        if mode.drop_in:
            # DANE is on in drop-in mode only where Postfix can do it: what it lacks is
            # one warning, never a refusal (postfix-mta-sts-resolver never needed it).
            ready = postfix_checks(options, config, discovery=True, discovery_resolver=resolver,
                                   postfix_version=version, dane_optional=True)
            run = discovered[0]
            run.dane_ready = ready
            run.read_own_level()
            logging.getLogger("tlspolicy").info(
                "drop-in mode: MTA-STS%s for every domain, NOTFOUND where neither applies "
                "(Postfix's own level, %s, stands there); any map name is answered",
                " and DANE" if ready else " (DANE off, see above)",
                run.own_level or "not known")
            return
        postfix_checks(options, config, discovery=use_discovery, discovery_resolver=resolver,
                       postfix_version=version)
        if use_discovery:
            warn_unused_discovery(config)

    def count_unattributed(reason: str) -> None:
        if metrics is not None:
            metrics.count_unattributed(reason)

    reloads = Reloads(settings, version, read_settings=read_settings,
                      read_version=read_version)
    reader = route_reader(options, on_read=reloads.routes_read, summary=route_summary)
    policy = lookup_factory(paths, format=options.format,
                            file_checks=not options.no_file_checks,
                            transport_maps=options.transport_map or (),
                            relayhost=options.relayhost, postfix_version=version,
                            first_load_check=check,
                            compiled_cache=options.compiled_cache, mode=mode,
                            route_reader=reader, on_unattributed=count_unattributed,
                            postfix_version_source=lambda: reloads.version)
    # A shadow candidate is read as the live files are (format, routes, Postfix version),
    # without the file checks: it never answers.
    candidate = (lookup_factory(options.shadow, format=options.format, file_checks=False,
                                transport_maps=options.transport_map or (),
                                relayhost=options.relayhost, postfix_version=version,
                                route_reader=reader,
                                postfix_version_source=lambda: reloads.version)
                 if options.shadow else None)
    watchers: list[asyncio.Task[None]] = []
    recompilers: list[Any] = []  # what an expiry swaps in: rebuild, counted with --metrics

    def build() -> Any:
        # A reload (SIGHUP, or a route table that changed) reads Postfix's version and
        # the [discovery] table again first; the load reads the files and routes.
        if reloads.loaded:
            before = reloads.version
            commit = reloads.refresh(discovered[0] if discovered else None)
            try:
                live = policy()
            except BaseException:
                reloads.undo(before)
                raise
            commit()
        else:
            live = policy()
        reloads.loaded = True
        if discovered:
            # With discovery the candidate is judged on the live answers' fetched inputs.
            wrapped = discovered[0].wrap(live)
            return wrapped if candidate is None else DiscoveryShadowLookup(
                wrapped, wrapped.candidate(candidate()))
        return live if candidate is None else ShadowLookup(live, candidate())

    def rebuild() -> Any:
        live = policy.recompile()
        if discovered:
            wrapped = discovered[0].wrap(live)
            return wrapped if candidate is None else DiscoveryShadowLookup(
                wrapped, wrapped.candidate(candidate.recompile()))
        return live if candidate is None else ShadowLookup(live, candidate.recompile())

    def due() -> bool:
        return policy.expiry_due() or (candidate is not None and candidate.expiry_due())

    def start_watchers(server: _sm.SocketmapServer) -> None:
        loop = asyncio.get_running_loop()
        # Look at the clock every minute; recompile when a stanza expires.
        watchers.append(loop.create_task(
            watch_expiry(server, policy, due=due, rebuild=(recompilers or [rebuild])[0])))
        if candidate is not None:
            watchers.append(loop.create_task(
                drain_shadow(server, report=options.shadow_report)))
        if options.route_poll > 0:
            watchers.append(loop.create_task(watch_route_tables(
                server.request_reload, lambda: reloads.stamps, interval=options.route_poll)))

    factory: Any = build
    endpoint: Any = None
    try:
        if metrics_listen is not None:
            from . import metrics as _metrics  # the daemon extra
            metrics = _metrics.Metrics()
            # Reloads and expiry recompiles are counted alike.
            factory = metrics.instrument_factory(build)
            recompilers.append(metrics.instrument_factory(rebuild))
            endpoint = _metrics.start_metrics_server(metrics, *metrics_listen,
                                                     allow_remote=options.allow_remote)
            sys.stdout.write(f"metrics on http://{endpoint.listen_address}/metrics\n")
            sys.stdout.flush()
        startup = shutdown = None
        if use_discovery:
            run = DiscoveryRun(settings, version, options=options, observer=metrics,
                               mode=mode)
            discovered.append(run)
            startup, shutdown = run.startup, run.shutdown
        # A configuration error (first load) reaches main, which prints it with its hint.
        _running.run_forever(
            factory, host=host, port=port, unix_path=unix_path,
            allow_remote=options.allow_remote,
            socket_mode=(_sm.DEFAULT_SOCKET_MODE if options.socket_mode is None
                         else options.socket_mode),
            max_connections=options.max_connections,
            max_connections_per_client=options.max_connections_per_client,
            idle_timeout=options.idle_timeout, request_timeout=options.request_timeout,
            max_request_bytes=options.max_request_bytes, reload_timeout=options.reload_timeout,
            ready=ready, sock=sock, reuse_port=options.reuse_port, stopping=stopping,
            startup=startup, shutdown=shutdown,
            answer_timeout=(discovered[0].deadline + 5.0 if discovered
                            else _sm.DEFAULT_ANSWER_TIMEOUT))
    finally:
        if endpoint is not None:
            endpoint.stop()
    return 0
