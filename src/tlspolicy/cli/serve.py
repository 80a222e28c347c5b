"""``tlspolicy serve socketmap``: the Postfix socketmap server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from ..errors import EmptyPolicyError, TlsPolicyError
from ..formats.compiled import load_config_cached
from ..formats.discovery_table import read_discovery_table
from ..formats.loader import load_config, refuse_empty_policy
from ..formats.postfix import load_transport_table
from ..formats.tlsfiles import check_tls_files
from ..postfix.dropin import DROP_IN_CONFIG
from ..postfix.levels import PostfixVersion
from ..postfix.lookup import PolicyLookup, parse_postfix_version
from ..postfix.transport import RouteTable, parse_transport_table
from ..resolver import Resolver
from ..scopes import Config
from ..scopes.stanzas import sets_no_option
from ..servers import running as _running
from ..servers import socketmap as _sm
from ..servers import systemd as _systemd
from ..servers.discovered import DEFAULT_ANSWER_DEADLINE
from ..servers.expiry_watch import ExpiringPolicy, watch_expiry
from ..servers.postfix_routes import (
    DEFAULT_ROUTE_POLL,
    ROUTE_PARAMETERS,
    PostfixRoutes,
    watch_route_tables,
)
from ..servers.shadow import DiscoveryShadowLookup, ShadowLookup, drain_shadow
from ._common import UsageError, add_config_files, config_format, config_paths
from .discover import add_discovery_arguments
from .serve_discovery import (
    DiscoveryRun,
    Reloads,
    discovery_resolver,
    warn_unused_discovery,
)
from .serve_inputs import (
    ServeMode,
    UnixListen,
    parse_listen,
    parse_tcp_listen,
    postconf_version,
    postfix_checks,
    postfix_setting,
    route_reader,
)
from .servecheck import dry_run

__all__ = ["UnixListen", "lookup_factory", "parse_listen", "postconf_version", "postfix_checks",
           "register"]


def _version_arg(text: str) -> PostfixVersion:
    try:
        return parse_postfix_version(text)
    except TlsPolicyError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_DROP_IN_HINT = ("for drop-in mode (MTA-STS and DANE alone) give no file, or one holding only "
                 "a [discovery] table, with --discovery")


def _file_mode(text: str) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"expected an octal file mode such as 0660, got {text!r}")
    return mode


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1e9:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


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





def _inherited_socket(args: argparse.Namespace) -> socket.socket | None:
    """The socket systemd passed (socket activation), or ``None`` without one."""
    if not _systemd.activation_requested():
        if args.listen is None:
            raise UsageError("--listen is required (unless started by systemd socket "
                             "activation)")
        return None
    if args.listen is not None:
        raise UsageError("started by socket activation (LISTEN_FDS is set): the socket unit "
                         "says where to listen, so --listen must not be given")
    sockets = _systemd.listen_sockets()
    if len(sockets) != 1:
        for sock in sockets:
            sock.detach()
        raise UsageError(f"socket activation passed {len(sockets)} sockets; the socketmap "
                         "server serves exactly one (one ListenStream= per socket unit)")
    return sockets[0]


def _cmd_serve_socketmap(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO if not args.quiet else logging.WARNING,
                        stream=sys.stderr, format="tlspolicy: %(levelname)s %(message)s")
    inherited = _inherited_socket(args)
    listen: tuple[str, int] | UnixListen | None = args.listen
    if listen is None:
        host, port, unix_path = "127.0.0.1", 0, None
    elif isinstance(listen, UnixListen):
        host, port, unix_path = "", 0, listen.path
    else:
        host, port, unix_path = (*listen, None)
    if args.reuse_port and (unix_path is not None or inherited is not None):
        raise UsageError("--reuse-port applies to --listen HOST:PORT only (a socket unit "
                         "sets ReusePort= itself)")

    metrics: Any = None
    metrics_listen: tuple[str, int] | None = args.metrics_listen

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

    paths = config_paths(args)
    if not paths and not args.discovery:
        # Serving the bundled example to a real MTA would be a silent misconfiguration.
        raise UsageError("serve needs configuration files (FILE or --config FILE), or "
                         "--discovery alone for drop-in mode (MTA-STS and DANE alone, as "
                         "postfix-mta-sts-resolver and postfix-tlspol serve); it never "
                         "serves the bundled example")
    if unix_path is None and args.socket_mode is not None:
        raise UsageError("--socket-mode applies to --listen unix:PATH only (a socket unit "
                         "sets SocketMode= itself)")
    if args.no_file_checks:
        logging.getLogger("tlspolicy").warning(
            "--no-file-checks: certificate and CA files are not checked; a missing one is "
            "found only when Postfix sends mail")
    table = read_discovery_table(paths)
    use_discovery = args.discovery if args.discovery is not None \
        else bool(table.get("enabled", False))
    if args.check:
        return dry_run(args, paths, table, use_discovery, lookup_factory=lookup_factory)
    if args.postfix_version is not None:
        version = args.postfix_version
    elif use_discovery and "postfix_version" in table:
        version = parse_postfix_version(table["postfix_version"])
    elif "mail_version" in dict(args.postfix_setting or ()):
        # The version given as one of Postfix's settings is the version.
        version = parse_postfix_version(dict(args.postfix_setting)["mail_version"])
    else:
        # Read from the Postfix the checks read: --postfix-config-dir when given.
        version = postconf_version(config_dir=args.postfix_config_dir)
    resolver = discovery_resolver(args, table) if use_discovery else None
    mode = ServeMode(drop_in_allowed=use_discovery, table_given=bool(table))
    discovered: list[DiscoveryRun] = []

    def check(config: Config) -> None:
        if mode.drop_in:
            # DANE is on in drop-in mode only where Postfix can do it: what it lacks is
            # one warning, never a refusal (postfix-mta-sts-resolver never needed it).
            ready = postfix_checks(args, config, discovery=True, discovery_resolver=resolver,
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
        postfix_checks(args, config, discovery=use_discovery, discovery_resolver=resolver,
                       postfix_version=version)
        if use_discovery:
            warn_unused_discovery(config)

    def count_unattributed(reason: str) -> None:
        if metrics is not None:
            metrics.count_unattributed(reason)

    reloads = Reloads(args, paths, table, use_discovery, version)
    reader = route_reader(args, on_read=reloads.routes_read, summary=route_summary)
    policy = lookup_factory(paths, format=config_format(args),
                            file_checks=not args.no_file_checks,
                            transport_maps=args.transport_map or (),
                            relayhost=args.relayhost, postfix_version=version,
                            first_load_check=check,
                            compiled_cache=args.compiled_cache, mode=mode,
                            route_reader=reader, on_unattributed=count_unattributed,
                            postfix_version_source=lambda: reloads.version)
    # A shadow candidate is read as the live files are (format, routes, Postfix version),
    # without the file checks: it never answers.
    candidate = (lookup_factory(args.shadow, format=config_format(args), file_checks=False,
                                transport_maps=args.transport_map or (),
                                relayhost=args.relayhost, postfix_version=version,
                                route_reader=reader,
                                postfix_version_source=lambda: reloads.version)
                 if args.shadow else None)
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
                drain_shadow(server, report=args.shadow_report)))
        if args.route_poll > 0:
            watchers.append(loop.create_task(watch_route_tables(
                server.request_reload, lambda: reloads.stamps, interval=args.route_poll)))

    factory: Any = build
    endpoint: Any = None
    try:
        if metrics_listen is not None:
            try:
                from ..servers import metrics as _metrics  # the daemon extra
            except ImportError as exc:
                raise UsageError(f"--metrics-listen needs the tlspolicy[daemon] extra "
                                 f"({exc.name} is not installed)") from None
            metrics = _metrics.Metrics()
            # Reloads and expiry recompiles are counted alike.
            factory = metrics.instrument_factory(build)
            recompilers.append(metrics.instrument_factory(rebuild))
            endpoint = _metrics.start_metrics_server(metrics, *metrics_listen,
                                                     allow_remote=args.allow_remote)
            sys.stdout.write(f"metrics on http://{endpoint.listen_address}/metrics\n")
            sys.stdout.flush()
        startup = shutdown = None
        if use_discovery:
            run = DiscoveryRun(args, table, version, observer=metrics, mode=mode)
            discovered.append(run)
            startup, shutdown = run.startup, run.shutdown
        # A configuration error (first load) reaches main, which prints it with its hint.
        _running.run_forever(
            factory, host=host, port=port, unix_path=unix_path,
            allow_remote=args.allow_remote,
            socket_mode=_sm.DEFAULT_SOCKET_MODE if args.socket_mode is None else args.socket_mode,
            max_connections=args.max_connections,
            max_connections_per_client=args.max_connections_per_client,
            idle_timeout=args.idle_timeout, request_timeout=args.request_timeout,
            max_request_bytes=args.max_request_bytes, reload_timeout=args.reload_timeout,
            ready=ready, sock=inherited, reuse_port=args.reuse_port, stopping=stopping,
            startup=startup, shutdown=shutdown,
            answer_timeout=(discovered[0].deadline + 5.0 if discovered
                            else _sm.DEFAULT_ANSWER_TIMEOUT))
    finally:
        if endpoint is not None:
            endpoint.stop()
    return 0




def _add_listening(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("listening")
    group.add_argument("--listen", type=parse_listen, default=None,
                       metavar="HOST:PORT|unix:PATH",
                       help="TCP address (IPv6 as [ADDR]:PORT; port 0 picks a free one) or unix "
                            "socket to listen on; the address in use is printed on standard "
                            "output. Non-loopback addresses are refused without --allow-remote. "
                            "Required unless systemd passes the socket (socket activation, "
                            "LISTEN_FDS)")
    group.add_argument("--reuse-port", action="store_true",
                       help="set SO_REUSEPORT on the TCP socket, so several server processes "
                            "can listen on one port (the kernel spreads connections among "
                            "them)")
    group.add_argument("--allow-remote", action="store_true",
                       help="allow a non-loopback --listen (or --metrics-listen) address (the "
                            "socketmap protocol has no authentication: restrict who can reach "
                            "it)")
    group.add_argument("--metrics-listen", type=parse_tcp_listen, default=None,
                       metavar="HOST:PORT",
                       help="serve Prometheus metrics at http://HOST:PORT/metrics (HOST an IP "
                            "address; loopback only without --allow-remote; needs the "
                            "tlspolicy[daemon] extra)")
    group.add_argument("--socket-mode", type=_file_mode, default=None, metavar="MODE",
                       help="file mode of the unix socket, octal "
                            f"(default {_sm.DEFAULT_SOCKET_MODE:04o})")


def _add_limits(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "limits", "when the connection slots are taken, the longest-idle connection is closed "
                  "to make room (Postfix reconnects); the security documentation explains each")
    group.add_argument("--max-connections", type=_positive_int,
                       default=_sm.DEFAULT_MAX_CONNECTIONS, metavar="N",
                       help=f"connections at once (default {_sm.DEFAULT_MAX_CONNECTIONS})")
    group.add_argument("--max-connections-per-client", type=_positive_int, default=None,
                       metavar="N",
                       help="connections one client may hold: per peer address over TCP, per "
                            "peer user id over a unix socket (default: no limit of its own; "
                            "every Postfix process of a host is the same client)")
    group.add_argument("--idle-timeout", type=_seconds, default=_sm.DEFAULT_IDLE_TIMEOUT,
                       metavar="SECONDS",
                       help="close a connection this long after its last complete request "
                            f"(default {_sm.DEFAULT_IDLE_TIMEOUT:g}; Postfix itself closes "
                            "idle connections after 10)")
    group.add_argument("--request-timeout", type=_seconds, default=_sm.DEFAULT_REQUEST_TIMEOUT,
                       metavar="SECONDS",
                       help="close a connection whose started request is not complete this "
                            f"long after its first byte (default {_sm.DEFAULT_REQUEST_TIMEOUT:g})")
    group.add_argument("--max-request-bytes", type=_positive_int,
                       default=_sm.DEFAULT_MAX_REQUEST_BYTES, metavar="N",
                       help="largest request accepted "
                            f"(default {_sm.DEFAULT_MAX_REQUEST_BYTES})")
    group.add_argument("--reload-timeout", type=_seconds, default=_sm.DEFAULT_RELOAD_TIMEOUT,
                       metavar="SECONDS",
                       help="abandon a load (start or SIGHUP) that takes longer, keeping the "
                            f"previous policy (default {_sm.DEFAULT_RELOAD_TIMEOUT:g})")
    group.add_argument("--route-poll", type=float, default=DEFAULT_ROUTE_POLL,
                       metavar="SECONDS",
                       help="look at the route tables read from Postfix (a .db, a texthash "
                            "file) this often and reload, as on SIGHUP, when one changed "
                            f"(default {DEFAULT_ROUTE_POLL:g}; 0: only on SIGHUP)")


def _add_discovery(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "answers with discovery", "DANE before MTA-STS before the configuration, per MX host "
        "never weaker than tlspolicy's decision (the [discovery] table of a TOML file sets "
        "the same; flags given here win)")
    group.add_argument("--discovery", action="store_true", default=None,
                       help="look up MX, TLSA and MTA-STS for every next hop and answer with "
                            "them (needs the tlspolicy[discovery] extra and the Postfix "
                            "version)")
    group.add_argument("--answer-deadline", type=_seconds, default=None, metavar="SECONDS",
                       help="send every answer within this time; what has not arrived counts "
                            f"as failed (default {DEFAULT_ANSWER_DEADLINE:g}; Postfix waits 100)")
    group.add_argument("--no-sts-mx-patterns", dest="sts_mx_patterns", action="store_false",
                       default=None,
                       help="main.cf sets smtp_tls_enforce_sts_mx_patterns = no (Postfix "
                            "3.10.5+): MX hosts are then not filtered by MTA-STS patterns, "
                            "which the answers' notes report")
    add_discovery_arguments(parser)


def register(sub: Any) -> None:
    """Add ``serve socketmap`` to the command line's subparsers."""
    serve = sub.add_parser("serve", help="run a policy server for an MTA")
    servers = serve.add_subparsers(dest="server", required=True, metavar="SERVER",
                                   help="which server to run")
    socketmap = servers.add_parser(
        "socketmap", help="Postfix socketmap server for smtp_tls_policy_maps; the map name "
                          "selects the binding")
    _add_listening(socketmap)
    _add_limits(socketmap)
    add_config_files(socketmap)
    socketmap.add_argument("--no-file-checks", action="store_true",
                           help="do not check that every tls_ca, tls_certificate and tls_key "
                                "is a readable PEM file of its kind (the files are then found "
                                "missing only when Postfix sends mail)")
    socketmap.add_argument("--quiet", "-q", action="store_true", help="log warnings only")
    socketmap.add_argument(
        "--compiled-cache", metavar="DIR", default=None,
        help="keep the compiled configuration in DIR (created 0700; must belong to this "
             "user and be writable by no one else) and use it on start and SIGHUP while "
             "every configuration file, includes counted, is unchanged (default: off)")
    # Postfix routing and version: what the answers to next-hop keys and their syntax need.
    postfix = socketmap.add_argument_group("Postfix routing and version")
    postfix.add_argument("--transport-map", action="append", metavar="FILE",
                         help="a Postfix transport table source file (transport(5), the text "
                              "behind transport_maps; repeatable): next-hop keys "
                              "([host]:port) are answered with the routed domains' policy at "
                              "its strictest; re-read on SIGHUP. With this or --relayhost, "
                              "Postfix's own routes are not read (by default they are: "
                              "transport_maps, relayhost, sender-dependent maps, "
                              "default_transport, smtp_fallback_relay, master.cf -o, from "
                              "--postfix-config-dir)")
    postfix.add_argument("--relayhost", metavar="NEXTHOP",
                         help="main.cf's relayhost (e.g. [smart.example]:587): that key is "
                              "answered with every domain's policy at its strictest")
    postfix.add_argument("--accept-route-loss", action="append", metavar="PARAM",
                         choices=(*ROUTE_PARAMETERS, "all"),
                         help="start although the routes of this Postfix parameter (one of "
                              f"{', '.join(ROUTE_PARAMETERS)}; 'all' for every one) cannot be "
                              "read, e.g. a regexp: or ldap: transport table: next hops they "
                              "route are answered with the host's own policy, each logged "
                              "once and counted (repeatable)")
    postfix.add_argument("--postfix-version", type=_version_arg, metavar="X.Y[.Z]",
                         help="the Postfix version the answers are written for (default: "
                              "read with postconf -h mail_version)")
    _add_discovery(socketmap)
    checks = socketmap.add_argument_group(
        "Postfix's own settings", "checked at start: smtp_dns_support_level (DANE answers), "
        "tls_required_enable (Postfix 3.10 and newer), tafile and socket paths inside the "
        "smtp service's chroot, the resolver Postfix asks; each problem names the main.cf "
        "or master.cf line that fixes it")
    checks.add_argument("--postfix-config-dir", metavar="DIR",
                        help="Postfix's configuration directory, read with postconf -c DIR "
                             "(default: postconf's own, /etc/postfix): its settings are "
                             "checked and its routes read")
    checks.add_argument("--postfix-setting", action="append", type=postfix_setting,
                        metavar="NAME=VALUE",
                        help="a Postfix setting as postconf names it (master.cf fields as "
                             "service/type/field, e.g. smtp/unix/chroot=y), used instead of "
                             "reading it with postconf (repeatable; where postconf is not "
                             "installed)")
    checks.add_argument("--check", action="store_true",
                        help="run every start-up check (configuration, Postfix's settings, "
                        "the listening address, the discovery cache and resolver), print "
                        "each verdict with the line that fixes it, and exit: 0 when none "
                        "fails, 1 otherwise; nothing is served")
    checks.add_argument("--no-postfix-checks", action="store_true",
                        help="do not check Postfix's settings (a warning says so)")
    checks.add_argument("--accept-tls-required-loss", action="store_true",
                        help="start although Postfix honours 'TLS-Required: no' "
                             "(tls_required_enable = yes) while the configuration requires "
                             "TLS somewhere: those messages go at may (a warning says so)")
    socketmap.add_argument(
        "--shadow", action="append", metavar="FILE",
        help="candidate configuration file (repeatable, layered): resolve every request "
             "under it too, after the reply is sent, and count the differences (with "
             "--discovery, on the inputs the live answer was computed from)")
    socketmap.add_argument(
        "--shadow-report", metavar="PATH",
        help="write the shadow counts to PATH (JSON) every minute; read it with "
             "'tlspolicy shadow-report PATH'")
    socketmap.set_defaults(func=_cmd_serve_socketmap)
