"""The one STARTTLS driver engine: a decision acted on, step by step, without I/O.

:meth:`Attempt.run` (the arguments of one ``starttls`` call) and :func:`drive` are
generators.  They yield what the session must do next (an :class:`Open`, a
:class:`Greet`, a question :class:`Supports`, an :class:`UpgradeTls`, an
:class:`EhloAfterTls`, an :class:`End` or a :class:`Reconnect`); the client's shell
(:mod:`tlspolicy.adapters.smtplib`, :mod:`tlspolicy.adapters.aiosmtplib`) performs it
on its own session and sends the answer back.  The engine owns every rule: which
observation each outcome is, what the decision says to do about it, when the
session is ended politely, when a FALLBACK needs a new connection, and what is
recorded.  It returns the :class:`~tlspolicy.adapters.TlsRecord`, or raises
:class:`~tlspolicy.adapters.StartTlsDeferred` / :class:`~tlspolicy.adapters.StartTlsFailed`
after asking the shell to end the session, and gives each attempt's TLS-RPT result to
the caller's sink.  A shell only talks to its client: :class:`Shell` keeps that client,
:class:`ShellResult` is what ``starttls`` returns.
"""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Generator, Iterable, Mapping
from typing import Any, Generic, Protocol, TypedDict, TypeVar

import attrs

from tlspolicy.decision import Decision
from tlspolicy.outcomes import Action, Observation
from tlspolicy.policies.destination import Destination
from tlspolicy.reuse import PlaintextReason

from . import (
    Progress,
    ResultSink,
    StartTlsFailed,
    StartTlsStopped,
    TlsRecord,
    plan_failure,
    record_attempt,
)
from .peer import evaluate_peer, observation_for_verify_code, presented_chain
from .sslcontext import TlsSetupError, Unsupported, build_context

__all__ = [
    "AsyncSession",
    "Attempt",
    "EhloAfterTls",
    "End",
    "Greet",
    "NotUpgraded",
    "Open",
    "Opened",
    "Reconnect",
    "Request",
    "Shell",
    "ShellResult",
    "StartTlsOptions",
    "Supports",
    "SyncSession",
    "UpgradeAnswer",
    "UpgradeTls",
    "Upgraded",
    "VerifyFailed",
    "drive",
    "prepare",
    "run_async",
    "run_sync",
]


# ------------------------------------------------------------------ what a shell does


@attrs.frozen(slots=True)
class Open:
    """Connect unless the caller handed over a connected session; answer :class:`Opened`."""


@attrs.frozen(slots=True)
class Opened:
    """The session the attempt runs on: its addresses (``getpeername()`` /
    ``getsockname()`` forms, ``None`` when unknown) and whether it has yet to greet."""

    peer: object
    local: object
    greet: bool


@attrs.frozen(slots=True)
class Greet:
    """EHLO on the current session (HELO when EHLO is refused); answer ``None``."""


@attrs.frozen(slots=True)
class Supports:
    """Whether the last EHLO advertised ``keyword``; answer a ``bool``."""

    keyword: str


@attrs.frozen(slots=True)
class UpgradeTls:
    """STARTTLS and the handshake with ``context`` and ``sni``; answer :class:`Upgraded`,
    :class:`NotUpgraded` or :class:`VerifyFailed`."""

    context: ssl.SSLContext
    sni: str | None


@attrs.frozen(slots=True)
class EhloAfterTls:
    """EHLO on the encrypted session (RFC 3207 4.2: everything learnt before is
    forgotten); answer its keywords, or ``None`` when it failed."""


@attrs.frozen(slots=True)
class End:
    """End the session; QUIT first only when ``polite`` (the stream is usable)."""

    polite: bool


@attrs.frozen(slots=True)
class Reconnect:
    """Open a new plaintext session to the same host and port, which becomes the
    session to deliver on; answer ``None``."""


Request = Open | Greet | Supports | UpgradeTls | EhloAfterTls | End | Reconnect


