"""Invariants of recording and aggregation over generated results (hypothesis)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import attrs
import jsonschema
from hypothesis import given
from hypothesis import strategies as st

from tlspolicy.policies.tlsrpt import (
    FAILURE_RESULT_TYPES,
    PolicyType,
    SessionResult,
    aggregate_counts,
    build_report,
    report_filename,
)
from tlspolicy.reporting import decode_results, encode_results

SCHEMA = json.loads((Path(__file__).parent / "data" / "tlsrpt-report.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
START = datetime.datetime(2026, 11, 30, tzinfo=datetime.UTC)
END = START + datetime.timedelta(days=1)

_labels = st.text("abcdefghij0123456789-", min_size=1, max_size=8).filter(
    lambda s: s[0] != "-" and s[-1] != "-")
_domains = st.builds(lambda a, b: f"{a}.{b}.test", _labels, _labels)
_ips = st.one_of(st.none(), st.ip_addresses().map(str))


@st.composite
def results(draw: st.DrawFn) -> SessionResult:
    kind = draw(st.sampled_from(PolicyType))
    strings = () if kind is PolicyType.NO_POLICY_FOUND else tuple(
        draw(st.lists(st.text(min_size=1, max_size=20), max_size=3)))
    failed = draw(st.booleans())
    return SessionResult(
        kind, draw(_domains), strings, tuple(draw(st.lists(_domains, max_size=2))),
        result_type=draw(st.sampled_from(sorted(FAILURE_RESULT_TYPES))) if failed else None,
        sending_mta_ip=draw(_ips) if failed else None,
        receiving_mx_hostname=draw(st.one_of(st.none(), _domains)) if failed else None,
        receiving_ip=draw(_ips) if failed else None,
        failure_reason_code=draw(st.one_of(st.none(), st.text(max_size=30))) if failed else None,
        count=draw(st.integers(1, 1000)))


@given(st.lists(st.tuples(results(), st.integers(1, 50)), max_size=30))
def test_stored_form_round_trips(items: list[tuple[SessionResult, int]]) -> None:
    # The stored form keeps each result with its count folded into the pair's count.
    decoded = decode_results(encode_results(items))
    assert decoded == [(attrs.evolve(r, count=1), c * r.count) for r, c in items]


@given(st.lists(st.tuples(results(), st.integers(1, 50)), max_size=40))
def test_aggregation_keeps_every_session_and_the_schema(
        items: list[tuple[SessionResult, int]]) -> None:
    summed = aggregate_counts(items)
    total = sum(r.count * c for r, c in items)
    assert sum(r.count for r in summed) == total
    assert len(set(summed)) == len(summed)
    report = build_report(organization_name="o", contact_info="mailto:a@b.test",
                          report_id="id", start=START, end=END, results=summed)
    VALIDATOR.validate(report)
    counted = sum(b["summary"]["total-successful-session-count"]
                  + b["summary"]["total-failure-session-count"] for b in report["policies"])
    assert counted == total
    failures = sum(r.count * c for r, c in items if r.result_type is not None)
    assert sum(d["failed-session-count"] for b in report["policies"]
               for d in b["failure-details"]) == failures


@given(_domains, _domains, st.text("abcdef0123456789", min_size=1, max_size=12))
def test_file_names_follow_section_5_1(submitter: str, domain: str, unique: str) -> None:
    name = report_filename(submitter, domain, START, END, unique)
    parts = name.removesuffix(".json.gz").split("!")
    assert parts == [submitter, domain, str(int(START.timestamp())), str(int(END.timestamp())),
                     unique]
