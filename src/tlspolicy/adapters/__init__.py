"""Running a decision on a real SMTP connection.

:mod:`.sslcontext` builds the :class:`ssl.SSLContext`, :mod:`.peer` judges the
server's certificate after the handshake, and :mod:`.smtplib` /
:mod:`.aiosmtplib` drive the STARTTLS part of a session with the standard
library's or aiosmtplib's client.  Both drivers return a :class:`TlsRecord` and
stop with a :class:`StartTlsDeferred` or :class:`StartTlsFailed` carrying the
SEMANTICS 4.1 status; those shared types are defined here so that this module
imports no SMTP client.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable
from typing import Any, Protocol

import attrs

from tlspolicy.decision import Decision
from tlspolicy.errors import TlsPolicyError
from tlspolicy.options import TlsVersion
from tlspolicy.outcomes import Action, Observation, Outcome, Status
from tlspolicy.policies.destination import Destination
from tlspolicy.policies.tlsrpt import SessionResult, report_policy, session_result
from tlspolicy.reuse import ConnectionFacts, PlaintextReason, ReuseVerdict, VerifiedAs

from .peer import PeerEvaluation, peer_judge

__all__ = [
    "ResultSink",
    "StartTlsDeferred",
    "StartTlsFailed",
    "StartTlsStopped",
    "Step",
    "TlsRecord",
    "check_reuse",
]


@attrs.frozen(slots=True)
class Step:
    """One outcome on the path: the action taken and the observation that led to it."""

    action: Action
    observation: Observation | None = None
    status: Status | None = None
    report: bool = False

    @classmethod
    def of(cls, outcome: Outcome, observation: Observation | None) -> Step:
        """The step for ``outcome`` reached after ``observation``."""
        return cls(outcome.action, observation, outcome.status, outcome.report)


@attrs.frozen(slots=True)
class TlsRecord:
    """What happened in the STARTTLS part of one session, for logs and TLS-RPT.

    ``path`` lists the actions in order (the plan first, the final action
    last).  ``reports`` holds every problem that must be recorded even when
    delivery went on (``tls_verify = optional``) or stopped.  ``facts`` are
    what the client recorded about the connection (SEMANTICS 4.2): before the
    connection carries another message, ask :func:`check_reuse` with that
    message's decision.  ``mail_options`` must be passed on MAIL FROM (it holds
    ``REQUIRETLS`` when the message requires it).
    """

    host: str
    port: int
    path: tuple[Step, ...]
    facts: ConnectionFacts
    tls_version: str | None = None
    cipher: str | None = None
    peer: PeerEvaluation | None = None
    reports: tuple[Step, ...] = ()
    reconnected: bool = False
    starttls_advertised: bool | None = None
    requiretls_advertised: bool | None = None
    mail_options: tuple[str, ...] = ()
    receiving_ip: str | None = None
    sending_ip: str | None = None

    @property
    def action(self) -> Action:
        """The final action (PROCEED, SKIP, FALLBACK, DEFER or FAIL)."""
        return self.path[-1].action

    @property
    def encrypted(self) -> bool:
        """Whether the session now runs over TLS."""
        return self.facts.encrypted

    @property
    def verified(self) -> VerifiedAs:
        """What the peer check established (NONE for plaintext); a label, not a scale."""
        if not self.encrypted or self.peer is None:
            return VerifiedAs.NONE
        return self.peer.verified

    @property
    def tlsrpt_result_types(self) -> tuple[str, ...]:
        """TLS-RPT result types of every reported problem, in order, without repeats."""
        seen = [s.status.tlsrpt for s in self.reports if s.status is not None and s.status.tlsrpt]
        return tuple(dict.fromkeys(t for t in seen if t is not None))


class ResultSink(Protocol):
    """Where a driver records each attempt's TLS-RPT result (see
    :mod:`tlspolicy.reporting`); ``record`` must return at once and never raise."""

    def record(self, result: SessionResult) -> None:
        """Take one attempt's result."""


