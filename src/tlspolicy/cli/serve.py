"""``tlspolicy serve socketmap``: the Postfix socketmap server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import Any

from ..errors import TlsPolicyError
from ..servers.expiry import ExpiringPolicy, watch_expiry
from ..servers.shadow import drain_shadow
from ..testing.shadow import ShadowLookup
from ._common import EXIT_ERROR, UsageError, add_config_files, config_paths, print_errors

__all__ = ["lookup_factory", "parse_listen", "register"]


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) into ``(host, port)``."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def lookup_factory(paths: Sequence[str]) -> ExpiringPolicy:
    """A factory building a fresh :class:`~tlspolicy.formats.postfix.PolicyLookup`
    from the configuration files each time it is called (first load and SIGHUP)."""
    # Compiled at the clock's time, which never goes back within the process.
    return ExpiringPolicy(paths)


def _cmd_serve_socketmap(args: argparse.Namespace) -> int:
    from ..servers.socketmap import SocketmapServer, run_forever

    logging.basicConfig(level=logging.INFO if not args.quiet else logging.WARNING,
                        stream=sys.stderr, format="tlspolicy: %(levelname)s %(message)s")
    host, port = args.listen

    policy = lookup_factory(config_paths(args))
    candidate = ExpiringPolicy(args.shadow) if args.shadow else None
    watchers: list[asyncio.Task[None]] = []

    def build() -> Any:
        # The live policy answers; a shadow candidate is compared after the replies.
        live = policy()
        return live if candidate is None else ShadowLookup(live, candidate())

    def rebuild() -> Any:
        live = policy.recompile()
        return live if candidate is None else ShadowLookup(live, candidate.recompile())

    def due() -> bool:
        return policy.expiry_due() or (candidate is not None and candidate.expiry_due())

    def ready(server: SocketmapServer) -> None:
        bound_host, bound_port = server.address
        sys.stdout.write(f"listening on {bound_host}:{bound_port}\n")
        sys.stdout.flush()
        loop = asyncio.get_running_loop()
        # Look at the clock every minute; recompile when a stanza expires.
        watchers.append(loop.create_task(
            watch_expiry(server, policy, due=due, rebuild=rebuild)))
        if candidate is not None:
            watchers.append(loop.create_task(
                drain_shadow(server, report=args.shadow_report)))

    paths = config_paths(args)
    if not paths:
        # Serving the bundled example to a real MTA would be a silent misconfiguration.
        raise UsageError("serve needs configuration files (FILE or --config FILE); it never "
                         "serves the bundled example")
    try:
        run_forever(build, host=host, port=port, ready=ready)
    except TlsPolicyError as exc:
        print_errors(exc)
        return EXIT_ERROR
    return 0


def register(sub: Any) -> None:
    """Add ``serve socketmap`` to the command line's subparsers."""
    serve = sub.add_parser("serve", help="run a policy server for an MTA")
    servers = serve.add_subparsers(dest="server", required=True, metavar="SERVER")
    socketmap = servers.add_parser(
        "socketmap", help="Postfix socketmap server for smtp_tls_policy_maps; the map name "
                          "selects the binding")
    socketmap.add_argument("--listen", required=True, type=parse_listen, metavar="HOST:PORT",
                           help="address to listen on (loopback only is advised; port 0 "
                                "picks a free one, printed on standard output)")
    add_config_files(socketmap)
    socketmap.add_argument("--quiet", "-q", action="store_true", help="log warnings only")
    socketmap.add_argument(
        "--shadow", action="append", metavar="FILE",
        help="candidate configuration file (repeatable, layered): resolve every request "
             "under it too, after the reply is sent, and count the differences")
    socketmap.add_argument(
        "--shadow-report", metavar="PATH",
        help="write the shadow counts to PATH (JSON) every minute; read it with "
             "'tlspolicy shadow-report PATH'")
    socketmap.set_defaults(func=_cmd_serve_socketmap)
