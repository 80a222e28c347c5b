"""``tlspolicy serve socketmap ... --check``: every start-up check, without serving.

Each check prints one verdict (``ok``, ``warn`` or ``FAIL``), and each verdict that is
not ``ok`` the line that fixes it (a ``main.cf`` or ``master.cf`` line, a flag, a file).
The exit status is 1 when any check fails (``serve`` would refuse to start, or would
start without something the operator asked for), else 0.  Nothing is written: the
configuration is read, Postfix's settings are read with ``postconf``, the listening
address is bound and released, and with discovery the resolver is asked once whether it
validates.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from collections.abc import Callable
from typing import Any, TextIO

import attrs

from ..errors import TlsPolicyError
from ..formats.settings import DiscoverySettings
from ..postfix.levels import PostfixVersion
from ..postfix.lookup import PolicyLookup
from ..servers.app import DANE_CHECKS
from ..servers.app_inputs import ServeMode, UnixListen
from ..servers.expiry_watch import ExpiringPolicy
from ..servers.postfix_checks import PostconfError, Severity, check_postfix_settings, read_own_level
from ..servers.postfix_routes import RouteLossError, read_postfix_routes
from ..stores import SqliteStore
from . import serve_inputs
from ._common import config_format
from .serve_discovery import require_discovery

__all__ = ["Verdict", "dry_run"]


@attrs.frozen(slots=True)
class Verdict:
    """One check's result: ``status`` is ``ok``, ``warn`` or ``FAIL``."""

    status: str
    what: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status:<5} {self.what}"
        return text + (f"\n      fix: {self.fix}" if self.fix else "")


def _version(args: argparse.Namespace, settings: DiscoverySettings
             ) -> tuple[PostfixVersion | None, Verdict]:
    try:
        version, where = serve_inputs.serve_version(args, settings,
                                                    discovery=settings.enabled)
    except TlsPolicyError as exc:
        return None, Verdict("FAIL", f"Postfix version: {exc}",
                             "--postfix-version X.Y.Z (what postconf -h mail_version prints)")
    shown = ".".join(str(n) for n in version)
    return version, Verdict("ok", f"Postfix version {shown} (from {where})")


def _listen(args: argparse.Namespace) -> Verdict:
    where = args.listen
    if where is None:
        return Verdict("ok", "listening: the socket systemd passes (socket activation)")
    if isinstance(where, UnixListen):
        directory = os.path.dirname(os.path.abspath(where.path))
        if not os.access(directory, os.W_OK | os.X_OK):
            return Verdict("FAIL", f"listening on unix:{where.path}: cannot create a socket "
                           f"in {directory}", "a directory this user may write, e.g. "
                           "unix:/var/spool/postfix/private/tlspolicy")
        return Verdict("ok", f"listening on unix:{where.path}")
    host, port = where
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((host, port))
    except OSError as exc:
        return Verdict("FAIL", f"listening on {host}:{port}: {exc.strerror or exc}",
                       "stop what listens there (the resolver being replaced?) or pick "
                       "another --listen port")
    return Verdict("ok", f"listening on {host}:{port} (free)")


def _probe(run_config: Any) -> Verdict:
    """Ask the discovery resolver once whether it validates (DANE's precondition)."""
    from ..discovery import Discovery  # the discovery extra

    async def ask() -> tuple[bool, str]:
        discovery = Discovery(run_config, store=SqliteStore(":memory:"), close_store=True)
        try:
            trusted = await discovery.probe()
            return trusted, discovery.dnssec_detail
        finally:
            await discovery.close()

    # The verdict says what the probe found; the discovery layer's own log line for it
    # would say it twice.
    quiet = logging.getLogger("tlspolicy")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        trusted, detail = asyncio.run(ask())
    finally:
        quiet.setLevel(level)
    if trusted:
        return Verdict("ok", f"DNSSEC: {detail}")
    return Verdict("warn", f"DNSSEC: {detail}", "a validating resolver (e.g. unbound) on "
                   f"{run_config.resolver}:{run_config.resolver_port}, or --resolver ADDRESS")


def _cache(path: str) -> Verdict:
    directory = os.path.dirname(os.path.abspath(path)) or "."
    probe = directory
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    target = path if os.path.exists(path) else probe
    if not os.access(target, os.W_OK):
        return Verdict("FAIL", f"discovery cache {path}: {target} is not writable by this "
                       "user", f"--cache PATH in a directory this user owns (or create "
                       f"{directory} for it)")
    return Verdict("ok", f"discovery cache {path}")


