"""What ``serve socketmap`` takes in before it serves: where to listen, whether it runs in
drop-in mode, and what it reads of Postfix itself (its routes, its version and the settings
it checks at start; the reading is :mod:`tlspolicy.servers.postfix_routes` and
:mod:`tlspolicy.servers.postfix_checks`, this is the command line's wiring of them)."""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
from collections.abc import Callable
from typing import NamedTuple

import attrs

from ..postfix.levels import PostfixVersion
from ..postfix.lookup import parse_postfix_version
from ..scopes import Config
from ..servers import socketmap as _sm
from ..servers.postfix_checks import (
    PostfixSettingsError,
    Severity,
    check_postfix_settings,
)
from ..servers.postfix_routes import (
    PostfixRoutes,
    read_postfix_routes,
)
from ._common import UsageError


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


def parse_tcp_listen(text: str) -> tuple[str, int]:
    where = parse_listen(text)
    if isinstance(where, UnixListen):
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return where


def route_reader(args: argparse.Namespace, *,
                 on_read: Callable[[PostfixRoutes], None] | None = None,
                 summary: Callable[[str], None] | None = None
                 ) -> Callable[[], PostfixRoutes]:
    """Postfix's own routes as ``serve socketmap`` reads them (``--postfix-config-dir``,
    ``--accept-route-loss``): every call reads them again, reports what it found (a
    line to ``summary``, logged at INFO by default; accepted losses as warnings) and
    passes it to ``on_read``."""
    accepted = tuple(args.accept_route_loss or ())
    log = logging.getLogger("tlspolicy")
    report = summary if summary is not None else log.info

    def read() -> PostfixRoutes:
        found = read_postfix_routes(args.postfix_config_dir, accept_loss=accepted)
        hops = found.routes.by_nexthop()
        where = args.postfix_config_dir or "postconf's default configuration directory"
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


def postfix_setting(text: str) -> tuple[str, str]:
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
