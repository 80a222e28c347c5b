"""Delivery scenarios for the TLS-RPT tests: one per result type, plus successes.

Each scenario is a real configuration, a Destination and a real aiosmtpd server
mode and certificate; running it through a driver with a sink records exactly
one result (or none, for a plan that never tries TLS), which ``expected`` names.
"""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Callable
from typing import Any

import attrs
from cryptography.hazmat.primitives.serialization import Encoding

from smtp_servers import DOMAIN, MX_HOST, CertSet, Mode, smtp_server
from tlspolicy import (
    Destination,
    MtaStsPolicy,
    Resolver,
    StsMode,
    TlsaLookup,
    TlsaLookupStatus,
    TlsaRecord,
    loads_toml,
)
from tlspolicy.adapters import ResultSink, StartTlsStopped

TIMEOUT = 10.0
MESSAGE = b"Subject: tlsrpt scenario\r\n\r\nbody\r\n"


@attrs.frozen
class Scenario:
    name: str
    tls: str
    verify: str
    mode: Mode
    cert: str
    destination: Callable[[CertSet], Destination]
    #: (policy type, result type or None for success), or None: nothing recorded.
    expected: tuple[str, str | None] | None
    fallback: bool = False


def _sts(mx: str = MX_HOST) -> Callable[[CertSet], Destination]:
    return lambda _: Destination(mta_sts=MtaStsPolicy(StsMode.ENFORCE, (mx,), 86400))


def _tlsa(matching: bool) -> Callable[[CertSet], Destination]:
    def make(certs: CertSet) -> Destination:
        name = "self-signed" if matching else "valid"
        der = certs.files[name].cert.public_bytes(Encoding.DER)
        record = TlsaRecord.for_certificate(der, 3, 1, 1)
        return Destination(tlsa=TlsaLookup(TlsaLookupStatus.RECORDS, (record,)), mx_dnssec=True)
    return make


def _none(_: CertSet) -> Destination:
    return Destination()


SCENARIOS = (
    Scenario("ok-none", "ifavailable", "no", Mode.TLS, "valid", _none, ("no-policy-found", None)),
    Scenario("ok-sts", "ifavailable", "no", Mode.TLS, "valid", _sts(), ("sts", None)),
    Scenario("ok-tlsa", "ifavailable", "no", Mode.TLS, "self-signed", _tlsa(True),
             ("tlsa", None)),
    Scenario("no-starttls", "required", "no", Mode.NO_STARTTLS, "valid", _none,
             ("no-policy-found", "starttls-not-supported")),
    Scenario("no-starttls-ifavailable", "ifavailable", "no", Mode.NO_STARTTLS, "valid", _none,
             ("no-policy-found", "starttls-not-supported")),
    Scenario("rejected", "required", "no", Mode.REJECT, "valid", _none,
             ("no-policy-found", "starttls-not-supported")),
    Scenario("handshake", "required", "no", Mode.BREAK_HANDSHAKE, "valid", _none,
             ("no-policy-found", "validation-failure")),
    Scenario("untrusted", "required", "ca", Mode.TLS, "self-signed", _none,
             ("no-policy-found", "certificate-not-trusted")),
    Scenario("expired", "required", "ca", Mode.TLS, "expired", _none,
             ("no-policy-found", "certificate-expired")),
    Scenario("wrong-name-sts", "ifavailable", "no", Mode.TLS, "wrong-name", _sts(),
             ("sts", "certificate-host-mismatch")),
    Scenario("tlsa-mismatch", "ifavailable", "no", Mode.TLS, "self-signed", _tlsa(False),
             ("tlsa", "tlsa-invalid")),
    Scenario("dnssec-bogus", "ifavailable", "no", Mode.TLS, "valid",
             lambda _: Destination(tlsa=TlsaLookup(TlsaLookupStatus.BOGUS), mx_dnssec=True),
             ("tlsa", "dnssec-invalid")),
    Scenario("sts-mx-not-allowed", "ifavailable", "no", Mode.TLS, "valid",
             _sts("other.example"), ("sts", "validation-failure")),
    Scenario("optional-reported", "ifavailable", "optional", Mode.TLS, "self-signed", _none,
             ("no-policy-found", "certificate-not-trusted")),
    Scenario("tls-no", "no", "no", Mode.TLS, "valid", _none, None),
)


def resolver(certs: CertSet, scenario: Scenario) -> Resolver:
    return Resolver(loads_toml(f"""
[global]
tls = "{scenario.tls}"
tls_verify = "{scenario.verify}"
tls_ifavailable_fallback = {"true" if scenario.fallback else "false"}
use_mta_sts = true
use_dane = true
tls_ca = "{certs.ca_path}"
"""))


def run(scenario: Scenario, certs: CertSet, sink: ResultSink, *, driver: str = "smtplib",
        domain: str = DOMAIN) -> bool:
    """Run one attempt through ``driver`` with ``sink``; whether a message was delivered."""
    destination = scenario.destination(certs)
    decision = resolver(certs, scenario).resolve(domain, mx_host=MX_HOST,
                                                 destination=destination)
    with smtp_server(scenario.mode, tls_context=certs.context(scenario.cert)) as server:
        if driver == "smtplib":
            delivered = _smtplib(decision, server.port, sink, destination)
        else:
            delivered = asyncio.run(_aiosmtplib(decision, server.port, sink, destination))
        assert len(server.messages) == int(delivered)
    return delivered


def _smtplib(decision: Any, port: int, sink: ResultSink, destination: Destination) -> bool:
    from tlspolicy.adapters.smtplib import starttls

    try:
        result = starttls(decision, "127.0.0.1", port, local_hostname="client.test",
                          timeout=TIMEOUT, sink=sink, destination=destination)
    except StartTlsStopped:
        return False
    try:
        result.smtp.sendmail("sender@client.test", [f"rcpt@{DOMAIN}"], MESSAGE,
                             mail_options=list(result.record.mail_options))
    finally:
        try:
            result.smtp.quit()
        except smtplib.SMTPException:
            result.smtp.close()
    return True


async def _aiosmtplib(decision: Any, port: int, sink: ResultSink,
                      destination: Destination) -> bool:
    from tlspolicy.adapters.aiosmtplib import starttls

    try:
        result = await starttls(decision, "127.0.0.1", port, local_hostname="client.test",
                                timeout=TIMEOUT, sink=sink, destination=destination)
    except StartTlsStopped:
        return False
    try:
        await result.smtp.sendmail("sender@client.test", [f"rcpt@{DOMAIN}"], MESSAGE,
                                   mail_options=list(result.record.mail_options))
    finally:
        await result.smtp.quit()
    return True
