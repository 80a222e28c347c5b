"""Aggregating recorded results into RFC 8460 reports (SEMANTICS 12).

Reports are checked against a JSON Schema written from RFC 8460 sections 4.3
and 4.4 (tests/data/tlsrpt-report.schema.json).  Results come from real
deliveries through both drivers; the report's counts must equal them exactly.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import jsonschema
import pytest

from discovery_support import RedisServer
from smtp_servers import DOMAIN, CertSet, make_cert_set
from tlspolicy.policies.tlsrpt import PolicyType, SessionResult, build_report
from tlspolicy.reporting import (
    DAY,
    BufferedSink,
    Reporter,
    ReportingConfig,
    ReportingError,
    period_start,
)
from tlspolicy.reporting.models import StoredReport
from tlspolicy.stores import SqliteStore, StoreError, dumps_json
from tlsrpt_support import SCENARIOS, run

SCHEMA_PATH = Path(__file__).parent / "data" / "tlsrpt-report.schema.json"
pytestmark = [pytest.mark.timeout(180)]


def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)  # type: ignore[no-any-return]


def check_report(report: dict[str, Any]) -> None:
    """Schema-valid, and every summary equals the sum of its details."""
    validator().validate(report)
    for block in report["policies"]:
        failed = sum(d["failed-session-count"] for d in block.get("failure-details", []))
        assert block["summary"]["total-failure-session-count"] == failed


CONFIG = ReportingConfig(organization_name="tlspolicy test sender",
                         contact_info="mailto:postmaster@sender.test",
                         submitter="sender.test", mail_from="tlsrpt@sender.test")


def _closed_clock(start: int) -> Any:
    return lambda: start + DAY + CONFIG.grace + 1


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_cert_set(tmp_path_factory.mktemp("certs"))


def test_schema_rejects_what_rfc_8460_forbids() -> None:
    v = validator()
    good = build_report(organization_name="o", contact_info="c", report_id="r",
                        start=datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
                        end=datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC),
                        results=[SessionResult(PolicyType.NO_POLICY_FOUND, "d.example",
                                               result_type="tlsa-invalid",
                                               receiving_ip="::1")])
    v.validate(good)
    bad_type = json.loads(json.dumps(good))
    bad_type["policies"][0]["failure-details"][0]["result-type"] = "tls-broken"
    no_summary = json.loads(json.dumps(good))
    del no_summary["policies"][0]["summary"]
    strings = json.loads(json.dumps(good))
    strings["policies"][0]["policy"]["policy-string"] = ["x"]
    bad_ip = json.loads(json.dumps(good))
    bad_ip["policies"][0]["failure-details"][0]["receiving-ip"] = "999.1.1.1"
    bad_date = json.loads(json.dumps(good))
    bad_date["date-range"]["start-datetime"] = "yesterday"
    for bad in (bad_type, no_summary, strings, bad_ip, bad_date):
        assert not v.is_valid(bad)


@pytest.mark.network
def test_real_deliveries_aggregate_to_exact_counts(certs: CertSet, tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite3"
    expected: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    details: collections.Counter[tuple[str, str]] = collections.Counter()
    start = period_start(time.time())
    with BufferedSink(lambda: SqliteStore(path), flush_interval=0.1) as sink:
        for index, scenario in enumerate(SCENARIOS):
            for attempt in range(1 + index % 3):
                driver = "smtplib" if attempt % 2 == 0 else "aiosmtplib"
                run(scenario, certs, sink, driver=driver)
                if scenario.expected is not None:
                    policy_type, result_type = scenario.expected
                    expected[policy_type][result_type is not None] += 1
                    if result_type is not None:
                        details[(policy_type, result_type)] += 1
        recorded = sink.recorded
    if period_start(time.time()) != start:
        pytest.skip("the UTC day changed while recording")

    async def build() -> list[Any]:
        store = SqliteStore(path)
        try:
            return await Reporter(store, CONFIG, clock=_closed_clock(start)).build(start)
        finally:
            await store.close()

    [stored] = asyncio.run(build())
    report = stored.report
    check_report(report)
    assert stored.domain == DOMAIN
    got: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    got_details: collections.Counter[tuple[str, str]] = collections.Counter()
    for block in report["policies"]:
        kind = block["policy"]["policy-type"]
        got[kind][0] += block["summary"]["total-successful-session-count"]
        got[kind][1] += block["summary"]["total-failure-session-count"]
        for detail in block.get("failure-details", []):
            got_details[(kind, detail["result-type"])] += detail["failed-session-count"]
    assert dict(got) == dict(expected)
    assert got_details == details
    assert sum(sum(v) for v in got.values()) == recorded
    # Every result type this library can produce appears.
    assert {t for _, t in details} == {
        "starttls-not-supported", "validation-failure", "certificate-not-trusted",
        "certificate-expired", "certificate-host-mismatch", "tlsa-invalid", "dnssec-invalid"}


def _results(store_path: Path, start: int, domains: int = 3) -> None:
    async def write() -> None:
        store = SqliteStore(store_path)
        sink = BufferedSink(lambda: store, clock=lambda: start + 10)
        for n in range(domains):
            for _ in range(n + 1):
                sink.record(SessionResult(PolicyType.NO_POLICY_FOUND, f"d{n}.example"))
        await sink._flush(store)
        await store.close()
    asyncio.run(write())


def test_a_period_is_built_once_by_concurrent_nodes(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    start = period_start(1_800_000_000)
    _results(path, start)

    async def nodes() -> tuple[int, int, int]:
        stores = [SqliteStore(path) for _ in range(4)]
        reporters = [Reporter(s, CONFIG, clock=_closed_clock(start)) for s in stores]
        try:
            made = await asyncio.gather(*(r.build(start) for r in reporters))
            again = await reporters[0].build(start)
            kept = await reporters[1].stored(start)
        finally:
            for s in stores:
                await s.close()
        return sum(len(m) for m in made), len(again), len(kept)

    made, again, kept = asyncio.run(nodes())
    assert (made, again, kept) == (3, 0, 3)


def test_an_open_period_is_refused(tmp_path: Path) -> None:
    start = period_start(1_800_000_000)

    async def build() -> None:
        store = SqliteStore(tmp_path / "s.sqlite3")
        try:
            await Reporter(store, CONFIG, clock=lambda: start + DAY + 5).build(start)
        finally:
            await store.close()

    with pytest.raises(ReportingError, match="still open"):
        asyncio.run(build())


@pytest.mark.network
def test_two_recording_processes_share_one_redis(redis_server: RedisServer) -> None:
    from tlspolicy.stores.redis import RedisStore

    worker = Path(__file__).parent / "recording_worker.py"
    domain = f"fleet{time.time_ns()}.example"
    start = period_start(time.time())
    procs = [subprocess.Popen([sys.executable, str(worker), redis_server.url, domain, str(n)],
                              stdout=subprocess.PIPE, text=True) for n in (1000, 600)]
    outputs = [p.communicate(timeout=60)[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert [o[0] for o in outputs] == ["1000", "600"]
    if period_start(time.time()) != start:
        pytest.skip("the UTC day changed while recording")

    async def build() -> list[Any]:
        store = await RedisStore.connect(redis_server.url, prefix="tlsrpt-test:")
        try:
            return await Reporter(store, CONFIG, clock=_closed_clock(start)).build(
                start, domains=[domain])
        finally:
            await store.close()

    [stored] = asyncio.run(build())
    check_report(stored.report)
    [block] = stored.report["policies"]
    failures = 250 + 150
    assert block["summary"] == {"total-successful-session-count": 1600 - failures,
                                "total-failure-session-count": failures}


def test_a_stored_report_with_a_number_too_large_is_malformed_not_a_crash() -> None:
    value = {"v": 1, "domain": "example.com", "start": 0, "end": 86400, "report": {},
             "filename": "r.json", "created": 10 ** 400, "rua": None, "rua_detail": "",
             "deliveries": []}
    with pytest.raises(StoreError, match="is malformed"):
        StoredReport.from_bytes("0/example.com", dumps_json(value))
    value["created"] = 1.0
    assert StoredReport.from_bytes("0/example.com", dumps_json(value)).created == 1.0
    with pytest.raises(StoreError, match=r"'0/example\.com' is malformed.*nested too deeply"):
        StoredReport.from_bytes("0/example.com", b"[" * 100_000 + b"]" * 100_000)
    # Times a retry compares with the clock: never reached, or not a number at all.
    for created, delivery in ((b"1e400", {}), (b"1.0", {"next_at": "x"}),
                              (b"1.0", {"next_at": 1e300}),
                              (b"1.0", {"next_at": 1.0, "delivered_at": -1e300})):
        value["created"] = 7.0
        value["deliveries"] = [{"uri": "mailto:r@example.net", **delivery}]
        data = dumps_json(value).replace(b'"created":7.0', b'"created":' + created)
        with pytest.raises(StoreError, match="is malformed"):
            StoredReport.from_bytes("0/example.com", data)
    value["deliveries"] = [{"uri": "mailto:r@example.net", "next_at": 5.0}]
    assert StoredReport.from_bytes("0/example.com", dumps_json(value)).deliveries[0].next_at == 5


@pytest.mark.parametrize(("where", "bad"), [
    ("next_at", "0"), ("next_at", True), ("next_at", -1e11), ("delivered_at", "1"),
    ("attempts", "1"), ("attempts", -1), ("attempts", 1.0), ("attempts", 10 ** 30),
    ("uri", 5), ("state", "sent"), ("state", None), ("error", 0), ("unknown", 1),
    ("rua", "mailto:r@example.net"), ("rua", [5]), ("rua_detail", None), ("start", "0"),
    ("start", 0.0), ("created", "7"), ("created", -1e11), ("domain", 5)])
def test_a_stored_report_field_of_the_wrong_type_is_malformed(where: str, bad: Any) -> None:
    """What this package never writes is damage, refused when read: a send would meet it
    as a TypeError (a delivery's next attempt as a string stopped every report after it;
    its attempts as a string raised after delivering, before the delivery was saved, so
    the report went again on every run) or a date it cannot show."""
    delivery = {"uri": "mailto:r@example.net", "state": "pending", "attempts": 1,
                "next_at": 5.0, "error": "", "delivered_at": None}
    value = {"v": 1, "domain": "example.com", "start": 0, "end": 86400, "report": {},
             "filename": "r.json", "created": 7.0, "rua": ["mailto:r@example.net"],
             "rua_detail": "", "deliveries": [delivery]}
    assert StoredReport.from_bytes("0/example.com", dumps_json(value)).deliveries[0].attempts == 1
    if where in delivery or where == "unknown":
        value["deliveries"] = [{**delivery, where: bad}]
    else:
        value[where] = bad
    with pytest.raises(StoreError, match="is malformed"):
        StoredReport.from_bytes("0/example.com", dumps_json(value))


def test_a_stored_delivery_missing_a_field_takes_its_default() -> None:
    value = {"v": 1, "domain": "example.com", "start": 0, "end": 86400, "report": {},
             "filename": "r.json", "created": 7.0, "rua": ["mailto:r@example.net"],
             "rua_detail": "", "deliveries": [{"uri": "mailto:r@example.net"}]}
    [delivery] = StoredReport.from_bytes("0/example.com", dumps_json(value)).deliveries
    assert (delivery.state, delivery.attempts, delivery.next_at, delivery.delivered_at) == (
        "pending", 0, 0.0, None)


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), 0, -1.0])
def test_a_reporting_backoff_must_be_a_finite_positive_number(bad: float) -> None:
    """An infinite or NaN wait would be written into the stored report as a retry time
    that JSON cannot carry and that is never reached."""
    with pytest.raises(ReportingError, match="backoff_initial must be positive"):
        attrs.evolve(CONFIG, backoff_initial=bad)


@pytest.mark.parametrize("name", ["grace", "retention", "retry_window", "backoff_initial",
                                  "backoff_max", "timeout", "lock_ttl"])
def test_a_reporting_time_is_at_most_ten_years(name: str) -> None:
    """A wait added to the clock must stay a time the store can hold: a retry past the
    year 9999 is written, then refused when read, so the report would never be read.
    (``timeout`` is bounded more tightly still: ``lock_ttl``, at most ten years, must be
    five times it.)"""
    if name != "timeout":
        assert getattr(attrs.evolve(CONFIG, **{name: 10 * 365 * DAY}), name) == 10 * 365 * DAY
    with pytest.raises(ReportingError, match=f"{name} must be at most 315,360,000 seconds"):
        attrs.evolve(CONFIG, **{name: 10 * 365 * DAY + 1})
    with pytest.raises(ReportingError, match=f"{name} must be at most"):
        attrs.evolve(CONFIG, **{name: 1e300})


def test_a_damaged_value_is_named_by_its_start() -> None:
    """The message naming a damaged value quotes its start, not all of it (a list of a
    million items would be logged whole at every send)."""
    value = {"v": 1, "domain": "example.com", "start": 0, "end": 86400, "report": {},
             "filename": "r.json", "created": 7.0, "rua": None, "rua_detail": "",
             "deliveries": [{"uri": "mailto:r@example.net", "next_at": [0] * 200_000}]}
    with pytest.raises(StoreError, match=r"malformed: \[0, 0, .*\.\.\. is not a time") as caught:
        StoredReport.from_bytes("0/example.com", dumps_json(value))
    assert len(str(caught.value)) < 200
    # A number too large for a float anywhere (here in the report itself, which no
    # check reads): written back it would be Infinity, which the reader refuses.
    value["deliveries"] = []
    data = dumps_json(value).replace(b'"report":{}', b'"report":{"x":1e400}')
    with pytest.raises(StoreError, match="1e400 is too large for a float"):
        StoredReport.from_bytes("0/example.com", data)
    value["deliveries"] = [{"uri": "mailto:r@example.net", "attempts": 10 ** 1000}]
    with pytest.raises(StoreError, match="a number too large is not a count"):
        StoredReport.from_bytes("0/example.com", dumps_json(value))


def test_a_rua_entry_that_is_no_uri_is_left_out_of_the_record() -> None:
    """A stranger's ``_smtp._tls`` record whose rua entries hold a line break, an escape
    or a non-ASCII letter: those entries are no URIs (RFC 3986) and are left out, so that
    none reaches a log line, a request or a mail; the others are kept, in order."""
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype

    from tlspolicy.discovery.dns import DnsAnswer, DnsStatus
    from tlspolicy.discovery.records import tlsrpt_record

    text = ('"v=TLSRPTv1; rua=mailto:a@x.test,mailto:r@v.test?x=\010CRITICAL forged,'
            'https://v.test/\027[31m,https://b\195\169.test/r,https://ok.test/r"')
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, text)
    answer = DnsAnswer("_smtp._tls.v.test", "TXT", DnsStatus.RECORDS, False, (rdata,))
    record = tlsrpt_record(answer)
    assert record.rua == ("mailto:a@x.test", "https://ok.test/r")
    assert record.detail == "3 rua entries that are not URIs left out"


def test_the_send_lock_outlasts_a_delivery() -> None:
    """One delivery takes at most four tries of ``timeout``; a lock that ran out within it
    would let another node take over and send the report again."""
    assert (CONFIG.lock_ttl, CONFIG.timeout) == (900.0, 60.0)
    assert attrs.evolve(CONFIG, timeout=180.0).timeout == 180.0
    with pytest.raises(ReportingError, match=r"lock_ttl \(900 s\) must be at least 5 times "
                                             r"timeout \(181 s\)"):
        attrs.evolve(CONFIG, timeout=181.0)
    assert attrs.evolve(CONFIG, timeout=600.0, lock_ttl=3000.0).lock_ttl == 3000.0


@pytest.mark.parametrize(("uri", "address"), [
    ("mailto:r@v.test", "r@v.test"),
    ("mailto:a.b+c@v.test?subject=x", "a.b+c@v.test"),
    ("mailto:o'hara@v.test", "o'hara@v.test"),
    ("mailto:a%3Eb@v.test", None),  # smtplib sent RCPT TO:<a>
    ("mailto:x(y@v.test", None),  # smtplib sent RCPT TO:<x>
    ("mailto:%C3%A9@v.test", None),  # no SMTPUTF8: it raised in the middle of the tries
    ("mailto:a..b@v.test", None),
    ("mailto:.a@v.test", None),
    ("mailto:%22a%20b%22@v.test", None),  # a quoted local part
    ("mailto:a@b@v.test", None),
])
def test_a_report_is_mailed_only_to_a_dot_atom_address(uri: str, address: str | None) -> None:
    """What smtplib would send as another address, or could not send, is not a mail
    address a report goes to: its delivery is ``unsupported``, with no connection made."""
    from tlspolicy.reporting.models import mail_address

    assert mail_address(uri) == address

