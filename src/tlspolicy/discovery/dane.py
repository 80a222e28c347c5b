"""DANE inputs from DNS: the TLSA lookup of one MX host (RFC 7672 section 2.2,
SEMANTICS 10), over the discovery's DNS client and its cache."""

from __future__ import annotations

import asyncio

from ..policies.dane import TlsaLookup, TlsaLookupStatus, TlsaRecord
from .dns import DnsAnswer, DnsClient, DnsStatus

__all__ = ["addresses", "lookup_tlsa"]


async def addresses(dns: DnsClient, host: str) -> tuple[DnsAnswer, DnsAnswer]:
    """The A and AAAA answers for ``host``, asked together unless both are cached."""
    hit_a, hit_aaaa = dns.cached(host, "A"), dns.cached(host, "AAAA")
    if hit_a is not None and hit_aaaa is not None:
        return hit_a, hit_aaaa  # the cache-hit path: no tasks
    a, aaaa = await asyncio.gather(dns.query(host, "A"), dns.query(host, "AAAA"))
    return a, aaaa


async def lookup_tlsa(dns: DnsClient, name: str, port: int,
                      used: list[DnsAnswer]) -> TlsaLookup:
    """The TLSA lookup of ``name`` (normalised) on ``port``; every DNS answer it was
    derived from is appended to ``used`` (the lookup holds while they stay cached).

    The address records must be secure; for a secure CNAME ``name`` -> h',
    ``_port._tcp.h'`` is tried first, then ``_port._tcp.name`` on a secure denial.
    """
    answers = await addresses(dns, name)
    used.extend(answers)
    found = [a for a in answers if a.status is DnsStatus.RECORDS]
    failed = [a for a in answers if a.status is DnsStatus.FAILED]
    if not found:
        if failed:
            bogus = any(a.bogus for a in failed)
            return TlsaLookup(TlsaLookupStatus.BOGUS if bogus else TlsaLookupStatus.FAILED,
                              detail="address lookup failed: " + failed[0].detail)
        # No address at all: nothing to connect to, so nothing for DANE to protect.
        return TlsaLookup(TlsaLookupStatus.INSECURE if not all(a.secure for a in answers)
                          else TlsaLookupStatus.NODATA, base_domain=name,
                          detail=f"{name} has no address")
    if not all(a.secure for a in answers if a.status is not DnsStatus.FAILED):
        return TlsaLookup(TlsaLookupStatus.INSECURE, detail=f"address of {name} not secure")
    target = found[0].canonical or name
    candidates = [target, name] if target != name else [name]
    last: TlsaLookup | None = None
    for base in candidates:
        answer = await dns.query(f"_{port}._tcp.{base}", "TLSA")
        used.append(answer)
        if answer.status is DnsStatus.FAILED:
            return TlsaLookup(TlsaLookupStatus.BOGUS if answer.bogus
                              else TlsaLookupStatus.FAILED, base_domain=base,
                              detail=answer.detail)
        if not answer.secure:
            return TlsaLookup(TlsaLookupStatus.INSECURE, base_domain=base,
                              detail=f"TLSA answer for {base} not secure")
        if answer.status is DnsStatus.RECORDS:
            # The client holds a TLSA answer's records as TlsaRecords (see DnsClient._read).
            records: tuple[TlsaRecord, ...] = answer.records
            names = tuple(dict.fromkeys((base, target, name)))
            return TlsaLookup(TlsaLookupStatus.RECORDS, records, base_domain=base,
                              detail=f"reference names {', '.join(names)}",
                              reference_names=names[1:])
        status = (TlsaLookupStatus.NXDOMAIN if answer.status is DnsStatus.NXDOMAIN
                  else TlsaLookupStatus.NODATA)
        last = TlsaLookup(status, base_domain=name, detail=f"no TLSA at {base}")
    assert last is not None
    return last
