"""The policy daemon end to end, run by ``test_daemon_e2e.py`` inside private namespaces.

``python daemon_e2e_worker.py OPTIONS_JSON`` must run as root in a fresh network, mount and
PID namespace (``unshare --net --mount --pid --fork``): it refuses otherwise, because it
binds ports 25, 53 and 443, mounts a tmpfs and bind-mounts its own ``/etc/resolv.conf`` and
``/etc/postfix``.  Nothing outside the namespaces changes, and when the namespace's first
process ends the kernel ends every server started here.

The lab, all on loopback:

- one signed zone ``test.`` on NSD, behind a validating Unbound on 127.0.0.1:53 (Postfix's
  own DANE asks the resolver of ``/etc/resolv.conf``, which cannot carry a port);
- an HTTPS server on 127.0.0.1:443 serving the MTA-STS policies of ``mta-sts.<domain>``
  with certificates of a test CA;
- one receiving Postfix per scenario on port 25 of its own address (127.0.0.2 ...), as Postfix
  delivers to port 25 of the MX host;
- ``tlspolicy serve socketmap`` (with ``--discovery`` when ``OPTIONS["discovery"]``), and a
  sending Postfix whose ``smtp_tls_policy_maps`` is that daemon, with
  ``smtp_dns_support_level = dnssec``.

One message per scenario goes out; the worker waits (bounded) for each one's first final or
deferred status and prints one JSON object: per scenario the daemon's answer (asked with
``postmap -q`` after the deliveries), the sender's attempts and log lines for that MX host,
and the receiver's deliveries with their TLS sessions.  With discovery an outage follows:
the HTTPS server stops, the daemon restarts on its cache, and one more message goes to each
MTA-STS-only domain.  Keys of ``OPTIONS``: ``directory``
(an empty directory; a tmpfs is mounted on it), ``discovery`` (bool), ``deadline``
(seconds for the whole run).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from certs_support import CertFiles, TestCA, make_self_signed
from discovery_support import (
    DnsLab,
    HttpsLab,
    PolicyAnswer,
    _Handler,
    _TlsServer,
)
from postfix_support import (
    PostfixServer,
    SendingPostfix,
    find_postfix_binary,
    receiving_postfix,
    sending_postfix,
)

ZONE = "test"
NSD_PORT = 5300
SENDER = "e2e@sender.tlspolicy.test"
MESSAGE = b"Subject: tlspolicy end to end\r\n\r\nhello\r\n"
BINDING = "default"
#: A domain with an MTA-STS record whose policy is first asked during the outage.
COLD_STS_DOMAIN = "stscold.test"
#: Nothing else listens in the private network namespace.
DAEMON_PORT = 10026


@attrs.frozen
class Scenario:
    """One recipient domain with its single MX host and receiving Postfix."""

    name: str
    domain: str
    address: str
    #: An MTA-STS enforce policy naming the MX host.
    sts: bool
    #: A TLSA record at ``_25._tcp.<mx>``.
    dane: bool

    @property
    def mx(self) -> str:
        return f"mx.{self.domain}"

    @property
    def recipient(self) -> str:
        return f"rcpt@{self.domain}"


SCENARIOS = (
    Scenario("sts_wrong_name", "stswrong.test", "127.0.0.2", sts=True, dane=False),
    Scenario("sts_good", "stsgood.test", "127.0.0.3", sts=True, dane=False),
    Scenario("dane_good", "danegood.test", "127.0.0.4", sts=False, dane=True),
    Scenario("dane_mismatch", "danebad.test", "127.0.0.5", sts=False, dane=True),
    # Both, with a certificate only the TLSA record vouches for: DANE must win.
    Scenario("dane_over_sts", "daneandsts.test", "127.0.0.6", sts=True, dane=True),
)


def _run(args: list[str], *, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def _check_private_namespace() -> None:
    """Refuse to touch mounts or ports unless this is a fresh network namespace (only ``lo``)."""
    names = [name for _, name in socket.if_nameindex()]
    if names != ["lo"]:
        raise SystemExit(f"not in a private network namespace (interfaces {names}); refusing")
    if os.geteuid() != 0:
        raise SystemExit("must run as root inside the namespaces")


def _private_system(directory: Path) -> None:
    """Loopback up, a tmpfs for every file of the lab, and private resolv.conf and /etc/postfix.

    The bind mounts exist only in this mount namespace; the machine's files stay as they are.
    """
    up = _run(["ip", "link", "set", "lo", "up"])
    if up.returncode != 0:
        raise SystemExit(f"ip link set lo up failed: {up.stderr}")
    mount = _run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=256m", "tlspolicy-e2e",
                  str(directory)])
    if mount.returncode != 0:
        raise SystemExit(f"mounting a tmpfs failed: {mount.stderr}")
    resolv = directory / "resolv.conf"
    # glibc passes the AD bit on to Postfix only with trust-ad.
    resolv.write_text("nameserver 127.0.0.1\noptions trust-ad\n")
    resolv.chmod(0o644)
    etc_postfix = directory / "etc-postfix"
    shutil.copytree("/etc/postfix", etc_postfix, symlinks=True)
    # Private instances are listed here (by postfix_support) as they start.
    (etc_postfix / "main.cf").write_text("")
    for source, target in ((resolv, "/etc/resolv.conf"), (etc_postfix, "/etc/postfix")):
        bind = _run(["mount", "--bind", str(source), target])
        if bind.returncode != 0:
            raise SystemExit(f"bind-mounting {target} failed: {bind.stderr}")


# ------------------------------------------------------------------------ certificates


@attrs.frozen
class Certificates:
    ca: TestCA
    ca_file: Path
    receivers: dict[str, CertFiles]
    tlsa: dict[str, str]
    policy_hosts: CertFiles


def _certificates(directory: Path) -> Certificates:
    from cryptography.hazmat.primitives import serialization

    from tlspolicy import TlsaRecord

    ca = TestCA(directory / "ca", name="tlspolicy end-to-end test CA")
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca.pem)
    ca_file.chmod(0o644)
    receivers = {
        "sts_wrong_name": ca.wrong_name("mx.stswrong.test", stem="stswrong"),
        "sts_good": ca.issue(["mx.stsgood.test"], stem="stsgood"),
        # Self-signed: nothing but the TLSA record can make Postfix trust these.
        "dane_good": make_self_signed(directory / "danegood", "mx.danegood.test"),
        "dane_mismatch": make_self_signed(directory / "danebad", "mx.danebad.test"),
        "dane_over_sts": make_self_signed(directory / "daneandsts", "mx.daneandsts.test"),
    }
    # The mismatch variant publishes the digest of another key than the one it presents.
    other = make_self_signed(directory / "other", "mx.danebad.test")

    def tlsa_of(files: CertFiles) -> str:
        der = files.cert.public_bytes(serialization.Encoding.DER)
        return str(TlsaRecord.for_certificate(der, 3, 1, 1).to_text())

    tlsa = {"dane_good": tlsa_of(receivers["dane_good"]), "dane_mismatch": tlsa_of(other),
            "dane_over_sts": tlsa_of(receivers["dane_over_sts"])}
    policy_hosts = ca.issue([f"mta-sts.{s.domain}" for s in SCENARIOS if s.sts],
                            stem="policy-hosts")
    return Certificates(ca, ca_file, receivers, tlsa, policy_hosts)


# ------------------------------------------------------------------------ DNS


def _zone(certs: Certificates) -> str:
    lines = [
        f"$ORIGIN {ZONE}.",
        "@ 300 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60",
        "@ 300 IN NS ns.test.", "ns 300 IN A 127.0.0.1",
    ]
    for s in SCENARIOS:
        label = s.domain.removesuffix(f".{ZONE}")
        lines += [f"{label} 300 IN MX 10 mx.{label}", f"mx.{label} 300 IN A {s.address}"]
        if s.sts:
            lines += [f'_mta-sts.{label} 300 IN TXT "v=STSv1; id=e2e1"',
                      f"mta-sts.{label} 300 IN A 127.0.0.1"]
        if s.dane:
            lines.append(f"_25._tcp.mx.{label} 300 IN TLSA {certs.tlsa[s.name]}")
    # An MTA-STS domain nobody sends to before the outage: nothing of it is cached.
    lines += ["stscold 300 IN MX 10 mx.stscold", "mx.stscold 300 IN A 127.0.0.20",
              '_mta-sts.stscold 300 IN TXT "v=STSv1; id=e2e1"',
              "mta-sts.stscold 300 IN A 127.0.0.1"]
    return "\n".join(lines) + "\n"


def _dns(directory: Path, certs: Certificates) -> DnsLab:
    """NSD with the signed zone, and a validating Unbound on 127.0.0.1:53."""
    directory.mkdir()
    lab = DnsLab(directory, NSD_PORT, 53)
    signed, ds = lab._sign(ZONE, _zone(certs))
    (directory / "anchor.ds").write_text(ds + "\n")
    (directory / "nsd.conf").write_text("\n".join([
        "server:", f"  ip-address: 127.0.0.1@{NSD_PORT}", '  username: ""', '  chroot: ""',
        '  database: ""', f'  zonesdir: "{directory}"', f'  pidfile: "{directory}/nsd.pid"',
        f'  logfile: "{directory}/nsd.log"', f'  xfrdfile: "{directory}/xfrd.state"',
        f'  zonelistfile: "{directory}/zone.list"', "  server-count: 1", "  verbosity: 0",
        "remote-control:", "  control-enable: no",
        "zone:", f"  name: {ZONE}.", f'  zonefile: "{signed}"',
    ]) + "\n")
    (directory / "unbound.conf").write_text("\n".join([
        "server:", "  interface: 127.0.0.1", "  port: 53", '  username: ""', '  chroot: ""',
        f'  directory: "{directory}"', f'  pidfile: "{directory}/unbound.pid"',
        f'  logfile: "{directory}/unbound.log"', "  use-syslog: no", "  verbosity: 1",
        "  num-threads: 1", "  do-ip6: no", '  module-config: "validator iterator"',
        f'  trust-anchor-file: "{directory}/anchor.ds"', "  do-not-query-localhost: no",
        f'  local-zone: "{ZONE}." transparent', '  local-zone: "." refuse',
        "  outgoing-interface: 127.0.0.1", "  val-bogus-ttl: 5", "  log-queries: yes",
        "  qname-minimisation: no", "  so-reuseport: no",
        "remote-control:", "  control-enable: no",
        "stub-zone:", f'  name: "{ZONE}."', f"  stub-addr: 127.0.0.1@{NSD_PORT}",
    ]) + "\n")
    lab.start()
    return lab


# ------------------------------------------------------------------------ HTTPS


@contextlib.contextmanager
def _https(directory: Path, certs: Certificates) -> Iterator[HttpsLab]:
    """The MTA-STS policy hosts on 127.0.0.1:443 (enforce, the domain's one MX host)."""
    import ssl
    import threading

    lab = HttpsLab(directory, port=443, ca_file=certs.ca_file)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.policy_hosts.chain_path, certs.policy_hosts.key_path)
    lab.context = context
    for s in SCENARIOS:
        if s.sts:
            body = (f"version: STSv1\r\nmode: enforce\r\nmx: {s.mx}\r\n"
                    "max_age: 86400\r\n").encode()
            lab.set(s.domain, PolicyAnswer(body))
    server = _TlsServer(("127.0.0.1", 443), _Handler)
    server.lab = lab
    lab.server = server
    lab.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                  daemon=True)
    lab.thread.start()
    try:
        yield lab
    finally:
        lab.stop()


