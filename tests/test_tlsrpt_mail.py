"""RFC 8460 section 5.3 report mail, checked with strict MIME parsing.

Findings: the multipart boundary was the literal string ``None`` on every
report mail (it was read before the generator had chosen one), so an
``organization_name`` holding ``--None--`` lines cut the report attachment
off; and the subject's ``Report-ID`` was no RFC 5322 ``msg-id`` (no ``@``).
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import gzip
import json
import re
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tlspolicy.policies.tlsrpt import PolicyType, SessionResult
from tlspolicy.reporting import (
    DAY,
    MEDIA_TYPE,
    BufferedSink,
    Reporter,
    ReportingConfig,
    ReportingError,
    StoredReport,
    period_start,
)
from tlspolicy.reporting.models import report_msg_id
from tlspolicy.stores import SqliteStore

START = period_start(1_800_000_000)
SUBMITTER = "sender.test"
DOMAIN = "example.org"
RCPT = "tlsrpt@reports.example"
# RFC 8460 section 5.3's tlsrpt-subject, with RFC 5322's msg-id (dot-atom-text forms).
_ATOM = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+"
_DOT_ATOM = rf"{_ATOM}(?:\.{_ATOM})*"
SUBJECT = re.compile(rf"Report Domain: (\S+) Submitter: (\S+) Report-ID: <{_DOT_ATOM}@"
                     rf"{_DOT_ATOM}>")


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("dkim") / "dkim.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    public = base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    return path, b"v=DKIM1; k=rsa; s=tlsrpt; p=" + public


def _mail(tmp_path: Path, key: Path, organization_name: str) -> tuple[StoredReport, bytes]:
    config = ReportingConfig(organization_name=organization_name,
                             contact_info=f"mailto:postmaster@{SUBMITTER}",
                             submitter=SUBMITTER, mail_from=f"tlsrpt@{SUBMITTER}",
                             dkim_key_file=str(key))

    async def main() -> tuple[StoredReport, bytes]:
        store = SqliteStore(tmp_path / "results.sqlite3")
        try:
            sink = BufferedSink(lambda: store, clock=lambda: START + 10)
            sink.record(SessionResult(PolicyType.NO_POLICY_FOUND, DOMAIN))
            await sink._flush(store)
            reporter = Reporter(store, config, clock=lambda: START + DAY + config.grace + 1)
            [stored] = await reporter.build(START)
            return stored, reporter.message(stored, RCPT, stored.body)
        finally:
            await store.close()

    return asyncio.run(main())


def _strict_parse(raw: bytes) -> EmailMessage:
    """Parse with the stdlib's strict policy (any defect raises), then check the MIME
    structure by hand: the boundary is declared, unique, and delimits exactly two parts."""
    message = email.message_from_bytes(raw, policy=email.policy.strict)
    assert isinstance(message, EmailMessage)
    assert not message.defects
    boundary = message.get_boundary()
    assert boundary is not None and boundary != "None"
    lines = raw.split(b"\r\n") if b"\r\n" in raw else raw.split(b"\n")
    delimiters = [line for line in lines if line.startswith(b"--" + boundary.encode())]
    assert delimiters == [b"--" + boundary.encode()] * 2 + [b"--" + boundary.encode() + b"--"]
    for part in message.walk():
        assert not part.defects, part.defects
    return message


@pytest.mark.parametrize("organization", [
    "tlspolicy test sender",
    "Example Mail\n--None--\n",
    "Example Mail\n--None\nContent-Type: text/plain\n\nforged\n--None--\n",
])
def test_report_mail_is_well_formed_mime(tmp_path: Path, dkim_key: tuple[Path, bytes],
                                         organization: str) -> None:
    key, record = dkim_key
    stored, raw = _mail(tmp_path, key, organization)
    message = _strict_parse(raw)
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "tlsrpt"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", MEDIA_TYPE]
    text, attachment = parts
    assert organization in text.get_content().replace("\r\n", "\n")
    assert attachment.get_filename() == stored.filename
    report = json.loads(gzip.decompress(attachment.get_content()))
    assert report == stored.report
    assert report["organization-name"] == organization

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes:
        assert name == f"tlsrpt._domainkey.{SUBMITTER}.".encode()
        return record

    assert dkim.verify(raw, dnsfunc=dnsfunc, tlsrpt="strict")


def test_the_subject_ends_with_an_rfc_5322_msg_id(tmp_path: Path,
                                                  dkim_key: tuple[Path, bytes]) -> None:
    stored, raw = _mail(tmp_path, dkim_key[0], "tlspolicy test sender")
    message = _strict_parse(raw)
    subject = str(message["Subject"])
    match = SUBJECT.fullmatch(subject)
    assert match is not None, subject
    assert match.groups() == (DOMAIN, SUBMITTER)
    assert subject.endswith(f"Report-ID: <{stored.report['report-id']}@{SUBMITTER}>")


@pytest.mark.parametrize(("report_id", "expected"), [
    ("2026-12-01_example.org_31d30cf4799e", "<2026-12-01_example.org_31d30cf4799e@s.test>"),
    ("2026-12-01_[192.0.2.1]_ab", "<2026-12-01_-192.0.2.1-_ab@s.test>"),
    ("..a..b..", "<a.b@s.test>"),
    ("", "<report@s.test>"),
    ("a b\r\nc", "<a-b--c@s.test>"),
])
def test_msg_id_forms(report_id: str, expected: Any) -> None:
    assert report_msg_id(report_id, "s.test") == expected


def test_contact_info_is_written_as_an_addr_spec(tmp_path: Path,
                                                 dkim_key: tuple[Path, bytes]) -> None:
    # RFC 8460 section 4.4: "contact-info" is an addr-spec (RFC 5322 section 3.4.1).
    stored, _raw = _mail(tmp_path, dkim_key[0], "tlspolicy test sender")
    assert stored.report["contact-info"] == f"postmaster@{SUBMITTER}"
    for given in ("mailto:tlsrpt@example.net", "MAILTO:tlsrpt%40example.net?subject=x",
                  " tlsrpt@example.net "):
        config = ReportingConfig(organization_name="o", contact_info=given,
                                 submitter=SUBMITTER, mail_from=f"tlsrpt@{SUBMITTER}")
        assert config.contact_info == "tlsrpt@example.net"
    for bad in ("https://example.net/contact", "postmaster", "a b@example.net", ""):
        with pytest.raises(ReportingError, match="contact_info"):
            ReportingConfig(organization_name="o", contact_info=bad, submitter=SUBMITTER,
                            mail_from=f"tlsrpt@{SUBMITTER}")