# ------------------------------------------------------------- what an upgrade gave


@attrs.frozen(slots=True)
class Upgraded:
    """The session is encrypted: ``tls`` is the SSL socket or object."""

    tls: ssl.SSLSocket | ssl.SSLObject


@attrs.frozen(slots=True)
class NotUpgraded:
    """STARTTLS refused (``STARTTLS_REJECTED``: no 220 was read) or the handshake failed
    (``HANDSHAKE_FAILED``); ``usable`` when the plaintext session is still in step."""

    observation: Observation
    usable: bool
    cause: BaseException | None = None


@attrs.frozen(slots=True)
class VerifyFailed:
    """A verifying context the caller passed aborted the handshake on a certificate."""

    error: ssl.SSLCertVerificationError


UpgradeAnswer = Upgraded | NotUpgraded | VerifyFailed
"""What a shell answers to :class:`UpgradeTls`."""


# ------------------------------------------------------------------------ the engine


class StartTlsOptions(TypedDict, total=False):
    """The keyword arguments both drivers' ``starttls`` take besides ``smtp``.

    ``local_hostname`` and ``timeout`` (default 30 seconds) open a session when the caller
    passes none, and a new one on a reconnect.  ``context`` replaces the one built from
    ``decision.parameters``; ``tlsa_records`` override the TLSA records the decision
    carries; ``now`` (timezone-aware) is the time certificates are judged at, the clock by
    default; ``unsupported`` is :func:`~tlspolicy.adapters.sslcontext.build_context`'s.
    With ``sink`` each attempt's TLS-RPT result is recorded under the policy
    :func:`~tlspolicy.report_policy` finds in ``destination``.
    """

    local_hostname: str | None
    timeout: float
    context: ssl.SSLContext | None
    tlsa_records: Iterable[Any] | None
    now: datetime.datetime | None
    unsupported: Unsupported
    sink: ResultSink | None
    destination: Destination | None


@attrs.frozen(slots=True, kw_only=True)
class Attempt:
    """One ``starttls`` call: the decision, the host and port, and the
    :class:`StartTlsOptions` with their defaults (kept here only)."""

    decision: Decision
    host: str
    port: int
    local_hostname: str | None = None
    timeout: float = 30.0
    context: ssl.SSLContext | None = None
    tlsa_records: Iterable[Any] | None = None
    now: datetime.datetime | None = None
    unsupported: Unsupported = "error"
    sink: ResultSink | None = None
    destination: Destination | None = None

    def run(self) -> Generator[Request, Any, TlsRecord]:
        """The whole attempt: :func:`prepare` (before any connection), :class:`Open`,
        :func:`drive`, and the TLS-RPT result to ``sink`` on success and on every stop."""
        decision, host, port = self.decision, self.host, self.port
        try:
            context = prepare(decision, host, port, self.context, self.unsupported)
            opened: Opened = yield Open()
            progress = Progress(decision, host, port)
            progress.addresses(opened.peer, opened.local)
            record = yield from drive(decision, progress, context, greet=opened.greet,
                                      now=self.now, tlsa_records=self.tlsa_records)
        except StartTlsStopped as stopped:
            record_attempt(self.sink, decision, self.destination, stopped.record)
            raise
        record_attempt(self.sink, decision, self.destination, record)
        return record


_Client = TypeVar("_Client")


class Shell(Generic[_Client]):
    """What a shell's session keeps: the :class:`Attempt` and its client's session,
    which :class:`Open` connects when the caller handed over none and
    :class:`Reconnect` replaces."""

    def __init__(self, attempt: Attempt, smtp: _Client | None) -> None:
        self.attempt = attempt
        self._smtp = smtp
        #: The address the session was connected to (set when opened): a reconnect goes
        #: back to it, not to a new lookup of the host name, which may give another
        #: server (the one the caller chose is the one the decision was made for).
        self.peer_address: str | None = None

    def opened_to(self, peer: object) -> None:
        """Note the peer address a session reports (``getpeername``'s first item)."""
        if isinstance(peer, tuple) and peer and isinstance(peer[0], str):
            self.peer_address = peer[0]

    def reconnect_host(self) -> str:
        """Where a reconnect goes: the address the first session was connected to, else
        the host name."""
        return self.peer_address if self.peer_address is not None else self.attempt.host

    @property
    def smtp(self) -> _Client:
        """The client's session to deliver on."""
        assert self._smtp is not None, "the engine opens the session first"
        return self._smtp