# ------------------------------------------------------------------------ the daemon


def _config(certs: Certificates, discovery: bool) -> str:
    """Opportunistic TLS for everyone, with DANE and MTA-STS on for discovery.  Without
    discovery, stanzas say what the domains' policies and TLSA records would, so the lab is
    checked with the static daemon too."""
    lines = ["[global]", 'tls = "ifavailable"', f'tls_ca = "{certs.ca_file}"']
    if discovery:
        # The operator turns both on; discovery then says where each applies.
        lines += ["use_dane = true", "use_mta_sts = true", ""]
    else:
        lines.append("")
        for s in SCENARIOS:
            if not s.dane:
                lines += ["[[domain]]", f'name = "{s.domain}"', 'tls = "required"',
                          'tls_verify = "host"', ""]
            else:
                # Exported as Postfix's level dane: Postfix's own TLSA checks, as with
                # discovery's dane-only.
                lines += ["[[domain]]", f'name = "{s.domain}"', "use_dane = true", ""]
    return "\n".join(lines)


@attrs.frozen
class DropIn:
    """The drop-in command as a peer's users run it: no file, the peer's port and the
    peer's unchanged main.cf line (map name)."""

    port: int
    map_name: str


#: postfix-mta-sts-resolver's and postfix-tlspol's ports and main.cf map names.
DROP_INS = {"mta-sts-resolver": DropIn(8461, "postfix"), "tlspol": DropIn(8642, "QUERY")}


