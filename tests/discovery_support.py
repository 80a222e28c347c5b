"""Real servers on loopback for the discovery and store tests (session-scoped fixtures).

- ``redis_server``: Debian's ``redis-server`` on a free port, no persistence.
- ``dns_lab``: NSD serving zones signed here (fresh keys, ``ldns-signzone``) under
  ``test.``, and a validating Unbound in front of it with the parent's trust
  anchor, so AD bits, insecure delegations, bogus and expired signatures are real.
- ``https_lab``: an ``http.server`` + ``ssl`` server on 127.0.0.1 choosing a
  certificate per SNI name, serving MTA-STS policies whose answer (status, media
  type, body, delay, redirect) a test sets per host.

Each fixture skips with a reason when its binary is missing; every server is
stopped by PID at the end of the session, and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import http.server
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

import ports

__all__ = [
    "FLEET_SIZE",
    "GENERATED_CASES",
    "GOOD_POLICY",
    "STS_CASES",
    "STS_DOMAINS",
    "TLSA_HEX",
    "TLSRPT_DOMAIN",
    "TLSRPT_HTTPS_HOST",
    "TLSRPT_MAIL_DOMAIN",
    "TLSRPT_SUBMITTER",
    "DnsLab",
    "DnsRelay",
    "HttpsLab",
    "PolicyAnswer",
    "Post",
    "RedisServer",
    "dns_relay",
    "free_port",
    "generated_shapes",
]

_START_TIMEOUT = 15.0

#: TLS-RPT: the policy domain reporting to both kinds of ``rua``, where they point,
#: and the reporting domain whose DKIM key the zone publishes.
TLSRPT_DOMAIN = "rpt.secure.test"
TLSRPT_MAIL_DOMAIN = "rcv.secure.test"
TLSRPT_HTTPS_HOST = "reports.secure.test"
TLSRPT_SUBMITTER = "sender.secure.test"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free for both TCP and UDP on 127.0.0.1, from this test process's own slice
    (``ports.py``: below 32768, as the notes advise, and apart from other xdist workers)."""
    return ports.free_port()


def _binary(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.skip(f"{name} is not installed (Debian package; see .ci/install-discovery.sh)")


def _wait_tcp(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} at start")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {_START_TIMEOUT} s")


