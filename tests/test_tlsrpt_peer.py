"""Differential test: tlspolicy's TLS-RPT reports against sys4's tlsrpt-reporter 0.6.0.

One set of delivery events (successes and every failure type; sts, tlsa and
no-policy-found blocks; two policy domains, two days, several MX hosts) goes
through tlspolicy's recording (``BufferedSink`` into SQLite) and
``Reporter.build`` (what ``tlspolicy report build`` runs), and, as datagrams in
the format tlsrpt-reporter 0.6.0's collectd reads on its unix socket, through
the peer's own collectd, fetcher and reportd, installed from PyPI into a virtual
environment of its own.  reportd mails each report through a ``sendmail_script``
that writes the message to a file; nothing leaves the machine (the ``rua``
comes from the datagram, no DNS is asked).  The two reports of each (day,
domain) are then compared field by field after normalising what may differ
(report ids, ordering), and every difference must be one of ``KNOWN`` below,
each explained in docs/tlsrpt.md ("Compared with tlsrpt-reporter").

The peer files a datagram under the UTC day it arrives and reports yesterday, so
its programs run through ``tlsrpt_peer_launch.py``, which shifts their clock by
an offset the test writes in a file.  The peer is GPL: only its documented
behaviour and data formats are used here, none of its code.
"""

from __future__ import annotations

import asyncio
import calendar
import email
import email.policy
import gzip
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from test_tlsrpt_reports import check_report
from tlspolicy.policies.tlsrpt import PolicyType, SessionResult
from tlspolicy.reporting import DAY, BufferedSink, Reporter, ReportingConfig
from tlspolicy.stores import SqliteStore

pytestmark = [pytest.mark.slow, pytest.mark.network, pytest.mark.timeout(300)]

PEER = "tlsrpt-reporter==0.6.0"
LAUNCH = Path(__file__).parent / "tlsrpt_peer_launch.py"
SUBMITTER = "sender.test"
CONTACT = f"tlsrpt@{SUBMITTER}"
ORGANIZATION = "Differential Test Mail"
RECORD = "v=TLSRPTv1; rua=mailto:tlsrpt@{domain}"
# Two recent past days: recorded counts expire some days after their day (real time).
DAYS = tuple(time.strftime("%Y-%m-%d", time.gmtime(time.time() - n * 86400)) for n in (3, 2))
ALPHA, BETA = "alpha.test", "beta.test"
SENDER_IP, SENDER_IP6 = "198.51.100.7", "2001:db8:1::7"

# The peer's collectd protocol (version "1") numbers policy and result types.
POLICY_CODES = {PolicyType.TLSA: 1, PolicyType.STS: 2, PolicyType.NO_POLICY_FOUND: 9}
RESULT_CODES = {
    "starttls-not-supported": 201, "certificate-host-mismatch": 202,
    "certificate-not-trusted": 203, "certificate-expired": 204, "validation-failure": 205,
    "sts-policy-fetch-error": 301, "sts-policy-invalid": 302, "sts-webpki-invalid": 303,
    "tlsa-invalid": 304, "dnssec-invalid": 305, "dane-required": 306,
}
DETAIL_KEYS = {"sending_mta_ip": "s", "receiving_ip": "r", "receiving_mx_hostname": "n",
               "receiving_mx_helo": "h", "failure_reason_code": "f",
               "additional_information": "a"}

#: Every field where the two reports may differ, with the reason (docs/tlsrpt.md).
KNOWN = {
    "date-range.end-datetime":
        "tlspolicy ends the day at the next midnight, tlsrpt-reporter at 23:59:59 of the day",
    "filename.end":
        "the section 5.1 end-timestamp follows the date range: midnight versus 23:59:59",
}


def _sts(domain: str, mx: str) -> dict[str, Any]:
    return {"policy_type": PolicyType.STS, "policy_domain": domain,
            "policy_strings": ("version: STSv1", "mode: enforce", f"mx: {mx}",
                               f"mx: *.{domain}", "max_age: 604800"),
            "mx_hosts": (mx, f"*.{domain}")}


