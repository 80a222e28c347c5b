"""``tlspolicy serve socketmap``: the Postfix socketmap server."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..formats.loader import load_config
from ..formats.postfix import PolicyLookup
from ..resolver import Resolver
from ._common import (
    UsageError,
    add_config_files,
    config_format,
    config_paths,
)

__all__ = ["lookup_factory", "parse_listen", "register"]


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) into ``(host, port)``."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def lookup_factory(paths: Sequence[str], *,
                   format: str | None = None) -> Callable[[], PolicyLookup]:
    """A factory building a fresh :class:`~tlspolicy.formats.postfix.PolicyLookup`
    from the configuration files each time it is called (first load and SIGHUP)."""
    files = list(paths)

    def build() -> PolicyLookup:
        return PolicyLookup(Resolver(load_config(*files, format=format)))

    return build


def _cmd_serve_socketmap(args: argparse.Namespace) -> int:
    from ..servers.socketmap import SocketmapServer, run_forever

    logging.basicConfig(level=logging.INFO if not args.quiet else logging.WARNING,
                        stream=sys.stderr, format="tlspolicy: %(levelname)s %(message)s")
    host, port = args.listen

    def ready(server: SocketmapServer) -> None:
        bound_host, bound_port = server.address
        sys.stdout.write(f"listening on {bound_host}:{bound_port}\n")
        sys.stdout.flush()

    paths = config_paths(args)
    if not paths:
        # Serving the bundled example to a real MTA would be a silent misconfiguration.
        raise UsageError("serve needs configuration files (FILE or --config FILE); it never "
                         "serves the bundled example")
    # A configuration error (first load) reaches main, which prints it with its hint.
    run_forever(lookup_factory(paths, format=config_format(args)), host=host, port=port,
                ready=ready)
    return 0


def register(sub: Any) -> None:
    """Add ``serve socketmap`` to the command line's subparsers."""
    serve = sub.add_parser("serve", help="run a policy server for an MTA")
    servers = serve.add_subparsers(dest="server", required=True, metavar="SERVER",
                                   help="which server to run")
    socketmap = servers.add_parser(
        "socketmap", help="Postfix socketmap server for smtp_tls_policy_maps; the map name "
                          "selects the binding")
    socketmap.add_argument("--listen", required=True, type=parse_listen, metavar="HOST:PORT",
                           help="address to listen on (loopback only is advised; port 0 "
                                "picks a free one, printed on standard output)")
    add_config_files(socketmap)
    socketmap.add_argument("--quiet", "-q", action="store_true", help="log warnings only")
    socketmap.set_defaults(func=_cmd_serve_socketmap)
