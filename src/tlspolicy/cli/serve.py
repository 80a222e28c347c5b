"""``tlspolicy serve socketmap``: the Postfix socketmap server."""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from typing import Any

from ..errors import TlsPolicyError
from ..formats.loader import read_discovery_settings
from ..postfix.levels import PostfixVersion
from ..postfix.lookup import parse_postfix_version
from ..servers import socketmap as _sm
from ..servers import systemd as _systemd
from ..servers.app import lookup_factory, serve_socketmap
from ..servers.app_inputs import UnixListen
from ..servers.postfix_routes import DEFAULT_ROUTE_POLL, ROUTE_PARAMETERS
from ._common import (
    UsageError,
    add_config_files,
    add_no_file_checks,
    config_format,
    config_paths,
    seconds,
)
from .discover import add_discovery_arguments, add_setting_flags
from .serve_discovery import require_discovery
from .serve_inputs import (
    parse_listen,
    parse_tcp_listen,
    postfix_setting,
    serve_options,
    serve_version,
)
from .servecheck import dry_run

__all__ = ["register"]


def _version_arg(text: str) -> PostfixVersion:
    try:
        return parse_postfix_version(text)
    except TlsPolicyError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    settings = read_discovery_settings(paths, format=config_format(args), flags=args)
    if args.check:
        return dry_run(args, paths, settings, lookup_factory=lookup_factory)
    use_discovery = settings.enabled
    version, _where = serve_version(args, settings, discovery=use_discovery)
    if args.metrics_listen is not None:
        try:
            # the daemon extra
            from ..servers import metrics  # noqa: F401
        except ImportError as exc:
            raise UsageError(f"--metrics-listen needs the tlspolicy[daemon] extra "
                             f"({exc.name} is not installed)") from None
    if use_discovery:
        require_discovery()
    return serve_socketmap(
        serve_options(args, paths), settings, version,
        # A reload reads the table again, the flags given still winning, and the version;
        # whether discovery is on stays as at start.
        read_settings=lambda: read_discovery_settings(paths, format=config_format(args),
                                                      flags=args),
        read_version=lambda again: serve_version(args, again, discovery=use_discovery)[0],
        host=host, port=port, unix_path=unix_path, sock=inherited)


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
    group.add_argument("--idle-timeout", type=seconds, default=_sm.DEFAULT_IDLE_TIMEOUT,
                       metavar="SECONDS",
                       help="close a connection this long after its last complete request "
                            f"(default {_sm.DEFAULT_IDLE_TIMEOUT:g}; Postfix itself closes "
                            "idle connections after 10)")
    group.add_argument("--request-timeout", type=seconds, default=_sm.DEFAULT_REQUEST_TIMEOUT,
                       metavar="SECONDS",
                       help="close a connection whose started request is not complete this "
                            f"long after its first byte (default {_sm.DEFAULT_REQUEST_TIMEOUT:g})")
    group.add_argument("--max-request-bytes", type=_positive_int,
                       default=_sm.DEFAULT_MAX_REQUEST_BYTES, metavar="N",
                       help="largest request accepted "
                            f"(default {_sm.DEFAULT_MAX_REQUEST_BYTES})")
    group.add_argument("--reload-timeout", type=seconds, default=_sm.DEFAULT_RELOAD_TIMEOUT,
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
    add_setting_flags(group, ("discovery", "answer_deadline", "sts_mx_patterns"),
                      readers={"answer_deadline": seconds})
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
    add_no_file_checks(socketmap, "the files are then found missing only when Postfix sends "
                                  "mail")
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
