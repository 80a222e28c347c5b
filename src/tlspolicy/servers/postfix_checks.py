"""Start-up checks of Postfix's own settings that the socketmap answers rely on (SEMANTICS 11).

An answer is only as good as the Postfix that applies it.  Four settings can silently undo
what ``serve socketmap`` answers, so they are read (with ``postconf``) and judged before the
server starts, each finding naming the setting, its value and the ``main.cf`` or
``master.cf`` line that fixes it:

1. ``smtp_dns_support_level``: DANE answers (discovery on) need ``dnssec``, or Postfix never
   looks at TLSA records and ``dane``/``dane-only`` behave as ``may``/``encrypt``.
2. ``tls_required_enable`` (Postfix 3.10 and newer, default ``yes``): a message with a
   ``TLS-Required: no`` header skips the policy lookup and is capped at ``may``, so the
   operator's ``required`` levels and floors are lost for it.  While it is on and the
   configuration requires TLS anywhere (:func:`tls_required_scopes`) the server refuses to
   start, unless the loss is accepted (then a warning).
3. ``tafile`` paths (every ``tls_ca``) and a unix socket: a chrooted ``smtp`` service opens
   them inside ``queue_directory``, as ``mail_owner``.
4. The resolver Postfix asks (``/etc/resolv.conf``, or the chroot's copy): with DANE its first
   ``nameserver`` must be a loopback validating resolver, preferably the one discovery asks.

Without discovery only checks 2 and 3 apply.  The rules over the settings are pure
(:func:`evaluate_settings`, given the values as a mapping of ``postconf`` names, with
``master.cf`` fields as ``service/type/field`` as ``postconf -F`` and ``-P`` print them);
:func:`check_postfix_settings` reads what is needed and runs every check.
"""

from __future__ import annotations

import enum
import grp
import ipaddress
import os
import pwd
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

import attrs

from ..names import DomainKind
from ..options import CompatVersion, Options, Tls, TlsVerify
from ..postfix.dropin import own_security_level
from ..postfix.levels import PostfixVersion
from ..postfix.lookup import parse_postfix_version
from ..resolver import Resolver
from ..scopes import Config
from ..scopes.stanzas import iter_stanzas
from .postconf import (
    Finding,
    PostconfError,
    PostfixSettingsError,
    Severity,
    _Settings,
    read_postconf,
)

__all__ = [
    "DANE_SETTINGS",
    "TLS_REQUIRED_SINCE",
    "Finding",
    "PostconfError",
    "PostfixSettingsError",
    "Severity",
    "check_postfix_settings",
    "dane_prerequisites",
    "evaluate_settings",
    "first_nameserver",
    "read_dane_prerequisites",
    "read_own_level",
    "read_postconf",
    "tls_required_scopes",
]

TLS_REQUIRED_SINCE: Final[PostfixVersion] = (3, 10)
"""The first Postfix that honours a ``TLS-Required: no`` header (``tls_required_enable``)."""

#: The settings Postfix's own DANE needs (SEMANTICS 10), with the value it needs.
DANE_SETTINGS: Final = ("smtp_dns_support_level", "smtp_host_lookup",
                        "ignore_mx_lookup_error", "smtp_dns_resolver_options")
_FALLBACK_SINCE: Final = CompatVersion((4, 1))
_PROBE: Final = "tlspolicy-probe.invalid"  # a name no operator stanza names
_MAX_REASONS: Final = 5


# --------------------------------------------------------------------------
# Does the configuration require TLS anywhere?  (Pure: over Config and Resolver.)

def _mandatory(values: Mapping[str, object], fallback_exists: bool) -> bool:
    """Whether the values give a Postfix level stricter than ``may``: ``encrypt`` or a
    verified level (the formats' level table; DANE's opportunistic ``dane`` is not)."""
    tls = values["tls"]
    verify = values["tls_verify"]
    if tls is Tls.REQUIRED:
        return True
    if tls is not Tls.IFAVAILABLE:
        return False
    fallback = bool(values["tls_ifavailable_fallback"]) and fallback_exists
    return (isinstance(verify, TlsVerify) and verify >= TlsVerify.CA) or not fallback


