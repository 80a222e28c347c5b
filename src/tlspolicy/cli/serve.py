"""``tlspolicy serve socketmap``: the Postfix socketmap server."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

import attrs

from ..errors import EmptyPolicyError, TlsPolicyError
from ..formats.discovery_table import read_discovery_table
from ..formats.loader import load_config, refuse_empty_policy
from ..formats.postfix import load_transport_table
from ..formats.tlsfiles import check_tls_files
from ..postfix.dropin import DROP_IN_CONFIG
from ..postfix.levels import PostfixVersion
from ..postfix.lookup import PolicyLookup, parse_postfix_version
from ..postfix.transport import RouteTable, parse_transport_table
from ..resolver import Resolver
from ..scopes import Config, sets_no_option
from ..servers import socketmap as _sm
from ..servers import systemd as _systemd
from ..servers.expiry_watch import ExpiringPolicy, watch_expiry
from ..servers.postfix_checks import (
    PostfixSettingsError,
    Severity,
    check_postfix_settings,
)
from ..servers.postfix_routes import (
    DEFAULT_ROUTE_POLL,
    ROUTE_PARAMETERS,
    FileStamp,
    PostfixRoutes,
    watch_route_tables,
)
from ..servers.shadow import DiscoveryShadowLookup, ShadowLookup, drain_shadow
from ._common import UsageError, add_config_files, config_format, config_paths, needs_extra

# Mirrors tlspolicy.servers.discovered.DEFAULT_ANSWER_DEADLINE without importing discovery.
_DEFAULT_DEADLINE = 10.0

__all__ = ["UnixListen", "lookup_factory", "parse_listen", "postconf_version", "postfix_checks",
           "register"]


def _version_arg(text: str) -> PostfixVersion:
    try:
        return parse_postfix_version(text)
    except TlsPolicyError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_DROP_IN_HINT = ("for drop-in mode (MTA-STS and DANE alone) give no file, or one holding only "
                 "a [discovery] table, with --discovery")


@attrs.define
class ServeMode:
    """Whether ``serve socketmap`` may serve drop-in mode (discovery on), whether the files
    hold a ``[discovery]`` table, and whether the policy loaded last is drop-in mode's."""

    drop_in_allowed: bool = False
    table_given: bool = False
    drop_in: bool = False


class UnixListen(NamedTuple):
    """``--listen unix:PATH``: a unix socket path."""

    path: str