_log = logging.getLogger("tlspolicy.reporting")


def record_attempt(sink: ResultSink | None, decision: Decision,
                   destination: Destination | None, record: TlsRecord) -> None:
    """Give ``sink`` the TLS-RPT result of the attempt ``record`` describes, if any.

    Never raises: a delivery must not fail because reporting did.
    """
    if sink is None:
        return
    try:
        result = session_result(
            decision, report_policy(decision, destination),
            path=[(step.action, step.status) for step in record.path],
            reported=[step.status for step in record.reports if step.status is not None],
            mx_host=decision.mx_host or record.host, receiving_ip=record.receiving_ip,
            sending_ip=record.sending_ip)
        if result is not None:
            sink.record(result)
    except Exception:
        _log.exception("TLS-RPT: recording the attempt to %s failed", record.host)


class StartTlsStopped(TlsPolicyError):
    """The decision says stop: give the message back (DEFER) or leave the host (FAIL).

    ``status`` is the SEMANTICS 4.1 status to use for the message and
    ``record`` what happened up to that point.  The driver has already ended
    the SMTP session (QUIT when the connection was still usable).
    """

    def __init__(self, status: Status, record: TlsRecord, observation: Observation | None):
        self.status = status
        self.record = record
        self.observation = observation
        what = observation.value if observation is not None else "plan"
        super().__init__(f"{record.action.value} for {record.host}:{record.port} "
                         f"after {what}: {status}")


class StartTlsDeferred(StartTlsStopped):
    """DEFER: give the message back to the queue; a later retry tries TLS again."""


class StartTlsFailed(StartTlsStopped):
    """FAIL: stop using this host for this attempt (transient unless the status is 5xx)."""


def stop(record: TlsRecord, step: Step) -> StartTlsStopped:
    """The exception for a DEFER / FAIL ``step`` ending ``record``."""
    assert step.status is not None, step
    cls = StartTlsDeferred if step.action is Action.DEFER else StartTlsFailed
    return cls(step.status, record, step.observation)


def plan_failure(decision: Decision, host: str, port: int) -> StartTlsFailed | None:
    """The FAIL raised before connecting when the plan already rules the host out."""
    if decision.plan is not Action.FAIL:
        return None
    assert decision.plan_status is not None
    step = Step(Action.FAIL, None, decision.plan_status, True)
    facts = ConnectionFacts(decision.mx_host or host, decision.binding,
                            PlaintextReason.NOT_ATTEMPTED)
    record = TlsRecord(host, port, (step,), facts, reports=(step,))
    return StartTlsFailed(decision.plan_status, record, None)


def check_reuse(
    decision: Decision,
    facts: ConnectionFacts | TlsRecord,
    *,
    now: datetime.datetime | None = None,
    tlsa_records: Iterable[Any] | None = None,
) -> ReuseVerdict:
    """Whether the connection ``facts`` describe may carry ``decision``'s message.

    ``decision.required_security.check`` with the drivers' own peer check
    (:func:`.peer.peer_judge`) as the judge, so a reused connection passes
    exactly the checks a fresh one would (SEMANTICS 4.2).  ``now`` is the
    time certificates are judged at (the clock by default); ``tlsa_records``
    override the TLSA records the decision carries, as for the drivers.
    """
    if isinstance(facts, TlsRecord):
        facts = facts.facts
    moment = now or datetime.datetime.now(datetime.UTC)
    return decision.required_security.check(
        facts, judge=peer_judge(now=moment, tlsa_records=tlsa_records))


_VERSIONS = {"TLSv1": TlsVersion.TLSv1_0, "TLSv1.1": TlsVersion.TLSv1_1,
             "TLSv1.2": TlsVersion.TLSv1_2, "TLSv1.3": TlsVersion.TLSv1_3,
             "SSLv3": TlsVersion.SSLv3, "SSLv2": TlsVersion.SSLv2}