def _drop_in_command(directory: Path, certs: Certificates, drop_in: DropIn,
                     postfix_conf: Path) -> list[str]:
    """The migration pages' command, plus only what the lab needs: the probe name (the
    lab's resolver serves the zone ``test.`` alone), the lab's CA in place of the public
    ones, the cache on the lab's tmpfs, and the sending Postfix's configuration directory.
    The resolver is the system's (``/etc/resolv.conf``, bind-mounted to the lab's)."""
    return [sys.executable, "-m", "tlspolicy", "serve", "socketmap", "--discovery",
            "--listen", f"127.0.0.1:{drop_in.port}",
            "--probe-name", f"{ZONE}.", "--ca-file", str(certs.ca_file),
            "--cache", str(directory / "cache.sqlite"), "--first-wait", "8",
            "--postfix-config-dir", str(postfix_conf)]


@contextlib.contextmanager
def _daemon(directory: Path, certs: Certificates, discovery: bool, postfix_conf: Path,
            drop_in: DropIn | None = None
            ) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """``serve socketmap`` on 127.0.0.1:DAEMON_PORT (fixed, so a restarted daemon is found
    where the sending Postfix looks), checking the sending Postfix's settings at start; its
    process and the standard error lines so far.  With ``drop_in``, the drop-in command on
    that peer's port instead."""
    config = directory / "policy.toml"
    config.write_text(_config(certs, discovery))
    args = [sys.executable, "-m", "tlspolicy", "serve", "socketmap", str(config),
            "--listen", f"127.0.0.1:{DAEMON_PORT}", "--postfix-version", _postfix_version(),
            "--postfix-config-dir", str(postfix_conf)]
    if drop_in is not None:
        args = _drop_in_command(directory, certs, drop_in, postfix_conf)
    elif discovery:
        args += ["--discovery", "--resolver", "127.0.0.1", "--resolver-port", "53",
                 "--probe-name", f"{ZONE}.", "--cache", str(directory / "cache.sqlite"),
                 "--https-port", "443", "--ca-file", str(certs.ca_file), "--first-wait", "8"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    errors: list[str] = []

    def read_errors() -> None:
        assert process.stderr is not None
        errors.extend(line.rstrip("\n") for line in process.stderr)

    import threading

    reader = threading.Thread(target=read_errors, daemon=True)
    reader.start()
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("listening on "):
            process.kill()
            process.wait(10)
            reader.join(5)
            raise RuntimeError(f"serve socketmap did not start: {line!r} {errors}")
        yield process, errors
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        reader.join(5)


def _postfix_version() -> str:
    postconf = find_postfix_binary("postconf") or "postconf"
    return _run([postconf, "-d", "-h", "mail_version"]).stdout.strip()


# ------------------------------------------------------------------------ running


def _receivers(stack: contextlib.ExitStack, certs: Certificates) -> dict[str, PostfixServer]:
    """One receiving Postfix per scenario on port 25 of its address, started in parallel;
    each one that started is stopped with ``stack``, whatever happens to the others."""
    from concurrent.futures import ThreadPoolExecutor

    managers = {s.name: receiving_postfix(
        cert=certs.receivers[s.name].chain_path, key=certs.receivers[s.name].key_path,
        security_level="may", hostname=s.mx, host=s.address, port=25) for s in SCENARIOS}
    with ThreadPoolExecutor(len(managers)) as pool:
        futures = {name: pool.submit(manager.__enter__) for name, manager in managers.items()}
    receivers: dict[str, PostfixServer] = {}
    failures: list[BaseException] = []
    for name, future in futures.items():
        error = future.exception()
        if error is None:
            receivers[name] = future.result()
            stack.push(managers[name].__exit__)
        else:
            failures.append(error)
    if failures:
        raise failures[0]
    return receivers


def _outcome(sender: SendingPostfix, receiver: PostfixServer, recipient: str,
             deadline: float) -> None:
    """Wait until the sender logged a final or deferred status for ``recipient``, and for a
    sent one until the receiver logged it."""
    while time.monotonic() < deadline:
        tries = sender.attempts().get(recipient, [])
        if tries:
            if tries[0].status != "sent":
                return
            if any(d.recipient == recipient for d in receiver.deliveries()):
                return
        time.sleep(0.2)


def _answer(conf: Path, key: str, table: str = "") -> dict[str, Any]:
    postmap = find_postfix_binary("postmap") or "postmap"
    table = table or f"socketmap:inet:127.0.0.1:{DAEMON_PORT}:{BINDING}"
    done = _run([postmap, "-c", str(conf), "-q", key, table], timeout=60)
    return {"status": done.returncode, "value": done.stdout.strip(), "error": done.stderr.strip()}


def _report(s: Scenario, recipient: str, certs: Certificates, sender: SendingPostfix,
            receiver: PostfixServer, since: int, table: str = "") -> dict[str, Any]:
    """What the daemon answers now, and what both logs say about ``recipient`` (the sender's
    lines for the MX host from log line ``since`` on)."""
    return {
        "domain": s.domain, "mx": s.mx, "address": s.address, "recipient": recipient,
        "tlsa": certs.tlsa.get(s.name),
        "answer": _answer(sender.config_dir, s.domain, table),
        "attempts": [attrs.asdict(a) for a in sender.attempts().get(recipient, [])],
        "sender_log": [line for line in sender.log_lines[since:] if f"{s.mx}[" in line],
        "deliveries": [{"recipient": d.recipient, "status": d.status,
                        "tls": None if d.tls is None else attrs.asdict(d.tls)}
                       for d in receiver.deliveries() if d.recipient == recipient],
        "receiver_tls_log": [line for line in receiver.log_lines
                             if "TLS connection established" in line],
    }


def _outage(directory: Path, certs: Certificates, https: HttpsLab,
            daemon_stack: contextlib.ExitStack, sender: SendingPostfix,
            receivers: dict[str, PostfixServer], deadline: float) -> dict[str, Any]:
    """The policy hosts go away and the daemon restarts with its cache: the cached enforce
    policies must still be applied to new mail."""
    https.stop()
    daemon_stack.close()
    daemon, errors = daemon_stack.enter_context(
        _daemon(directory, certs, True, sender.config_dir))
    since = len(sender.log_lines)
    outage: dict[str, Any] = {"scenarios": {}}
    chosen = [s for s in SCENARIOS if s.sts and not s.dane]
    for s in chosen:
        sender.submit(SENDER, [f"outage@{s.domain}"], MESSAGE)
    for s in chosen:
        _outcome(sender, receivers[s.name], f"outage@{s.domain}", deadline)
    for s in chosen:
        outage["scenarios"][s.name] = _report(s, f"outage@{s.domain}", certs, sender,
                                              receivers[s.name], since)
    # The control: a policy that was never fetched cannot be applied, and its failed fetch
    # is no reason for TEMP (SEMANTICS 11).
    outage["cold_answer"] = _answer(sender.config_dir, COLD_STS_DOMAIN)
    outage["daemon_exit"] = daemon.poll()
    outage["daemon_stderr"] = errors[-50:]
    return outage


def run(options: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    deadline = started + float(options.get("deadline", 90))
    discovery = bool(options["discovery"])
    drop_in = DROP_INS[options["drop_in"]] if options.get("drop_in") else None
    if drop_in is not None:
        return _run_drop_in(options, drop_in, started, deadline)
    _check_private_namespace()
    directory = Path(options["directory"])
    _private_system(directory)
    # postfix_support makes its instance directories (and its lock file) under tempfile's
    # directory: the tmpfs.
    tempfile.tempdir = str(directory)
    certs = _certificates(directory / "certs")
    result: dict[str, Any] = {"discovery": discovery, "postfix": _postfix_version(),
                              "scenarios": {}}
    with contextlib.ExitStack() as stack:
        dns = _dns(directory / "dns", certs)
        stack.callback(dns.stop)
        https = stack.enter_context(_https(directory / "https", certs))
        receivers = _receivers(stack, certs)
        # The sender first: the daemon checks its settings at start.  Nothing asks the
        # daemon before the first message is submitted.
        sender = stack.enter_context(sending_postfix(main_cf={
            "smtp_tls_policy_maps": f"socketmap:inet:127.0.0.1:{DAEMON_PORT}:{BINDING}",
            "smtp_tls_security_level": "may",
            "smtp_dns_support_level": "dnssec",
            "smtp_host_lookup": "dns",
            # The default probe asks for the root's NS, which this resolver refuses.
            "dnssec_probe": f"ns:{ZONE}.",
            "smtp_tls_CAfile": str(certs.ca_file),
            "smtp_tls_loglevel": "2",
            "smtp_connect_timeout": "5s",
            # One attempt per message is all a scenario needs.
            "minimal_backoff_time": "600s",
            "maximal_backoff_time": "1200s",
            "queue_run_delay": "600s",
        }))
        daemon_stack = stack.enter_context(contextlib.ExitStack())
        daemon, daemon_errors = daemon_stack.enter_context(
            _daemon(directory, certs, discovery, sender.config_dir))
        result["setup_seconds"] = round(time.monotonic() - started, 1)
        for s in SCENARIOS:
            sender.submit(SENDER, [s.recipient], MESSAGE)
        for s in SCENARIOS:
            _outcome(sender, receivers[s.name], s.recipient, deadline)
        for s in SCENARIOS:
            result["scenarios"][s.name] = _report(s, s.recipient, certs, sender,
                                                  receivers[s.name], 0)
        result["https_requests"] = sorted({host for host, _ in https.requests})
        result["daemon_exit"] = daemon.poll()
        result["daemon_stderr"] = daemon_errors[-50:]
        if discovery:
            result["outage"] = _outage(directory, certs, https, daemon_stack, sender,
                                       receivers, deadline)
        result["sender_log_tail"] = sender.log_lines[-80:]
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def _run_drop_in(options: dict[str, Any], drop_in: DropIn, started: float,
                 deadline: float) -> dict[str, Any]:
    """The drop-in command against a sending Postfix configured as Debian ships it plus the
    peer's one main.cf line: no DNSSEC support level, so DANE is off and only MTA-STS
    applies; every scenario's domain is mailed once and asked with ``postmap -q``, through
    the peer's map name and through ``QUERYwithTLSRPT``."""
    _check_private_namespace()
    directory = Path(options["directory"])
    _private_system(directory)
    tempfile.tempdir = str(directory)
    certs = _certificates(directory / "certs")
    table = f"socketmap:inet:127.0.0.1:{drop_in.port}:{drop_in.map_name}"
    result: dict[str, Any] = {"discovery": True, "drop_in": options["drop_in"],
                              "postfix": _postfix_version(), "scenarios": {}}
    with contextlib.ExitStack() as stack:
        dns = _dns(directory / "dns", certs)
        stack.callback(dns.stop)
        https = stack.enter_context(_https(directory / "https", certs))
        receivers = _receivers(stack, certs)
        sender = stack.enter_context(sending_postfix(main_cf={
            # The peer's documented line, unchanged.
            "smtp_tls_policy_maps": table,
            # Debian's packaged main.cf.
            "smtp_tls_security_level": "may",
            "smtp_tls_CApath": "/etc/ssl/certs",
            # The lab's CA stands in for the public CAs an MTA-STS host's certificate
            # chains to.
            "smtp_tls_CAfile": str(certs.ca_file),
            # The lab's observation and pacing, not policy.
            "smtp_tls_loglevel": "2",
            "smtp_connect_timeout": "5s",
            "minimal_backoff_time": "600s",
            "maximal_backoff_time": "1200s",
            "queue_run_delay": "600s",
        }))
        daemon, errors = stack.enter_context(
            _daemon(directory, certs, True, sender.config_dir, drop_in))
        result["setup_seconds"] = round(time.monotonic() - started, 1)
        for s in SCENARIOS:
            sender.submit(SENDER, [s.recipient], MESSAGE)
        for s in SCENARIOS:
            _outcome(sender, receivers[s.name], s.recipient, deadline)
        for s in SCENARIOS:
            report = _report(s, s.recipient, certs, sender, receivers[s.name], 0, table)
            report["answer_with_tlsrpt"] = _answer(
                sender.config_dir, s.domain,
                f"socketmap:inet:127.0.0.1:{drop_in.port}:QUERYwithTLSRPT")
            result["scenarios"][s.name] = report
        result["unknown_answer"] = _answer(sender.config_dir, "nothing.test", table)
        result["https_requests"] = sorted({host for host, _ in https.requests})
        result["daemon_exit"] = daemon.poll()
        result["daemon_stderr"] = errors[-50:]
        result["sender_log_tail"] = sender.log_lines[-80:]
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def main() -> int:
    options = json.loads(sys.argv[1])
    try:
        result = run(options)
    except Exception as exc:
        import traceback

        print(json.dumps({"error": f"{type(exc).__name__}: {exc}",
                          "traceback": traceback.format_exc()}), flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
