"""What ``serve socketmap`` takes from its command line: where to listen, Postfix's settings
given as flags, the Postfix version, and the options as
:class:`~tlspolicy.servers.app_inputs.ServeOptions` for :mod:`tlspolicy.servers.app`."""

from __future__ import annotations

import argparse
import shutil
import subprocess
from collections.abc import Sequence

import attrs

from ..formats.settings import DiscoverySettings
from ..postfix.levels import PostfixVersion
from ..postfix.lookup import parse_postfix_version
from ..servers.app_inputs import ServeOptions, UnixListen
from ._common import UsageError, config_format

__all__ = ["parse_listen", "parse_tcp_listen", "postconf_version", "postfix_setting",
           "serve_options", "serve_version"]


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


def serve_version(args: argparse.Namespace, settings: DiscoverySettings, *,
                  discovery: bool) -> tuple[PostfixVersion, str]:
    """The Postfix version the answers are written for, and where it came from:
    ``--postfix-version``, else the ``[discovery]`` table's ``postfix_version`` (only with
    ``discovery`` on), else ``mail_version`` among ``--postfix-setting``, else postconf
    (of ``--postfix-config-dir`` when given, the Postfix the checks read)."""
    if args.postfix_version is not None:
        return args.postfix_version, "--postfix-version"
    if discovery and settings.postfix_version is not None:
        return parse_postfix_version(settings.postfix_version), "[discovery]"
    given = dict(args.postfix_setting or ())
    if "mail_version" in given:
        # The version given as one of Postfix's settings is the version.
        return parse_postfix_version(given["mail_version"]), "--postfix-setting"
    return postconf_version(config_dir=args.postfix_config_dir), "postconf"


def serve_options(args: argparse.Namespace, paths: Sequence[str]) -> ServeOptions:
    """The options of ``serve socketmap`` as :mod:`tlspolicy.servers.app` takes them:
    each read from the flag of the same destination."""
    names = {f.name for f in attrs.fields(ServeOptions)} - {"paths", "format"}
    return ServeOptions(paths=tuple(paths), format=config_format(args),
                        **{name: getattr(args, name) for name in names})
