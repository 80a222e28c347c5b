"""Helpers for tests that run Debian's real Postfix.

- :func:`find_postfix_binary` / :data:`POSTFIX` / :data:`POSTMAP`: locate the
  programs; :data:`requires_postfix`, :data:`requires_postmap` and
  :data:`requires_postfix_server` are skip markers for when they are missing
  (a receiving server also needs root).
- :func:`postmap_query` / :func:`postmap_query_many`: ``postmap -q`` against a
  map, with a private config directory so no system ``main.cf`` is needed.
- :func:`receiving_postfix`: a context manager running a private Postfix that
  accepts mail on ``127.0.0.1:PORT`` with the given certificate, key and
  ``smtpd_tls_security_level`` and discards it; its log is captured so a test
  can wait for ``status=sent`` and see whether the message arrived over TLS
  (:meth:`PostfixServer.deliveries`).

Every server started here is stopped by the context manager, whatever the
test does, and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs
import pytest

import ports

__all__ = [
    "POSTFIX",
    "POSTMAP",
    "Attempt",
    "Delivery",
    "PostfixServer",
    "PostfixStartError",
    "SendingPostfix",
    "TlsSession",
    "allow_config_directory",
    "allowed_config_directories",
    "cached_lookup_is_consistent",
    "disallow_config_directory",
    "find_postfix_binary",
    "free_port",
    "postmap_config_dir",
    "postmap_query",
    "postmap_query_many",
    "receiving_postfix",
    "requires_postfix",
    "requires_postfix_server",
    "requires_postmap",
    "sending_postfix",
]

_SEARCH_DIRS = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
SYSTEM_CONFIG_DIR = Path("/etc/postfix")
#: Seconds allowed for a private Postfix to start accepting connections.
START_TIMEOUT = 30.0
#: Seconds allowed for ``postfix stop`` to bring the master down.
STOP_TIMEOUT = 20.0


def find_postfix_binary(name: str) -> str | None:
    """The path of a Postfix program (``postfix``, ``postmap``, ...) or ``None``.

    Postfix installs into ``/usr/sbin``, which is not on every user's PATH.
    """
    found = shutil.which(name)
    if found:
        return found
    for directory in _SEARCH_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


POSTFIX = find_postfix_binary("postfix")
POSTMAP = find_postfix_binary("postmap")


def cached_lookup_is_consistent(cached: str | None, name: str) -> bool:
    """Whether a lookup made at import time still describes the system.

    Postfix may be installed while the suite runs (CI installs Debian packages
    beside the tests), so an import-time ``None`` may meet a live path; that is
    consistent.  A cached path must still be an executable program of that name,
    found again by a live lookup.
    """
    live = find_postfix_binary(name)
    if cached is None:
        return live is None or (Path(live).name == name and os.access(live, os.X_OK))
    return (Path(cached).name == name and os.access(cached, os.X_OK)
            and live is not None)
_IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

requires_postmap = pytest.mark.skipif(
    POSTMAP is None,
    reason="Postfix's postmap is not installed (run .ci/install-postfix.sh as root)",
)
requires_postfix = pytest.mark.skipif(
    POSTFIX is None or POSTMAP is None,
    reason="Postfix is not installed (run .ci/install-postfix.sh as root)",
)
requires_postfix_server = pytest.mark.skipif(
    POSTFIX is None or not _IS_ROOT,
    reason="a private Postfix server needs the postfix package "
    "(.ci/install-postfix.sh) and root",
)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago, from this test process's own
    slice (``ports.py``), so that parallel workers never pick the same one."""
    return ports.free_port(host)


# ------------------------------------------------------------------------ postmap


def postmap_config_dir(directory: Path) -> Path:
    """Write the minimal ``main.cf`` postmap needs into ``directory``; return it."""
    directory.mkdir(parents=True, exist_ok=True)
    main_cf = directory / "main.cf"
    if not main_cf.exists():
        main_cf.write_text("compatibility_level = 3.6\n")
    return directory


def _postmap() -> str:
    if POSTMAP is None:
        raise RuntimeError("postmap is not installed")
    return POSTMAP


