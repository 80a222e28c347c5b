"""TLS-RPT aggregate reports (RFC 8460 section 4): a pure builder.

The caller records one :class:`SessionResult` per delivery attempt (or per group
of identical attempts, with ``count``) and calls :func:`build_report` once per
reporting period; the result is a ``dict`` ready for ``json.dumps``.  Sending
the report (mail or HTTPS, gzip) and choosing the period are the caller's job.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import attrs

from ..decision import Decision, Source
from ..errors import PolicyInputError, strings_tuple
from ..outcomes import Action, Status
from .dane import TlsaRecord
from .destination import Destination
from .mtasts import MtaStsPolicy, StsMode

__all__ = [
    "FAILURE_RESULT_TYPES",
    "PolicyType",
    "ReportPolicy",
    "SessionResult",
    "aggregate_counts",
    "build_report",
    "report_filename",
    "report_policy",
    "session_result",
]

#: Result types of RFC 8460 section 4.3 (negotiation failures, then policy failures).
FAILURE_RESULT_TYPES: Final = frozenset({
    "starttls-not-supported",
    "certificate-host-mismatch",
    "certificate-expired",
    "certificate-not-trusted",
    "validation-failure",
    "tlsa-invalid",
    "dnssec-invalid",
    "dane-required",
    "sts-policy-fetch-error",
    "sts-policy-invalid",
    "sts-webpki-invalid",
})


class PolicyType(enum.Enum):
    """The ``policy-type`` of a report's policy block (RFC 8460 section 4.4)."""

    STS = "sts"
    TLSA = "tlsa"
    NO_POLICY_FOUND = "no-policy-found"


def _ip(value: str | None) -> str | None:
    return None if value is None else _canonical_ip(value)


def _host(value: str | None) -> str | None:
    return None if value is None else _canonical_host(value)


# Cached (the converters above are plain functions, which attrs' typing needs): recording
# runs once per delivery attempt, mostly for a few addresses and hosts.
@functools.lru_cache(maxsize=4096)
def _canonical_ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise PolicyInputError(f"TLS-RPT: {value!r} is not an IP address") from None


@functools.lru_cache(maxsize=4096)
def _canonical_host(value: str) -> str:
    if not isinstance(value, str) or not value.strip(".") or any(c.isspace() for c in value):
        raise PolicyInputError(f"TLS-RPT: {value!r} is not a host name")
    lowered = value.lower()
    return lowered[:-1] if lowered.endswith(".") else lowered


def _domain(value: str) -> str:
    host = _host(value)
    if host is None:
        raise PolicyInputError("TLS-RPT: policy_domain is required")
    return host


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return strings_tuple(value,
                         one_string="TLS-RPT: expected a sequence of strings, not one string",
                         not_a_string=lambda item: f"TLS-RPT: {item!r} is not a string")


def _check_result_type(instance: SessionResult, attribute: attrs.Attribute[str | None],
                       value: str | None) -> None:
    if value is not None and value not in FAILURE_RESULT_TYPES:
        raise PolicyInputError(
            f"TLS-RPT: {value!r} is not a result type of RFC 8460 section 4.3 "
            f"(one of {', '.join(sorted(FAILURE_RESULT_TYPES))}; None for success)"
        )