def _why(values: Mapping[str, object], sources: Mapping[str, object], label: str) -> str:
    parts = []
    for option in ("tls", "tls_verify", "tls_ifavailable_fallback"):
        value = values[option]
        shown = value.value if isinstance(value, enum.Enum) else str(value).lower()
        source = str(sources[option])
        parts.append(f"{option} = {shown} ({label if source == 'override' else source})")
    return ", ".join(parts)


def _strictest(options: Iterable[Options]) -> Options:
    """One scope setting the strictest tls, tls_verify and fallback any of ``options`` sets."""
    tls: list[Tls] = []
    verify: list[TlsVerify] = []
    no_fallback = False
    for opts in options:
        if isinstance(opts.tls, Tls):
            tls.append(opts.tls)
        if isinstance(opts.tls_verify, TlsVerify):
            verify.append(opts.tls_verify)
        no_fallback = no_fallback or opts.tls_ifavailable_fallback is False
    changes: dict[str, object] = {}
    if tls:
        changes["tls"] = max(tls)
    if verify:
        changes["tls_verify"] = max(verify)
    if no_fallback:
        changes["tls_ifavailable_fallback"] = False
    return Options(**changes)  # type: ignore[arg-type]


def tls_required_scopes(config: Config, *, limit: int | None = None) -> tuple[str, ...]:
    """Where the configuration requires TLS: one line per place whose answer is stricter
    than ``may`` (``encrypt`` or a verified level); empty when none is.  ``limit`` stops
    after that many (a large configuration need not be walked to the end).

    Exact for a domain no stanza names and for every exact or IP-literal stanza and floor
    (each resolved through every binding, floors and matching regexes included).  A regex
    stanza or floor matches names that cannot be listed, so it is judged over-approximately:
    its own options (and, together, the strictest of all regex options) on top of every
    binding's chain.  The error is on the side of refusing: an override exists.
    """
    resolver = Resolver(config, decision_cache_size=0)
    fallback_exists = config.effective_compatibility >= _FALLBACK_SINCE
    exact: list[str] = []
    regexes: list[tuple[str, Options]] = []
    for path, stanza in iter_stanzas(config):
        if stanza.name.kind is DomainKind.REGEX:
            regexes.append((path, stanza.options))
        elif stanza.name.key not in exact:
            exact.append(stanza.name.key)
    probes: list[tuple[str, str, Options | None, str]] = [
        ("a domain no stanza names", _PROBE, None, "")]
    probes += [(f"domain {name!r}", name, None, "") for name in exact]
    probes += [(f"names matching {path}", _PROBE, opts, path) for path, opts in regexes]
    if len(regexes) > 1:
        probes.append(("names matching several regex stanzas", _PROBE,
                       _strictest(o for _p, o in regexes), "the regex stanzas together"))
    reasons: list[str] = []
    seen: set[str] = set()
    for binding in sorted(resolver.bindings):
        for what, name, overrides, label in probes:
            values, sources = resolver.effective(name, binding, overrides=overrides)
            if not _mandatory(values, fallback_exists):
                continue
            why = _why(values, sources, label)
            if why in seen:
                continue
            seen.add(why)
            reasons.append(f"{what} through binding {binding!r}: {why}")
            if limit is not None and len(reasons) >= limit:
                return tuple(reasons)
    return tuple(reasons)


# --------------------------------------------------------------------------
# The rules over the settings (pure).

def _smtp_services(settings: Mapping[str, str]) -> list[str]:
    """The master.cf services running smtp(8) (``service/type``), as -F names them."""
    services = []
    for name, value in settings.items():
        if name.endswith("/command") and name.count("/") == 2:
            words = value.split()
            if words and os.path.basename(words[0]) == "smtp":
                services.append(name[:-len("/command")])
    # The stock client first: findings name it when several services are alike.
    return sorted(services, key=lambda s: (s != "smtp/unix", s))


def _chrooted(settings: Mapping[str, str], service: str) -> bool:
    # '-' is the built-in default, "n" since Postfix 3.0.
    return settings.get(f"{service}/chroot", "-").lower() in ("y", "yes")