def postmap_query(
    config_dir: Path, table: str, key: str, *, timeout: float = 20.0, fold: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``postmap -c DIR -q KEY TABLE``; return the finished process.

    Exit status 0 means found (value on stdout), 1 not found, other values an
    error (message on stderr).  ``fold=False`` passes ``-f`` (keep key case).
    """
    args = [_postmap(), "-c", str(config_dir)]
    if not fold:
        args.append("-f")
    args += ["-q", key, table]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def postmap_query_many(
    config_dir: Path, table: str, keys: Sequence[str], *, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run ``postmap -c DIR -q - TABLE`` with ``keys`` on stdin, one per line.

    Postfix answers every found key with ``key<TAB>value`` on stdout, over one
    socketmap connection.
    """
    args = [_postmap(), "-c", str(config_dir), "-q", "-", table]
    return subprocess.run(args, input="".join(f"{k}\n" for k in keys), capture_output=True,
                          text=True, timeout=timeout, check=False)


# ----------------------------------------------------------------- the system main.cf


_ALT_PARAM = "alternate_config_directories"


def _lock_path() -> Path:
    return Path(tempfile.gettempdir()) / "tlspolicy-postfix-main-cf.lock"


def _split_logical_lines(text: str) -> list[str]:
    """main.cf logical lines: a line starting with white space continues the previous."""
    lines: list[str] = []
    for raw in text.splitlines(keepends=True):
        if lines and raw[:1] in (" ", "\t") and raw.strip():
            lines[-1] += raw
        else:
            lines.append(raw)
    return lines


def _edit_alternate_dirs(add: Path | None = None, remove: Path | None = None) -> None:
    """Add or remove one entry of ``alternate_config_directories`` in the system main.cf.

    Postfix refuses ``-c DIR`` for directories not listed there.  The edit is
    idempotent and serialised with a lock file, as parallel test processes may
    edit at the same time; other parameters are left untouched.
    """
    main_cf = SYSTEM_CONFIG_DIR / "main.cf"
    with open(_lock_path(), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = main_cf.read_text() if main_cf.exists() else ""
        lines = _split_logical_lines(text)
        index = None
        values: list[str] = []
        pattern = re.compile(rf"\s*{_ALT_PARAM}\s*=(.*)", re.DOTALL)
        for i, line in enumerate(lines):
            match = pattern.match(line)
            if match:
                index = i
                values = [v for v in re.split(r"[\s,]+", match.group(1)) if v]
        new_values = list(values)
        if add is not None and str(add) not in new_values:
            new_values.append(str(add))
        if remove is not None:
            new_values = [v for v in new_values if v != str(remove)]
        if new_values == values and index is not None:
            return
        new_line = f"{_ALT_PARAM} = {' '.join(new_values)}\n"
        if not new_values:
            if index is not None:
                del lines[index]
        elif index is None:
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"
            lines.append(new_line)
        else:
            lines[index] = new_line
        tmp = main_cf.with_name(f".main.cf.tlspolicy-{os.getpid()}")
        tmp.write_text("".join(lines))
        tmp.chmod(0o644)
        os.replace(tmp, main_cf)


def allow_config_directory(directory: Path) -> None:
    """List ``directory`` in the system ``alternate_config_directories`` (idempotent)."""
    _edit_alternate_dirs(add=directory)


def disallow_config_directory(directory: Path) -> None:
    """Remove ``directory`` from the system ``alternate_config_directories`` (idempotent)."""
    _edit_alternate_dirs(remove=directory)


def allowed_config_directories() -> list[str]:
    """The entries of ``alternate_config_directories`` in the system ``main.cf``."""
    main_cf = SYSTEM_CONFIG_DIR / "main.cf"
    text = main_cf.read_text() if main_cf.exists() else ""
    for line in _split_logical_lines(text):
        match = re.match(rf"\s*{_ALT_PARAM}\s*=(.*)", line, re.DOTALL)
        if match:
            return [v for v in re.split(r"[\s,]+", match.group(1)) if v]
    return []


# ----------------------------------------------------------------- receiving Postfix


class PostfixStartError(RuntimeError):
    """A private Postfix did not come up; the message carries its log."""


_LOG_LINE = re.compile(r"postfix[^/\s]*/(?P<service>[\w-]+)\[(?P<pid>\d+)\]: (?P<text>.*)$")
_TLS_LINE = re.compile(
    r"(?P<trust>\w+) TLS connection established from (?P<peer>\S+): "
    r"(?P<protocol>\S+) with cipher (?P<cipher>\S+)"
)
_CLIENT_LINE = re.compile(r"(?P<qid>[0-9A-F]{6,}|[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10,}): "
                          r"client=(?P<client>\S+)")
_STATUS_LINE = re.compile(r"(?P<qid>\w+): to=<(?P<rcpt>[^>]*)>,.* status=(?P<status>\w+)")


@attrs.frozen(slots=True)
class TlsSession:
    """What smtpd logged about the TLS session a message came in on."""

    trust: str
    protocol: str
    cipher: str


@attrs.frozen(slots=True)
class Delivery:
    """One recipient's final status line, joined with how the message arrived."""

    queue_id: str
    recipient: str
    status: str
    #: ``None`` when the message came in over plaintext.
    tls: TlsSession | None


class PostfixServer:
    """A running private Postfix (from :func:`receiving_postfix`)."""

    def __init__(self, root: Path, host: str, port: int, process: subprocess.Popen[str]) -> None:
        self.root = root
        self.config_dir = root / "conf"
        self.host = host
        self.port = port
        self.process = process
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read_log, name="postfix-log", daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        for line in stream:
            with self._cond:
                self._lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def log_lines(self) -> list[str]:
        """Every log line so far."""
        with self._cond:
            return list(self._lines)

    @property
    def log_text(self) -> str:
        """The log so far as one string."""
        return "\n".join(self.log_lines)

    def wait_for_log(self, pattern: str | re.Pattern[str], *, timeout: float = 20.0,
                     start: int = 0) -> re.Match[str]:
        """Wait until a log line (from index ``start`` on) matches ``pattern``.

        Raises :class:`TimeoutError` with the log when none does in time.
        """
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self._lines[start:]:
                    match = regex.search(line)
                    if match:
                        return match
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"no Postfix log line matched {regex.pattern!r} within {timeout}s; "
                        f"log:\n" + "\n".join(self._lines)
                    )
                self._cond.wait(remaining)

    def deliveries(self) -> list[Delivery]:
        """Final status lines in the log so far, each with its incoming TLS session."""
        tls_by_pid: dict[str, TlsSession | None] = {}
        tls_by_qid: dict[str, TlsSession | None] = {}
        result: list[Delivery] = []
        for line in self.log_lines:
            match = _LOG_LINE.search(line)
            if not match:
                continue
            service, pid, text = match.group("service", "pid", "text")
            if service == "smtpd":
                if text.startswith("connect from "):
                    tls_by_pid[pid] = None
                elif tls := _TLS_LINE.match(text):
                    tls_by_pid[pid] = TlsSession(tls.group("trust"), tls.group("protocol"),
                                                 tls.group("cipher"))
                elif client := _CLIENT_LINE.match(text):
                    tls_by_qid[client.group("qid")] = tls_by_pid.get(pid)
            elif status := _STATUS_LINE.match(text):
                qid = status.group("qid")
                result.append(Delivery(qid, status.group("rcpt"), status.group("status"),
                                       tls_by_qid.get(qid)))
        return result

    def wait_for_delivery(self, recipient: str, *, timeout: float = 20.0) -> Delivery:
        """Wait for the final status line of ``recipient``; return it."""
        deadline = time.monotonic() + timeout
        while True:
            for delivery in self.deliveries():
                if delivery.recipient == recipient:
                    return delivery
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no delivery to {recipient} logged within {timeout}s; "
                                   f"log:\n{self.log_text}")
            with self._cond:
                self._cond.wait(min(remaining, 0.5))

    def is_running(self) -> bool:
        """Whether the ``start-fg`` process is still alive."""
        return self.process.poll() is None