def dry_run(args: argparse.Namespace, paths: list[str], settings: DiscoverySettings, *,
            lookup_factory: Callable[..., ExpiringPolicy], out: TextIO = sys.stdout) -> int:
    """Run every start-up check of ``serve socketmap`` and print the verdicts; 0 when none
    fails, else 1.  ``lookup_factory`` is serve's, so the loads and file checks are its own;
    ``settings`` are the ``[discovery]`` settings serve would run with."""
    verdicts: list[Verdict] = []
    use_discovery = settings.enabled
    version, verdict = _version(args, settings)
    verdicts.append(verdict)
    mode = ServeMode(drop_in_allowed=use_discovery, table_given=bool(settings.table))
    config = None
    try:
        policy = lookup_factory(paths, format=config_format(args),
                                file_checks=not args.no_file_checks,
                                transport_maps=args.transport_map or (),
                                relayhost=args.relayhost, postfix_version=version,
                                mode=mode)
        lookup = policy()  # what serve builds first: the same loads and file checks
        config = lookup.resolver.config
    except TlsPolicyError as exc:
        verdicts.append(Verdict("FAIL", f"configuration: {exc}",
                                "the file and line named above"))
    else:
        what = ("drop-in mode: MTA-STS and DANE alone, NOTFOUND elsewhere" if mode.drop_in
                else f"configuration {', '.join(paths)}: loads")
        verdicts.append(Verdict("ok", what))
    run_config = None
    if use_discovery:
        try:
            require_discovery()
            run_config = settings.discovery_config()
        except TlsPolicyError as exc:
            verdicts.append(Verdict("FAIL", f"discovery settings: {exc}"))
        else:
            # A deadline out of range stops the command, as it stops serve.
            settings.checked_deadline()
    if config is not None:
        verdicts.append(_routes(args, lookup.resolver, mode.drop_in, version))
    if config is not None and version is not None:
        verdicts += _postfix(args, config, settings, mode.drop_in, version)
    verdicts.append(_listen(args))
    if run_config is not None:
        verdicts.append(_cache(run_config.cache_path))
        verdicts.append(_probe(run_config))
    for item in verdicts:
        out.write(item.line() + "\n")
    failed = sum(v.status == "FAIL" for v in verdicts)
    warned = sum(v.status == "warn" for v in verdicts)
    out.write(f"{len(verdicts)} checks: {failed} failed, {warned} warnings\n")
    return 1 if failed else 0


def _routes(args: argparse.Namespace, resolver: Any, drop_in: bool,
            version: PostfixVersion | None) -> Verdict:
    """Reading Postfix's routes, as serve does at start: one verdict."""
    if args.transport_map or args.relayhost:
        return Verdict("ok", "routes: given explicitly (--transport-map, --relayhost); "
                       "Postfix's own are not read")
    if drop_in:
        return Verdict("ok", "routes: not read (drop-in mode has no routed stanzas)")
    where = args.postfix_config_dir or "postconf's default configuration directory"
    try:
        found = read_postfix_routes(args.postfix_config_dir,
                                    accept_loss=tuple(args.accept_route_loss or ()))
        # Routed domains whose options cannot be combined fail here as at start.
        PolicyLookup(resolver, routes=found.routes, postfix_version=version)
    except RouteLossError as exc:
        return Verdict("FAIL", f"routes from Postfix ({where}): {exc}",
                       "; ".join(sorted({f"--accept-route-loss {f.parameter}"
                                         for f in exc.failures}))
                       + ", or route through a table postmap -s can list")
    except TlsPolicyError as exc:
        return Verdict("FAIL", f"routes from Postfix ({where}): {exc}",
                       "the table entry or configuration named above")
    hops = len(found.routes.by_nexthop())
    what = f"routes from Postfix ({where}): {hops} next hop{'s' if hops != 1 else ''}"
    if found.losses:
        return Verdict("warn", what + "; loss accepted: " + "; ".join(found.loss_summary()),
                       "route through a table postmap -s can list (hash:, lmdb:, cdb:, "
                       "texthash:, inline:)")
    return Verdict("ok", what)


def _postfix(args: argparse.Namespace, config: Any, settings: DiscoverySettings,
             drop_in: bool, version: PostfixVersion) -> list[Verdict]:
    use_discovery = settings.enabled
    if args.no_postfix_checks:
        return [Verdict("warn", "Postfix's settings: not checked (--no-postfix-checks)",
                        "leave out --no-postfix-checks")]
    listen = args.listen
    try:
        findings = check_postfix_settings(
            config, discovery=use_discovery, config_dir=args.postfix_config_dir,
            settings=dict(args.postfix_setting or ()),
            unix_socket=listen.path if isinstance(listen, UnixListen) else None,
            accept_tls_required_loss=args.accept_tls_required_loss,
            discovery_resolver=(settings.resolver, settings.resolver_port) if use_discovery
            else None, postfix_version=version)
    except PostconfError as exc:
        return [Verdict("FAIL", f"Postfix's settings: {exc}",
                        "--postfix-config-dir DIR or --postfix-setting NAME=VALUE")]
    verdicts = []
    for finding in findings:
        failing = finding.severity is Severity.ERROR and not (
            drop_in and finding.check in DANE_CHECKS)
        what = f"Postfix {finding.setting} = {finding.value!r}: {finding.message}"
        if drop_in and finding.check in DANE_CHECKS:
            what += " (drop-in mode: DANE stays off until fixed)"
        verdicts.append(Verdict("FAIL" if failing else "warn", what, finding.fix))
    if not findings:
        verdicts.append(Verdict("ok", "Postfix's settings" + (
            ": DANE prerequisites met" if use_discovery else "")))
    if drop_in:
        level, where = read_own_level(config_dir=args.postfix_config_dir,
                                      settings=dict(args.postfix_setting or ()))
        if level is None:
            verdicts.append(Verdict("warn", f"Postfix's own TLS level: {where}; answers "
                                    "assume the strictest",
                                    "main.cf: smtp_tls_security_level = may"))
        else:
            verdicts.append(Verdict("ok", f"Postfix's own TLS level: {level} (NOTFOUND "
                                    "leaves it in force)"))
    return verdicts
