"""What DNS answers say, read without further I/O: the MX hosts of a domain, the
``_mta-sts`` and ``_smtp._tls`` TXT records, and a ``[host]:port`` next hop."""

from __future__ import annotations

import re
from typing import Final

from ..errors import ResolutionError
from ..names import normalise_domain
from ..policies.mtasts import MtaStsTxtRecord, MtaStsTxtRecordError, select_txt_record
from .dns import DnsAnswer, DnsStatus
from .models import MxLookup, TlsRptRecord

__all__ = ["mx_lookup", "next_hop", "sts_record", "tlsrpt_record", "txt_strings"]

_STS_RE: Final = re.compile(r"v=STSv1[ \t]*;")
_RPT_RE: Final = re.compile(r"v=TLSRPTv1[ \t]*(;|$)")
_URI_TEXT: Final = re.compile(r"[\x21-\x7e]+")
_SMART_HOST_RE: Final = re.compile(r"\[([^\[\]]+)\](?::([0-9]{1,5}))?")
#: Cap on the TXT strings of one record we look at (a TXT RRset can be ~64 KiB).
_MAX_TXT: Final = 4096


def txt_strings(answer: DnsAnswer) -> list[str]:
    """The TXT records of ``answer``, each its strings joined (capped) and decoded."""
    texts = []
    for rdata in answer.records:
        raw = b"".join(rdata.strings)[:_MAX_TXT]
        texts.append(raw.decode("utf-8", errors="replace"))
    return texts


def mx_lookup(name: str, answer: DnsAnswer) -> MxLookup:
    """The MX hosts of ``name`` from its MX ``answer`` (SEMANTICS 10: implicit, null,
    NXDOMAIN)."""
    if answer.status is DnsStatus.FAILED:
        return MxLookup("failed", (), False, answer.detail)
    if answer.status is DnsStatus.NXDOMAIN:
        return MxLookup("nxdomain", (), answer.secure, "domain does not exist")
    if answer.status is DnsStatus.NODATA:
        return MxLookup("implicit", (name,), answer.secure, "no MX: the domain itself")
    records = sorted(answer.records, key=lambda r: (r.preference, r.exchange.to_text()))
    hosts: list[str] = []
    for rdata in records:
        host = rdata.exchange.to_text(omit_final_dot=True).lower()
        if host in ("", "."):
            if len(records) == 1:
                return MxLookup("null", (), answer.secure, "null MX (RFC 7505)")
            continue
        if host not in hosts:
            hosts.append(host)
    return MxLookup("mx", tuple(hosts), answer.secure)


def sts_record(answer: DnsAnswer) -> tuple[MtaStsTxtRecord | None, str]:
    """The one ``v=STSv1`` record of an ``_mta-sts`` TXT ``answer``, or ``None`` with
    why there is none."""
    texts = txt_strings(answer)
    record = None
    why = (f"{sum(1 for t in texts if _STS_RE.match(t))} v=STSv1 TXT records "
           "(need exactly 1)")
    try:
        record = select_txt_record(texts)
    except MtaStsTxtRecordError as exc:
        why = str(exc)
    return record, why


def tlsrpt_record(answer: DnsAnswer) -> TlsRptRecord:
    """The ``_smtp._tls`` TXT ``answer`` read: exactly one ``v=TLSRPTv1`` record, else
    none."""
    if answer.status is DnsStatus.FAILED:
        return TlsRptRecord(None, (), answer.detail, failed=True)
    records = [t for t in txt_strings(answer) if _RPT_RE.match(t)]
    if len(records) != 1:
        return TlsRptRecord(None, (), f"{len(records)} v=TLSRPTv1 records (need exactly 1)")
    fields = dict(part.strip().partition("=")[::2] for part in records[0].split(";")
                  if "=" in part)
    listed = [u.strip() for u in fields.get("rua", "").split(",") if u.strip()]
    # A URI is printable ASCII without spaces (RFC 3986): anything else is left out, so
    # that no control character of a stranger's record reaches a log line or a request.
    rua = tuple(u for u in listed if _URI_TEXT.fullmatch(u))
    if len(rua) != len(listed):
        return TlsRptRecord(records[0], rua, f"{len(listed) - len(rua)} rua entries that are "
                                             "not URIs left out")
    return TlsRptRecord(records[0], rua)


def next_hop(domain: str) -> tuple[str, int, bool]:
    """``domain`` as ``(policy domain, port, smart host)``: a ``[host]:port`` next hop is
    a smart host, its own policy domain; anything else is a domain on port 25."""
    if not isinstance(domain, str):
        raise ResolutionError(f"domain must be a string, not {type(domain).__name__}")
    match = _SMART_HOST_RE.fullmatch(domain.strip())
    if match is None:
        return normalise_domain(domain), 25, False
    port = int(match.group(2)) if match.group(2) else 25
    if not 0 < port < 65536:
        raise ResolutionError(f"next hop {domain[:100]!r}: port {port} out of range")
    return normalise_domain(match.group(1)), port, True
