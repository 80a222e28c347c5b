"""TLS-RPT aggregate report builder (RFC 8460 section 4)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tlspolicy.errors import PolicyInputError
from tlspolicy.policies.mtasts import parse_policy
from tlspolicy.policies.tlsrpt import (
    FAILURE_RESULT_TYPES,
    PolicyType,
    SessionResult,
    build_report,
)

START = datetime(2030, 4, 1, tzinfo=UTC)
END = START + timedelta(days=1)
STS = parse_policy(
    "version: STSv1\nmode: testing\nmx: *.mail.example.org\nmax_age: 86400\n"
)


def _sts(**changes: object) -> SessionResult:
    fields: dict[str, object] = {
        "policy_type": PolicyType.STS,
        "policy_domain": "Example.ORG.",
        "policy_strings": STS.policy_strings(),
        "mx_hosts": STS.mx,
        "sending_mta_ip": "2001:db8:abcd:0012::1",
        "receiving_mx_hostname": "mx1.mail.example.org",
    }
    fields.update(changes)
    return SessionResult(**fields)  # type: ignore[arg-type]


def _report(results: list[SessionResult]) -> dict[str, object]:
    return build_report(
        organization_name="Sender Org", contact_info="tlsrpt@sender.example",
        report_id="2030-04-01T00:00:00Z_example.org", start=START, end=END, results=results,
    )


def test_report_shape_and_grouping() -> None:
    results = [
        _sts(count=5),
        _sts(result_type="certificate-expired", count=2),
        _sts(result_type="certificate-expired"),
        _sts(result_type="starttls-not-supported", receiving_ip="203.0.113.56",
             receiving_mx_hostname="MX2.mail.example.org.",
             additional_information="https://sender.example/info#1"),
        _sts(result_type="validation-failure", receiving_ip="203.0.113.58",
             receiving_mx_helo="mx-backup.example.org",
             failure_reason_code="X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"),
        SessionResult(PolicyType.NO_POLICY_FOUND, "other.example", count=7),
        SessionResult(PolicyType.TLSA, "dane.example", policy_strings=("3 1 1 " + "AB" * 32,),
                      mx_hosts=("mx.dane.example",), result_type="tlsa-invalid",
                      sending_mta_ip="198.51.100.1", receiving_ip="2001:db8::0:25"),
    ]
    report = _report(results)
    assert json.loads(json.dumps(report)) == report
    assert report == {
        "organization-name": "Sender Org",
        "date-range": {"start-datetime": "2030-04-01T00:00:00Z",
                       "end-datetime": "2030-04-02T00:00:00Z"},
        "contact-info": "tlsrpt@sender.example",
        "report-id": "2030-04-01T00:00:00Z_example.org",
        "policies": [
            {
                "policy": {
                    "policy-type": "sts",
                    "policy-string": ["version: STSv1", "mode: testing",
                                      "mx: *.mail.example.org", "max_age: 86400"],
                    "policy-domain": "example.org",
                    "mx-host": ["*.mail.example.org"],
                },
                "summary": {"total-successful-session-count": 5,
                            "total-failure-session-count": 5},
                "failure-details": [
                    {"result-type": "certificate-expired",
                     "sending-mta-ip": "2001:db8:abcd:12::1",
                     "receiving-mx-hostname": "mx1.mail.example.org",
                     "failed-session-count": 3},
                    {"result-type": "starttls-not-supported",
                     "sending-mta-ip": "2001:db8:abcd:12::1",
                     "receiving-mx-hostname": "mx2.mail.example.org",
                     "receiving-ip": "203.0.113.56",
                     "additional-information": "https://sender.example/info#1",
                     "failed-session-count": 1},
                    {"result-type": "validation-failure",
                     "sending-mta-ip": "2001:db8:abcd:12::1",
                     "receiving-mx-hostname": "mx1.mail.example.org",
                     "receiving-mx-helo": "mx-backup.example.org",
                     "receiving-ip": "203.0.113.58",
                     "failure-reason-code": "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED",
                     "failed-session-count": 1},
                ],
            },
            {
                "policy": {"policy-type": "no-policy-found", "policy-domain": "other.example"},
                "summary": {"total-successful-session-count": 7,
                            "total-failure-session-count": 0},
                "failure-details": [],
            },
            {
                "policy": {"policy-type": "tlsa", "policy-string": ["3 1 1 " + "AB" * 32],
                           "policy-domain": "dane.example", "mx-host": ["mx.dane.example"]},
                "summary": {"total-successful-session-count": 0,
                            "total-failure-session-count": 1},
                "failure-details": [
                    {"result-type": "tlsa-invalid", "sending-mta-ip": "198.51.100.1",
                     "receiving-ip": "2001:db8::25", "failed-session-count": 1},
                ],
            },
        ],
    }


def test_different_policy_strings_are_different_blocks() -> None:
    other = parse_policy("version: STSv1\nmode: enforce\nmx: *.mail.example.org\nmax_age: 60\n")
    report = _report([_sts(), _sts(policy_strings=other.policy_strings())])
    assert len(report["policies"]) == 2  # type: ignore[arg-type]


def test_empty_period() -> None:
    assert _report([])["policies"] == []


def test_datetimes_are_written_in_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    report = build_report(organization_name="o", contact_info="c", report_id="r",
                          start=datetime(2030, 4, 1, 2, 0, tzinfo=plus2),
                          end=datetime(2030, 4, 2, 2, 0, tzinfo=plus2), results=[])
    assert report["date-range"] == {"start-datetime": "2030-04-01T00:00:00Z",
                                    "end-datetime": "2030-04-02T00:00:00Z"}


@pytest.mark.parametrize("result_type", sorted(FAILURE_RESULT_TYPES))
def test_every_rfc_result_type_is_accepted(result_type: str) -> None:
    assert _sts(result_type=result_type).result_type == result_type


def test_rfc_list_is_complete() -> None:
    assert len(FAILURE_RESULT_TYPES) == 11


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"result_type": "tls-failed"}, "'tls-failed' is not a result type of RFC 8460"),
        ({"result_type": "Certificate-Expired"}, "is not a result type"),
        ({"result_type": "success"}, "is not a result type"),
        ({"sending_mta_ip": "300.1.1.1"}, "'300.1.1.1' is not an IP address"),
        ({"receiving_ip": "mx.example"}, "is not an IP address"),
        ({"count": 0}, "session count 0 must be a positive integer"),
        ({"count": True}, "session count True"),
        ({"policy_domain": ""}, "is not a host name"),
        ({"receiving_mx_hostname": "a b"}, "is not a host name"),
        ({"policy_strings": "version: STSv1"}, "not one string"),
        ({"policy_type": PolicyType.NO_POLICY_FOUND}, "carry no policy strings"),
    ],
)
def test_bad_results_are_rejected(changes: dict[str, object], fragment: str) -> None:
    with pytest.raises(PolicyInputError) as info:
        _sts(**changes)
    assert fragment in str(info.value)


def test_bad_report_metadata() -> None:
    with pytest.raises(PolicyInputError, match="not before end"):
        build_report(organization_name="o", contact_info="c", report_id="r", start=END,
                     end=START, results=[])
    with pytest.raises(PolicyInputError, match="timezone-aware"):
        build_report(organization_name="o", contact_info="c", report_id="r",
                     start=datetime(2030, 1, 1), end=END, results=[])
    with pytest.raises(PolicyInputError, match="organization_name"):
        build_report(organization_name=" ", contact_info="c", report_id="r", start=START,
                     end=END, results=[])
    with pytest.raises(PolicyInputError, match="not a SessionResult"):
        build_report(organization_name="o", contact_info="c", report_id="r", start=START,
                     end=END, results=[{"result-type": "x"}])  # type: ignore[list-item]


_results = st.lists(
    st.builds(
        _sts,
        result_type=st.sampled_from([None, *sorted(FAILURE_RESULT_TYPES)]),
        sending_mta_ip=st.sampled_from(["192.0.2.1", "192.0.2.2", "2001:db8::1"]),
        receiving_mx_hostname=st.sampled_from(["mx1.example.org", "mx2.example.org"]),
        count=st.integers(1, 50),
    ),
    max_size=30,
)


@given(_results)
def test_totals_add_up(results: list[SessionResult]) -> None:
    report = _report(results)
    policies: list[dict[str, dict[str, object]]] = report["policies"]  # type: ignore[assignment]
    ok = sum(r.count for r in results if r.successful)
    failed = sum(r.count for r in results if not r.successful)
    if not results:
        assert policies == []
        return
    (block,) = policies
    assert block["summary"] == {"total-successful-session-count": ok,
                                "total-failure-session-count": failed}
    details: list[dict[str, object]] = block["failure-details"]  # type: ignore[assignment]
    assert sum(d["failed-session-count"] for d in details) == failed  # type: ignore[misc]
    keys = [tuple(sorted((k, v) for k, v in d.items() if k != "failed-session-count"))
            for d in details]
    assert len(keys) == len(set(keys))