def _master_fix(settings: Mapping[str, str], service: str, column: int, value: str) -> str:
    """The service's master.cf line with one column changed (``postconf -M`` text)."""
    line = settings.get(service)
    if line is None:
        name, _sep, kind = service.partition("/")
        fields = [name, kind, "-", "-", "-", "-", "-", "smtp"]
    else:
        fields = line.split()
    fields[column] = value
    return "master.cf: " + " ".join(fields)


def _version(settings: Mapping[str, str]) -> PostfixVersion | None:
    text = settings.get("mail_version")
    return parse_postfix_version(text) if text else None


def _dane_problem(name: str, value: str) -> str | None:
    """Why ``value`` of setting ``name`` stops Postfix's own DANE, or ``None``."""
    if name == "smtp_dns_support_level":
        return None if value == "dnssec" else (
            "at this level Postfix never looks up TLSA records, so dane answers act as may "
            "and dane-only is an invalid entry")
    if name == "smtp_host_lookup":
        words = {w for w in value.replace(",", " ").split() if w}
        return None if "dns" in words else (
            "without dns in smtp_host_lookup Postfix finds MX hosts without DNSSEC and "
            "cannot do DANE")
    if name == "ignore_mx_lookup_error":
        return None if value.lower() in ("no", "false", "0", "") else (
            "Postfix would ignore a failed MX lookup and deliver to the domain's address "
            "records, where DANE needs the authenticated MX")
    if name == "smtp_dns_resolver_options":
        words = {w.lower() for w in value.replace(",", " ").split()}
        bad = sorted(words & {"res_defnames", "res_dnsrch"})
        return None if not bad else (
            f"{', '.join(bad)} makes Postfix's lookups search other domains, which "
            "DANE does not allow (Postfix turns DANE off)")
    return None


def dane_prerequisites(settings: Mapping[str, str]) -> list[Finding]:
    """What stops Postfix's own DANE (SEMANTICS 10), as errors naming the fix: the main.cf
    settings of :data:`DANE_SETTINGS` and every smtp(8) service's ``-o`` override of them.
    A setting not given is not judged (``postconf`` prints each of them)."""
    findings: list[Finding] = []
    fixes = {"smtp_dns_support_level": "dnssec", "smtp_host_lookup": "dns",
             "ignore_mx_lookup_error": "no", "smtp_dns_resolver_options": ""}
    for name in DANE_SETTINGS:
        if name in settings:
            problem = _dane_problem(name, settings[name])
            if problem is not None:
                findings.append(Finding(
                    Severity.ERROR, "dns-support-level" if name == "smtp_dns_support_level"
                    else "dane-prerequisite", name, settings[name],
                    f"main.cf: {name} = {fixes[name]}".rstrip(), "DANE answers need "
                    f"Postfix's own DANE: {problem}"))
        for service in _smtp_services(settings):
            key = f"{service}/{name}"
            if key in settings:
                problem = _dane_problem(name, settings[key])
                if problem is not None:
                    findings.append(Finding(
                        Severity.ERROR, "dns-support-level" if name ==
                        "smtp_dns_support_level" else "dane-prerequisite", key,
                        settings[key], f"master.cf: -o {name}={fixes[name]} on the {service} "
                        "service (or remove its override)",
                        f"the {service} service overrides {name}: {problem}"))
    return findings


def read_dane_prerequisites(*, config_dir: str | None = None,
                            settings: Mapping[str, str] | None = None,
                            postconf: str | None = None) -> list[Finding]:
    """:func:`dane_prerequisites` over Postfix's settings as they are now (``postconf``,
    overridden by ``settings``), for a reload.  Raises :class:`PostconfError` when
    ``smtp_dns_support_level`` can be neither read nor was given."""
    known = _Settings(settings or {}, config_dir=config_dir, postconf=postconf,
                      postfix_version=None)
    return dane_prerequisites(known.need(["smtp_dns_support_level"], "the DANE check"))