def _check_count(instance: SessionResult, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PolicyInputError(f"TLS-RPT: session count {value!r} must be a positive integer")


@attrs.frozen(slots=True, cache_hash=True)
class SessionResult:
    """One recorded delivery outcome (or ``count`` identical ones).

    ``result_type`` is ``None`` for a successful TLS session, else one of
    :data:`FAILURE_RESULT_TYPES`.  ``policy_strings`` are the policy as it should
    appear in the report: the MTA-STS policy lines
    (:meth:`~tlspolicy.policies.mtasts.MtaStsPolicy.policy_strings`) or the TLSA
    records in presentation format.  ``mx_hosts`` is the report's ``mx-host``
    list: the policy's ``mx`` patterns for ``sts``, the MX host for ``tlsa``.
    IP addresses are validated and written in canonical form.
    """

    policy_type: PolicyType = attrs.field(validator=attrs.validators.instance_of(PolicyType))
    policy_domain: str = attrs.field(converter=_domain)
    policy_strings: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    mx_hosts: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    result_type: str | None = attrs.field(default=None, validator=_check_result_type)
    sending_mta_ip: str | None = attrs.field(default=None, converter=_ip)
    receiving_mx_hostname: str | None = attrs.field(default=None, converter=_host)
    receiving_mx_helo: str | None = None
    receiving_ip: str | None = attrs.field(default=None, converter=_ip)
    failure_reason_code: str | None = None
    additional_information: str | None = None
    count: int = attrs.field(default=1, validator=_check_count)

    def __attrs_post_init__(self) -> None:
        if self.policy_type is PolicyType.NO_POLICY_FOUND and self.policy_strings:
            raise PolicyInputError("TLS-RPT: 'no-policy-found' results carry no policy strings")

    @property
    def successful(self) -> bool:
        """Whether this records successful sessions."""
        return self.result_type is None


def _rfc3339(value: datetime, what: str) -> str:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise PolicyInputError(f"TLS-RPT: {what} must be a timezone-aware datetime")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _non_empty(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PolicyInputError(f"TLS-RPT: {what} must be a non-empty string")
    return value


_DETAIL_FIELDS: Final = (
    ("result-type", "result_type"),
    ("sending-mta-ip", "sending_mta_ip"),
    ("receiving-mx-hostname", "receiving_mx_hostname"),
    ("receiving-mx-helo", "receiving_mx_helo"),
    ("receiving-ip", "receiving_ip"),
    ("additional-information", "additional_information"),
    ("failure-reason-code", "failure_reason_code"),
)


def build_report(
    *,
    organization_name: str,
    contact_info: str,
    report_id: str,
    start: datetime,
    end: datetime,
    results: Iterable[SessionResult],
) -> dict[str, Any]:
    """Build the RFC 8460 aggregate report object from recorded results.

    Results are grouped into one policy block per (type, domain, policy strings,
    mx hosts), in first-seen order, each with its success and failure totals and
    ``failure-details`` grouped by every detail field (result type, sending IP,
    receiving MX name, HELO, receiving IP, additional information, reason code),
    with ``failed-session-count``.  Absent optional fields are left out.
    ``start`` must be before ``end``; both are written in UTC.
    """
    start_text = _rfc3339(start, "start")
    end_text = _rfc3339(end, "end")
    if not start < end:
        raise PolicyInputError(f"TLS-RPT: date range start {start_text} is not before end "
                               f"{end_text}")
    blocks: dict[tuple[object, ...], dict[str, Any]] = {}
    details: dict[tuple[object, ...], dict[tuple[object, ...], dict[str, Any]]] = {}
    for result in results:
        if not isinstance(result, SessionResult):
            raise PolicyInputError(f"TLS-RPT: {result!r} is not a SessionResult")
        key = (result.policy_type, result.policy_domain, result.policy_strings,
               result.mx_hosts)
        block = blocks.get(key)
        if block is None:
            policy: dict[str, Any] = {"policy-type": result.policy_type.value}
            if result.policy_strings:
                policy["policy-string"] = list(result.policy_strings)
            policy["policy-domain"] = result.policy_domain
            if result.mx_hosts:
                policy["mx-host"] = list(result.mx_hosts)
            block = {
                "policy": policy,
                "summary": {"total-successful-session-count": 0,
                            "total-failure-session-count": 0},
                "failure-details": [],
            }
            blocks[key] = block
            details[key] = {}
        if result.successful:
            block["summary"]["total-successful-session-count"] += result.count
            continue
        block["summary"]["total-failure-session-count"] += result.count
        detail_key = tuple(getattr(result, attr) for _, attr in _DETAIL_FIELDS)
        detail = details[key].get(detail_key)
        if detail is None:
            detail = {name: getattr(result, attr) for name, attr in _DETAIL_FIELDS
                      if getattr(result, attr) is not None}
            detail["failed-session-count"] = 0
            details[key][detail_key] = detail
            block["failure-details"].append(detail)
        detail["failed-session-count"] += result.count
    return {
        "organization-name": _non_empty(organization_name, "organization_name"),
        "date-range": {"start-datetime": start_text, "end-datetime": end_text},
        "contact-info": _non_empty(contact_info, "contact_info"),
        "report-id": _non_empty(report_id, "report_id"),
        "policies": list(blocks.values()),
    }


# ----------------------------------------------------------------- recording helpers


@attrs.frozen(slots=True)
class ReportPolicy:
    """The policy that applied to an attempt, as a report's policy block names it."""

    policy_type: PolicyType
    policy_domain: str
    policy_strings: tuple[str, ...] = ()
    mx_hosts: tuple[str, ...] = ()


def report_policy(decision: Decision, destination: Destination | None = None) -> ReportPolicy:
    """The policy a decision applied: ``tlsa`` when DANE decided, ``sts`` when an
    MTA-STS policy (enforce or testing) was in force, else ``no-policy-found``.

    ``destination`` is what the decision was resolved with; it supplies the
    MTA-STS policy text (a decision carries only its effect).  Without it an
    MTA-STS decision is still reported as ``sts``, with no policy string.
    A ``TLS-Required: No`` message ignored destination policy: ``no-policy-found``.
    """
    ignored = destination is not None and destination.tls_required_no and not decision.requiretls
    sts = destination.mta_sts if destination is not None and not ignored else None
    return _report_policy(decision.domain, decision.mx_host, decision.decided_by,
                          decision.tlsa_records, sts, ignored)


@functools.lru_cache(maxsize=4096)
def _report_policy(domain: str, mx_host: str | None, decided_by: Mapping[str, Source],
                   tlsa_records: tuple[TlsaRecord, ...], sts: MtaStsPolicy | None,
                   ignored: bool) -> ReportPolicy:
    # Cached: the inputs are immutable (the decision's maps hash once) and a
    # sender sees few distinct policies, so recording an attempt stays cheap.
    scopes = {source.scope for source in decided_by.values()}
    if not ignored and "dane" in scopes:
        mx = (mx_host,) if mx_host else ()
        return ReportPolicy(PolicyType.TLSA, domain, tuple(r.to_text() for r in tlsa_records), mx)
    if sts is not None and sts.mode is not StsMode.NONE:
        return ReportPolicy(PolicyType.STS, domain, sts.policy_strings(), sts.mx)
    if not ignored and "mta-sts" in scopes:
        return ReportPolicy(PolicyType.STS, domain)
    return ReportPolicy(PolicyType.NO_POLICY_FOUND, domain)


def session_result(
    decision: Decision,
    policy: ReportPolicy,
    *,
    path: Iterable[tuple[Action, Status | None]],
    reported: Iterable[Status] = (),
    mx_host: str | None = None,
    receiving_ip: str | None = None,
    sending_ip: str | None = None,
) -> SessionResult | None:
    """The result to record for one attempt, or ``None`` when TLS-RPT has nothing to say.

    ``path`` is the attempt's actions with their statuses (the plan first),
    ``reported`` the statuses of problems reported while delivery went on.  The
    first TLS-RPT result type met decides a failure: a stopping or falling-back
    step, then a reported problem (``tls_verify = optional``), then a policy
    report the decision carries (an MTA-STS fetch failure, an MX outside a
    testing policy).  STARTTLS not advertised counts as
    ``starttls-not-supported`` even when the decision carried on in plaintext.
    An attempt whose plan was SKIP (TLS not wanted) or that stopped for a
    reason without a result type before TLS (remembered broken TLS) is not a
    TLS session: ``None``.  A session that ended after a good TLS handshake for a
    reason outside TLS-RPT (REQUIRETLS not offered) is a success.
    """
    steps = list(path)
    if not steps or steps[0][0] is Action.SKIP:
        return None
    result_type: str | None = None
    for action, status in steps[1:] if steps[0][0] is not Action.FAIL else steps:
        if status is not None and status.tlsrpt is not None and action is not Action.PROCEED:
            result_type, reason = status.tlsrpt, status.text
            break
    else:
        reason = None
        if steps[-1][0] is Action.SKIP and len(steps) > 1:
            result_type, reason = "starttls-not-supported", "STARTTLS not advertised"
    if result_type is None:
        for status in reported:
            if status.tlsrpt is not None:
                result_type, reason = status.tlsrpt, status.text
                break
    if result_type is None:
        for report in decision.reports:
            if report.result_type in FAILURE_RESULT_TYPES:
                result_type, reason = report.result_type, report.detail
                break
    if result_type is None and steps[-1][0] is not Action.PROCEED and not any(
            a is Action.PROCEED for a, _ in steps):
        return None
    if result_type is None:
        return _result(policy, None, None, None, None, None)
    return _result(policy, result_type, sending_ip, mx_host or decision.mx_host, receiving_ip,
                   reason)


@functools.lru_cache(maxsize=4096)
def _result(policy: ReportPolicy, result_type: str | None, sending_ip: str | None,
            mx_host: str | None, receiving_ip: str | None, reason: str | None) -> SessionResult:
    # Results are immutable and repeat (a few policies, hosts and failures per
    # domain), so one instance serves every equal attempt: recording stays cheap.
    return SessionResult(
        policy.policy_type, policy.policy_domain, policy.policy_strings, policy.mx_hosts,
        result_type=result_type, sending_mta_ip=sending_ip, receiving_mx_hostname=mx_host,
        receiving_ip=receiving_ip, failure_reason_code=reason)


def aggregate_counts(items: Iterable[tuple[SessionResult, int]]) -> list[SessionResult]:
    """Sum the counts of equal results (ignoring their own ``count``): one result each."""
    totals: dict[SessionResult, int] = {}
    for result, count in items:
        key = attrs.evolve(result, count=1) if result.count != 1 else result
        totals[key] = totals.get(key, 0) + count * result.count
    return [attrs.evolve(result, count=n) for result, n in totals.items() if n > 0]


def report_filename(submitter: str, policy_domain: str, start: datetime, end: datetime,
                    unique_id: str | None = None, *, gzip: bool = True) -> str:
    """The report file name of RFC 8460 section 5.1:
    ``submitter!policy-domain!begin!end[!unique-id].json[.gz]`` (times in epoch seconds)."""
    parts = [_domain(submitter), _domain(policy_domain),
             str(int(start.timestamp())), str(int(end.timestamp()))]
    if unique_id:
        if any(c in unique_id for c in "!./\\") or any(c.isspace() for c in unique_id):
            raise PolicyInputError(f"TLS-RPT: unique id {unique_id!r} cannot go in a file name")
        parts.append(unique_id)
    return "!".join(parts) + (".json.gz" if gzip else ".json")