def _unbound_port(port: int) -> bool:
    """Whether no socket listens on (TCP) or is bound to (UDP) 127.0.0.1:``port``; closed
    connections lingering in TIME_WAIT do not count."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            tcp.bind(("127.0.0.1", port))
            udp.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


def _wait_port_free(port: int, what: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while not _unbound_port(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} still held 127.0.0.1:{port} after {_START_TIMEOUT} s")
        time.sleep(0.02)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


# ----------------------------------------------------------------------- Redis


@attrs.define
class RedisServer:
    """A private redis-server: its URL, and stop/start to test outages."""

    binary: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    maxmemory_policy: str = "noeviction"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--maxmemory-policy",
             self.maxmemory_policy],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_tcp(self.port, self.process, "redis-server")

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
            self.process = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server (noeviction) on a free loopback port for the whole session."""
    server = RedisServer(_binary("redis-server"), free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------ DNS (NSD + Unbound)

#: TLSA association data used in the zones (any 32 bytes will do for discovery).
TLSA_HEX = "8cb0fc6c527506a053f4f14c8464bebbd6dede2738d11468dd953d7d6a3021f1"

#: Policy domains under ``secure.test`` that each get ``_mta-sts`` TXT, an
#: ``mta-sts`` host and an MX, for the HTTPS scenarios.
STS_CASES = (
    "ok", "enforce2", "testing", "modenone", "wrongname", "expiredcert", "untrusted",
    "redirect", "mediatype", "mediaparams", "oversized", "slow", "notfound", "invalid",
    "idchange", "refresh", "keep", "backoff", "coldslow", "single", "restart", "outage",
    "fuzz", "noaddress", "mirror", *(f"fleet{n}" for n in range(40)),
    # Usable TLSA at MX hosts an enforce policy does not (all) permit.
    "danestray", "danesplit",
)

_SOA = "@ 300 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60\n@ 300 IN NS ns.test.\n"


def _secure_zone(extra: tuple[str, ...] = ()) -> str:
    lines = [
        "$ORIGIN secure.test.", _SOA,
        "@ 300 IN MX 10 mx.secure.test.",
        "mx 300 IN A 127.0.0.1",
        f"_25._tcp.mx 300 IN TLSA 3 1 1 {TLSA_HEX}",
        "_mta-sts 300 IN TXT \"v=STSv1; id=20260101\"",
        "mta-sts 300 IN A 127.0.0.1",
        "_smtp._tls 300 IN TXT \"v=TLSRPTv1; rua=mailto:tlsrpt@secure.test\"",
        # No TLSA at the MX host: a secure NXDOMAIN.
        "nodane 300 IN MX 10 mx2.nodane", "mx2.nodane 300 IN A 127.0.0.1",
        # NODATA for MX: the implicit MX is the domain itself.
        "implicit 300 IN A 127.0.0.1", f"_25._tcp.implicit 300 IN TLSA 3 1 1 {TLSA_HEX}",
        # Null MX (RFC 7505).
        "nullmx 300 IN MX 0 .",
        # MX host is a CNAME: TLSA at the target first ...
        "cname 300 IN MX 10 mxalias.cname", "mxalias.cname 300 IN CNAME mxreal.cname",
        "mxreal.cname 300 IN A 127.0.0.1",
        f"_25._tcp.mxreal.cname 300 IN TLSA 3 1 1 {TLSA_HEX}",
        # ... then at the original name when the target has none.
        "cname2 300 IN MX 10 mxalias.cname2", "mxalias.cname2 300 IN CNAME mxreal.cname2",
        "mxreal.cname2 300 IN A 127.0.0.1",
        f"_25._tcp.mxalias.cname2 300 IN TLSA 2 0 1 {TLSA_HEX}",
        # The TLSA name itself is a CNAME.
        "tlsacname 300 IN MX 10 mx.tlsacname", "mx.tlsacname 300 IN A 127.0.0.1",
        "_25._tcp.mx.tlsacname 300 IN CNAME tlsa-target.tlsacname",
        f"tlsa-target.tlsacname 300 IN TLSA 3 0 1 {TLSA_HEX}",
        # Only unusable records (PKIX-TA, usage 0).
        "unusable 300 IN MX 10 mx.unusable", "mx.unusable 300 IN A 127.0.0.1",
        f"_25._tcp.mx.unusable 300 IN TLSA 0 0 1 {TLSA_HEX}",
        # A secure MX RRset naming a host in an unsigned zone.
        "mxinsecure 300 IN MX 10 mx.insecure.test.",
        # A secure MX naming a host whose TLSA RRset is bogus.
        "mxbogus 300 IN MX 10 mx.bogus.test.",
        # Two MX hosts, one preferred.
        "twomx 300 IN MX 20 mxb.twomx", "twomx 300 IN MX 10 mxa.twomx",
        "mxa.twomx 300 IN A 127.0.0.1", "mxb.twomx 300 IN A 127.0.0.1",
        # TXT record shapes.
        "_mta-sts.twotxt 300 IN TXT \"v=STSv1; id=1\"",
        "_mta-sts.twotxt 300 IN TXT \"v=STSv1; id=2\"",
        "_mta-sts.split 300 IN TXT \"v=STSv1; \" \"id=split1\"",
        "mta-sts.split 300 IN A 127.0.0.1",
        "_mta-sts.cnametxt 300 IN CNAME _mta-sts.ok",
        "mta-sts.cnametxt 300 IN A 127.0.0.1",
        "_mta-sts.badtxt 300 IN TXT \"v=STSv1; id=not valid!\"",
        "_mta-sts.othertxt 300 IN TXT \"v=spf1 -all\"",
        "_smtp._tls.tworpt 300 IN TXT \"v=TLSRPTv1; rua=mailto:a@x.test\"",
        "_smtp._tls.tworpt 300 IN TXT \"v=TLSRPTv1; rua=mailto:b@x.test\"",
        "_mta-sts.shortttl 2 IN TXT \"v=STSv1; id=short1\"",
        "mta-sts.shortttl 300 IN A 127.0.0.1",
        # A smart host is its own policy domain: DANE at _587._tcp.
        "relay 300 IN A 127.0.0.1", f"_587._tcp.relay 300 IN TLSA 3 1 1 {TLSA_HEX}",
        "_mta-sts.relay 300 IN TXT \"v=STSv1; id=relay1\"", "mta-sts.relay 300 IN A 127.0.0.1",
    ]
    for case in STS_CASES:
        policy_id = "id2" if case == "idchange" else "id1"
        lines += [f"{case} 300 IN MX 10 mx.{case}", f"mx.{case} 300 IN A 127.0.0.1",
                  f"_mta-sts.{case} 300 IN TXT \"v=STSv1; id={policy_id}\""]
        if case != "noaddress":
            lines.append(f"mta-sts.{case} 300 IN A 127.0.0.1")
    lines += ["shortttl 300 IN MX 10 mx.shortttl", "mx.shortttl 300 IN A 127.0.0.1"]
    # DANE at MX hosts outside the enforce policy: every one (danestray), one of two
    # (danesplit: mx.danesplit is permitted, mxb.danesplit is not).
    lines += [f"_25._tcp.mx.danestray 300 IN TLSA 3 1 1 {TLSA_HEX}",
              f"_25._tcp.mx.danesplit 300 IN TLSA 3 1 1 {TLSA_HEX}",
              "danesplit 300 IN MX 20 mxb.danesplit", "mxb.danesplit 300 IN A 127.0.0.1",
              f"_25._tcp.mxb.danesplit 300 IN TLSA 3 1 1 {TLSA_HEX}"]
    # More MX hosts than an answer judges one by one (32): usable TLSA at all but the last.
    for n in range(33):
        lines += [f"manymx 300 IN MX {n} mx{n:02d}.manymx",
                  f"mx{n:02d}.manymx 300 IN A 127.0.0.1"]
        if n < 32:
            lines.append(f"_25._tcp.mx{n:02d}.manymx 300 IN TLSA 3 1 1 {TLSA_HEX}")
    # A fleet of policy domains N.fleet.secure.test, all from wildcards.
    lines += ["*.fleet 300 IN MX 10 mx.fleet", "mx.fleet 300 IN A 127.0.0.1",
              "*.fleet 300 IN TXT \"v=STSv1; id=fleet1\"", "*.fleet 300 IN A 127.0.0.1"]
    # More records than discovery accepts in one answer (a stranger's zone).
    lines += [f"_mta-sts.manytxt 300 IN TXT \"v=STSv1; id=n{n}\"" for n in range(130)]
    lines += extra
    return "\n".join(lines) + "\n"


def _insecure_zone() -> str:
    return "\n".join([
        "$ORIGIN insecure.test.", _SOA,
        "@ 300 IN MX 10 mx.insecure.test.", "mx 300 IN A 127.0.0.1",
        f"_25._tcp.mx 300 IN TLSA 3 1 1 {TLSA_HEX}",
        "_mta-sts 300 IN TXT \"v=STSv1; id=ins1\"", "mta-sts 300 IN A 127.0.0.1",
    ]) + "\n"


def _bogus_zone() -> str:
    return "\n".join([
        "$ORIGIN bogus.test.", _SOA,
        "@ 300 IN MX 10 mx.bogus.test.", "mx 300 IN A 127.0.0.1",
        f"_25._tcp.mx 300 IN TLSA 3 1 1 {TLSA_HEX}",
        "badmx 300 IN MX 10 mx.bogus.test.",
    ]) + "\n"


def _expired_zone() -> str:
    return "\n".join([
        "$ORIGIN expired.test.", _SOA,
        "@ 300 IN MX 10 mx.expired.test.", "mx 300 IN A 127.0.0.1",
        f"_25._tcp.mx 300 IN TLSA 3 1 1 {TLSA_HEX}",
    ]) + "\n"


#: How many generated MX/TLSA shapes ``gen<N>.secure.test`` the signed zone holds.
GENERATED_CASES = 40


def generated_shapes(seed: int = 8461) -> dict[str, dict[str, Any]]:
    """Deterministic random MX and TLSA shapes: domain -> {"mx": [(preference, host)],
    "hosts": {host: {"address": bool, "tlsa": [(usage, selector, mtype, hex)]}}}."""
    import random

    rng = random.Random(seed)
    shapes: dict[str, dict[str, Any]] = {}
    for n in range(GENERATED_CASES):
        domain = f"gen{n}.secure.test"
        if rng.random() < 0.1:
            shapes[domain] = {"mx": [(0, ".")], "hosts": {}}
            continue
        hosts: dict[str, dict[str, Any]] = {}
        mx = []
        for k in range(rng.randint(1, 3)):
            host = f"mx{k}.{domain}"
            records = []
            for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
                usage = rng.choice([0, 1, 2, 3, 3, 255])
                selector = rng.choice([0, 1, 1, 2])
                mtype = rng.choice([0, 1, 1, 2, 7])
                size = {1: 32, 2: 64}.get(mtype, rng.randint(1, 48))
                if rng.random() < 0.15:
                    size = rng.randint(1, 70)  # a digest of the wrong length: unusable
                records.append((usage, selector, mtype, rng.randbytes(size).hex()))
            hosts[host] = {"address": rng.random() < 0.85, "tlsa": records}
            mx.append((rng.randint(0, 50), host))
        shapes[domain] = {"mx": mx, "hosts": hosts}
    return shapes


def _generated_lines(shapes: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for domain, shape in shapes.items():
        name = domain.removesuffix(".secure.test")
        for preference, host in shape["mx"]:
            target = "." if host == "." else f"{host}."
            lines.append(f"{name} 300 IN MX {preference} {target}")
        for host, info in shape["hosts"].items():
            label = host.removesuffix(".secure.test")
            # A host without an address still exists (a TXT record), so its TLSA is asked.
            rdata = "A 127.0.0.1" if info["address"] else 'TXT "x"'
            lines.append(f"{label} 300 IN {rdata}")
            for usage, selector, mtype, data in info["tlsa"]:
                lines.append(f"_25._tcp.{label} 300 IN TLSA {usage} {selector} {mtype} {data}")
    return lines


def _stamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S")


@attrs.define
class DnsLab:
    """NSD (authoritative) and Unbound (validating) on loopback; ``port`` is Unbound's."""

    directory: Path
    nsd_port: int
    port: int
    nsd: subprocess.Popen[bytes] | None = None
    unbound: subprocess.Popen[bytes] | None = None
    address: str = "127.0.0.1"
    #: The certificate files whose DANE-EE record ``_25._tcp.mx.e2e.secure.test`` publishes.
    e2e_cert: Any = None
    #: The DKIM private key (PEM) of ``sender.secure.test``, selector ``tlsrpt``.
    dkim_key: Path | None = None

    def _keygen(self, zone: str) -> tuple[str, str]:
        tool = _binary("ldns-keygen")
        ksk = subprocess.run([tool, "-a", "ECDSAP256SHA256", "-k", f"{zone}."], cwd=self.directory,
                             capture_output=True, text=True, check=True, timeout=30).stdout.strip()
        zsk = subprocess.run([tool, "-a", "ECDSAP256SHA256", f"{zone}."], cwd=self.directory,
                             capture_output=True, text=True, check=True, timeout=30).stdout.strip()
        return ksk, zsk

    def _sign(self, zone: str, text: str, *, expired: bool = False) -> tuple[Path, str]:
        """Sign ``text`` as ``zone``; the signed file and the KSK's DS line."""
        source = self.directory / f"{zone}.zone"
        source.write_text(text)
        ksk, zsk = self._keygen(zone)
        now = datetime.datetime.now(datetime.UTC)
        if expired:
            inception, expiration = now - datetime.timedelta(days=60), now - datetime.timedelta(
                days=30)
        else:
            inception, expiration = now - datetime.timedelta(hours=1), now + datetime.timedelta(
                days=30)
        signed = self.directory / f"{zone}.signed"
        subprocess.run([_binary("ldns-signzone"), "-o", f"{zone}.", "-f", str(signed),
                        "-i", _stamp(inception), "-e", _stamp(expiration), str(source), ksk,
                        zsk], cwd=self.directory, check=True, capture_output=True, timeout=60)
        ds = (self.directory / f"{ksk}.ds").read_text().strip()
        return signed, ds

    def _tlsrpt_lines(self) -> list[str]:
        """TLS-RPT records: a policy domain reporting to a mailbox and an HTTPS
        endpoint, one whose endpoint fails on demand, and the reporting domain's
        DKIM key (``s=tlsrpt``, RFC 8460 section 3), made here."""
        import base64

        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.dkim_key = self.directory / "dkim.pem"
        self.dkim_key.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption()))
        public = base64.b64encode(key.public_key().public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
        text = f"v=DKIM1; k=rsa; s=tlsrpt; p={public}"
        chunks = " ".join(f'"{text[i:i + 200]}"' for i in range(0, len(text), 200))
        return [
            "rpt 300 IN MX 10 mx.rpt", "mx.rpt 300 IN A 127.0.0.1",
            f'_smtp._tls.rpt 300 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@{TLSRPT_MAIL_DOMAIN},'
            f'https://{TLSRPT_HTTPS_HOST}/v1/tlsrpt"',
            f'_smtp._tls.rptretry 300 IN TXT "v=TLSRPTv1; rua=https://{TLSRPT_HTTPS_HOST}'
            '/v1/flaky"',
            f'_smtp._tls.rptmail 300 IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@{TLSRPT_MAIL_DOMAIN}"',
            # A stranger's odd record: an unknown scheme, a bad address, a repeat.
            '_smtp._tls.rptodd 300 IN TXT "v=TLSRPTv1; rua=ftp://x.test/r,mailto:a%20b@x.test,'
            f'https://{TLSRPT_HTTPS_HOST}/v1/odd,https://{TLSRPT_HTTPS_HOST}/v1/odd"',
            # Two records: nobody to report to.
            '_smtp._tls.rpttwo 300 IN TXT "v=TLSRPTv1; rua=mailto:a@x.test"',
            '_smtp._tls.rpttwo 300 IN TXT "v=TLSRPTv1; rua=mailto:b@x.test"',
            "rcv 300 IN MX 10 mx.rcv", "mx.rcv 300 IN A 127.0.0.1",
            "reports 300 IN A 127.0.0.1",
            f"tlsrpt._domainkey.sender 300 IN TXT {chunks}",
        ]

    def build(self) -> None:
        """Sign the children, then the parent with their DS records, and write configs."""
        from cryptography.hazmat.primitives import serialization

        from certs_support import make_self_signed
        from tlspolicy import TlsaRecord

        self.e2e_cert = make_self_signed(self.directory / "e2e", "mx.e2e.secure.test")
        der = self.e2e_cert.cert.public_bytes(serialization.Encoding.DER)
        tlsa = TlsaRecord.for_certificate(der, 3, 1, 1).to_text()
        e2e = ("e2e 300 IN MX 10 mx.e2e", "mx.e2e 300 IN A 127.0.0.1",
               f"_25._tcp.mx.e2e 300 IN TLSA {tlsa}", *_generated_lines(generated_shapes()),
               *self._tlsrpt_lines())
        secure, secure_ds = self._sign("secure.test", _secure_zone(e2e))
        bogus, bogus_ds = self._sign("bogus.test", _bogus_zone())
        expired, expired_ds = self._sign("expired.test", _expired_zone(), expired=True)
        # Bogus: change signed RRsets after signing, keeping their signatures.
        text = bogus.read_text()
        text = text.replace(f"3 1 1 {TLSA_HEX}", "3 1 1 " + "00" * 32)
        lines = []
        for line in text.splitlines():
            if line.startswith("badmx.bogus.test.") and "\tMX\t" in line:
                line = line.replace("mx.bogus.test.", "evil.bogus.test.")
            lines.append(line)
        bogus.write_text("\n".join(lines) + "\n")
        insecure = self.directory / "insecure.test.zone"
        insecure.write_text(_insecure_zone())
        parent_lines = ["$ORIGIN test.", _SOA, "ns 300 IN A 127.0.0.1"]
        for child, ds in (("secure", secure_ds), ("bogus", bogus_ds), ("expired", expired_ds)):
            parent_lines += [f"{child} 300 IN NS ns.test.", ds]
        parent_lines.append("insecure 300 IN NS ns.test.")
        parent, parent_ds = self._sign("test", "\n".join(parent_lines) + "\n")
        (self.directory / "anchor.ds").write_text(parent_ds + "\n")
        zones = {"test": parent, "secure.test": secure, "bogus.test": bogus,
                 "expired.test": expired, "insecure.test": insecure}
        nsd_conf = [
            "server:", f"  ip-address: 127.0.0.1@{self.nsd_port}", '  username: ""',
            '  chroot: ""', '  database: ""', f'  zonesdir: "{self.directory}"',
            f'  pidfile: "{self.directory}/nsd.pid"', f'  logfile: "{self.directory}/nsd.log"',
            f'  xfrdfile: "{self.directory}/xfrd.state"',
            f'  zonelistfile: "{self.directory}/zone.list"', "  server-count: 1",
            "  verbosity: 0", "remote-control:", "  control-enable: no",
        ]
        for name, path in zones.items():
            nsd_conf += ["zone:", f"  name: {name}.", f'  zonefile: "{path}"']
        (self.directory / "nsd.conf").write_text("\n".join(nsd_conf) + "\n")
        unbound_conf = [
            "server:", "  interface: 127.0.0.1", f"  port: {self.port}", '  username: ""',
            '  chroot: ""', f'  directory: "{self.directory}"',
            f'  pidfile: "{self.directory}/unbound.pid"',
            f'  logfile: "{self.directory}/unbound.log"', "  use-syslog: no", "  verbosity: 0",
            "  num-threads: 1", "  do-ip6: no", '  module-config: "validator iterator"',
            f'  trust-anchor-file: "{self.directory}/anchor.ds"',
            "  do-not-query-localhost: no", '  local-zone: "test." transparent',
            '  local-zone: "." refuse', "  outgoing-interface: 127.0.0.1",
            "  val-bogus-ttl: 5", "  ede: yes", "  log-queries: yes", "  qname-minimisation: no",
            "  so-reuseport: no", "remote-control:", "  control-enable: no",
        ]
        for name in zones:
            unbound_conf += ["stub-zone:", f'  name: "{name}."',
                             f"  stub-addr: 127.0.0.1@{self.nsd_port}"]
        (self.directory / "unbound.conf").write_text("\n".join(unbound_conf) + "\n")

    def start(self) -> None:
        self.nsd = subprocess.Popen([_binary("nsd"), "-d", "-c", str(self.directory / "nsd.conf")],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_tcp(self.nsd_port, self.nsd, "nsd")
        self.start_unbound()

    def start_unbound(self) -> None:
        self.unbound = subprocess.Popen(
            [_binary("unbound"), "-d", "-c", str(self.directory / "unbound.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_tcp(self.port, self.unbound, "unbound")

    @contextlib.contextmanager
    def private_resolver(self) -> Iterator[int]:
        """A second validating Unbound over the same zones, on a port of its own and with
        an empty cache, for the length of a ``with`` block; yields its port.

        For a test that counts on when an answer enters the resolver's cache: the
        session's Unbound has cached whatever the tests before asked (denials included,
        which also answer for their neighbours), and counts those TTLs down."""
        port = free_port()
        name = f"unbound-{port}"
        text = (self.directory / "unbound.conf").read_text()
        for old, new in ((f"  port: {self.port}\n", f"  port: {port}\n"),
                         (f"{self.directory}/unbound.pid", f"{self.directory}/{name}.pid"),
                         (f"{self.directory}/unbound.log", f"{self.directory}/{name}.log")):
            assert old in text, old
            text = text.replace(old, new)
        conf = self.directory / f"{name}.conf"
        conf.write_text(text)
        process = subprocess.Popen([_binary("unbound"), "-d", "-c", str(conf)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_tcp(port, process, "unbound")
            yield port
        finally:
            _stop(process)

    def queries(self, name: str, rdtype: str) -> int:
        """How many queries for (name, type) clients sent Unbound (its query log)."""
        wanted = f" {name.rstrip('.')}. {rdtype} IN"
        try:
            text = (self.directory / "unbound.log").read_text(errors="replace")
        except FileNotFoundError:
            return 0
        return sum(1 for line in text.splitlines() if line.endswith(wanted))

    def stop_unbound(self) -> None:
        if self.unbound is not None:
            _stop(self.unbound)
            self.unbound = None

    def stop(self) -> None:
        self.stop_unbound()
        if self.nsd is not None:
            _stop(self.nsd)
            self.nsd = None
            # NSD's forked workers may outlive the main process for a moment: wait until
            # none holds the port any more (bounded), not for a fixed time.
            _wait_port_free(self.nsd_port, "nsd's workers")


@pytest.fixture(scope="session")
def dns_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsLab]:
    """Signed zones under ``test.`` on NSD, validated by Unbound, for the session."""
    for name in ("nsd", "unbound", "ldns-keygen", "ldns-signzone"):
        _binary(name)
    lab = DnsLab(tmp_path_factory.mktemp("dns"), free_port(), free_port())
    lab.build()
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()


# ------------------------------------------------------------------------ HTTPS

#: Policy hosts served by the HTTPS lab (``mta-sts.<domain>``).
STS_DOMAINS = (
    *(f"{case}.secure.test" for case in STS_CASES),
    "secure.test", "split.secure.test", "cnametxt.secure.test", "shortttl.secure.test",
    "insecure.test", "relay.secure.test",
)

#: How many ``N.fleet.secure.test`` policy domains the HTTPS lab has certificates for.
FLEET_SIZE = 1000

GOOD_POLICY = b"version: STSv1\r\nmode: enforce\r\nmx: *.ok.secure.test\r\nmax_age: 86400\r\n"


@attrs.define
class PolicyAnswer:
    """What the HTTPS lab answers for one policy host."""

    body: bytes = GOOD_POLICY
    status: int = 200
    content_type: str = "text/plain"
    location: str | None = None
    #: Seconds to wait before the headers.
    delay: float = 0.0
    #: Seconds to wait between body bytes (a slow trickle), 0 for one write.
    trickle: float = 0.0
    #: Send a Content-Length header (off: the body ends when the connection closes).
    content_length: bool = True


def _policy(mode: str, mx: str, max_age: int = 86400) -> bytes:
    return f"version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: {max_age}\r\n".encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _TlsServer
    protocol_version = "HTTP/1.0"

    def setup(self) -> None:
        self.request.settimeout(10)
        try:
            self.request.do_handshake()
        except (OSError, ssl.SSLError):
            self.handshake_failed = True
        else:
            self.handshake_failed = False
        super().setup()

    def handle(self) -> None:
        if not self.handshake_failed:
            with contextlib.suppress(OSError, ssl.SSLError):
                super().handle()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").split(":")[0].lower()
        lab = self.server.lab
        with lab.lock:
            lab.requests.append((host, self.path))
            answer = lab.answers.get(host, PolicyAnswer())
        if self.path != "/.well-known/mta-sts.txt":
            answer = PolicyAnswer(body=b"not here", status=404)
        if answer.delay:
            time.sleep(answer.delay)
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        if answer.location:
            self.send_header("Location", answer.location)
        if answer.content_length:
            self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if answer.trickle:
            for index in range(len(answer.body)):
                self.wfile.write(answer.body[index:index + 1])
                self.wfile.flush()
                if lab.closing.wait(answer.trickle):
                    return
        else:
            self.wfile.write(answer.body)


    def do_POST(self) -> None:
        # TLS-RPT reports (RFC 8460 section 5.3): stored, answered per path.
        host = (self.headers.get("Host") or "").split(":")[0].lower()
        lab = self.server.lab
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, 16 * 1024 * 1024))
        with lab.lock:
            status = lab.post_status.get(self.path, 200)
            lab.posts.append(Post(host, self.path, dict(self.headers.items()), body, status))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@attrs.frozen
class Post:
    """One POST the HTTPS lab received, and the status it answered."""

    host: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int


class _TlsServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog is 5: a fleet of clients connecting at once
    # (the fleet tests open over a hundred connections together) overflows it, and the
    # kernel drops their SYNs; the clients' retransmissions (1 s, then 3 s, 7 s...) then
    # outlast their timeouts whenever the accept loop is slow, as on a loaded machine.
    # A real policy host's backlog is in the hundreds.
    request_queue_size = 1024
    lab: HttpsLab

    def get_request(self) -> tuple[socket.socket, object]:
        sock, address = super().get_request()
        # The handshake runs in the worker thread (setup), not in the accept loop.
        wrapped = self.lab.context.wrap_socket(sock, server_side=True,
                                               do_handshake_on_connect=False)
        return wrapped, address


@attrs.define
class HttpsLab:
    """An HTTPS server on 127.0.0.1 for ``mta-sts.<domain>`` hosts; ``ca_file`` trusts it."""

    directory: Path
    port: int = 0
    ca_file: Path | None = None
    answers: dict[str, PolicyAnswer] = attrs.Factory(dict)
    requests: list[tuple[str, str]] = attrs.Factory(list)
    #: TLS-RPT POSTs received, and the status to answer per path (200 otherwise).
    posts: list[Post] = attrs.Factory(list)
    post_status: dict[str, int] = attrs.Factory(dict)
    lock: threading.Lock = attrs.Factory(threading.Lock)
    closing: threading.Event = attrs.Factory(threading.Event)
    context: ssl.SSLContext | None = None
    server: _TlsServer | None = None
    thread: threading.Thread | None = None

    def fetches(self, domain: str) -> int:
        """How many requests the policy host of ``domain`` got."""
        with self.lock:
            return sum(1 for host, _ in self.requests if host == f"mta-sts.{domain}")

    def set(self, domain: str, answer: PolicyAnswer) -> None:
        with self.lock:
            self.answers[f"mta-sts.{domain}"] = answer

    def reset(self) -> None:
        with self.lock:
            self.answers.clear()
            self.requests.clear()
        self.defaults()

    def defaults(self) -> None:
        """Each case domain's usual answer (tests change them with :meth:`set`)."""
        for domain in STS_DOMAINS:
            case = domain.split(".")[0]
            answer = PolicyAnswer(_policy("enforce", f"*.{domain}"))
            if case == "testing":
                answer = PolicyAnswer(_policy("testing", f"*.{domain}"))
            elif case == "modenone":
                answer = PolicyAnswer(b"version: STSv1\nmode: none\nmax_age: 86400\n")
            elif case == "redirect":
                answer = PolicyAnswer(b"", status=301,
                                      location=f"https://mta-sts.ok.secure.test:{self.port}/"
                                      ".well-known/mta-sts.txt")
            elif case == "mediatype":
                answer = PolicyAnswer(_policy("enforce", f"*.{domain}"), content_type="text/html")
            elif case == "mediaparams":
                answer = PolicyAnswer(_policy("enforce", f"*.{domain}"),
                                      content_type="Text/Plain; charset=utf-8")
            elif case == "oversized":
                answer = PolicyAnswer(_policy("enforce", f"*.{domain}") + b"x: y\n" * 20000,
                                      content_length=False)
            elif case == "slow":
                answer = PolicyAnswer(_policy("enforce", f"*.{domain}"), trickle=0.5)
            elif case == "notfound":
                answer = PolicyAnswer(b"gone", status=404)
            elif case == "invalid":
                answer = PolicyAnswer(b"version: STSv1\nmode: enforce\nmax_age: 86400\n")
            elif case == "coldslow":
                answer = PolicyAnswer(_policy("enforce", f"*.{domain}"), delay=2.0)
            elif domain == "relay.secure.test":
                # A smart host whose own policy permits it (its DANE answer applies).
                answer = PolicyAnswer(_policy("enforce", domain))
            elif case == "danestray":
                answer = PolicyAnswer(_policy("enforce", "mx.elsewhere.test"))
            elif case == "danesplit":
                answer = PolicyAnswer(_policy("enforce", f"mx.{domain}"))
            elif domain == "cnametxt.secure.test" or domain == "split.secure.test":
                answer = PolicyAnswer(_policy("testing", f"*.{domain}"))
            with self.lock:
                self.answers[f"mta-sts.{domain}"] = answer

    def start(self) -> None:
        from certs_support import TestCA, make_self_signed

        ca = TestCA(self.directory / "ca", name="tlspolicy discovery test CA")
        self.ca_file = ca.cert_path
        special = {"wrongname", "expiredcert", "untrusted"}
        names = [f"mta-sts.{d}" for d in STS_DOMAINS if d.split(".")[0] not in special]
        names += [f"mta-sts.{n}.fleet.secure.test" for n in range(FLEET_SIZE)]
        names.append(TLSRPT_HTTPS_HOST)
        good = ca.issue(names, stem="policy-hosts")

        def context_for(cert_chain: Path, key: Path) -> ssl.SSLContext:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert_chain, key)
            return context

        contexts = {
            "mta-sts.wrongname.secure.test": ca.wrong_name("mta-sts.wrongname.secure.test",
                                                           stem="wrongname"),
            "mta-sts.expiredcert.secure.test": ca.expired("mta-sts.expiredcert.secure.test",
                                                          stem="expired"),
            "mta-sts.untrusted.secure.test": make_self_signed(
                self.directory / "self", "mta-sts.untrusted.secure.test"),
        }
        by_name = {name: context_for(files.chain_path, files.key_path)
                   for name, files in contexts.items()}
        default = context_for(good.chain_path, good.key_path)

        def choose(sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
            if name is not None and name.lower() in by_name:
                sock.context = by_name[name.lower()]

        default.sni_callback = choose  # type: ignore[assignment]
        self.context = default
        server = _TlsServer(("127.0.0.1", 0), _Handler)
        server.lab = self
        self.server = server
        self.port = server.server_address[1]
        self.defaults()
        self.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.closing.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture(scope="session")
def https_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsLab]:
    """The MTA-STS policy server for the session (answers reset per test by the tests)."""
    lab = HttpsLab(tmp_path_factory.mktemp("https"))
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()


# --------------------------------------------------- a resolver that can fail on demand


@attrs.define
class DnsRelay:
    """A DNS relay on 127.0.0.1 (UDP and TCP on one port) in front of the lab's Unbound,
    for outage tests that must not disturb the shared resolver.

    ``mode`` is read per query: ``"forward"`` passes queries and answers through,
    ``"silent"`` drops every query (a resolver that never answers, as a dead or
    firewalled one does: no REFUSED, no ICMP), ``"no-ad"`` forwards but clears the AD bit
    of every answer (a resolver that does not validate), ``"servfail"`` answers every
    query SERVFAIL itself (a resolver whose upstreams are all down; no upstream is
    needed for it).  ``ttl_cap`` lowers the TTL of
    every record in the answers passed through (the validation was Unbound's, so this
    changes no AD bit), so a test sees DNS answers expire in seconds; with
    ``ttl_cap_types`` only the answers to queries of those types (others keep the zone's
    TTLs, so a test can let exactly one kind of answer expire).
    """

    upstream_port: int
    port: int = 0
    mode: str = "forward"
    ttl_cap: int | None = None
    ttl_cap_types: frozenset[str] | None = None
    #: Queries received, per mode they met (a test waits on these, never on a clock).
    received: dict[str, int] = attrs.Factory(dict)
    #: Every query received: (name without the final dot, type, mode it met).
    seen: list[tuple[str, str, str]] = attrs.Factory(list)
    lock: threading.Lock = attrs.Factory(threading.Lock)
    closing: threading.Event = attrs.Factory(threading.Event)
    _udp: socket.socket | None = None
    _tcp: socket.socket | None = None
    _threads: list[threading.Thread] = attrs.Factory(list)

    def set_mode(self, mode: str) -> None:
        if mode not in ("forward", "silent", "no-ad", "servfail"):
            raise ValueError(f"unknown relay mode {mode!r}")
        with self.lock:
            self.mode = mode

    def count(self, mode: str) -> int:
        with self.lock:
            return self.received.get(mode, 0)

    def asked(self, name: str, rdtype: str | None = None, mode: str | None = None) -> int:
        """How many queries for (name, type) arrived (any type for ``None``), in
        ``mode`` or any."""
        wanted = name.rstrip(".").lower()
        with self.lock:
            return sum(1 for n, t, m in self.seen
                       if n == wanted and rdtype in (None, t) and mode in (None, m))

    def _note(self, query: bytes) -> str:
        import dns.message
        import dns.rdatatype

        try:
            question = dns.message.from_wire(query).question[0]
            name = question.name.to_text().rstrip(".").lower()
            rdtype = dns.rdatatype.to_text(question.rdtype)
        except Exception:
            name, rdtype = "", ""
        with self.lock:
            mode = self.mode
            self.received[mode] = self.received.get(mode, 0) + 1
            self.seen.append((name, rdtype, mode))
            return mode

    def _rewrite(self, wire: bytes, mode: str) -> bytes:
        if mode != "no-ad" and self.ttl_cap is None:
            return wire
        import dns.flags
        import dns.message
        import dns.rdatatype

        try:
            message = dns.message.from_wire(wire)
        except Exception:  # pass anything odd through untouched
            return wire
        if mode == "no-ad":
            message.flags &= ~dns.flags.AD
        if self.ttl_cap is not None and (
                self.ttl_cap_types is None or any(
                    dns.rdatatype.to_text(q.rdtype) in self.ttl_cap_types
                    for q in message.question)):
            for section in (message.answer, message.authority, message.additional):
                for rrset in section:
                    rrset.ttl = min(rrset.ttl, self.ttl_cap)
        return message.to_wire(max_size=65535)

    @staticmethod
    def _servfail(query: bytes) -> bytes | None:
        import dns.message
        import dns.rcode

        try:
            response = dns.message.make_response(dns.message.from_wire(query))
        except Exception:
            return None
        response.set_rcode(dns.rcode.SERVFAIL)
        return response.to_wire()

    def _ask_udp(self, query: bytes) -> bytes | None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as upstream:
            upstream.settimeout(5.0)
            try:
                upstream.sendto(query, ("127.0.0.1", self.upstream_port))
                return upstream.recv(65535)
            except OSError:
                return None

    def _serve_udp_one(self, query: bytes, client: Any, mode: str) -> None:
        answer = self._ask_udp(query)
        if answer is not None and self._udp is not None and not self.closing.is_set():
            with contextlib.suppress(OSError):
                self._udp.sendto(self._rewrite(answer, mode), client)

    def _udp_loop(self) -> None:
        assert self._udp is not None
        while not self.closing.is_set():
            try:
                query, client = self._udp.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            mode = self._note(query)
            if mode == "silent":
                continue
            if mode == "servfail":
                failed = self._servfail(query)
                if failed is not None:
                    with contextlib.suppress(OSError):
                        self._udp.sendto(failed, client)
                continue
            threading.Thread(target=self._serve_udp_one, args=(query, client, mode),
                             daemon=True).start()

    @staticmethod
    def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            try:
                chunk = sock.recv(size - len(data))
            except TimeoutError:
                continue
            except OSError:
                return None
            if not chunk:
                return None
            data += chunk
        return data

    def _serve_tcp(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(0.2)
            while not self.closing.is_set():
                head = self._read_exactly(conn, 2)
                if head is None:
                    return
                query = self._read_exactly(conn, int.from_bytes(head, "big"))
                if query is None:
                    return
                mode = self._note(query)
                if mode == "silent":
                    # Hold the connection open without a word until the client gives up.
                    while not self.closing.is_set():
                        try:
                            if not conn.recv(1024):
                                return
                        except TimeoutError:
                            continue
                        except OSError:
                            return
                    return
                if mode == "servfail":
                    failed = self._servfail(query)
                    if failed is None:
                        return
                    with contextlib.suppress(OSError):
                        conn.sendall(len(failed).to_bytes(2, "big") + failed)
                    continue
                try:
                    with socket.create_connection(("127.0.0.1", self.upstream_port),
                                                  5.0) as upstream:
                        upstream.sendall(head + query)
                        upstream.settimeout(5.0)
                        size = self._read_exactly(upstream, 2)
                        answer = None if size is None else self._read_exactly(
                            upstream, int.from_bytes(size, "big"))
                except OSError:
                    return
                if answer is None:
                    return
                answer = self._rewrite(answer, mode)
                with contextlib.suppress(OSError):
                    conn.sendall(len(answer).to_bytes(2, "big") + answer)

    def _tcp_loop(self) -> None:
        assert self._tcp is not None
        while not self.closing.is_set():
            try:
                conn, _ = self._tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve_tcp, args=(conn,), daemon=True).start()

    def start(self) -> None:
        for _ in range(50):
            port = self.port or free_port()
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                udp.bind(("127.0.0.1", port))
                tcp.bind(("127.0.0.1", port))
            except OSError:
                udp.close()
                tcp.close()
                if self.port:
                    raise
                continue
            break
        else:
            raise RuntimeError("no free port for the DNS relay")
        tcp.listen(64)
        udp.settimeout(0.2)
        tcp.settimeout(0.2)
        self._udp, self._tcp, self.port = udp, tcp, port
        for target in (self._udp_loop, self._tcp_loop):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self.closing.set()
        for thread in self._threads:
            thread.join(5)
        for sock in (self._udp, self._tcp):
            if sock is not None:
                sock.close()
        self._udp = self._tcp = None


@contextlib.contextmanager
def dns_relay(lab: DnsLab, *, mode: str = "forward", ttl_cap: int | None = None,
              ttl_cap_types: frozenset[str] | None = None) -> Iterator[DnsRelay]:
    """A :class:`DnsRelay` in front of ``lab``'s Unbound for one test, stopped after it."""
    relay = DnsRelay(lab.port, ttl_cap=ttl_cap, ttl_cap_types=ttl_cap_types)
    relay.set_mode(mode)
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()


class UdpResponder(asyncio.DatagramProtocol):
    """A DNS server of one test on a loopback UDP port (``loop.create_datagram_endpoint(
    lambda: UdpResponder(answer), local_addr=...)``): ``answer(query)`` is the reply to
    send, or ``None`` to stay silent."""

    def __init__(self, answer: Callable[[bytes], bytes | None]) -> None:
        self.answer = answer
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        reply = self.answer(data)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)