def _main_cf(root: Path, *, hostname: str, port: int, cert: Path | None, key: Path | None,
             security_level: str, extra: dict[str, str]) -> str:
    settings: dict[str, str] = {
        "compatibility_level": "3.6",
        "queue_directory": str(root / "queue"),
        "data_directory": str(root / "data"),
        "mail_owner": "postfix",
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "myhostname": hostname,
        "mydomain": hostname,
        "myorigin": "$myhostname",
        "mydestination": "$myhostname",
        "mynetworks": "127.0.0.0/8",
        "local_recipient_maps": "",
        "local_transport": "discard",
        "default_transport": "discard",
        "relay_transport": "discard",
        "alias_maps": "",
        "alias_database": "",
        "biff": "no",
        "smtputf8_enable": "no",
        "smtpd_banner": "$myhostname ESMTP",
        "smtpd_tls_security_level": security_level,
        "smtpd_tls_loglevel": "1",
        "smtpd_tls_received_header": "yes",
        # Without syslog here, any other log target makes postfix exit 1 silently.
        "maillog_file": "/dev/stdout",
        # Private instances must not be touched by the system's instance manager.
        "multi_instance_enable": "no",
    }
    if cert is not None:
        settings["smtpd_tls_cert_file"] = str(cert)
    if key is not None:
        settings["smtpd_tls_key_file"] = str(key)
    settings.update(extra)
    return "".join(f"{name} = {value}\n" for name, value in settings.items())