def _tlsa(domain: str, mx: str, *, records: bool = True) -> dict[str, Any]:
    strings = ("3 1 1 " + "ab" * 32,) if records else ()
    return {"policy_type": PolicyType.TLSA, "policy_domain": domain,
            "policy_strings": strings, "mx_hosts": (mx,)}


def _none(domain: str) -> dict[str, Any]:
    return {"policy_type": PolicyType.NO_POLICY_FOUND, "policy_domain": domain}


def _fail(policy: dict[str, Any], result_type: str, mx: str | None, ip: str | None,
          reason: str, sender: str = SENDER_IP) -> SessionResult:
    return SessionResult(**policy, result_type=result_type, sending_mta_ip=sender,
                         receiving_mx_hostname=mx, receiving_ip=ip,
                         failure_reason_code=reason)


def events() -> list[tuple[str, SessionResult, int]]:
    """(day, one session's result, how many such sessions)."""
    a_sts, a_tlsa = _sts(ALPHA, f"mx1.{ALPHA}"), _tlsa(ALPHA, f"mx2.{ALPHA}")
    a_bogus, a_none = _tlsa(ALPHA, f"mx3.{ALPHA}", records=False), _none(ALPHA)
    b_none, b_sts, b_tlsa = _none(BETA), _sts(BETA, f"mx.{BETA}"), _tlsa(BETA, f"mx.{BETA}")
    d1, d2 = DAYS
    return [
        (d1, SessionResult(**a_sts), 5),
        (d1, _fail(a_sts, "certificate-expired", f"mx1.{ALPHA}", "192.0.2.25",
                   "SSL certificate expired or not yet valid"), 2),
        (d1, _fail(a_sts, "certificate-host-mismatch", f"mx1.{ALPHA}", "192.0.2.25",
                   "certificate name does not match"), 1),
        (d1, _fail(a_sts, "validation-failure", f"mx9.{BETA}", None,
                   "MX host not permitted by MTA-STS policy"), 1),
        (d1, _fail(a_sts, "sts-webpki-invalid", None, None,
                   "MTA-STS policy host certificate not trusted"), 1),
        (d1, SessionResult(**a_tlsa), 3),
        (d1, _fail(a_tlsa, "tlsa-invalid", f"mx2.{ALPHA}", "2001:db8::25",
                   "certificate does not match any TLSA record", SENDER_IP6), 2),
        (d1, _fail(a_tlsa, "dane-required", f"mx2.{ALPHA}", "192.0.2.26",
                   "STARTTLS not offered, DANE requires TLS"), 1),
        (d1, _fail(a_bogus, "dnssec-invalid", f"mx3.{ALPHA}", None,
                   "TLSA lookup bogus"), 1),
        (d1, SessionResult(**a_none), 4),
        (d1, _fail(a_none, "starttls-not-supported", f"mx4.{ALPHA}", "192.0.2.27",
                   "STARTTLS not offered"), 2),
        (d1, _fail(a_none, "sts-policy-invalid", None, None, "MTA-STS policy invalid"), 1),
        (d1, _fail(a_none, "sts-policy-fetch-error", None, None,
                   "MTA-STS policy fetch failed"), 1),
        (d1, SessionResult(**b_none), 2),
        (d1, _fail(b_none, "certificate-not-trusted", f"mx.{BETA}", "192.0.2.40",
                   "certificate not trusted"), 1),
        (d2, SessionResult(**a_sts), 3),
        (d2, _fail(a_sts, "certificate-expired", f"mx1.{ALPHA}", "192.0.2.28",
                   "SSL certificate expired or not yet valid"), 1),
        (d2, SessionResult(**b_sts), 2),
        (d2, _fail(b_sts, "validation-failure", f"mx.{BETA}", "192.0.2.40",
                   "TLS handshake failed"), 1),
        (d2, SessionResult(**b_tlsa), 1),
        (d2, SessionResult(**b_none), 1),
    ]