def read_own_level(*, config_dir: str | None = None,
                   settings: Mapping[str, str] | None = None,
                   postconf: str | None = None) -> tuple[str | None, str]:
    """Postfix's own TLS security level for drop-in mode (SEMANTICS 11), read with
    ``postconf`` (main.cf, and ``postconf -P`` for the smtp(8) services' ``-o``
    overrides), overridden by ``settings``: the level (``None`` when it cannot be read or
    the services differ) and a sentence saying where it came from, for the log."""
    known = _Settings(settings or {}, config_dir=config_dir, postconf=postconf,
                      postfix_version=None)
    values = known.all()
    if "smtp_tls_security_level" not in values:
        return None, f"not read ({known._problem or 'postconf did not print it'})"
    services = _smtp_services(values)
    level = own_security_level(values, services)
    if level is None:
        shown = sorted({values.get(f"{s}/smtp_tls_security_level",
                                   values["smtp_tls_security_level"]) or "(empty)"
                        for s in services} or {values["smtp_tls_security_level"]})
        return None, f"not one level ({', '.join(shown)})"
    return level, "smtp_tls_security_level" + (
        " and the services' overrides" if any(
            f"{s}/smtp_tls_security_level" in values for s in services) else "")


def evaluate_settings(settings: Mapping[str, str], *, discovery: bool,
                      tls_required: Sequence[str], accept_tls_required_loss: bool = False,
                      tls_required_default: str | None = None) -> list[Finding]:
    """Checks 1 and 2 over Postfix's settings (a mapping of ``postconf`` names).

    ``tls_required`` lists where the configuration requires TLS
    (:func:`tls_required_scopes`).  Needs ``mail_version`` (check 2) and, with
    ``discovery``, ``smtp_dns_support_level`` (a ``service/type/smtp_dns_support_level``
    entry is a ``master.cf -o`` override, which wins for that service).
    """
    findings: list[Finding] = []
    if discovery:
        findings += dane_prerequisites(settings)
    version = _version(settings)
    if version is not None and version >= TLS_REQUIRED_SINCE and tls_required:
        value = settings.get("tls_required_enable", tls_required_default or "yes")
        if value.lower() != "no":
            shown = "; ".join(tls_required[:_MAX_REASONS])
            if len(tls_required) > _MAX_REASONS:
                shown += "; and more"
            default = (f"(Postfix {settings['mail_version']}'s default is "
                       f"{tls_required_default}) " if tls_required_default else "")
            loss = (f"{default}with a 'TLS-Required: no' header Postfix skips "
                    "smtp_tls_policy_maps and delivers at may, losing the configuration's "
                    f"required TLS and floors where it requires TLS: {shown}")
            if accept_tls_required_loss:
                findings.append(Finding(
                    Severity.WARNING, "tls-required", "tls_required_enable", value,
                    "main.cf: tls_required_enable = no",
                    loss + " (accepted with --accept-tls-required-loss)"))
            else:
                findings.append(Finding(
                    Severity.ERROR, "tls-required", "tls_required_enable", value,
                    "main.cf: tls_required_enable = no",
                    loss + " (to start anyway, accept the loss with "
                    "--accept-tls-required-loss)"))
    return findings


# --------------------------------------------------------------------------
# Paths inside the chroot, readable by mail_owner (check 3).

@attrs.frozen(slots=True)
class _User:
    name: str
    uid: int
    gids: frozenset[int]


def _user(name: str) -> _User | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    gids = {entry.pw_gid}
    gids.update(g.gr_gid for g in grp.getgrall() if name in g.gr_mem)
    return _User(name, entry.pw_uid, frozenset(gids))


def _allows(st: os.stat_result, user: _User, bit: int, *, uid: int | None = None,
            gid: int | None = None) -> bool:
    """Whether ``user`` has permission ``bit`` (4 r, 2 w, 1 x) by the mode bits (ACLs are
    not read).  ``uid``/``gid`` stand in for the file's owner (a socket not made yet)."""
    owner = st.st_uid if uid is None else uid
    group = st.st_gid if gid is None else gid
    if user.uid == 0:
        return True
    if owner == user.uid:
        return bool(st.st_mode & (bit << 6))
    if group in user.gids:
        return bool(st.st_mode & (bit << 3))
    return bool(st.st_mode & bit)