_MASTER_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def _run(args: list[str], *, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def _wait_for_port(host: str, port: int, server: PostfixServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0) as sock:
                sock.settimeout(5.0)
                # Read the banner so the connection is a clean SMTP session end.
                with contextlib.suppress(OSError):
                    sock.recv(512)
                    sock.sendall(b"QUIT\r\n")
                return
        except OSError:
            pass
        if not server.is_running():
            raise PostfixStartError(f"postfix start-fg exited with {server.process.returncode}; "
                                    f"log:\n{server.log_text}")
        if time.monotonic() > deadline:
            raise PostfixStartError(f"Postfix not listening on {host}:{port} after {timeout}s; "
                                    f"log:\n{server.log_text}")
        time.sleep(0.1)


@contextlib.contextmanager
def receiving_postfix(
    *,
    cert: Path | None = None,
    key: Path | None = None,
    security_level: str = "may",
    hostname: str = "mx.tlspolicy.test",
    port: int | None = None,
    extra_main_cf: dict[str, str] | None = None,
    start_timeout: float = START_TIMEOUT,
    host: str = "127.0.0.1",
    extra_ports: Sequence[int] = (),
    extra_files: dict[str, str] | None = None,
) -> Iterator[PostfixServer]:
    """Run a private Postfix receiving mail on ``127.0.0.1:port`` and discard it.

    ``cert`` and ``key`` (PEM files; the certificate file may hold the chain)
    become ``smtpd_tls_cert_file`` / ``smtpd_tls_key_file``; they are copied
    into the instance's directory first.  ``security_level`` is
    ``smtpd_tls_security_level`` (``none``, ``may``, ``encrypt``).  The
    instance lives in its own temporary directory, registered in the system
    ``main.cf``'s ``alternate_config_directories`` while it runs, and is
    stopped with ``postfix stop`` on exit.  ``host`` may be any loopback
    address (``127.0.0.11``); ``extra_ports`` are further ports the same smtpd
    listens on; ``extra_files`` are written into the config directory (name to
    text) before start, e.g. a ``regexp:`` table named in ``extra_main_cf``,
    where ``{conf}`` stands for that directory.
    """
    if POSTFIX is None:
        raise RuntimeError("postfix is not installed")
    postfix = POSTFIX
    port = port if port is not None else free_port(host)
    # Not under pytest's tmp_path: Postfix daemons run as the postfix user
    # and must traverse every parent of their directories.
    root = Path(tempfile.mkdtemp(prefix="tlspolicy-postfix-"))
    root.chmod(0o755)
    conf = root / "conf"
    conf.mkdir()
    (root / "queue").mkdir(mode=0o755)
    (root / "data").mkdir(mode=0o700)
    shutil.chown(root / "data", user="postfix")
    cert_copy = key_copy = None
    if cert is not None:
        cert_copy = conf / "smtpd.crt"
        shutil.copyfile(cert, cert_copy)
        cert_copy.chmod(0o644)
    if key is not None:
        key_copy = conf / "smtpd.key"
        shutil.copyfile(key, key_copy)
        key_copy.chmod(0o600)
    for name, text in (extra_files or {}).items():
        (conf / name).write_text(text)
    extra = {k: v.replace("{conf}", str(conf)) for k, v in (extra_main_cf or {}).items()}
    (conf / "main.cf").write_text(_main_cf(
        root, hostname=hostname, port=port, cert=cert_copy, key=key_copy,
        security_level=security_level, extra=extra))
    listeners = "".join(f"{host}:{p} inet  n       -       n       -       -       smtpd\n"
                        for p in (port, *extra_ports))
    (conf / "master.cf").write_text(listeners + _MASTER_SERVICES)

    registered = False
    process: subprocess.Popen[str] | None = None
    server: PostfixServer | None = None
    try:
        allow_config_directory(conf)
        registered = True
        perms = _run([postfix, "-c", str(conf), "set-permissions"])
        if perms.returncode != 0:
            raise PostfixStartError(f"postfix set-permissions failed: {perms.stderr}{perms.stdout}")
        process = subprocess.Popen(
            [postfix, "-c", str(conf), "start-fg"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
        )
        server = PostfixServer(root, host, port, process)
        _wait_for_port(host, port, server, start_timeout)
        yield server
    finally:
        try:
            if process is not None:
                _stop(postfix, conf, process)
        finally:
            if server is not None:
                server._reader.join(timeout=5.0)
            if registered:
                disallow_config_directory(conf)
            shutil.rmtree(root, ignore_errors=True)


def _stop(postfix: str, conf: Path, process: subprocess.Popen[str]) -> None:
    """Stop the master; fall back to ``abort`` and finally killing start-fg."""
    if process.poll() is None:
        _run([postfix, "-c", str(conf), "stop"], timeout=STOP_TIMEOUT)
        try:
            process.wait(timeout=STOP_TIMEOUT)
            return
        except subprocess.TimeoutExpired:
            pass
        _run([postfix, "-c", str(conf), "abort"], timeout=STOP_TIMEOUT)
        try:
            process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5.0)
    else:
        # start-fg is gone, but a master it started could still be running.
        _run([postfix, "-c", str(conf), "stop"], timeout=STOP_TIMEOUT)


# ------------------------------------------------------------------- sending Postfix


_SENT_LINE = re.compile(r"postfix[^/\s]*/(?:smtp|error|discard|bounce)\[\d+\]: (?P<qid>\w+): "
                        r"to=<(?P<rcpt>[^>]*)>,(?P<rest>.*) status=(?P<status>\w+)"
                        r"(?: \((?P<why>.*)\))?$")


@attrs.frozen(slots=True)
class Attempt:
    """One delivery attempt the sending Postfix logged for one recipient."""

    recipient: str
    status: str
    why: str


class SendingPostfix(PostfixServer):
    """A running private sending Postfix (from :func:`sending_postfix`)."""

    def submit(self, sender: str, recipients: Sequence[str], message: bytes) -> None:
        """Queue ``message`` with Postfix's ``sendmail -C DIR`` (one call per message)."""
        sendmail = find_postfix_binary("sendmail")
        if sendmail is None:
            raise RuntimeError("Postfix's sendmail is not installed")
        result = subprocess.run([sendmail, "-C", str(self.config_dir), "-f", sender, "-i",
                                 "--", *recipients], input=message, capture_output=True,
                                timeout=30, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"sendmail failed: {result.stderr!r}")

    def attempts(self) -> dict[str, list[Attempt]]:
        """Every logged attempt per recipient, oldest first."""
        found: dict[str, list[Attempt]] = {}
        for line in self.log_lines:
            match = _SENT_LINE.search(line)
            if match:
                found.setdefault(match.group("rcpt"), []).append(Attempt(
                    match.group("rcpt"), match.group("status"), match.group("why") or ""))
        return found


@contextlib.contextmanager
def sending_postfix(
    *,
    main_cf: dict[str, str],
    files: dict[str, str] | None = None,
    hosts: str | None = None,
    hostname: str = "sender.tlspolicy.test",
    start_timeout: float = START_TIMEOUT,
    indexed: Sequence[str] = (),
) -> Iterator[SendingPostfix]:
    """Run a private Postfix that only sends: mail submitted with :meth:`SendingPostfix.submit`
    goes out through its smtp client, configured by ``main_cf`` (on top of a base that
    listens nowhere, delivers nothing locally and logs to the captured standard output).

    ``files`` are written into the config directory first (name to text); ``{conf}`` in
    ``main_cf`` values stands for that directory.  ``hosts`` (``/etc/hosts`` lines) is
    bind-mounted over ``/etc/hosts`` in a private mount namespace (``unshare -m``) for
    the instance, so its smtp client resolves test names without touching the system's
    file.  ``indexed`` names files of ``files`` to compile with ``postmap hash:``.
    Stopped with ``postfix stop`` on exit.
    """
    if POSTFIX is None:
        raise RuntimeError("postfix is not installed")
    postfix = POSTFIX
    root = Path(tempfile.mkdtemp(prefix="tlspolicy-postfix-send-"))
    root.chmod(0o755)
    conf = root / "conf"
    conf.mkdir()
    (root / "queue").mkdir(mode=0o755)
    (root / "data").mkdir(mode=0o700)
    shutil.chown(root / "data", user="postfix")
    for name, text in (files or {}).items():
        (conf / name).write_text(text)
        (conf / name).chmod(0o644)
    settings: dict[str, str] = {
        "compatibility_level": "3.6",
        "queue_directory": str(root / "queue"),
        "data_directory": str(root / "data"),
        "mail_owner": "postfix",
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "myhostname": hostname,
        "mydomain": hostname,
        "myorigin": "$myhostname",
        "mydestination": "",
        "mynetworks": "127.0.0.0/8",
        "local_transport": "error:5.1.1 no local delivery",
        "alias_maps": "",
        "alias_database": "",
        "biff": "no",
        "smtputf8_enable": "no",
        "maillog_file": "/dev/stdout",
        "multi_instance_enable": "no",
        "smtp_tls_loglevel": "1",
        "smtp_tls_session_cache_database": "",
        "notify_classes": "",
    }
    settings.update({k: v.replace("{conf}", str(conf)) for k, v in main_cf.items()})
    (conf / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
    (conf / "master.cf").write_text(
        "smtp      unix  -       -       n       -       -       smtp\n" + _MASTER_SERVICES)
    for name in indexed:
        made = _run([_postmap(), "-c", str(conf), f"hash:{conf / name}"])
        if made.returncode != 0:
            raise PostfixStartError(f"postmap hash:{conf / name} failed: {made.stderr}")
    start = [postfix, "-c", str(conf), "start-fg"]
    if hosts is not None:
        hosts_file = root / "hosts"
        hosts_file.write_text("127.0.0.1 localhost\n" + hosts)
        hosts_file.chmod(0o644)
        start = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                 f'mount --bind "{hosts_file}" /etc/hosts && exec "$@"', "sh", *start]
    registered = False
    process: subprocess.Popen[str] | None = None
    server: SendingPostfix | None = None
    try:
        allow_config_directory(conf)
        registered = True
        perms = _run([postfix, "-c", str(conf), "set-permissions"])
        if perms.returncode != 0:
            raise PostfixStartError(f"postfix set-permissions failed: {perms.stderr}{perms.stdout}")
        process = subprocess.Popen(start, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, text=True, errors="replace")
        server = SendingPostfix(root, "127.0.0.1", 0, process)
        server.wait_for_log(r"daemon started", timeout=start_timeout)
        yield server
    finally:
        try:
            if process is not None:
                _stop(postfix, conf, process)
        finally:
            if server is not None:
                server._reader.join(timeout=5.0)
            if registered:
                disallow_config_directory(conf)
            shutil.rmtree(root, ignore_errors=True)