def datagram(result: SessionResult) -> bytes:
    """One session as a tlsrpt-reporter 0.6.0 collectd datagram (protocol version 1)."""
    policy: dict[str, Any] = {"policy-type": POLICY_CODES[result.policy_type]}
    if result.policy_strings:
        policy["policy-string"] = list(result.policy_strings)
    policy["policy-domain"] = result.policy_domain
    if result.mx_hosts:
        policy["mx-host"] = list(result.mx_hosts)
    failures = []
    if result.result_type is not None:
        detail: dict[str, Any] = {"c": RESULT_CODES[result.result_type]}
        for attr, key in DETAIL_KEYS.items():
            if getattr(result, attr) is not None:
                detail[key] = getattr(result, attr)
        failures.append(detail)
    policy.update({"f": int(bool(failures)), "t": len(failures), "failure-details": failures})
    return json.dumps({"dpv": "1", "d": result.policy_domain,
                       "pr": RECORD.format(domain=result.policy_domain),
                       "policies": [policy]}).encode()


def _epoch(day: str) -> int:
    return calendar.timegm(time.strptime(day, "%Y-%m-%d"))


def _wait(what: str, done: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"tlsrpt-reporter: {what} did not happen in {timeout:g} s")
        time.sleep(0.1)


# ------------------------------------------------------------------ tlspolicy's side


def tlspolicy_reports(tmp: Path) -> dict[tuple[str, str], tuple[dict[str, Any], str]]:
    path = tmp / "tlspolicy.sqlite3"
    config = ReportingConfig(organization_name=ORGANIZATION, contact_info=CONTACT,
                             submitter=SUBMITTER, mail_from=CONTACT)
    for day in DAYS:
        with BufferedSink(lambda: SqliteStore(path), clock=lambda day=day: _epoch(day) + 43200
                          ) as sink:
            for when, result, count in events():
                if when == day:
                    for _ in range(count):
                        sink.record(result)

    async def build() -> list[Any]:
        store = SqliteStore(path)
        try:
            made = []
            for day in DAYS:
                start = _epoch(day)
                closed = start + DAY + config.grace + 1
                reporter = Reporter(store, config, clock=lambda closed=closed: closed)
                made += await reporter.build(start)
            return made
        finally:
            await store.close()

    out = {}
    for stored in asyncio.run(build()):
        check_report(stored.report)
        day = time.strftime("%Y-%m-%d", time.gmtime(stored.start))
        out[(day, stored.domain)] = (stored.report, stored.filename)
    return out


# ------------------------------------------------------------------ the peer's side