@attrs.frozen(slots=True)
class ShellResult(Generic[_Client]):
    """The session to deliver on and what happened on the way."""

    smtp: _Client
    record: TlsRecord


def prepare(decision: Decision, host: str, port: int, context: ssl.SSLContext | None,
            unsupported: Unsupported) -> ssl.SSLContext | None:
    """Before connecting: a plan of FAIL raises, and the context an ATTEMPT needs is
    built, so that a bad ``tls_ca`` or cipher list fails before any connection."""
    failure: StartTlsFailed | None = plan_failure(decision, host, port)
    if failure is not None:
        raise failure
    if decision.plan is Action.ATTEMPT and context is None:
        return build_context(decision.parameters, unsupported=unsupported)
    return context


def drive(
    decision: Decision,
    progress: Progress,
    context: ssl.SSLContext | None,
    *,
    greet: bool,
    now: datetime.datetime | None = None,
    tlsa_records: Iterable[Any] | None = None,
) -> Generator[Request, Any, TlsRecord]:
    """Act on ``decision`` for a connected session (``greet`` when it has not greeted
    yet); ``context`` is what :func:`prepare` returned.  ``now`` (timezone-aware) is the
    time certificates are judged at, the clock by default."""
    if greet:
        yield Greet()
    if decision.plan is Action.SKIP:
        return progress.record(progress.plaintext(PlaintextReason.NOT_ATTEMPTED))
    assert context is not None

    progress.starttls_advertised = bool((yield Supports("starttls")))
    if not progress.starttls_advertised:
        step = progress.observe(Observation.STARTTLS_NOT_ADVERTISED)
        security = progress.plaintext(PlaintextReason.NOT_ADVERTISED)
        if step.action is Action.SKIP:
            return progress.record(security)
        yield End(polite=True)
        raise progress.stop(security)

    outcome = yield UpgradeTls(context, decision.parameters.sni)
    if isinstance(outcome, VerifyFailed):
        # Only a caller-supplied verifying context gets here: classify it, never call
        # it a handshake failure.
        step = progress.observe(observation_for_verify_code(outcome.error.verify_code))
        yield End(polite=False)
        if step.action in (Action.DEFER, Action.FAIL):
            raise progress.stop(progress.plaintext(PlaintextReason.HANDSHAKE_FAILED)
                                ) from outcome.error
        raise TlsSetupError(
            f"the context passed verifies during the handshake, which aborted on "
            f"{step.observation.value if step.observation else 'a certificate'}; under "
            f"tls_verify = {decision.verification.value} delivery should have gone on: "
            "pass a non-verifying context (the default)") from outcome.error
    if isinstance(outcome, NotUpgraded):
        return (yield from _after_failure(progress, outcome))
    assert isinstance(outcome, Upgraded)
    tls = outcome.tls
    progress.tls_version = tls.version()
    cipher = tls.cipher()
    progress.cipher = cipher[0] if cipher else None

    chain, complete = presented_chain(tls)
    evaluation = evaluate_peer(
        decision, chain, now=now or datetime.datetime.now(datetime.UTC),
        chain_complete=complete, tlsa_records=tlsa_records)
    step = progress.certificate(evaluation)
    tls_facts = progress.tls(chain, complete=complete)
    if step.action is not Action.PROCEED:
        yield End(polite=True)
        raise progress.stop(tls_facts)

    keywords: Mapping[str, str] | None = yield EhloAfterTls()
    if keywords is None:
        return (yield from _after_failure(
            progress, NotUpgraded(Observation.HANDSHAKE_FAILED, usable=False)))

    # The keywords after STARTTLS, recorded so a later message's REQUIRETLS check can
    # re-run on this connection.
    tls_facts = progress.tls(chain, complete=complete, ehlo_keywords=keywords)
    if decision.requiretls:
        progress.requiretls_advertised = bool((yield Supports("requiretls")))
        if not progress.requiretls_advertised:
            progress.observe(Observation.REQUIRETLS_NOT_ADVERTISED)
            yield End(polite=True)
            raise progress.stop(tls_facts)
    progress.proceed()
    return progress.record(tls_facts)


