"""Real aiosmtpd receiving servers on 127.0.0.1 for the adapter tests.

Each :class:`SmtpServer` runs its own event loop in a thread, listens on an
ephemeral port, and records every message it accepts with whether the session
was over TLS (:attr:`Received.tls`), so a test checks the result on the server
side.  The variants the SEMANTICS tables need are one :class:`Mode` each:
STARTTLS with a given certificate, no STARTTLS, STARTTLS answered 454, and
STARTTLS answered 220 followed by garbage and a close (a broken handshake).
A server can also advertise REQUIRETLS after STARTTLS.  Use it as a context
manager: the server is stopped whatever the test does; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import enum
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
from aiosmtpd.smtp import SMTP, Envelope, Session

__all__ = ["Mode", "Received", "SmtpServer", "smtp_server"]

#: Seconds allowed for the server to start or stop.
LIFECYCLE_TIMEOUT = 10.0


class Mode(enum.Enum):
    """How the server answers STARTTLS."""

    TLS = "tls"
    NO_STARTTLS = "no-starttls"
    REJECT = "reject-454"
    BREAK_HANDSHAKE = "break-handshake"


@attrs.frozen(slots=True)
class Received:
    """One accepted message and how it came in."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    tls: bool
    tls_version: str | None
    requiretls: bool
    #: The name the client gave in its EHLO (or HELO) on the connection it came in on.
    helo: str | None = None


class _Handler:
    def __init__(self, advertise_requiretls: bool) -> None:
        self.advertise_requiretls = advertise_requiretls
        self.messages: list[Received] = []
        self.connections = 0
        self.lock = threading.Lock()

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        if self.advertise_requiretls and session.ssl is not None:
            responses.insert(len(responses) - 1, "250-REQUIRETLS")
        return responses

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        ssl_object = server.transport.get_extra_info("ssl_object") if server.transport else None
        received = Received(
            mail_from=str(envelope.mail_from),
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=bytes(envelope.original_content or b""),
            tls=session.ssl is not None,
            tls_version=ssl_object.version() if ssl_object is not None else None,
            requiretls=bool(getattr(session, "requiretls", False)),
            helo=session.host_name,
        )
        with self.lock:
            self.messages.append(received)
        return "250 OK queued"