def parse_listen(text: str) -> tuple[str, int] | UnixListen:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) into ``(host, port)``; ``unix:PATH``
    into a :class:`UnixListen`."""
    if text.startswith("unix:"):
        path = text[len("unix:"):]
        if not path:
            raise argparse.ArgumentTypeError(f"expected unix:PATH, got {text!r}")
        return UnixListen(path)
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT or unix:PATH, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise argparse.ArgumentTypeError(f"an IPv6 address needs brackets: [{host}]:{port_text}")
    return host, int(port_text)


def _parse_tcp_listen(text: str) -> tuple[str, int]:
    where = parse_listen(text)
    if isinstance(where, UnixListen):
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return where


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
    :meth:`~tlspolicy.servers.expiry.ExpiringPolicy.recompile` builds it again when a stanza
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
                from ..formats.compiled import load_config_cached

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


def route_reader(args: argparse.Namespace, *,
                 on_read: Callable[[PostfixRoutes], None] | None = None
                 ) -> Callable[[], PostfixRoutes]:
    """Postfix's own routes as ``serve socketmap`` reads them (``--postfix-config-dir``,
    ``--accept-route-loss``): every call reads them again, logs what it found and passes
    it to ``on_read``."""
    accepted = tuple(args.accept_route_loss or ())

    def read() -> PostfixRoutes:
        from ..servers.postfix_routes import read_postfix_routes

        found = read_postfix_routes(args.postfix_config_dir, accept_loss=accepted)
        log = logging.getLogger("tlspolicy")
        hops = found.routes.by_nexthop()
        log.info("routes: %d next hop%s read from Postfix's settings (%s)", len(hops),
                 "" if len(hops) == 1 else "s", args.postfix_config_dir or "postconf's "
                 "default configuration directory")
        for loss in found.losses:
            log.warning("routes: %s; loss accepted (--accept-route-loss %s): next hops it "
                        "routes are answered with the host's own policy, each logged once "
                        "and counted", loss, loss.parameter)
        if on_read is not None:
            on_read(found)
        return found

    return read


def postconf_version(postconf: str | None = None, *,
                     config_dir: str | None = None) -> PostfixVersion:
    """The installed Postfix's version, from ``postconf [-c config_dir] -h mail_version``.

    Raises :class:`~tlspolicy.cli._common.UsageError` when postconf is missing or fails:
    the answers' syntax depends on the version, so it is never guessed.
    """
    # Postfix installs into /usr/sbin, which is not on every user's PATH.
    program = postconf or shutil.which("postconf") or shutil.which(
        "postconf", path="/usr/sbin:/usr/bin")
    if program is None:
        raise UsageError("serve socketmap needs the Postfix version: give --postfix-version "
                         "(postconf, which would tell it, is not installed)")
    try:
        where = ["-c", config_dir] if config_dir is not None else []
        result = subprocess.run([program, *where, "-h", "mail_version"], capture_output=True,
                                text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"cannot run {program} to read the Postfix version ({exc}); give "
                         "--postfix-version") from None
    if result.returncode != 0:
        raise UsageError(f"{program} -h mail_version failed: {result.stderr.strip()}; give "
                         "--postfix-version")
    return parse_postfix_version(result.stdout)


def _postfix_setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def postfix_checks(args: argparse.Namespace, config: Config, *, discovery: bool = False,
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
    if args.no_postfix_checks:
        log.warning("--no-postfix-checks: Postfix's own settings (smtp_dns_support_level, "
                    "tls_required_enable, chroot paths, resolver) are not checked; one of "
                    "them can undo the answers")
        return True
    listen = args.listen
    findings = check_postfix_settings(
        config, discovery=discovery, config_dir=args.postfix_config_dir,
        settings=dict(args.postfix_setting or ()),
        unix_socket=listen.path if isinstance(listen, UnixListen) else None,
        socket_mode=_sm.DEFAULT_SOCKET_MODE if args.socket_mode is None else args.socket_mode,
        accept_tls_required_loss=args.accept_tls_required_loss,
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

    def ready(server: _sm.SocketmapServer) -> None:
        if metrics is not None:
            metrics.bind_server(server)
        sys.stdout.write(f"listening on {server.listen_address}\n")
        sys.stdout.flush()
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
        from .servecheck import dry_run

        return dry_run(args, paths, table, use_discovery)
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
    discovered: list[_DiscoveryRun] = []

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
            _warn_unused_discovery(config)

    def count_unattributed(reason: str) -> None:
        if metrics is not None:
            metrics.count_unattributed(reason)

    reloads = _Reloads(args, paths, table, use_discovery, version)
    reader = route_reader(args, on_read=reloads.routes_read)
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
                from ..servers import metrics as _metrics
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
            run = _DiscoveryRun(args, table, version, observer=metrics, mode=mode)
            discovered.append(run)
            startup, shutdown = run.startup, run.shutdown
        # A configuration error (first load) reaches main, which prints it with its hint.
        _sm.run_forever(
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


#: [discovery] keys a reload applies; every other one needs a restart.
_LIVE_TABLE_KEYS: Final = frozenset({"answer_deadline", "sts_mx_patterns", "postfix_version"})


class _Reloads:
    """What a reload reads again besides the files and routes: Postfix's version and the
    ``[discovery]`` table (SEMANTICS 11: routes, DANE prerequisites and Postfix's own
    level are read by the load and by :meth:`_DiscoveryRun.wrap`).  What changed but needs a
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

    def refresh(self, run: _DiscoveryRun | None) -> Callable[[], None]:
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

    def _commit(self, run: _DiscoveryRun | None, table: dict[str, Any],
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


def _warn_unused_discovery(config: Config) -> None:
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
    """The (address, port) discovery asks, as :class:`_DiscoveryRun` picks them."""
    address = args.resolver if args.resolver != "127.0.0.1" or "resolver" not in table \
        else table["resolver"]
    port = args.resolver_port if args.resolver_port != 53 or "resolver_port" not in table \
        else table["resolver_port"]
    return str(address), int(port)


def discovery_run(args: argparse.Namespace, table: dict[str, Any],
                  version: PostfixVersion) -> _DiscoveryRun:
    """Discovery as ``serve socketmap --discovery`` would run it (not started)."""
    return _DiscoveryRun(args, table, version)


class _DiscoveryRun:
    """Discovery for ``serve socketmap --discovery``: opened in the server's loop before the
    first load, closed after it stops; wraps every loaded policy (first load, SIGHUP,
    expiry recompiles) into a :class:`~tlspolicy.servers.discovered.DiscoveryLookup`
    sharing the domains in use, whose MTA-STS policies are refreshed in the background."""

    def __init__(self, args: argparse.Namespace, table: dict[str, Any],
                 version: PostfixVersion, *, observer: Any = None,
                 mode: ServeMode | None = None) -> None:
        try:
            from ..discovery import DiscoveryConfig
            from ..servers.discovered import DEFAULT_ANSWER_DEADLINE
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
        from ..servers.discovered import DEFAULT_ANSWER_DEADLINE

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
        from ..discovery import Discovery, redis_cache

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
        from ..servers.postfix_checks import PostconfError, read_dane_prerequisites

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
        from ..servers.postfix_checks import read_own_level

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
        from ..servers.discovered import DiscoveryLookup

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
    group.add_argument("--metrics-listen", type=_parse_tcp_listen, default=None,
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
    from .discover import add_discovery_arguments

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
                            f"as failed (default {_DEFAULT_DEADLINE:g}; Postfix waits 100)")
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
    checks.add_argument("--postfix-setting", action="append", type=_postfix_setting,
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