def _after_failure(progress: Progress, failed: NotUpgraded
                   ) -> Generator[Request, Any, TlsRecord]:
    """Act on a refused STARTTLS or a failed handshake: FALLBACK, DEFER or FAIL."""
    step = progress.observe(failed.observation)
    security = progress.plaintext(PlaintextReason.REFUSED
                                  if failed.observation is Observation.STARTTLS_REJECTED
                                  else PlaintextReason.HANDSHAKE_FAILED)
    if step.action is not Action.FALLBACK:
        yield End(polite=failed.usable)
        raise progress.stop(security) from failed.cause
    if not failed.usable:
        yield End(polite=False)
        yield Reconnect()
        yield Greet()
        progress.reconnected = True
    return progress.record(security)


class SyncSession(Protocol):
    """A blocking shell's session: one method per request, returning its answer."""

    def open(self) -> Opened: ...
    def greet(self) -> None: ...
    def supports(self, keyword: str) -> bool: ...
    def upgrade(self, request: UpgradeTls) -> UpgradeAnswer: ...
    def ehlo_after_tls(self) -> Mapping[str, str] | None: ...
    def end(self, polite: bool) -> None: ...
    def reconnect(self) -> None: ...


class AsyncSession(Protocol):
    """An asyncio shell's session: :class:`SyncSession`'s methods, awaited."""

    async def open(self) -> Opened: ...
    async def greet(self) -> None: ...
    async def supports(self, keyword: str) -> bool: ...
    async def upgrade(self, request: UpgradeTls) -> UpgradeAnswer: ...
    async def ehlo_after_tls(self) -> Mapping[str, str] | None: ...
    async def end(self, polite: bool) -> None: ...
    async def reconnect(self) -> None: ...


def _perform(session: SyncSession | AsyncSession, request: Request) -> Any:
    """The answer to ``request`` from ``session`` (from an async session, its awaitable)."""
    if isinstance(request, Open):
        return session.open()
    if isinstance(request, Greet):
        return session.greet()
    if isinstance(request, Supports):
        return session.supports(request.keyword)
    if isinstance(request, UpgradeTls):
        return session.upgrade(request)
    if isinstance(request, EhloAfterTls):
        return session.ehlo_after_tls()
    if isinstance(request, End):
        return session.end(request.polite)
    assert isinstance(request, Reconnect)
    return session.reconnect()


def _next(engine: Generator[Request, Any, TlsRecord], answer: object) -> Request | TlsRecord:
    """The engine's next request after ``answer``, or the record it ended with."""
    try:
        return engine.send(answer)
    except StopIteration as done:
        record: TlsRecord = done.value
        return record


def run_sync(engine: Generator[Request, Any, TlsRecord], session: SyncSession) -> TlsRecord:
    """Run ``engine`` to its end, ``session`` answering each request."""
    step = _next(engine, None)
    while not isinstance(step, TlsRecord):
        step = _next(engine, _perform(session, step))
    return step


async def run_async(engine: Generator[Request, Any, TlsRecord],
                    session: AsyncSession) -> TlsRecord:
    """:func:`run_sync` for an asyncio session."""
    step = _next(engine, None)
    while not isinstance(step, TlsRecord):
        step = _next(engine, await _perform(session, step))
    return step
