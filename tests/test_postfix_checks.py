"""Start-up checks of Postfix's own settings (SEMANTICS 11, last bullet).

- The pure rules (:func:`evaluate_settings`, :func:`tls_required_scopes`) over given values.
- The same checks over a real Debian Postfix configuration directory made in the test (the
  machine's main.cf and master.cf copied, edited with ``postconf -c DIR -e`` / ``-F`` /
  ``-P`` and read back through the real postconf): each passing and failing, the
  TLS-Required refusal and its override, chroot paths with real files and permissions, the
  resolver Postfix asks.
- ``tlspolicy serve socketmap``: exit status 2 naming the setting, its value and the fix
  line; the warnings of ``--accept-tls-required-loss`` and ``--no-postfix-checks``.

Skipped with a reason where postconf is not installed (run .ci/install-postfix.sh).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from certs_support import TestCA
from postfix_support import SYSTEM_CONFIG_DIR, find_postfix_binary
from tlspolicy import loads_toml
from tlspolicy.servers.postfix_checks import (
    Finding,
    PostconfError,
    PostfixSettingsError,
    Severity,
    check_postfix_settings,
    evaluate_settings,
    first_nameserver,
    tls_required_scopes,
)

POSTCONF = find_postfix_binary("postconf")
requires_postconf = pytest.mark.skipif(
    POSTCONF is None or not (SYSTEM_CONFIG_DIR / "master.cf").is_file(),
    reason="Postfix's postconf and /etc/postfix/master.cf are not installed (run "
           ".ci/install-postfix.sh as root)")

REQUIRED = '[global]\ntls = "ifavailable"\n\n[[domain]]\nname = "a.example"\ntls = "required"\n'
OPPORTUNISTIC = '[global]\ntls = "ifavailable"\n'


def codes(findings: list[Finding], severity: Severity | None = None) -> list[str]:
    return [f.check for f in findings if severity is None or f.severity is severity]


# ------------------------------------------------------------------ the pure rules

def test_dns_support_level_is_required_with_discovery_only() -> None:
    base = {"mail_version": "3.7.11", "smtp/unix/command": "smtp"}
    for level in ("", "disabled", "enabled"):
        found = evaluate_settings({**base, "smtp_dns_support_level": level}, discovery=True,
                                  tls_required=())
        assert codes(found, Severity.ERROR) == ["dns-support-level"]
        assert found[0].fix == "main.cf: smtp_dns_support_level = dnssec"
        assert found[0].value == level
        assert evaluate_settings({**base, "smtp_dns_support_level": level}, discovery=False,
                                 tls_required=()) == []
    assert evaluate_settings({**base, "smtp_dns_support_level": "dnssec"}, discovery=True,
                             tls_required=()) == []
    # A master.cf -o override wins for its service.
    found = evaluate_settings({**base, "smtp_dns_support_level": "dnssec",
                               "smtp/unix/smtp_dns_support_level": "enabled"},
                              discovery=True, tls_required=())
    assert [(f.setting, f.value) for f in found] == [
        ("smtp/unix/smtp_dns_support_level", "enabled")]
    assert "-o smtp_dns_support_level=dnssec" in found[0].fix


def test_tls_required_refusal_rule_and_its_override() -> None:
    why = ("domain 'a.example' through binding 'default': tls = required",)
    on = {"mail_version": "3.10.0", "tls_required_enable": "yes"}
    found = evaluate_settings(on, discovery=False, tls_required=why)
    assert codes(found, Severity.ERROR) == ["tls-required"]
    assert found[0].fix == "main.cf: tls_required_enable = no"
    assert "a.example" in found[0].message and "--accept-tls-required-loss" in found[0].message
    accepted = evaluate_settings(on, discovery=False, tls_required=why,
                                 accept_tls_required_loss=True)
    assert codes(accepted, Severity.WARNING) == ["tls-required"] and codes(
        accepted, Severity.ERROR) == []
    # Off, nothing required, or a Postfix that ignores the header: nothing to say.
    assert evaluate_settings({**on, "tls_required_enable": "no"}, discovery=False,
                             tls_required=why) == []
    assert evaluate_settings(on, discovery=False, tls_required=()) == []
    assert evaluate_settings({**on, "mail_version": "3.9.2"}, discovery=False,
                             tls_required=why) == []
    # Not read (e.g. an older postconf): Postfix 3.10's default, yes, is assumed.
    assert codes(evaluate_settings({"mail_version": "3.11.1"}, discovery=False,
                                   tls_required=why)) == ["tls-required"]


@pytest.mark.parametrize(("toml", "required"), [
    (OPPORTUNISTIC, False),
    ('[global]\ntls = "no"\ntls_verify = "host"\n', False),
    ('[global]\ntls = "ifavailable"\nuse_dane = true\n', False),
    (REQUIRED, True),
    ('[global]\ntls = "ifavailable"\ntls_verify = "ca"\n', True),
    ('[global]\ntls = "ifavailable"\ntls_ifavailable_fallback = false\n', True),
    ('compatibility = "4.0"\n[global]\ntls = "ifavailable"\n', True),
    ('[global]\ntls = "ifavailable"\n[[domain]]\nname = "/\\\\.b\\\\.example$/"\n'
     'tls_verify = "host"\n', True),
    ('[global]\ntls = "ifavailable"\n[[floor]]\nname = "partner.example"\n'
     'tls = "required"\n', True),
    ('[global]\ntls = "ifavailable"\n[[binding]]\nname = "tx"\n[[binding.domain]]\n'
     'name = "a.example"\ntls = "required"\n', True),
    # Two regex stanzas that only together leave no fallback.
    ('[global]\ntls = "no"\n[[domain]]\nname = "/a/"\ntls = "ifavailable"\n'
     '[[domain]]\nname = "/b/"\ntls_ifavailable_fallback = false\n', True),
    # A binding that says no for a domain the global stanza requires.
    ('[global]\ntls = "ifavailable"\n[[domain]]\nname = "a.example"\ntls_verify = "host"\n'
     '[[binding]]\nname = "default"\ntls = "no"\n', False),
])
def test_tls_required_scopes(toml: str, required: bool) -> None:
    reasons = tls_required_scopes(loads_toml(toml))
    assert bool(reasons) is required, reasons


def test_tls_required_scopes_names_the_place_and_the_source() -> None:
    (reason,) = tls_required_scopes(loads_toml(REQUIRED))
    assert "domain 'a.example'" in reason and 'tls = required (domain "a.example")' in reason


def test_tls_required_scopes_stops_at_the_limit() -> None:
    many = "".join(f'[[domain]]\nname = "d{i}.example"\ntls = "required"\n'
                   f'tls_protocols = "+TLSv1.{2 + i % 2}"\ntls_verify = "{v}"\n'
                   for i, v in enumerate(["no", "ca", "host"] * 3))
    config = loads_toml('[global]\ntls = "ifavailable"\n' + many)
    assert len(tls_required_scopes(config)) > 2
    assert len(tls_required_scopes(config, limit=2)) == 2


def test_first_nameserver() -> None:
    assert first_nameserver("# c\nsearch x\nnameserver 127.0.0.1\nnameserver 9.9.9.9\n") \
        == "127.0.0.1"
    assert first_nameserver("options edns0\n") is None


def test_missing_postconf_is_a_typed_error_naming_the_flags() -> None:
    config = loads_toml(REQUIRED)
    with pytest.raises(PostconfError) as raised:
        check_postfix_settings(config, postconf="/nonexistent/postconf")
    message = str(raised.value)
    assert "mail_version" in message and "--postfix-setting" in message
    assert "--no-postfix-checks" in message
    # Nothing left to read: no postconf needed.
    assert check_postfix_settings(config, postconf="/nonexistent/postconf",
                                  postfix_version=(3, 7, 11)) == []
    found = check_postfix_settings(config, postconf="/nonexistent/postconf",
                                   settings={"mail_version": "3.10.1",
                                             "tls_required_enable": "yes"})
    assert codes(found) == ["tls-required"]


# ------------------------------------------------------------ a real Postfix directory

class PostfixDir:
    """A copy of the machine's main.cf and master.cf, its queue_directory a temporary one
    that Postfix's user can search."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "conf"
        self.queue = root / "queue"
        self.conf.mkdir()
        self.queue.mkdir()
        for name in ("main.cf", "master.cf"):
            if name == "main.cf" and not (SYSTEM_CONFIG_DIR / name).exists():
                # A "No configuration" install has no main.cf: Postfix's defaults.
                (self.conf / name).write_text("")
                continue
            shutil.copy(SYSTEM_CONFIG_DIR / name, self.conf / name)
        self.main(queue_directory=str(self.queue), mail_owner="postfix")

    def postconf(self, *args: str) -> str:
        assert POSTCONF is not None
        return subprocess.run([POSTCONF, "-c", str(self.conf), *args], capture_output=True,
                              text=True, timeout=30, check=True).stdout

    def main(self, **values: str) -> None:
        self.postconf("-e", *(f"{k}={v}" for k, v in values.items()))

    def chroot(self, flag: str) -> None:
        services = [line.split(" = ")[0].rsplit("/", 1)[0]
                    for line in self.postconf("-F").splitlines()
                    if line.split(" = ")[0].endswith("/command")
                    and line.split(" = ")[1].split()[0] == "smtp"]
        assert services
        self.postconf("-F", *(f"{s}/chroot={flag}" for s in services))

    def check(self, config: str, **kwargs: object) -> list[Finding]:
        return check_postfix_settings(loads_toml(config), config_dir=str(self.conf),
                                      **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def postfix_dir() -> Iterator[PostfixDir]:
    if POSTCONF is None or not (SYSTEM_CONFIG_DIR / "master.cf").is_file():
        pytest.skip("Postfix's postconf and /etc/postfix/master.cf are not installed (run "
                    ".ci/install-postfix.sh as root)")
    # Not under pytest's tmp_path: its parents are mode 0700, which Postfix's user could
    # not search, and these checks are about exactly that.
    root = Path(tempfile.mkdtemp(prefix="tlspolicy-postfix-checks-"))
    try:
        root.chmod(0o755)
        yield PostfixDir(root)
    finally:
        shutil.rmtree(root)


def _ca(directory: Path) -> Path:
    ca = TestCA(directory)
    path: Path = ca.cert_path
    path.chmod(0o644)
    return path


def _with_ca(path: Path | str) -> str:
    return REQUIRED + f'tls_verify = "host"\ntls_ca = "{path}"\n'


def test_real_postconf_dns_support_level(postfix_dir: PostfixDir) -> None:
    (postfix_dir.queue / "etc").mkdir()
    (postfix_dir.queue / "etc" / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    postfix_dir.main(smtp_dns_support_level="enabled")
    found = postfix_dir.check(OPPORTUNISTIC, discovery=True)
    assert [(f.check, f.value) for f in found] == [("dns-support-level", "enabled")]
    postfix_dir.main(smtp_dns_support_level="dnssec")
    assert postfix_dir.check(OPPORTUNISTIC, discovery=True) == []
    # Without discovery the level does not matter.
    postfix_dir.main(smtp_dns_support_level="disabled")
    assert postfix_dir.check(OPPORTUNISTIC) == []
    # A master.cf override on the smtp service.
    postfix_dir.main(smtp_dns_support_level="dnssec")
    postfix_dir.postconf("-P", "smtp/unix/smtp_dns_support_level=enabled")
    found = postfix_dir.check(OPPORTUNISTIC, discovery=True)
    assert [f.setting for f in found] == ["smtp/unix/smtp_dns_support_level"]


def test_real_postconf_tls_required(postfix_dir: PostfixDir) -> None:
    installed = postfix_dir.postconf("-h", "mail_version").strip()
    postfix_dir.main(tls_required_enable="yes")
    if tuple(int(p) for p in installed.split(".")[:2]) < (3, 10):
        # This Postfix ignores the header whatever main.cf says.
        assert postfix_dir.check(REQUIRED) == []
        # Answering a 3.10 Postfix configured alike: its default (yes) is assumed.
        found = postfix_dir.check(REQUIRED, settings={"mail_version": "3.10.0"})
    else:
        found = postfix_dir.check(REQUIRED)
    assert codes(found, Severity.ERROR) == ["tls-required"]
    accepted = postfix_dir.check(REQUIRED, settings={"mail_version": "3.10.0"},
                                 accept_tls_required_loss=True)
    assert codes(accepted, Severity.WARNING) == ["tls-required"]
    assert postfix_dir.check(OPPORTUNISTIC, settings={"mail_version": "3.10.0"}) == []


def test_tafile_inside_the_chroot(postfix_dir: PostfixDir) -> None:
    outside = postfix_dir.root / "ca"
    outside.mkdir(mode=0o755)
    ca = _ca(outside)
    postfix_dir.chroot("y")
    found = postfix_dir.check(_with_ca(ca))
    assert codes(found, Severity.ERROR) == ["chroot-path"]
    assert found[0].setting.endswith("/chroot") and found[0].value == "y"
    assert found[0].fix.startswith("master.cf: smtp unix") and " n " in found[0].fix
    assert str(postfix_dir.queue) + str(ca) in found[0].message
    # The copy Postfix opens inside the chroot.
    inside = Path(str(postfix_dir.queue) + str(ca))
    inside.parent.mkdir(parents=True)
    for part in inside.parents:
        if part == postfix_dir.queue:
            break
        part.chmod(0o755)
    shutil.copy(ca, inside)
    inside.chmod(0o644)
    assert postfix_dir.check(_with_ca(ca)) == []
    # A stale copy is used by Postfix: a warning.
    inside.write_bytes(inside.read_bytes().replace(b"-----END", b"\n-----END"))
    assert codes(postfix_dir.check(_with_ca(ca)), Severity.WARNING) == ["chroot-path"]
    shutil.copy(ca, inside)
    # Unreadable by Postfix's user: mode, then a directory it cannot search.
    inside.chmod(0o600)
    found = postfix_dir.check(_with_ca(ca))
    assert codes(found, Severity.ERROR) == ["chroot-path"] and found[0].setting == "mail_owner"
    assert "cannot read" in found[0].message
    inside.chmod(0o644)
    inside.parent.chmod(0o700)
    found = postfix_dir.check(_with_ca(ca))
    assert "cannot search" in found[0].message and str(inside.parent) in found[0].message
    inside.parent.chmod(0o755)


def test_tafile_without_chroot(postfix_dir: PostfixDir) -> None:
    outside = postfix_dir.root / "ca"
    outside.mkdir(mode=0o755)
    ca = _ca(outside)
    postfix_dir.chroot("n")
    assert postfix_dir.check(_with_ca(ca)) == []
    ca.chmod(0o600)
    found = postfix_dir.check(_with_ca(ca))
    assert codes(found, Severity.ERROR) == ["chroot-path"] and "cannot read" in found[0].message
    # A relative tafile is opened relative to queue_directory.
    found = postfix_dir.check(_with_ca("ca.pem"))
    assert codes(found, Severity.ERROR) == ["chroot-path"]
    assert str(postfix_dir.queue / "ca.pem") in found[0].message


def test_unix_socket_inside_the_chroot(postfix_dir: PostfixDir) -> None:
    postfix_dir.chroot("y")
    outside = postfix_dir.root / "run"
    outside.mkdir(mode=0o755)
    found = postfix_dir.check(OPPORTUNISTIC, unix_socket=str(outside / "tlspolicy.sock"),
                              socket_mode=0o666)
    assert codes(found, Severity.ERROR) == ["chroot-path"]
    assert "cannot reach the socket" in found[0].message and "private/tlspolicy" in found[0].fix
    private = postfix_dir.queue / "private"
    private.mkdir(mode=0o755)
    sock = str(private / "tlspolicy.sock")
    assert postfix_dir.check(OPPORTUNISTIC, unix_socket=sock, socket_mode=0o666) == []
    # 0660 owned by someone else, in a group Postfix's user is not in: no connect.
    found = postfix_dir.check(OPPORTUNISTIC, unix_socket=sock, socket_mode=0o660,
                              socket_owner=(0, 0))
    assert codes(found, Severity.ERROR) == ["chroot-path"] and "cannot write" in found[0].message
    # The socket's group is the set-group-ID directory's: Postfix's own group.
    import grp
    import pwd
    postfix_gid = pwd.getpwnam("postfix").pw_gid
    if os.geteuid() == 0:
        os.chown(private, 0, postfix_gid)
        private.chmod(0o2750)
        assert postfix_dir.check(OPPORTUNISTIC, unix_socket=sock, socket_mode=0o660,
                                 socket_owner=(0, 0)) == []
        assert grp.getgrgid(postfix_gid)
    # Without chroot the socket may live anywhere Postfix's user can reach.
    postfix_dir.chroot("n")
    assert postfix_dir.check(OPPORTUNISTIC, unix_socket=str(outside / "tlspolicy.sock"),
                             socket_mode=0o666) == []


def test_resolver_postfix_asks(postfix_dir: PostfixDir) -> None:
    postfix_dir.main(smtp_dns_support_level="dnssec")
    postfix_dir.chroot("y")
    host = postfix_dir.root / "resolv.conf"
    host.write_text("nameserver 127.0.0.1\n")
    chroot_copy = postfix_dir.queue / "etc" / "resolv.conf"
    chroot_copy.parent.mkdir()
    chroot_copy.write_text("nameserver 192.0.2.53\n")

    def check(resolver: tuple[str, int] | None = ("127.0.0.1", 53)) -> list[Finding]:
        return postfix_dir.check(OPPORTUNISTIC, discovery=True, resolv_conf=str(host),
                                 discovery_resolver=resolver)

    found = check()
    assert [(f.check, f.severity, f.value) for f in found] == [
        ("resolver", Severity.ERROR, "192.0.2.53")]
    assert found[0].setting == str(chroot_copy) and "nameserver 127.0.0.1" in found[0].fix
    chroot_copy.write_text("nameserver 127.0.0.1\n")
    assert check() == []
    found = check(("127.0.0.1", 5353))
    assert codes(found, Severity.WARNING) == ["resolver"] and "5353" in found[0].message
    # No copy in the chroot: a warning, and the host's file is judged.
    chroot_copy.unlink()
    host.write_text("nameserver 10.0.0.1\n")
    assert [(f.severity, f.check) for f in check()] == [
        (Severity.ERROR, "resolver"), (Severity.WARNING, "resolver")]
    # Without chroot, the host's file.
    postfix_dir.chroot("n")
    host.write_text("nameserver ::1\n")
    assert codes(check(("::1", 53))) == []
    # Not checked without discovery.
    host.write_text("nameserver 10.0.0.1\n")
    assert postfix_dir.check(OPPORTUNISTIC, resolv_conf=str(host)) == []


def test_settings_error_lists_each_problem_on_its_line() -> None:
    findings = [Finding(Severity.ERROR, "x", "a", "1", "main.cf: a = 2", "bad"),
                Finding(Severity.ERROR, "y", "b", "", "main.cf: b = 3", "worse")]
    text = str(PostfixSettingsError(findings))
    assert text.splitlines()[1:] == ["  - Postfix a = '1': bad; fix: main.cf: a = 2",
                                     "  - Postfix b = '': worse; fix: main.cf: b = 3"]


# ------------------------------------------------------------------ the command line

def _serve(*args: str) -> tuple[int | None, str, str]:
    """Run serve socketmap; stop it once it listens.  (exit status or None, out, err)."""
    command = [sys.executable, "-m", "tlspolicy", "serve", "socketmap", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        if first.startswith("listening on"):
            process.terminate()
        out, err = process.communicate(timeout=60)
        code = None if first.startswith("listening on") else process.returncode
        return code, first + out, err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@requires_postconf
def test_cli_refuses_with_each_setting_value_and_fix(postfix_dir: PostfixDir) -> None:
    outside = postfix_dir.root / "ca"
    outside.mkdir(mode=0o755)
    config = postfix_dir.root / "policy.toml"
    config.write_text(_with_ca(_ca(outside)))
    postfix_dir.chroot("y")
    code, _out, err = _serve("--listen", "127.0.0.1:0", "--postfix-config-dir",
                             str(postfix_dir.conf), "--postfix-setting", "mail_version=3.10.1",
                             str(config))
    assert code == 2, err
    assert "Traceback" not in err
    assert "tls_required_enable = 'yes'" in err and "fix: main.cf: tls_required_enable = no" \
        in err
    assert "/chroot = 'y'" in err and "fix: master.cf: smtp unix" in err

    # Accepting the loss turns that one into a warning; the chroot error remains.
    code, _out, err = _serve("--listen", "127.0.0.1:0", "--postfix-config-dir",
                             str(postfix_dir.conf), "--postfix-setting", "mail_version=3.10.1",
                             "--accept-tls-required-loss", str(config))
    assert code == 2 and "tls_required_enable" not in err.split("error:", 1)[1], err
    postfix_dir.chroot("n")
    code, out, err = _serve("--listen", "127.0.0.1:0", "--postfix-config-dir",
                            str(postfix_dir.conf), "--postfix-setting", "mail_version=3.10.1",
                            "--accept-tls-required-loss", str(config))
    assert code is None and out.startswith("listening on"), err
    assert "WARNING Postfix tls_required_enable = 'yes'" in err
    assert "accepted with --accept-tls-required-loss" in err


@requires_postconf
def test_cli_no_postfix_checks_warns_and_starts(postfix_dir: PostfixDir) -> None:
    config = postfix_dir.root / "policy.toml"
    config.write_text(REQUIRED)
    code, out, err = _serve("--listen", "127.0.0.1:0", "--postfix-config-dir",
                            str(postfix_dir.conf), "--postfix-setting", "mail_version=3.10.1",
                            "--no-postfix-checks", str(config))
    assert code is None and out.startswith("listening on"), err
    assert "--no-postfix-checks" in err and "not checked" in err


def test_cli_postfix_setting_needs_name_and_value(tmp_path: Path) -> None:
    config = tmp_path / "policy.toml"
    config.write_text(REQUIRED)
    bad = subprocess.run([sys.executable, "-m", "tlspolicy", "serve", "socketmap", "--listen",
                          "127.0.0.1:0", "--postfix-setting", "nonsense", str(config)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "NAME=VALUE" in bad.stderr