class Progress:
    """The path of one STARTTLS run, kept by a driver (no I/O here).

    Both drivers feed it the same observations, so they act identically.
    """

    def __init__(self, decision: Decision, host: str, port: int) -> None:
        self.decision = decision
        self.host = host
        self.port = port
        self.path: list[Step] = [Step(decision.plan)]
        self.reports: list[Step] = []
        self.peer: PeerEvaluation | None = None
        self.reconnected = False
        self.starttls_advertised: bool | None = None
        self.requiretls_advertised: bool | None = None
        self.tls_version: str | None = None
        self.cipher: str | None = None
        self.receiving_ip: str | None = None
        self.sending_ip: str | None = None

    def addresses(self, peer: object, local: object) -> None:
        """Note the connection's addresses (``getpeername()`` / ``getsockname()`` forms)."""
        if isinstance(peer, tuple) and peer:
            self.receiving_ip = str(peer[0]).split("%")[0]
        if isinstance(local, tuple) and local:
            self.sending_ip = str(local[0]).split("%")[0]

    def plaintext(self, reason: PlaintextReason) -> ConnectionFacts:
        """The facts of a connection that is in plaintext for ``reason``."""
        return ConnectionFacts(self.decision.mx_host or self.host, self.decision.binding,
                               reason)

    def tls(self, chain: Iterable[bytes], *, complete: bool,
            ehlo_keywords: Iterable[str] = ()) -> ConnectionFacts:
        """The facts of a TLS connection set up with the decision's parameters.

        The client certificate, key and cipher lists are what was configured
        (``ssl`` cannot tell whether the server asked for the certificate).
        """
        p = self.decision.parameters
        return ConnectionFacts(
            self.decision.mx_host or self.host, self.decision.binding, None, sni=p.sni,
            chain=chain, chain_complete=complete,
            tls_version=_VERSIONS.get(self.tls_version or ""),
            certificate_file=p.certificate_file, key_file=p.key_file, ciphers=p.ciphers,
            tls13_ciphersuites=p.tls13_ciphersuites, ehlo_keywords=ehlo_keywords)

    def observe(self, observation: Observation) -> Step:
        """Record the decision's outcome for ``observation`` and return it."""
        step = Step.of(self.decision.outcome(observation), observation)
        self.path.append(step)
        if step.report:
            self.reports.append(step)
        return step

    def certificate(self, evaluation: PeerEvaluation) -> Step:
        """Record the peer check: every reportable problem, then the folded outcome."""
        self.peer = evaluation
        for problem in evaluation.problems:
            outcome = self.decision.outcome(problem)
            if outcome.report:
                self.reports.append(Step.of(outcome, problem))
        folded = self.decision.after_certificate(evaluation.problems)
        step = Step.of(folded, folded.reason and _observation_of(folded.reason.value))
        self.path.append(step)
        return step

    def proceed(self) -> None:
        """TLS is up, the peer is acceptable and EHLO went through."""
        if self.path[-1].action is not Action.PROCEED:
            self.path.append(Step(Action.PROCEED))

    def record(self, facts: ConnectionFacts) -> TlsRecord:
        """The record of the run so far."""
        return TlsRecord(
            host=self.host, port=self.port, path=tuple(self.path), facts=facts,
            tls_version=self.tls_version, cipher=self.cipher, peer=self.peer,
            reports=tuple(self.reports), reconnected=self.reconnected,
            starttls_advertised=self.starttls_advertised,
            requiretls_advertised=self.requiretls_advertised,
            mail_options=("REQUIRETLS",) if self.decision.requiretls else (),
            receiving_ip=self.receiving_ip, sending_ip=self.sending_ip)

    def stop(self, facts: ConnectionFacts) -> StartTlsStopped:
        """The exception for the DEFER / FAIL that ends the path."""
        return stop(self.record(facts), self.path[-1])


def _observation_of(value: str) -> Observation | None:
    try:
        return Observation(value)
    except ValueError:
        return None