@pytest.fixture(scope="module")
def peer_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with tlsrpt-reporter 0.6.0 from PyPI (skip if it cannot be had)."""
    venv = tmp_path_factory.mktemp("peer") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    try:
        subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                        "--quiet", "--no-deps", "--disable-pip-version-check", PEER],
                       check=True, timeout=300, capture_output=True)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        output = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"{PEER} cannot be installed here: {output.decode(errors='replace')[-300:]}")
    return python


class Peer:
    """tlsrpt-reporter's collectd and reportd in ``root``, on one shifted clock."""

    def __init__(self, python: Path, root: Path) -> None:
        self.python, self.root = python, root
        root.mkdir()
        self.clock = root / "clock"
        self.clock.write_text("0")
        # A unix socket path must be short (108 bytes): pytest's may not be.
        self.socket_dir = Path(tempfile.mkdtemp(prefix="tlsrpt-peer-"))
        self.socket = self.socket_dir / "collectd.socket"
        self.storage = root / "collectd.sqlite"
        self.mail = root / "mail"
        self.mail.mkdir()
        self.env = {**os.environ, "TLSRPT_PEER_CLOCK": str(self.clock)}
        self.processes: list[subprocess.Popen[bytes]] = []

    def at(self, moment: float) -> None:
        self.clock.write_text(repr(moment - time.time()))

    def start(self, program: str, *options: str) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{program}.out", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen([str(self.python), str(LAUNCH), program, *options],
                                   env=self.env, cwd=self.root, stdout=log, stderr=log)
        log.close()
        self.processes.append(process)
        return process

    def fetcher(self) -> str:
        # reportd splits this on blanks: pytest's temporary paths have none.
        return " ".join([str(self.python), str(LAUNCH), "fetcher",
                         f"--storage=sqlite://{self.storage}",
                         f"--logfilename={self.root / 'fetcher.log'}", "--log_level=debug"])

    def collectd(self) -> None:
        self.start("collectd", f"--storage=sqlite://{self.storage}",
                   f"--socketname={self.socket}", "--sockettimeout=1",
                   f"--logfilename={self.root / 'collectd.log'}", "--log_level=debug",
                   f"--pidfilename={self.root / 'collectd.pid'}")
        _wait("collectd listening", self.socket.exists, 30)

    def reportd(self) -> None:
        self.start("reportd", f"--dbname={self.root / 'reportd.sqlite'}",
                   f"--fetchers={self.fetcher()}",
                   f"--logfilename={self.root / 'reportd.log'}", "--log_level=debug",
                   f"--pidfilename={self.root / 'reportd.pid'}",
                   f"--organization_name={ORGANIZATION}", f"--contact_info={CONTACT}",
                   f"--sender_address={CONTACT}",
                   f"--sendmail_script=cat > \"$(mktemp {self.mail}/mail.XXXXXX)\"",
                   "--sendmail_timeout=10", "--spread_out_delivery=1",
                   "--interval_main_loop=1", "--max_retries_domainlist=100",
                   "--min_wait_domainlist=0", "--max_wait_domainlist=1",
                   "--max_retries_domaindetails=100", "--min_wait_domaindetails=0",
                   "--max_wait_domaindetails=1")

    def send(self, results: Iterator[SessionResult]) -> int:
        sent = 0
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
            for result in results:
                client.sendto(datagram(result), str(self.socket))
                sent += 1
        return sent

    def stored_sessions(self, db: Path, day: str) -> int:
        if not db.exists():
            return 0
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            try:
                [(total,)] = con.execute("SELECT sum(cntrtotal) FROM finalresults WHERE day=?",
                                         (day,)).fetchall()
            except sqlite3.OperationalError:
                return 0
        return int(total or 0)

    def mails(self) -> list[Path]:
        return sorted(p for p in self.mail.iterdir() if p.stat().st_size > 0)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        shutil.rmtree(self.socket_dir, ignore_errors=True)


def _complete(path: Path) -> bool:
    text = path.read_bytes()
    return text.rstrip().endswith(b"--")


def peer_reports(python: Path, root: Path) -> dict[tuple[str, str], tuple[dict[str, Any], str,
                                                                           EmailMessage]]:
    peer = Peer(python, root)
    try:
        d1, d2 = DAYS
        peer.at(_epoch(d1) + 43200)
        peer.collectd()
        for day in DAYS:
            peer.at(_epoch(day) + 43200)
            expected = peer.send(r for when, r, n in events() if when == day for _ in range(n))
            _wait(f"collectd storing {day}",
                  lambda day=day, n=expected: peer.stored_sessions(peer.storage, day) == n)
        # The next day: collectd rolls its database over, reportd reports d2's day before.
        peer.at(_epoch(d2) + 60)
        peer.reportd()
        _wait(f"reports of {d1} mailed", lambda: len(peer.mails()) == 2)
        peer.at(_epoch(d2) + DAY + 60)
        _wait(f"reports of {d2} mailed", lambda: len(peer.mails()) == 4)
        _wait("mails written", lambda: all(_complete(p) for p in peer.mails()), 10)
    finally:
        peer.stop()
    out = {}
    for path in peer.mails():
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        [part] = [p for p in message.walk() if p.get_content_type() == "application/tlsrpt+gzip"]
        report = json.loads(gzip.decompress(part.get_payload(decode=True)))
        check_report(report)
        out[(report["date-range"]["start-datetime"][:10], message["TLS-Report-Domain"])] = (
            report, part.get_filename() or "", message)
    return out


# ------------------------------------------------------------------ comparison


def _normal(report: dict[str, Any]) -> dict[str, Any]:
    """A report with its order and report-id normalised away (compared on their own)."""
    def detail_key(detail: dict[str, Any]) -> str:
        return json.dumps(detail, sort_keys=True)

    policies = []
    for block in report["policies"]:
        block = dict(block)
        block["failure-details"] = sorted(block.get("failure-details", []), key=detail_key)
        policies.append(block)
    policies.sort(key=lambda b: json.dumps(b["policy"], sort_keys=True))
    return {**report, "report-id": "(normalised)", "policies": policies}