class _Server(SMTP):
    """aiosmtpd's SMTP with the misbehaviours the tests need."""

    def __init__(self, handler: _Handler, mode: Mode, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.mode = mode
        handler.connections += 1

    async def smtp_STARTTLS(self, arg: str) -> None:
        if self.mode is Mode.REJECT:
            await self.push("454 4.7.0 TLS not available due to temporary reason")
            return
        if self.mode is Mode.BREAK_HANDSHAKE:
            await self.push("220 Ready to start TLS")
            assert self.transport is not None
            self.transport.write(b"\x15\x03\x01\x00\x02garbage, not a TLS record\r\n")
            self.transport.close()
            return
        await super().smtp_STARTTLS(arg)

    async def smtp_MAIL(self, arg: str | None) -> None:
        # aiosmtpd rejects unknown MAIL parameters; accept and record REQUIRETLS
        # (RFC 8689) when it was advertised.
        if arg is not None and self.session is not None:
            words = arg.split()
            kept = [w for w in words if w.upper() != "REQUIRETLS"]
            if len(kept) != len(words):
                self.session.requiretls = True  # type: ignore[attr-defined]
                arg = " ".join(kept)
        await super().smtp_MAIL(arg)


def server_context(chain: Path, key: Path) -> ssl.SSLContext:
    """A server context presenting ``chain`` (leaf first) with ``key``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain, key)
    return context


class SmtpServer:
    """A receiving server in its own thread and loop (see the module doc)."""

    def __init__(self, mode: Mode, *, tls_context: ssl.SSLContext | None = None,
                 advertise_requiretls: bool = False, hostname: str = "mx.example.test",
                 host: str = "127.0.0.1") -> None:
        if mode is not Mode.NO_STARTTLS and tls_context is None:
            # STARTTLS is advertised only with a context; the broken and
            # rejecting modes never use it for a handshake.
            tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.mode = mode
        self.tls_context = tls_context if mode is not Mode.NO_STARTTLS else None
        self.hostname = hostname
        self.handler = _Handler(advertise_requiretls)
        self.host = host
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"smtpd-{mode.value}",
                                        daemon=True)
        self._server: asyncio.base_events.Server | None = None

    @property
    def messages(self) -> list[Received]:
        """Every message accepted so far."""
        with self.handler.lock:
            return list(self.handler.messages)

    def _factory(self) -> SMTP:
        return _Server(self.handler, self.mode, hostname=self.hostname,
                       tls_context=self.tls_context, loop=self._loop)

    async def _start(self) -> None:
        self._server = await self._loop.create_server(self._factory, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await asyncio.wait_for(self._server.wait_closed(), LIFECYCLE_TIMEOUT)

    def start(self) -> None:
        """Start listening; :attr:`port` is then the ephemeral port."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(LIFECYCLE_TIMEOUT)

    def stop(self) -> None:
        """Close the listener and every session, stop the loop and the thread."""
        if self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(
                    LIFECYCLE_TIMEOUT)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(LIFECYCLE_TIMEOUT)
        if not self._thread.is_alive():
            self._loop.close()


@contextmanager
def smtp_server(mode: Mode, **kwargs: Any) -> Iterator[SmtpServer]:
    """Run an :class:`SmtpServer` for the duration of a ``with`` block."""
    server = SmtpServer(mode, **kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# ----------------------------------------------------------- scenario tables
#
# The rows of SEMANTICS section 4, shared by the smtplib and aiosmtplib driver
# tests.  Decisions come from real TOML configurations through the resolver.

DOMAIN = "example.test"
MX_HOST = "mx.example.test"


def decision_from_toml(*, tls: str, verify: str = "no", fallback: bool = True,
                       ca: Path | None = None, extra: str = "") -> Any:
    """Resolve (default binding, :data:`DOMAIN`, :data:`MX_HOST`) from a real config."""
    from tlspolicy import Resolver, loads_toml

    lines = ["[global]", f'tls = "{tls}"', f'tls_verify = "{verify}"',
             f"tls_ifavailable_fallback = {'true' if fallback else 'false'}"]
    if ca is not None:
        lines.append(f'tls_ca = "{ca}"')
    text = "\n".join(lines) + "\n" + extra
    return Resolver(loads_toml(text, "adapter-test.toml")).resolve(DOMAIN, mx_host=MX_HOST)


@attrs.frozen(slots=True)
class Expect:
    """What a row must produce: final action, status, delivery seen by the server."""

    action: str  # "proceed", "skip", "fallback", "defer", "fail"
    delivered: str | None  # "tls", "plain" or None (not delivered)
    status: str | None = None  # "451 4.7.5 ..." for DEFER / FAIL
    reports: tuple[str, ...] = ()  # observations reported although delivery went on
    verified: str = "NONE"
    reconnected: bool = False
    #: Why a plaintext delivery is plaintext, as the driver must record it.
    plaintext: str | None = None


@attrs.frozen(slots=True)
class NegotiationRow:
    """A row of the negotiation table: server behaviour x tls x fallback."""

    tls: str
    mode: Mode
    fallback: bool
    expect: Expect

    @property
    def id(self) -> str:
        return f"tls={self.tls}-{self.mode.value}-fallback={str(self.fallback).lower()}"


_NOT_ADV = "451 4.7.6 STARTTLS required but not advertised"
_REJECTED = "451 4.7.5 no tls go-ahead"
_HANDSHAKE = "451 4.7.5 TLS negotiation failed"

NEGOTIATION_ROWS: tuple[NegotiationRow, ...] = tuple(
    row
    for fallback in (True, False)
    for row in (
        NegotiationRow("no", Mode.TLS, fallback,
                       Expect("skip", "plain", plaintext="not-attempted")),
        NegotiationRow("ifavailable", Mode.NO_STARTTLS, fallback,
                       Expect("skip", "plain", plaintext="not-advertised")),
        NegotiationRow("ifavailable", Mode.REJECT, fallback,
                       Expect("fallback", "plain", reports=("starttls-rejected",),
                              plaintext="refused")
                       if fallback else Expect("defer", None, _REJECTED,
                                               reports=("starttls-rejected",))),
        NegotiationRow("ifavailable", Mode.BREAK_HANDSHAKE, fallback,
                       Expect("fallback", "plain", reports=("handshake-failed",),
                              reconnected=True, plaintext="handshake-failed")
                       if fallback else Expect("defer", None, _HANDSHAKE,
                                               reports=("handshake-failed",))),
        NegotiationRow("required", Mode.NO_STARTTLS, fallback,
                       Expect("fail", None, _NOT_ADV, reports=("starttls-not-advertised",))),
        NegotiationRow("required", Mode.REJECT, fallback,
                       Expect("fail", None, _REJECTED, reports=("starttls-rejected",))),
        NegotiationRow("required", Mode.BREAK_HANDSHAKE, fallback,
                       Expect("fail", None, _HANDSHAKE, reports=("handshake-failed",))),
    )
)


@attrs.frozen(slots=True)
class CertificateRow:
    """A row of the certificate table: tls_verify x the certificate the server shows."""

    verify: str
    cert: str  # "valid", "wrong-name", "expired", "self-signed"
    expect: Expect

    @property
    def id(self) -> str:
        return f"verify={self.verify}-{self.cert}"


_UNTRUSTED = "451 4.7.5 remote node SSL certificate not signed by a valid CA"
_EXPIRED = "451 4.7.5 SSL certificate expired or not yet valid"
_NAME = "451 4.7.5 SSL certificate subject does not match host"

# Under every row tls = ifavailable with fallback = true: a certificate problem
# must never lead to FALLBACK, whatever tls_ifavailable_fallback says.
CERTIFICATE_ROWS: tuple[CertificateRow, ...] = (
    CertificateRow("no", "valid", Expect("proceed", "tls")),
    CertificateRow("no", "wrong-name", Expect("proceed", "tls")),
    CertificateRow("no", "expired", Expect("proceed", "tls")),
    CertificateRow("no", "self-signed", Expect("proceed", "tls")),
    CertificateRow("optional", "valid", Expect("proceed", "tls", verified="HOST")),
    CertificateRow("optional", "wrong-name",
                   Expect("proceed", "tls", reports=("name-mismatch",), verified="CA")),
    CertificateRow("optional", "expired",
                   Expect("proceed", "tls", reports=("certificate-expired",))),
    CertificateRow("optional", "self-signed",
                   Expect("proceed", "tls", reports=("chain-not-trusted",))),
    CertificateRow("ca", "valid", Expect("proceed", "tls", verified="HOST")),
    CertificateRow("ca", "wrong-name", Expect("proceed", "tls", verified="CA")),
    CertificateRow("ca", "expired",
                   Expect("fail", None, _EXPIRED, reports=("certificate-expired",))),
    CertificateRow("ca", "self-signed",
                   Expect("fail", None, _UNTRUSTED, reports=("chain-not-trusted",))),
    CertificateRow("host", "valid", Expect("proceed", "tls", verified="HOST")),
    CertificateRow("host", "wrong-name", Expect("fail", None, _NAME, reports=("name-mismatch",))),
    CertificateRow("host", "expired",
                   Expect("fail", None, _EXPIRED, reports=("certificate-expired",))),
    CertificateRow("host", "self-signed",
                   Expect("fail", None, _UNTRUSTED, reports=("chain-not-trusted",))),
)


def check_outcome(expect: Expect, record: Any, error: Any, server: SmtpServer,
                  decision: Any = None) -> None:
    """Assert a driver run against ``expect``, including what the server received.

    ``record`` is the :class:`~tlspolicy.adapters.TlsRecord` of a run that
    delivered (``error`` ``None``); ``error`` the
    :class:`~tlspolicy.adapters.StartTlsStopped` of one that stopped.  With
    ``decision`` (the one the run carried out), the connection facts the
    driver recorded are checked too (:func:`check_facts`).
    """
    if expect.delivered is None:
        assert error is not None, f"expected {expect.action}, got record {record!r}"
        assert error.record.action.value == expect.action
        assert str(error.status) == expect.status
        assert tuple(s.observation.value for s in error.record.reports
                     if s.observation is not None) == expect.reports
        assert server.messages == [], "nothing may be delivered after DEFER / FAIL"
        return
    assert error is None, f"expected {expect.action}, got {error!r}"
    assert record.action.value == expect.action
    assert tuple(s.observation.value for s in record.reports
                 if s.observation is not None) == expect.reports
    assert record.verified.name == expect.verified
    assert record.reconnected is expect.reconnected
    assert record.encrypted is (expect.delivered == "tls")
    messages = server.messages
    assert len(messages) == 1, messages
    assert messages[0].tls is (expect.delivered == "tls")
    if expect.delivered == "tls":
        assert messages[0].tls_version == record.tls_version
    if decision is not None:
        check_facts(expect, record, decision)


def check_facts(expect: Expect, record: Any, decision: Any) -> None:
    """The facts a driver recorded (SEMANTICS 4.2) describe the connection it
    delivered on, and the decision that set the connection up permits reusing it."""
    from tlspolicy import Action
    from tlspolicy.adapters import check_reuse
    from tlspolicy.options import TlsVersion

    facts = record.facts
    assert facts.binding == decision.binding
    assert facts.mx_host == (decision.mx_host or record.host)
    if expect.delivered == "tls":
        assert facts.plaintext is None and facts.encrypted
        assert facts.sni == decision.parameters.sni
        assert facts.chain and facts.chain_complete
        assert facts.tls_version is TlsVersion(
            {"TLSv1": "TLSv1.0"}.get(record.tls_version, record.tls_version))
        assert facts.certificate_file == decision.parameters.certificate_file
        # The keywords of the EHLO after STARTTLS: aiosmtpd offers SIZE and
        # 8BITMIME, and no STARTTLS once TLS is up.
        assert "8BITMIME" in facts.ehlo_keywords and "STARTTLS" not in facts.ehlo_keywords
    else:
        assert facts.plaintext is not None and facts.plaintext.value == expect.plaintext
        assert facts.chain == ()
    verdict = check_reuse(decision, record)
    assert verdict.permitted, verdict
    assert verdict.reached is Action(expect.action)


@attrs.frozen(slots=True)
class CertSet:
    """A test CA and the four server certificates of the certificate table."""

    ca_path: Path
    files: dict[str, Any]  # name -> certs_support.CertFiles

    def context(self, name: str) -> ssl.SSLContext:
        """A server context presenting certificate ``name`` with its chain."""
        files = self.files[name]
        return server_context(files.chain_path, files.key_path)


def make_cert_set(directory: Path, ca: Any = None) -> CertSet:
    """Make the CA (or use ``ca``, a ``certs_support.TestCA``) and the valid /
    wrong-name / expired / self-signed certificates."""
    from certs_support import TestCA, make_self_signed

    ca = ca if ca is not None else TestCA(directory)
    return CertSet(ca.cert_path, {
        "valid": ca.valid(MX_HOST, stem="valid"),
        "wrong-name": ca.wrong_name(MX_HOST, stem="wrong-name"),
        "expired": ca.expired(MX_HOST, stem="expired"),
        "self-signed": make_self_signed(directory, MX_HOST),
    })


def check_reuse_downgrades(record: Any, ca_path: Path) -> None:
    """Facts a driver recorded on a real connection whose certificate names
    another host (delivered under ``tls_verify = optional``) are re-checked
    for other messages: a ``host`` decision refuses them with the name
    mismatch, a plan FAIL refuses them, the optional decision takes them."""
    from tlspolicy import Decision, Reason, Tls, Verification
    from tlspolicy.adapters import check_reuse
    from tlspolicy.decision import Requirements

    optional = decision_from_toml(tls="required", verify="optional", ca=ca_path)
    assert check_reuse(optional, record).permitted
    host = decision_from_toml(tls="required", verify="host", ca=ca_path)
    verdict = check_reuse(host, record)
    assert not verdict.permitted and verdict.reached is not None
    assert verdict.status is not None and verdict.status.tlsrpt == "certificate-host-mismatch"
    failing = Decision.build(
        Requirements(Tls.REQUIRED, Verification.HOST, False, (DOMAIN, MX_HOST),
                     plan_failure=Reason.MX_NOT_PERMITTED),
        domain=DOMAIN, binding="default", binding_group="default", mx_host=MX_HOST,
        parameters=optional.parameters, effective={}, explanation={})
    assert not check_reuse(failing, record).permitted


# --------------------------------- a private CA made with `openssl req -x509`
#
# Such a CA has no keyUsage; OpenSSL and Postfix trust it (RFC 5280 6.1.4 (n)),
# and so must the drivers, with the right status for wrong-name and expired
# peers under it.

_TLSRPT = {"name-mismatch": "certificate-host-mismatch",
           "certificate-expired": "certificate-expired",
           "chain-not-trusted": "certificate-not-trusted"}

PRIVATE_CA_ROWS: tuple[CertificateRow, ...] = (
    CertificateRow("host", "valid", Expect("proceed", "tls", verified="HOST")),
    CertificateRow("ca", "valid", Expect("proceed", "tls", verified="HOST")),
    CertificateRow("ca", "wrong-name", Expect("proceed", "tls", verified="CA")),
    CertificateRow("optional", "wrong-name",
                   Expect("proceed", "tls", reports=("name-mismatch",), verified="CA")),
    CertificateRow("host", "wrong-name", Expect("fail", None, _NAME, reports=("name-mismatch",))),
    CertificateRow("ca", "expired",
                   Expect("fail", None, _EXPIRED, reports=("certificate-expired",))),
    CertificateRow("host", "expired",
                   Expect("fail", None, _EXPIRED, reports=("certificate-expired",))),
)


def tlsrpt_types(expect: Expect) -> tuple[str, ...]:
    """The TLS-RPT result types a row's reported observations carry."""
    return tuple(_TLSRPT[r] for r in expect.reports)


def make_private_ca_set(directory: Path) -> tuple[CertSet, Any]:
    """Certificates under a CA made by ``openssl req -x509`` (no keyUsage), and
    the moment to judge them at (two days into the CA's life; the expired leaf
    lived its first day, since an openssl-made CA cannot be backdated).

    Raises :class:`FileNotFoundError` without an ``openssl`` binary.
    """
    import datetime

    from certs_support import TestCA

    ca = TestCA.openssl_req(directory)
    start = ca.cert.not_valid_before_utc
    day = datetime.timedelta(days=1)
    certs = CertSet(ca.cert_path, {
        "valid": ca.valid(MX_HOST, stem="valid"),
        "wrong-name": ca.wrong_name(MX_HOST, stem="wrong-name"),
        "expired": ca.issue([MX_HOST], stem="expired", not_before=start, not_after=start + day),
    })
    return certs, start + 2 * day
