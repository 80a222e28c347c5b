"""``tlspolicy serve socketmap``: the Postfix socketmap server."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from ..errors import TlsPolicyError
from ..formats.loader import load_config
from ..formats.postfix import PolicyLookup
from ..resolver import Resolver
from ..servers import socketmap as _sm
from ..servers import systemd as _systemd
from ._common import EXIT_ERROR, UsageError, add_config_files, config_paths, print_errors

__all__ = ["UnixListen", "lookup_factory", "parse_listen", "register"]


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


def lookup_factory(paths: Sequence[str]) -> Callable[[], PolicyLookup]:
    """A factory building a fresh :class:`~tlspolicy.formats.postfix.PolicyLookup`
    from the configuration files each time it is called (first load and SIGHUP)."""
    files = list(paths)

    def build() -> PolicyLookup:
        return PolicyLookup(Resolver(load_config(*files)))

    return build


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
        _systemd.notify(f"READY=1\nSTATUS=listening on {server.listen_address}\n"
                        f"MAINPID={os.getpid()}")

    def stopping() -> None:
        _systemd.notify("STOPPING=1")

    paths = config_paths(args)
    if not paths:
        # Serving the bundled example to a real MTA would be a silent misconfiguration.
        raise UsageError("serve needs configuration files (FILE or --config FILE); it never "
                         "serves the bundled example")
    if unix_path is None and args.socket_mode is not None:
        raise UsageError("--socket-mode applies to --listen unix:PATH only (a socket unit "
                         "sets SocketMode= itself)")
    factory = lookup_factory(paths)
    endpoint: Any = None
    try:
        if metrics_listen is not None:
            try:
                from ..servers import metrics as _metrics
            except ImportError as exc:
                raise UsageError(f"--metrics-listen needs the tlspolicy[daemon] extra "
                                 f"({exc.name} is not installed)") from None
            metrics = _metrics.Metrics()
            factory = metrics.instrument_factory(factory)
            endpoint = _metrics.start_metrics_server(metrics, *metrics_listen,
                                                     allow_remote=args.allow_remote)
            sys.stdout.write(f"metrics on http://{endpoint.listen_address}/metrics\n")
            sys.stdout.flush()
        _sm.run_forever(
            factory, host=host, port=port, unix_path=unix_path,
            allow_remote=args.allow_remote,
            socket_mode=_sm.DEFAULT_SOCKET_MODE if args.socket_mode is None else args.socket_mode,
            max_connections=args.max_connections,
            max_connections_per_client=args.max_connections_per_client,
            idle_timeout=args.idle_timeout, request_timeout=args.request_timeout,
            max_request_bytes=args.max_request_bytes, reload_timeout=args.reload_timeout,
            ready=ready, sock=inherited, reuse_port=args.reuse_port, stopping=stopping)
    except TlsPolicyError as exc:
        print_errors(exc)
        return EXIT_ERROR
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


def register(sub: Any) -> None:
    """Add ``serve socketmap`` to the command line's subparsers."""
    serve = sub.add_parser("serve", help="run a policy server for an MTA")
    servers = serve.add_subparsers(dest="server", required=True, metavar="SERVER")
    socketmap = servers.add_parser(
        "socketmap", help="Postfix socketmap server for smtp_tls_policy_maps; the map name "
                          "selects the binding")
    _add_listening(socketmap)
    _add_limits(socketmap)
    add_config_files(socketmap)
    socketmap.add_argument("--quiet", "-q", action="store_true", help="log warnings only")
    socketmap.set_defaults(func=_cmd_serve_socketmap)