def _unsearchable(path: str, user: _User) -> str | None:
    """The first directory on the way to ``path`` the user cannot search, or None."""
    parts = os.path.abspath(path).split(os.sep)[1:-1]
    current = os.sep
    for part in ["", *parts]:
        current = os.path.join(current, part) if part else current
        try:
            st = os.stat(current)
        except OSError:
            return None  # a missing part is reported as missing, not as unsearchable
        if not _allows(st, user, 1):
            return current
    return None


def _inside(queue: str, path: str) -> str:
    """Where a process chrooted (or with its working directory) at ``queue`` finds path."""
    return os.path.join(queue, path.lstrip(os.sep))


def _same_content(a: str, b: str) -> bool:
    try:
        with open(a, "rb") as one, open(b, "rb") as two:
            return one.read() == two.read()
    except OSError:
        return False


class _PathCheck:
    def __init__(self, settings: Mapping[str, str], services: list[str],
                 findings: list[Finding]) -> None:
        self.settings = settings
        self.queue = settings.get("queue_directory", "")
        self.owner = settings.get("mail_owner", "")
        self.user = _user(self.owner)
        self.chrooted = [s for s in services if _chrooted(settings, s)]
        self.plain = [s for s in services if not _chrooted(settings, s)]
        self.findings = findings

    def fail(self, severity: Severity, setting: str, value: str, fix: str,
             message: str) -> None:
        self.findings.append(Finding(severity, "chroot-path", setting, value, fix, message))

    def master_fixes(self) -> str:
        """The chrooted services' master.cf lines with chroot turned off."""
        return " and ".join(_master_fix(self.settings, s, 4, "n") for s in self.chrooted)

    def chroot_fix(self) -> str:
        return f"{self.master_fixes()} (or put the file at the path shown inside " \
               "queue_directory)"

    def where(self, path: str) -> list[tuple[str, str]]:
        """(path Postfix opens, the services that open it there)."""
        found = []
        if self.chrooted:
            found.append((_inside(self.queue, path), ", ".join(self.chrooted)))
        if self.plain:
            # Postfix runs in queue_directory: a relative path is relative to it.
            found.append((path if os.path.isabs(path) else _inside(self.queue, path),
                          ", ".join(self.plain)))
        return found

    def owner_known(self) -> bool:
        if self.user is None:
            self.fail(Severity.ERROR, "mail_owner", self.owner,
                      "main.cf: mail_owner = postfix (a user that exists)",
                      "no such user, so whether Postfix can read its files cannot be told")
            return False
        return True

    def tafile(self, scope: str, path: str) -> None:
        assert self.user is not None
        for opened, services in self.where(path):
            chroot = bool(self.chrooted) and services == ", ".join(self.chrooted)
            try:
                st = os.stat(opened)
            except OSError as exc:
                problem = (f"{scope}: tls_ca {path!r} is sent as tafile=, and the {services} "
                           f"service(s) open it as {opened}, which cannot be read "
                           f"({exc.strerror or exc})")
                if chroot:
                    service = self.chrooted[0]
                    self.fail(Severity.ERROR, f"{service}/chroot",
                              self.settings.get(f"{service}/chroot", "y"), self.chroot_fix(),
                              problem)
                else:
                    self.fail(Severity.ERROR, "queue_directory", self.queue,
                              f"tls_ca = an absolute path Postfix can read (not {path!r})",
                              problem)
                continue
            blocked = _unsearchable(opened, self.user)
            if blocked is not None or not _allows(st, self.user, 4):
                what = (f"cannot search {blocked}" if blocked is not None else
                        f"cannot read it (mode {stat.S_IMODE(st.st_mode):04o}, owner "
                        f"{st.st_uid}:{st.st_gid})")
                self.fail(Severity.ERROR, "mail_owner", self.owner,
                          f"chmod o+r {opened} (or give it to group of {self.owner})",
                          f"{scope}: tls_ca {path!r} is sent as tafile=, and the {services} "
                          f"service(s) open {opened} as {self.owner}, who {what}")
                continue
            if opened != path and os.path.isabs(path) and os.path.exists(path) \
                    and not os.path.samefile(opened, path) and not _same_content(opened, path):
                self.fail(Severity.WARNING, f"{self.chrooted[0]}/chroot", "y",
                          f"cp {path} {opened}",
                          f"{scope}: tls_ca {path!r}: the copy inside Postfix's chroot, "
                          f"{opened}, differs from it; Postfix uses the copy")

    def socket(self, path: str, mode: int, uid: int, gid: int) -> None:
        assert self.user is not None
        directory = os.path.dirname(os.path.abspath(path))
        try:
            dir_st = os.stat(directory)
        except OSError:
            return  # binding the socket fails by itself, naming the path
        if self.chrooted:
            queue = os.path.realpath(self.queue) if self.queue else ""
            real = os.path.realpath(directory)
            mapped = _inside(self.queue, directory)
            inside = bool(queue) and (real == queue or real.startswith(queue + os.sep))
            if not inside and not (os.path.isdir(mapped) and os.path.samefile(mapped,
                                                                              directory)):
                service = self.chrooted[0]
                example = _inside(self.queue, "private/tlspolicy")
                self.fail(Severity.ERROR, f"{service}/chroot", self.settings.get(
                          f"{service}/chroot", "y"),
                          f"{self.master_fixes()} (or listen under "
                          f"queue_directory, e.g. --listen unix:{example} with "
                          "smtp_tls_policy_maps = "
                          "socketmap:unix:private/tlspolicy:NAME)",
                          f"the {', '.join(self.chrooted)} service(s) run chrooted in "
                          f"{self.queue} and cannot reach the socket {path}")
                return
        # A new file's group is the directory's when it is set-group-ID (Linux, BSD).
        group = dir_st.st_gid if dir_st.st_mode & stat.S_ISGID else gid
        blocked = _unsearchable(path, self.user)
        if blocked is None and not _allows(dir_st, self.user, 1):
            blocked = directory
        sock = os.stat_result((stat.S_IFSOCK | mode, *dir_st[1:]))
        if blocked is not None or not _allows(sock, self.user, 2, uid=uid, gid=group):
            what = (f"cannot search {blocked}" if blocked is not None else
                    f"cannot write to a socket of mode {mode:04o} owned by {uid}:{group}")
            self.fail(Severity.ERROR, "mail_owner", self.owner,
                      f"--socket-mode 0660 with the socket's group one {self.owner} is in "
                      "(make the directory set-group-ID and of that group)",
                      f"Postfix connects to {path} as {self.owner}, who {what}")


