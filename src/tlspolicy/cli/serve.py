"""``tlspolicy serve socketmap``: the Postfix socketmap server."""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import TlsPolicyError
from ..formats.loader import load_config
from ..formats.postfix import (
    PolicyLookup,
    PostfixVersion,
    RouteTable,
    load_transport_table,
    parse_postfix_version,
    parse_transport_table,
)
from ..resolver import Resolver
from ._common import EXIT_ERROR, UsageError, add_config_files, config_paths, print_errors

__all__ = ["lookup_factory", "parse_listen", "postconf_version", "register"]


def _version_arg(text: str) -> PostfixVersion:
    try:
        return parse_postfix_version(text)
    except TlsPolicyError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) into ``(host, port)``."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def lookup_factory(paths: Sequence[str], *, transport_maps: Sequence[str] = (),
                   relayhost: str | None = None,
                   postfix_version: PostfixVersion | None = None,
                   ) -> Callable[[], PolicyLookup]:
    """A factory building a fresh :class:`~tlspolicy.formats.postfix.PolicyLookup`
    from the configuration files and transport tables each time it is called
    (first load and SIGHUP).  ``relayhost`` (main.cf's, e.g. ``[smart.example]:587``)
    routes every domain, like a ``*`` transport entry."""
    files = list(paths)
    tables = list(transport_maps)

    def build() -> PolicyLookup:
        resolver = Resolver(load_config(*files))
        routes = RouteTable()
        for table in tables:
            routes = routes + load_transport_table(table)
        if relayhost is not None:
            routes = routes + parse_transport_table(f"* smtp:{relayhost}\n",
                                                    file="--relayhost")
        return PolicyLookup(resolver, routes=routes, postfix_version=postfix_version)

    return build


def postconf_version(postconf: str | None = None) -> PostfixVersion:
    """The installed Postfix's version, from ``postconf -h mail_version``.

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
        result = subprocess.run([program, "-h", "mail_version"], capture_output=True,
                                text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"cannot run {program} to read the Postfix version ({exc}); give "
                         "--postfix-version") from None
    if result.returncode != 0:
        raise UsageError(f"{program} -h mail_version failed: {result.stderr.strip()}; give "
                         "--postfix-version")
    return parse_postfix_version(result.stdout)


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
    try:
        version = args.postfix_version if args.postfix_version is not None \
            else postconf_version()
        factory = lookup_factory(paths, transport_maps=args.transport_map or (),
                                 relayhost=args.relayhost, postfix_version=version)
        run_forever(factory, host=host, port=port, ready=ready)
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
    # Postfix routing and version: what the answers to next-hop keys and their syntax need.
    postfix = socketmap.add_argument_group("Postfix routing and version")
    postfix.add_argument("--transport-map", action="append", metavar="FILE",
                         help="a Postfix transport table source file (transport(5), the text "
                              "behind transport_maps; repeatable): next-hop keys "
                              "([host]:port) are answered with the routed domains' policy at "
                              "its strictest; re-read on SIGHUP")
    postfix.add_argument("--relayhost", metavar="NEXTHOP",
                         help="main.cf's relayhost (e.g. [smart.example]:587): that key is "
                              "answered with every domain's policy at its strictest")
    postfix.add_argument("--postfix-version", type=_version_arg, metavar="X.Y[.Z]",
                         help="the Postfix version the answers are written for (default: "
                              "read with postconf -h mail_version)")
    socketmap.set_defaults(func=_cmd_serve_socketmap)
