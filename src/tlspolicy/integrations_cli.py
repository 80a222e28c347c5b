"""Command-line commands for MTA integrations: ``convert``, ``lint``, ``serve socketmap``.

Register with ``add_commands(subparsers)`` (the main CLI does this for every
module in its ``COMMAND_MODULES``).

Exit statuses: ``convert`` 0 on success (loss warnings go to standard
error); ``lint`` 0 when clean or, without ``--strict``, whatever it found,
1 with ``--strict`` when it found anything; 2 when a file does not load;
``serve socketmap`` 0 after SIGTERM/SIGINT, 2 when the first load fails.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from .errors import ConfigError, ConfigErrors, TlsPolicyError
from .formats.loader import load_config
from .resolver import Resolver

__all__ = ["add_commands", "lookup_factory", "parse_listen"]


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) into ``(host, port)``."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def lookup_factory(paths: Sequence[str]) -> Any:
    """A factory building a fresh :class:`~tlspolicy.formats.postfix.PolicyLookup`
    from the configuration files each time it is called (first load and SIGHUP)."""
    from .formats.postfix import PolicyLookup

    files = list(paths)

    def build() -> PolicyLookup:
        return PolicyLookup(Resolver(load_config(*files)))

    return build


def _print_errors(exc: ConfigError) -> None:
    errors = exc.errors if isinstance(exc, ConfigErrors) else (exc,)
    for error in errors:
        sys.stderr.write(f"{error}\n")


def _cmd_convert(args: argparse.Namespace) -> int:
    config = load_config(*args.inputs)
    out = sys.stdout
    if args.to == "toml":
        from .formats.toml import dumps_toml

        out.write(dumps_toml(config))
    elif args.to == "ecelerity":
        from .formats.ecelerity import dumps_ecelerity, ecelerity_export_losses

        out.write(dumps_ecelerity(config))
        for loss in ecelerity_export_losses(config):
            sys.stderr.write(f"tlspolicy: warning: {loss}\n")
    else:
        from .formats.postfix import (
            EntryKind,
            PostfixWarning,
            postfix_entries,
            render_pcre_table,
            render_policy_table,
            render_warnings,
        )

        names = [args.binding] if args.binding else list(Resolver(config).bindings)
        pcre_parts: list[str] = []
        warnings: list[PostfixWarning] = []
        for name in names:
            entries, found = postfix_entries(config, name)
            if len(names) > 1:
                out.write(f"# ---- binding {name!r}: one table per Postfix transport\n")
            out.write(render_policy_table(entries))
            pcre = render_pcre_table(entries)
            if pcre:
                pcre_parts.append((f"# ---- binding {name!r}\n" if len(names) > 1 else "")
                                  + pcre)
            warnings += found
            if not args.pcre_output and any(e.kind is EntryKind.REGEX for e in entries):
                sys.stderr.write(f"tlspolicy: warning: binding {name!r} has regex domain "
                                 "entries that a hash table cannot hold; pass --pcre-output "
                                 "FILE to write them as a pcre table\n")
        if args.pcre_output:
            with open(args.pcre_output, "w", encoding="utf-8") as handle:
                handle.write("".join(pcre_parts))
        text = render_warnings(warnings)
        if text:
            sys.stderr.write("what Postfix cannot express:\n" + text)
    return 0


def _cmd_lint(args: argparse.Namespace) -> int:
    from .lint import lint_file

    found = 0
    failed = False
    for path in args.files:
        try:
            warnings = lint_file(path)
        except ConfigError as exc:
            _print_errors(exc)
            failed = True
            continue
        for warning in warnings:
            sys.stdout.write(f"{warning.describe()}\n")
        found += len(warnings)
    if found:
        sys.stdout.write(f"{found} warning{'s' if found != 1 else ''}\n")
    if failed:
        return 2
    return 1 if found and args.strict else 0


def _cmd_serve_socketmap(args: argparse.Namespace) -> int:
    from .servers.socketmap import SocketmapServer, run_forever

    logging.basicConfig(level=logging.INFO if not args.quiet else logging.WARNING,
                        stream=sys.stderr, format="tlspolicy: %(levelname)s %(message)s")
    host, port = args.listen

    def ready(server: SocketmapServer) -> None:
        bound_host, bound_port = server.address
        sys.stdout.write(f"listening on {bound_host}:{bound_port}\n")
        sys.stdout.flush()

    try:
        run_forever(lookup_factory(args.config), host=host, port=port, ready=ready)
    except TlsPolicyError as exc:
        if isinstance(exc, ConfigError):
            _print_errors(exc)
        else:
            sys.stderr.write(f"tlspolicy: error: {exc}\n")
        return 2
    return 0


def add_commands(subparsers: Any) -> None:
    """Add ``convert``, ``lint`` and ``serve socketmap`` to a subparsers object."""
    convert = subparsers.add_parser(
        "convert", help="convert configuration files to TOML, ecelerity.conf or a Postfix "
                        "smtp_tls_policy_maps table")
    convert.add_argument("inputs", nargs="+", metavar="IN",
                         help="configuration files (TOML or ecelerity.conf), layered in order")
    convert.add_argument("--to", required=True, choices=("toml", "ecelerity", "postfix"))
    convert.add_argument("--binding", "-b",
                         help="postfix: the binding (Postfix transport) to write; default: "
                              "every binding, one table each")
    convert.add_argument("--pcre-output", metavar="FILE",
                         help="postfix: write regex domain entries to FILE as a pcre table")
    convert.set_defaults(func=_cmd_convert)

    lint = subparsers.add_parser(
        "lint", help="warn about configurations that load but are probably wrong")
    lint.add_argument("files", nargs="+", metavar="FILE")
    lint.add_argument("--strict", action="store_true",
                      help="exit with status 1 when there is any warning")
    lint.set_defaults(func=_cmd_lint)

    serve = subparsers.add_parser("serve", help="run a policy server for an MTA")
    servers = serve.add_subparsers(dest="server", required=True, metavar="SERVER")
    socketmap = servers.add_parser(
        "socketmap", help="Postfix socketmap server for smtp_tls_policy_maps; the map name "
                          "selects the binding")
    socketmap.add_argument("--listen", required=True, type=parse_listen, metavar="HOST:PORT",
                           help="address to listen on (loopback only is advised; port 0 "
                                "picks a free one, printed on standard output)")
    socketmap.add_argument("--config", "-c", required=True, action="append", metavar="FILE",
                           help="configuration file; repeat to layer files (reloaded on "
                                "SIGHUP)")
    socketmap.add_argument("--quiet", "-q", action="store_true", help="log warnings only")
    socketmap.set_defaults(func=_cmd_serve_socketmap)