def differences(ours: dict[str, Any], theirs: dict[str, Any], prefix: str = ""
                ) -> dict[str, tuple[Any, Any]]:
    """Field path -> (ours, theirs) for every leaf that differs."""
    out: dict[str, tuple[Any, Any]] = {}
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in dict.fromkeys([*ours, *theirs]):
            out.update(differences(ours.get(key), theirs.get(key), f"{prefix}{key}."))
    elif isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        for index, (mine, peer) in enumerate(zip(ours, theirs, strict=True)):
            out.update(differences(mine, peer, f"{prefix}{index}."))
    elif ours != theirs:
        out[prefix.rstrip(".")] = (ours, theirs)
    return out


def _filename_fields(name: str) -> dict[str, str]:
    submitter, domain, begin, end, *unique = name.removesuffix(".json.gz").split("!")
    return {"submitter": submitter, "domain": domain, "begin": begin, "end": end,
            "unique": "!".join(unique)}


def test_datagram_format() -> None:
    result = _fail(_tlsa(ALPHA, f"mx2.{ALPHA}"), "tlsa-invalid", f"mx2.{ALPHA}", "192.0.2.1",
                   "no TLSA record matches")
    assert json.loads(datagram(result)) == {
        "dpv": "1", "d": ALPHA, "pr": f"v=TLSRPTv1; rua=mailto:tlsrpt@{ALPHA}",
        "policies": [{"policy-type": 1, "policy-string": ["3 1 1 " + "ab" * 32],
                      "policy-domain": ALPHA, "mx-host": [f"mx2.{ALPHA}"], "f": 1, "t": 1,
                      "failure-details": [{"c": 304, "s": SENDER_IP, "r": "192.0.2.1",
                                           "n": f"mx2.{ALPHA}",
                                           "f": "no TLSA record matches"}]}]}
    assert set(RESULT_CODES) == {
        "starttls-not-supported", "certificate-host-mismatch", "certificate-expired",
        "certificate-not-trusted", "validation-failure", "tlsa-invalid", "dnssec-invalid",
        "dane-required", "sts-policy-fetch-error", "sts-policy-invalid", "sts-webpki-invalid"}


def test_reports_match_tlsrpt_reporter(peer_python: Path, tmp_path: Path) -> None:
    ours = tlspolicy_reports(tmp_path)
    theirs = peer_reports(peer_python, tmp_path / "peer")
    assert sorted(ours) == sorted(theirs) == sorted(
        {(day, domain) for day, result, _ in events() for domain in [result.policy_domain]})
    found: dict[str, set[str]] = {}
    for key in sorted(ours):
        report, filename = ours[key]
        peer_report, peer_filename, message = theirs[key]
        assert peer_report["report-id"] and report["report-id"]
        diff = differences(_normal(report), _normal(peer_report))
        mine, peer = _filename_fields(filename), _filename_fields(peer_filename)
        diff.update({f"filename.{k}": (mine[k], peer[k]) for k in mine
                     if k != "unique" and mine[k] != peer[k]})
        for field, values in diff.items():
            found.setdefault(field, set()).add(repr(values))
        # The section 5.3 subject and headers name the same domains.
        assert message["TLS-Report-Domain"] == key[1]
        assert message["TLS-Report-Submitter"] == SUBMITTER
        assert str(message["Subject"]).startswith(
            f"Report Domain: {key[1]} Submitter: {SUBMITTER} Report-ID: <")
    unexplained = {field: values for field, values in found.items() if field not in KNOWN}
    assert not unexplained, f"differences not in KNOWN: {unexplained}"
    start, end = DAYS[0] + "T00:00:00Z", DAYS[1] + "T00:00:00Z"
    first = ours[(DAYS[0], ALPHA)][0]["date-range"], theirs[(DAYS[0], ALPHA)][0]["date-range"]
    assert first == ({"start-datetime": start, "end-datetime": end},
                     {"start-datetime": start, "end-datetime": DAYS[0] + "T23:59:59Z"})
    assert set(found) == set(KNOWN), f"KNOWN lists differences no longer seen: {found}"
