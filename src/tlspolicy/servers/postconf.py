"""Reading Postfix's settings with ``postconf`` (main.cf, and master.cf with ``-F``/``-P``),
and what the checks of :mod:`tlspolicy.servers.postfix_checks` report: findings, their
severity, and the errors that stop a start."""

from __future__ import annotations

import enum
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

import attrs

from ..errors import TlsPolicyError
from ..postfix.dropin import OWN_LEVEL_SETTINGS
from ..postfix.levels import PostfixVersion

__all__ = [
    "MAIN_SETTINGS",
    "Finding",
    "PostconfError",
    "PostfixSettingsError",
    "Severity",
    "read_postconf",
]


#: main.cf parameters the checks read (``postconf -x`` expands ``$name`` references).
MAIN_SETTINGS: Final = ("mail_version", "smtp_dns_support_level", "tls_required_enable",
                        "queue_directory", "mail_owner", "smtp_host_lookup",
                        "ignore_mx_lookup_error", "smtp_dns_resolver_options",
                        *OWN_LEVEL_SETTINGS)
_POSTCONF_TIMEOUT: Final = 10.0  # well inside the first load's 30 s


class Severity(enum.Enum):
    """How bad a finding is: an error stops ``serve``, a warning is printed."""

    ERROR = "error"
    WARNING = "warning"


@attrs.frozen(slots=True)
class Finding:
    """One problem with Postfix's settings.

    ``setting`` is the ``postconf`` name (``service/type/field`` for ``master.cf``),
    ``value`` what Postfix has, ``fix`` the ``main.cf`` or ``master.cf`` line (or the
    action) that fixes it, ``check`` a stable code: ``dns-support-level``,
    ``tls-required``, ``chroot-path``, ``resolver``.
    """

    severity: Severity
    check: str
    setting: str
    value: str
    fix: str
    message: str

    def __str__(self) -> str:
        return f"Postfix {self.setting} = {self.value!r}: {self.message}; fix: {self.fix}"


class PostconfError(TlsPolicyError):
    """``postconf`` is missing or fails, and a setting a check needs was not given."""


class PostfixSettingsError(TlsPolicyError):
    """Postfix's settings would undo the answers: ``findings`` holds every error found."""

    def __init__(self, findings: Sequence[Finding]) -> None:
        self.findings = tuple(findings)
        super().__init__("; ".join(str(f) for f in self.findings))

    def __str__(self) -> str:
        # One problem a line, so each is read (and grepped) on its own.
        if len(self.findings) == 1:
            return str(self.findings[0])
        return (f"{len(self.findings)} problems with Postfix's settings:\n"
                + "\n".join(f"  - {f}" for f in self.findings))


# --------------------------------------------------------------------------
# Reading Postfix's settings.

def _postconf_program(postconf: str | None) -> str | None:
    # Postfix installs into /usr/sbin, which is not on every user's PATH.
    return postconf or shutil.which("postconf") or shutil.which(
        "postconf", path="/usr/sbin:/usr/bin")


def _parse_assignments(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(" = ")
        if sep:
            values[name.strip()] = value.strip()
        elif line.rstrip().endswith(" ="):  # an empty value prints as "name ="
            values[line.rstrip()[:-2].strip()] = ""
    return values


def read_postconf(args: Sequence[str], *, config_dir: str | None = None,
                  postconf: str | None = None) -> str:
    """Standard output of ``postconf [-c config_dir] ARGS``.

    Raises :class:`PostconfError` when postconf is missing, cannot run or fails.
    """
    program = _postconf_program(postconf)
    if program is None:
        raise PostconfError("postconf is not installed")
    command = [program, *(["-c", config_dir] if config_dir is not None else []), *args]
    try:
        result = subprocess.run(command, capture_output=True, text=True,
                                timeout=_POSTCONF_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PostconfError(f"cannot run {' '.join(command)}: {exc}") from None
    if result.returncode != 0:
        raise PostconfError(f"{' '.join(command)} failed: {result.stderr.strip()}")
    return result.stdout


class _Settings:
    """Settings given by the operator first, then read from postconf when first needed."""

    def __init__(self, given: Mapping[str, str], *, config_dir: str | None,
                 postconf: str | None, postfix_version: PostfixVersion | None) -> None:
        self.given = dict(given)
        self.config_dir = config_dir
        self.postconf = postconf
        self.postfix_version = postfix_version
        self._read: dict[str, str] | None = None
        self._problem: str | None = None

    def _run(self, *args: str) -> str:
        return read_postconf(args, config_dir=self.config_dir, postconf=self.postconf)

    def all(self) -> dict[str, str]:
        """Every setting the checks know: postconf's, overridden by the given ones."""
        if self._read is None:
            self._read = {}
            try:
                self._read.update(_parse_assignments(self._run("-x", *MAIN_SETTINGS)))
                self._read.update(_parse_assignments(self._run("-F")))
                self._read.update(_parse_assignments(self._run("-P")))
                for line in self._run("-M").splitlines():
                    fields = line.split()
                    if len(fields) >= 8:
                        self._read[f"{fields[0]}/{fields[1]}"] = line.strip()
            except PostconfError as exc:
                self._problem = str(exc)
        values = {**self._read, **self.given}
        if "mail_version" not in values and self.postfix_version is not None:
            values["mail_version"] = ".".join(str(n) for n in self.postfix_version)
        return values

    @property
    def failed(self) -> bool:
        """Whether postconf could not be run (or failed)."""
        self.all()
        return self._problem is not None

    def need(self, names: Iterable[str], why: str) -> dict[str, str]:
        values = self.all()
        missing = [n for n in names if n not in values]
        if missing:
            where = self._problem or "postconf does not print them"
            raise PostconfError(
                f"{why} needs Postfix's {', '.join(missing)} ({where}): give each with "
                f"--postfix-setting NAME=VALUE (e.g. --postfix-setting {missing[0]}=...), "
                "point --postfix-config-dir at Postfix's configuration directory, or skip the "
                "checks with --no-postfix-checks")
        return values

    def default_of(self, name: str) -> str | None:
        try:
            return _parse_assignments(self._run("-d", name)).get(name)
        except PostconfError:
            return None
