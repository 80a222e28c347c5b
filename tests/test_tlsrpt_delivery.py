"""TLS-RPT end to end: real deliveries -> recorded results -> reports -> every ``rua``.

The policy domain's ``_smtp._tls`` record and the reporting domain's DKIM key
(``s=tlsrpt``) are served by the signed test zone through a validating Unbound;
reports go to a real HTTPS receiver (POST) and a real aiosmtpd receiver (mail,
through the library's smtplib driver), which store what they get.  The mail's
DKIM signature is checked with dkimpy's verifier against the test DNS.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import gzip
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dkim
import dns.resolver
import pytest

from discovery_support import (
    TLSRPT_DOMAIN,
    TLSRPT_HTTPS_HOST,
    TLSRPT_MAIL_DOMAIN,
    TLSRPT_SUBMITTER,
    DnsLab,
    HttpsLab,
)
from smtp_servers import CertSet, Mode, SmtpServer, make_cert_set, smtp_server
from test_tlsrpt_reports import check_report
from tlspolicy import Resolver, loads_toml
from tlspolicy.discovery import Discovery, DiscoveryConfig
from tlspolicy.policies.tlsrpt import PolicyType, SessionResult
from tlspolicy.reporting import (
    DAY,
    MEDIA_TYPE,
    BufferedSink,
    Reporter,
    ReportingConfig,
    period_results,
    period_start,
)
from tlspolicy.stores import SqliteStore
from tlsrpt_support import SCENARIOS, run

pytestmark = [pytest.mark.network, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_cert_set(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def receiver(certs: CertSet) -> Iterator[SmtpServer]:
    # A certificate for another name: a TLS-related problem the report mail ignores.
    with smtp_server(Mode.TLS, tls_context=certs.context("wrong-name"),
                     hostname=f"mx.{TLSRPT_MAIL_DOMAIN}") as server:
        yield server


def _config(dns_lab: DnsLab, https_lab: HttpsLab, smtp_port: int, **changes: Any
            ) -> ReportingConfig:
    values: dict[str, Any] = dict(
        organization_name="tlspolicy test sender",
        contact_info=f"mailto:postmaster@{TLSRPT_SUBMITTER}", submitter=TLSRPT_SUBMITTER,
        mail_from=f"tlsrpt@{TLSRPT_SUBMITTER}", dkim_selector="tlsrpt",
        dkim_key_file=str(dns_lab.dkim_key), smtp_port=smtp_port, https_port=https_lab.port,
        ca_file=str(https_lab.ca_file), timeout=10.0)
    values.update(changes)
    return ReportingConfig(**values)


def _discovery(dns_lab: DnsLab, tmp_path: Path) -> Discovery:
    return Discovery(DiscoveryConfig(resolver="127.0.0.1", resolver_port=dns_lab.port,
                                     resolv_conf=None, probe_name="test."),
                     store=SqliteStore(tmp_path / "discovery.sqlite3"))


def _dnsfunc(dns_lab: DnsLab) -> Any:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = dns_lab.port

    def get_txt(name: bytes, timeout: float = 5) -> bytes:
        answer = resolver.resolve(name.decode().rstrip("."), "TXT", lifetime=timeout)
        return b"".join(b"".join(r.strings) for r in answer)

    return get_txt


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _resolver(text: str = '[global]\ntls = "ifavailable"\ntls_verify = "no"\n') -> Resolver:
    return Resolver(loads_toml(text, "report-sender.toml"))


def test_deliveries_reported_once_to_both_kinds_of_rua(
        dns_lab: DnsLab, https_lab: HttpsLab, certs: CertSet, receiver: SmtpServer,
        tmp_path: Path) -> None:
    results_path = tmp_path / "results.sqlite3"
    start = period_start(time.time())
    expected = {"success": 0, "failure": 0}
    with BufferedSink(lambda: SqliteStore(results_path), flush_interval=0.1) as sink:
        for index, scenario in enumerate(SCENARIOS):
            for attempt in range(1 + index % 2):
                run(scenario, certs, sink, domain=TLSRPT_DOMAIN,
                    driver="smtplib" if attempt == 0 else "aiosmtplib")
                if scenario.expected is not None:
                    expected["failure" if scenario.expected[1] else "success"] += 1
    if period_start(time.time()) != start:
        pytest.skip("the UTC day changed while recording")
    clock = Clock(start + DAY + 1000)
    posts_before = len(https_lab.posts)

    async def job() -> tuple[Any, list[Any], list[Any], Any, int]:
        store = SqliteStore(results_path)
        async with _discovery(dns_lab, tmp_path) as discovery:
            reporter = Reporter(store, _config(dns_lab, https_lab, receiver.port),
                                discovery=discovery, resolver=_resolver(), clock=clock)
            [stored] = await reporter.build(start)
            first = await reporter.send()
            second = await reporter.send()  # nothing is delivered twice
            [final] = await reporter.stored(start)
            counted = sum(r.count for r in (await period_results(store, start))[TLSRPT_DOMAIN])
        await store.close()
        return stored, first, second, final, counted

    stored, first, second, final, counted = asyncio.run(job())
    report = stored.report
    check_report(report)
    totals = {"success": 0, "failure": 0}
    for block in report["policies"]:
        totals["success"] += block["summary"]["total-successful-session-count"]
        totals["failure"] += block["summary"]["total-failure-session-count"]
    assert totals == expected
    assert stored.rua == (f"mailto:tlsrpt@{TLSRPT_MAIL_DOMAIN}",
                          f"https://{TLSRPT_HTTPS_HOST}/v1/tlsrpt")
    assert sorted(d.state for d in first) == ["delivered", "delivered"]
    assert second == []
    assert {d.state for d in final.deliveries} == {"delivered"}
    # The report sessions themselves were not recorded.
    assert counted == sum(expected.values())

    # HTTPS: one POST of the gzip body with the TLS-RPT media type.
    [post] = https_lab.posts[posts_before:]
    assert (post.host, post.path) == (TLSRPT_HTTPS_HOST, "/v1/tlsrpt")
    assert post.headers["Content-Type"] == MEDIA_TYPE
    assert json.loads(gzip.decompress(post.body)) == report

    # Mail: one RFC 8460 section 5.3 message, over TLS despite the wrong name, DKIM-valid.
    [mail] = receiver.messages
    assert mail.tls and mail.rcpt_tos == (f"tlsrpt@{TLSRPT_MAIL_DOMAIN}",)
    # Strict: any MIME defect (an undeclared or colliding boundary) raises.
    message = email.message_from_bytes(mail.data, policy=email.policy.strict)
    assert not any(part.defects for part in message.walk())
    assert message.get_boundary() not in (None, "None")
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "tlsrpt"
    assert message["TLS-Report-Domain"] == TLSRPT_DOMAIN
    assert message["TLS-Report-Submitter"] == TLSRPT_SUBMITTER
    assert message["Subject"] == (f"Report Domain: {TLSRPT_DOMAIN} Submitter: "
                                  f"{TLSRPT_SUBMITTER} Report-ID: "
                                  f"<{report['report-id']}@{TLSRPT_SUBMITTER}>")
    [attachment] = [p for p in message.iter_attachments()]
    assert attachment.get_content_type() == MEDIA_TYPE
    name = attachment.get_filename()
    assert re.fullmatch(rf"{re.escape(TLSRPT_SUBMITTER)}!{re.escape(TLSRPT_DOMAIN)}!"
                        rf"{start}!{start + DAY}!\w+\.json\.gz", name)
    assert json.loads(gzip.decompress(attachment.get_content())) == report
    signature = message["DKIM-Signature"]
    assert f"d={TLSRPT_SUBMITTER}" in signature.replace(" ", "")
    assert not re.search(r"(^|;)\s*l=", signature)
    assert dkim.verify(mail.data, dnsfunc=_dnsfunc(dns_lab), tlsrpt="strict")
    tampered = mail.data.replace(b"Report Domain", b"Report Damain", 1)
    assert not dkim.verify(tampered, dnsfunc=_dnsfunc(dns_lab), tlsrpt="strict")


def _one_result(store_path: Path, start: int, domain: str) -> None:
    async def write() -> None:
        store = SqliteStore(store_path)
        sink = BufferedSink(lambda: store, clock=lambda: start + 10)
        sink.record(SessionResult(PolicyType.NO_POLICY_FOUND, domain))
        await sink._flush(store)
        await store.close()
    asyncio.run(write())


def test_failed_deliveries_back_off_and_stop_after_24_hours(
        dns_lab: DnsLab, https_lab: HttpsLab, receiver: SmtpServer, tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    start = period_start(1_800_000_000)
    _one_result(path, start, f"rptretry.{TLSRPT_DOMAIN.split('.', 1)[1]}")
    _one_result(path, start, f"rptmail.{TLSRPT_DOMAIN.split('.', 1)[1]}")
    clock = Clock(start + DAY + 1000)
    https_lab.post_status["/v1/flaky"] = 503
    # Configuration still applies to report mail: TLS required, and the receiver
    # cannot do it (no STARTTLS), so mailing fails and is retried.
    strict = _resolver('[global]\ntls = "required"\ntls_verify = "no"\n')

    async def job() -> list[list[tuple[str, str, int]]]:
        store = SqliteStore(path)
        rounds: list[list[tuple[str, str, int]]] = []
        with smtp_server(Mode.NO_STARTTLS) as plain:
            async with _discovery(dns_lab, tmp_path) as discovery:
                reporter = Reporter(store, _config(dns_lab, https_lab, plain.port,
                                                   backoff_initial=300, backoff_max=3600),
                                    discovery=discovery, resolver=strict, clock=clock)
                assert len(await reporter.build(start)) == 2
                for step in (0, 100, 250, 3600, 2 * 3600):
                    clock.now += step
                    if step == 3600:
                        https_lab.post_status["/v1/flaky"] = 200
                    rounds.append([(d.uri.split(":")[0], d.state, d.attempts)
                                   for d in await reporter.send()])
                clock.now += DAY
                rounds.append([(d.uri.split(":")[0], d.state, d.attempts)
                               for d in await reporter.send()])
            assert plain.messages == []
        await store.close()
        return rounds

    rounds = asyncio.run(job())
    rounds = [sorted(r) for r in rounds]
    assert rounds[0] == [("https", "pending", 1), ("mailto", "pending", 1)]
    assert rounds[1] == []  # backing off: 300 s after the first failure
    assert rounds[2] == [("https", "pending", 2), ("mailto", "pending", 2)]
    assert rounds[3] == [("https", "delivered", 3), ("mailto", "pending", 3)]
    assert rounds[4] == [("mailto", "pending", 4)]
    assert rounds[5] == [("mailto", "gave-up", 5)]


def test_size_cap_keeps_but_does_not_send(dns_lab: DnsLab, https_lab: HttpsLab,
                                          receiver: SmtpServer, tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    start = period_start(1_800_000_000)
    _one_result(path, start, TLSRPT_DOMAIN)
    before = len(https_lab.posts)

    async def job() -> tuple[list[Any], list[str]]:
        store = SqliteStore(path)
        async with _discovery(dns_lab, tmp_path) as discovery:
            reporter = Reporter(store, _config(dns_lab, https_lab, receiver.port,
                                               max_report_bytes=50),
                                discovery=discovery, clock=lambda: start + 2 * DAY)
            [stored] = await reporter.build(start)
            sent = await reporter.send()
        await store.close()
        return sent, [d.state for d in stored.deliveries]

    sent, states = asyncio.run(job())
    assert sent == [] and states == ["too-large", "too-large"]
    assert len(https_lab.posts) == before and receiver.messages == []


def test_odd_rua_records_from_strangers(dns_lab: DnsLab, https_lab: HttpsLab,
                                        receiver: SmtpServer, tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    start = period_start(1_800_000_000)
    for label in ("rptodd", "rpttwo", "norecord"):
        _one_result(path, start, f"{label}.secure.test")
    before = len(https_lab.posts)

    async def job() -> tuple[dict[str, Any], list[Any]]:
        store = SqliteStore(path)
        async with _discovery(dns_lab, tmp_path) as discovery:
            reporter = Reporter(store, _config(dns_lab, https_lab, receiver.port),
                                discovery=discovery, clock=lambda: start + 2 * DAY)
            built = {r.domain: r for r in await reporter.build(start)}
            sent = await reporter.send()
            again = await reporter.send()
        await store.close()
        assert again == []
        return built, sent

    built, sent = asyncio.run(job())
    odd = built["rptodd.secure.test"]
    assert [(d.uri, d.state) for d in odd.deliveries] == [
        ("ftp://x.test/r", "unsupported"), ("mailto:a%20b@x.test", "unsupported"),
        (f"https://{TLSRPT_HTTPS_HOST}/v1/odd", "pending")]
    assert [(d.uri, d.state) for d in sent] == [(f"https://{TLSRPT_HTTPS_HOST}/v1/odd",
                                                 "delivered")]
    assert [p.path for p in https_lab.posts[before:]] == ["/v1/odd"]
    for domain in ("rpttwo.secure.test", "norecord.secure.test"):
        assert built[domain].rua == () and built[domain].deliveries == ()
    assert "2 v=TLSRPTv1 records" in built["rpttwo.secure.test"].rua_detail
    assert receiver.messages == []