def _tls_cas(config: Config) -> list[tuple[str, str]]:
    found = []
    for scope, options in config.iter_options():
        if isinstance(options.tls_ca, str):
            found.append((scope, options.tls_ca))
    return found


# --------------------------------------------------------------------------
# The resolver Postfix asks (check 4).

def first_nameserver(text: str) -> str | None:
    """The first ``nameserver`` address of a resolv.conf text, or None."""
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            return words[1]
    return None


def _check_resolver(settings: Mapping[str, str], chrooted: bool, resolv_conf: str,
                    discovery_resolver: tuple[str, int] | None,
                    findings: list[Finding]) -> None:
    queue = settings.get("queue_directory", "")
    path = _inside(queue, "etc/resolv.conf") if chrooted else resolv_conf
    setting = path
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError as exc:
        if chrooted:
            findings.append(Finding(
                Severity.WARNING, "resolver", path, "(missing)", f"cp {resolv_conf} {path}",
                f"the chrooted smtp service reads {path}, which cannot be read "
                f"({exc.strerror or exc}); Debian's postfix start copies it there, so "
                f"{resolv_conf} is checked instead"))
            _check_resolver(settings, False, resolv_conf, discovery_resolver, findings)
            return
        text = ""
    server = first_nameserver(text)
    shown = server if server is not None else "(none: the C library asks 127.0.0.1)"
    address = server if server is not None else "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        findings.append(Finding(
            Severity.ERROR, "resolver", setting, shown, f"{path}: nameserver 127.0.0.1 (a "
            "validating resolver on loopback, first)",
            "Postfix trusts the AD bit of its resolver for DANE, which is only safe from a "
            "validating resolver on loopback"))
        return
    if discovery_resolver is not None:
        want, port = discovery_resolver
        if port != 53 or address != want:
            findings.append(Finding(
                Severity.WARNING, "resolver", setting, shown,
                f"{path}: nameserver {want}" + ("" if port == 53 else
                                                " (listening on port 53)"),
                f"discovery asks {want} port {port}, Postfix asks {address} port 53: they "
                "may disagree on what is signed, and whether Postfix's resolver validates "
                "is not checked"))


# --------------------------------------------------------------------------

def check_postfix_settings(
    config: Config,
    *,
    discovery: bool = False,
    config_dir: str | None = None,
    settings: Mapping[str, str] | None = None,
    unix_socket: str | None = None,
    socket_mode: int = 0o660,
    socket_owner: tuple[int, int] | None = None,
    accept_tls_required_loss: bool = False,
    discovery_resolver: tuple[str, int] | None = None,
    postfix_version: PostfixVersion | None = None,
    postconf: str | None = None,
    resolv_conf: str = "/etc/resolv.conf",
    tls_required: Callable[[Config], Sequence[str]] | None = None,
) -> list[Finding]:
    """Every finding about Postfix's settings for serving ``config`` (errors first).

    ``discovery`` says the answers include DANE (checks 1 and 4 apply).  Settings come
    from ``settings`` (``postconf`` names, ``service/type/field`` for ``master.cf``)
    and, for the others, from ``postconf [-c config_dir]``, read only when a check needs
    them; ``postfix_version`` stands in for ``mail_version`` when postconf is absent.
    ``unix_socket`` is the ``--listen unix:PATH`` path, created with ``socket_mode``
    owned by ``socket_owner`` (uid, gid; default this process's).  ``tls_required``
    replaces :func:`tls_required_scopes` as the judge of where TLS is required.  Raises
    :class:`PostconfError` when a needed setting can be neither read nor was given.
    """
    known = _Settings(settings or {}, config_dir=config_dir, postconf=postconf,
                      postfix_version=postfix_version)
    findings: list[Finding] = []
    names = ["mail_version"]
    if discovery:
        names.append("smtp_dns_support_level")
    values = known.need(names, "checking Postfix's settings")
    version = _version(values)
    reasons: Sequence[str] = ()
    default: str | None = None
    if version is not None and version >= TLS_REQUIRED_SINCE:
        reasons = (tls_required(config) if tls_required is not None else
                   tls_required_scopes(config, limit=_MAX_REASONS + 1))
        if reasons and "tls_required_enable" not in values:
            # Read but unknown to this postconf (older than the version given): Postfix
            # 3.10's default, yes, is what a 3.10 Postfix would use.
            values = {**known.need(["tls_required_enable"] if known.failed else [],
                                   "the TLS-Required check"), "tls_required_enable": "yes"}
            default = "yes"
        elif reasons and "tls_required_enable" not in (settings or {}):
            default = known.default_of("tls_required_enable")
    findings += evaluate_settings(values, discovery=discovery, tls_required=reasons,
                                  accept_tls_required_loss=accept_tls_required_loss,
                                  tls_required_default=default)
    cas = _tls_cas(config)
    if cas or unix_socket is not None or discovery:
        values = known.need(["queue_directory", "mail_owner"], "the chroot and resolver checks")
        services = _smtp_services(values) or ["smtp/unix"]
        if not any(f"{s}/chroot" in values for s in services):
            values = known.need(["smtp/unix/chroot"], "the chroot check")
        paths = _PathCheck(values, services, findings)
        if (cas or unix_socket is not None) and paths.owner_known():
            for scope, path in cas:
                paths.tafile(scope, path)
            if unix_socket is not None:
                uid, gid = socket_owner if socket_owner is not None else (os.geteuid(),
                                                                          os.getegid())
                paths.socket(unix_socket, socket_mode, uid, gid)
        if discovery:
            _check_resolver(values, bool(paths.chrooted), resolv_conf, discovery_resolver,
                            findings)
    return sorted(findings, key=lambda f: f.severity is not Severity.ERROR)
