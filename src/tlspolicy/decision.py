"""The decision object (SEMANTICS section 4): what a client does about STARTTLS for
one message to one host, with its parameters, requirements and explanation.

The tables it is built from are :mod:`tlspolicy.outcomes`; the facts a client records
about a connection are :mod:`tlspolicy.reuse`, and :class:`RequiredSecurity` re-runs a
decision's checks on them (SEMANTICS 4.2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import attrs

from ._serialise import converter, effective_to_dict
from .options import Tls, TlsEngine, TlsVersion
from .outcomes import (
    _PROCEED,
    CERTIFICATE_OBSERVATIONS,
    NEGOTIATION_OBSERVATIONS,
    STATUSES,
    Action,
    Observation,
    Outcome,
    Reason,
    Status,
    Verification,
    certificate_outcome,
    negotiation_outcome,
)
from .policies.dane import DaneApplicability, TlsaRecord
from .policies.mtasts import MtaStsPolicy
from .reuse import ConnectionFacts, PlaintextReason, ReuseVerdict, _host_key

__all__ = [
    "Decision",
    "PeerJudge",
    "PolicyReport",
    "RequiredSecurity",
    "Requirements",
    "Source",
    "TlsParameters",
]


PeerJudge = Callable[["Decision", ConnectionFacts], Iterable[Observation]]
"""Judges a recorded chain for a decision: the certificate observations a fresh
connection's peer check would report.

Pass the drivers' own peer check (``tlspolicy.adapters.peer.peer_judge``), so a
reused connection and a fresh one are judged by one mechanism.
"""


@attrs.frozen(slots=True)
class RequiredSecurity:
    """Whether an open connection may carry this decision's message (SEMANTICS 4.2).

    :meth:`check` re-runs the decision's own checks on the connection's
    recorded :class:`ConnectionFacts`: a connection is permitted if and only if
    they give PROCEED, or for a plaintext connection the same SKIP or FALLBACK
    a fresh connection would reach.  A plan of FAIL or DEFER permits nothing.

    ``plaintext`` (the plaintext reasons that can pass) and ``tls_check`` (the
    verification re-run on a TLS connection, ``None`` when no TLS connection
    can pass) summarise the rule for display; they do not decide.
    """

    decision: Decision = attrs.field(repr=False)

    @property
    def plaintext(self) -> frozenset[PlaintextReason]:
        """The plaintext reasons a connection to the right host and binding may have."""
        d = self.decision
        if d.plan is Action.SKIP:
            return frozenset(PlaintextReason)
        if d.plan is not Action.ATTEMPT:
            return frozenset()
        return frozenset(r for r in PlaintextReason if self._plaintext_action(r)
                         in (Action.SKIP, Action.FALLBACK))

    @property
    def tls_check(self) -> Verification | None:
        """The verification a TLS connection's chain is re-checked with."""
        d = self.decision
        if d.plan is Action.SKIP:
            return Verification.NO
        return d.verification if d.plan is Action.ATTEMPT else None

    def _plaintext_action(self, reason: PlaintextReason) -> Action:
        observation = _PLAINTEXT_OBSERVATION.get(reason)
        if observation is None:  # never tried: a fresh connection would try
            return Action.ATTEMPT
        return self.decision.outcome(observation).action

    def permits(self, facts: ConnectionFacts, *, judge: PeerJudge) -> bool:
        """Whether the connection ``facts`` describe may carry the message."""
        return self.check(facts, judge=judge).permitted

    def check(self, facts: ConnectionFacts, *, judge: PeerJudge) -> ReuseVerdict:
        """Re-run the decision's checks on ``facts``; see :class:`ReuseVerdict`.

        ``judge`` evaluates a TLS connection's chain exactly as a fresh
        connection's peer check would; it is called only when the plan is
        ATTEMPT and the connection fits the decision.  This method does no I/O.
        """
        d = self.decision
        if d.plan not in (Action.SKIP, Action.ATTEMPT):
            return ReuseVerdict(False, d.plan, f"the plan is {d.plan.value}: no connection "
                                f"may carry this message", d.plan_status)
        if facts.binding != d.binding:
            return ReuseVerdict(False, None, f"the connection is from binding "
                                f"{facts.binding!r}, the message goes through {d.binding!r}")
        if d.mx_host is not None and _host_key(facts.mx_host) != _host_key(d.mx_host):
            return ReuseVerdict(False, None, f"the connection goes to {facts.mx_host}, the "
                                f"decision is for MX host {d.mx_host}")
        if facts.plaintext is not None:
            return self._check_plaintext(facts.plaintext)
        if d.plan is Action.SKIP:
            # The decision asks for no TLS and runs no checks; a TLS session to
            # the same host and binding is no weaker than the plaintext it allows.
            return ReuseVerdict(True, Action.PROCEED, "the decision needs no TLS; the "
                                "connection has it")
        misfit = self._misfit(facts)
        if misfit is not None:
            return ReuseVerdict(False, None, misfit)
        outcome = d.after_certificate(judge(d, facts))
        if outcome.action is not Action.PROCEED:
            return ReuseVerdict(False, outcome.action, "the chain fails this decision's "
                                "check", outcome.status)
        if d.requiretls and "REQUIRETLS" not in facts.ehlo_keywords:
            failed = d.outcome(Observation.REQUIRETLS_NOT_ADVERTISED)
            return ReuseVerdict(False, failed.action, "REQUIRETLS was not announced after "
                                "STARTTLS", failed.status)
        return ReuseVerdict(True, Action.PROCEED, f"the chain passes this decision's "
                            f"{d.verification.value} check", outcome.status)

    def _check_plaintext(self, reason: PlaintextReason) -> ReuseVerdict:
        d = self.decision
        if d.plan is Action.SKIP:
            return ReuseVerdict(True, Action.SKIP, "the decision asks for no TLS")
        observation = _PLAINTEXT_OBSERVATION.get(reason)
        if observation is None:
            return ReuseVerdict(False, Action.ATTEMPT, "TLS was never tried on the "
                                "connection; a fresh one would issue STARTTLS")
        outcome = d.outcome(observation)
        permitted = outcome.action in (Action.SKIP, Action.FALLBACK)
        return ReuseVerdict(permitted, outcome.action,
                            f"plaintext because {reason.value}: this decision says "
                            f"{outcome.action.value}", outcome.status)

    def _misfit(self, facts: ConnectionFacts) -> str | None:
        """Why a fresh connection for this decision would not have these facts."""
        p = self.decision.parameters
        if _host_key(facts.sni) != _host_key(p.sni):
            return f"the connection sent SNI {facts.sni}, this decision sends {p.sni}"
        pairs = (("client certificate", facts.certificate_file, p.certificate_file),
                 ("client key", facts.key_file, p.key_file),
                 ("cipher list", facts.ciphers, p.ciphers),
                 ("TLS 1.3 suites", facts.tls13_ciphersuites, p.tls13_ciphersuites))
        for what, had, wanted in pairs:
            if had != wanted:
                return f"the connection was set up with {what} {had}, this decision uses {wanted}"
        if facts.tls_version not in p.protocols:
            shown = facts.tls_version.value if facts.tls_version else "an unknown version"
            return f"the connection negotiated {shown}, which this decision does not allow"
        return None

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-serialisable summary.

        ``min_tls_verification`` is the verification re-run on a TLS
        connection's chain (``none`` when it is no or optional) or ``never``
        when no TLS connection can pass.
        """
        check = self.tls_check
        shown = ("never" if check is None else
                 "none" if check in (Verification.NO, Verification.OPTIONAL) else check.value)
        return {
            "plaintext_allowed_when": sorted(reason.value for reason in self.plaintext),
            "min_tls_verification": shown,
        }


_PLAINTEXT_OBSERVATION: Final[Mapping[PlaintextReason, Observation]] = {
    PlaintextReason.NOT_ADVERTISED: Observation.STARTTLS_NOT_ADVERTISED,
    PlaintextReason.REFUSED: Observation.STARTTLS_REJECTED,
    PlaintextReason.HANDSHAKE_FAILED: Observation.HANDSHAKE_FAILED,
}


class _WeakReferable:
    """The weak-reference slot of the classes :func:`_decision` and :func:`_like` make.

    attrs would put it after the fields, where CPython's ``__class__`` assignment
    cannot see that two layouts agree; in a base class both share it.
    """

    __slots__ = ("__weakref__",)


@attrs.frozen(slots=True)
class TlsParameters(_WeakReferable):
    """What a TLS client needs to set up the handshake for this decision.

    ``None`` means "not configured": the system CA store, no client
    certificate, the TLS library's default ciphers.
    """

    ca_file: str | None
    certificate_file: str | None
    key_file: str | None
    ciphers: str | None
    tls13_ciphersuites: str | None
    protocols: frozenset[TlsVersion]
    sni: str | None
    engine: TlsEngine

    @property
    def ordered_protocols(self) -> tuple[TlsVersion, ...]:
        """The allowed versions, oldest first."""
        return tuple(v for v in TlsVersion if v in self.protocols)

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-serialisable dict (protocols oldest first)."""
        # The fields in their order, the protocol set as a list (the key keeps its place).
        plain: dict[str, Any] = converter.unstructure(self)
        plain["protocols"] = [v.value for v in self.ordered_protocols]
        return plain

    @property
    def is_contiguous(self) -> bool:
        """Whether the allowed versions form one range (no hole like 1.0 + 1.2)."""
        order = list(TlsVersion)
        idx = [order.index(v) for v in self.ordered_protocols]
        return bool(idx) and idx == list(range(idx[0], idx[-1] + 1))


@attrs.frozen(slots=True)
class Source:
    """Where an effective value came from, like Momentum's ``config eval``.

    ``scope`` is a scope path (``binding_group "g1" > binding "b1"``),
    ``"default"``, ``"override"``, or a destination policy
    (``"mta-sts (enforce)"``, ``"dane"``, ``"requiretls"``...).
    """

    scope: str
    detail: str | None = None

    def __str__(self) -> str:
        return self.scope if self.detail is None else f"{self.scope} ({self.detail})"


@attrs.frozen(slots=True)
class PolicyReport:
    """Something to record (TLS-RPT, logs) that does not change the decision,
    such as a failed MTA-STS fetch or an MX mismatch under a testing policy."""

    result_type: str
    detail: str


@attrs.frozen(slots=True)
class Requirements:
    """What configuration and destination policy demand of one delivery attempt.

    This is the input of :meth:`Decision.build`: the resolver fills it from the
    scope chain, and destination policies (MTA-STS, DANE, REQUIRETLS,
    remembered broken TLS) make it stricter before the decision is built.
    """

    tls: Tls
    verification: Verification
    fallback: bool
    reference_identities: tuple[str, ...]
    plan_failure: Reason | None = None
    skip_tls: bool = False
    requiretls: bool = False


@attrs.frozen(slots=True)
class Decision(_WeakReferable):
    """The answer for one delivery attempt: the plan and every outcome.

    ``plan`` is SKIP or ATTEMPT, or FAIL when destination policy rules the
    host out (``plan_status`` says why).  :meth:`outcome` gives the action for
    each observation the client can report; :meth:`after_certificate` folds
    several certificate problems into one outcome.
    """

    domain: str
    binding: str
    binding_group: str
    mx_host: str | None
    plan: Action
    plan_status: Status | None
    tls: Tls
    verification: Verification
    fallback: bool
    requiretls: bool
    outcomes: Mapping[Observation, Outcome]
    parameters: TlsParameters
    reference_identities: tuple[str, ...]
    effective: Mapping[str, object] = attrs.field(repr=False)
    explanation: Mapping[str, Source] = attrs.field(repr=False)
    decided_by: Mapping[str, Source] = attrs.field(repr=False, factory=lambda: _FrozenMap({}))
    tlsa_records: tuple[TlsaRecord, ...] = ()
    reports: tuple[PolicyReport, ...] = ()
    notes: tuple[str, ...] = ()
    #: The MTA-STS policy this decision applied (in force, any mode; ``None``: none, or
    #: MTA-STS off or ignored here), so that renderers read it from the decision.
    mta_sts: MtaStsPolicy | None = attrs.field(default=None, repr=False)
    #: How DANE stood for this host when it applied (``None``: DANE off, ignored or not
    #: looked up).
    dane: DaneApplicability | None = None

    @classmethod
    def build(
        cls,
        requirements: Requirements,
        *,
        domain: str,
        binding: str,
        binding_group: str,
        mx_host: str | None,
        parameters: TlsParameters,
        effective: Mapping[str, object],
        explanation: Mapping[str, Source],
        decided_by: Mapping[str, Source] | None = None,
        tlsa_records: tuple[TlsaRecord, ...] = (),
        reports: tuple[PolicyReport, ...] = (),
        notes: tuple[str, ...] = (),
        mta_sts: MtaStsPolicy | None = None,
        dane: DaneApplicability | None = None,
    ) -> Decision:
        """Apply the SEMANTICS section 4 tables to ``requirements``.

        ``explanation`` says which scope supplied each configured value;
        ``decided_by`` which destination policy changed a decision field
        (``tls``, ``verification``, ``fallback``, ``identities``, ``plan``).
        """
        req = requirements
        plan, plan_status, outcomes = _shape_of(req)
        decision = _decision(
            domain, binding, binding_group, mx_host, plan, plan_status, req.tls,
            req.verification, req.fallback, req.requiretls, outcomes, parameters,
            req.reference_identities, _frozen(effective), _frozen(explanation),
            _NOTHING if not decided_by else _frozen(decided_by), tlsa_records, reports,
            notes, mta_sts, dane)
        if cls is Decision:
            return decision
        # A subclass (with fields of its own, perhaps) is built through its own __init__.
        return cls(**{f.name: getattr(decision, f.name) for f in attrs.fields(Decision)})

    @property
    def required_security(self) -> RequiredSecurity:
        """Whether an open connection may carry this message (SEMANTICS 4.2)."""
        return RequiredSecurity(self)

    def outcome(self, observation: Observation) -> Outcome:
        """The outcome for ``observation``.

        Raises :class:`KeyError` when the observation cannot arise under this
        decision (any observation after plan SKIP or FAIL; a TLSA mismatch
        without DANE), since acting on it would be a client bug.
        """
        try:
            return self.outcomes[observation]
        except KeyError:
            raise KeyError(
                f"observation {observation.value!r} does not apply to this decision "
                f"(plan {self.plan.value}, verification {self.verification.value})"
            ) from None

    def after_certificate(self, problems: Iterable[Observation]) -> Outcome:
        """The outcome once TLS is up and the peer showed ``problems`` (maybe none).

        The first failing problem, in the table's column order, decides;
        otherwise PROCEED, reporting the first reportable problem.
        """
        found = [self.outcome(p) for p in CERTIFICATE_OBSERVATIONS if p in set(problems)]
        for outcome in found:
            if outcome.action is not Action.PROCEED:
                return outcome
        for outcome in found:
            if outcome.report:
                return outcome
        return _PROCEED

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-serialisable dict for logs and ``--json`` output, stable key order."""
        return {
            "domain": self.domain,
            "binding": self.binding,
            "binding_group": self.binding_group,
            "mx_host": self.mx_host,
            "plan": self.plan.value,
            "plan_status": _status_dict(self.plan_status),
            "tls": self.tls.value,
            "verification": self.verification.value,
            "fallback": self.fallback,
            "requiretls": self.requiretls,
            "outcomes": {obs.value: {"action": o.action.value, "status": _status_dict(o.status),
                                     "report": o.report}
                         for obs, o in self.outcomes.items()},
            "parameters": self.parameters.to_dict(),
            "reference_identities": list(self.reference_identities),
            "required_security": self.required_security.to_dict(),
            "effective": effective_to_dict(self.effective),
            "explanation": {name: str(src) for name, src in self.explanation.items()},
            "decided_by": {name: str(src) for name, src in self.decided_by.items()},
            "tlsa_records": [r.to_text() for r in self.tlsa_records],
            "reports": [converter.unstructure(r) for r in self.reports],
            "notes": list(self.notes),
        }


_Shape = tuple[Action, Status | None, "_FrozenMap"]


def _shape(req: Requirements) -> _Shape:
    """The plan, its status and every outcome: what the section 4 tables give ``req``."""
    outcomes: dict[Observation, Outcome] = {}
    if req.plan_failure is not None:
        plan, plan_status = Action.FAIL, STATUSES[req.plan_failure]
    elif req.tls is Tls.NO or req.skip_tls:
        plan, plan_status = Action.SKIP, None
    else:
        plan, plan_status = Action.ATTEMPT, None
        for observation in NEGOTIATION_OBSERVATIONS:
            negotiated = negotiation_outcome(req.tls, observation, fallback=req.fallback)
            if negotiated is not None:
                outcomes[observation] = negotiated
        for observation in CERTIFICATE_OBSERVATIONS:
            checked = certificate_outcome(req.verification, observation)
            if checked is not None:
                outcomes[observation] = checked
        if req.requiretls:
            outcomes[Observation.REQUIRETLS_NOT_ADVERTISED] = Outcome.failing(
                Action.FAIL, Reason.REQUIRETLS_NOT_SUPPORTED)
    return plan, plan_status, _FrozenMap(outcomes)


# The tables' answer depends on these six fields only (a few hundred combinations
# at most), and outcomes are immutable: decisions with the same shape share them.
# Keyed by the members' identities: they are singletons, and an Enum's own __hash__
# is a Python-level call.
_SHAPES: dict[tuple[object, ...], _Shape] = {}


def _shape_of(req: Requirements) -> _Shape:
    """:func:`_shape`, remembered per shape."""
    key = (id(req.plan_failure), id(req.tls), req.skip_tls, id(req.verification),
           req.fallback, req.requiretls)
    found = _SHAPES.get(key)
    if found is None:
        found = _SHAPES[key] = _shape(req)
    return found


def _frozen(data: Mapping[Any, Any]) -> _FrozenMap:
    # A _FrozenMap (or a lazily made one) is immutable: a decision may share it
    # rather than copy it.
    return data if isinstance(data, _FrozenMap) else _FrozenMap(data)


def _status_dict(status: Status | None) -> dict[str, Any] | None:
    return None if status is None else dict(converter.unstructure(status))


class _FrozenMap(Mapping[Any, Any]):
    """A read-only, hashable mapping so decisions stay immutable and comparable."""

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[Any, Any]) -> None:
        self._data = dict(data)
        self._hash: int | None = None

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __iter__(self) -> Any:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, _FrozenMap):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == dict(other)
        return NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __repr__(self) -> str:
        return f"{{{', '.join(f'{k!r}: {v!r}' for k, v in self._data.items())}}}"


_NOTHING: Final = _FrozenMap({})


# Building a frozen attrs instance sets each field through object.__setattr__, a call
# per field: for a decision, a large share of a cold resolve.  A draft has
# the same slots (so the same layout) but no frozen __setattr__; its fields are stored
# directly, then it becomes the frozen class by __class__ assignment, which CPython
# allows exactly between such layout-compatible classes.  Only for values that are
# already valid fields of the target: nothing is checked or converted.
def _draft_class(cls: type[Any]) -> type[Any]:
    """A mutable twin of the frozen attrs class ``cls``: the same fields in the same slots,
    and no ``__init__`` (:func:`_decision` and :func:`_parameters` store every field)."""
    fields = {f.name: attrs.field() for f in attrs.fields(cls)}
    draft: type[Any] = attrs.make_class(f"_{cls.__name__}Draft", fields,
                                        bases=(_WeakReferable,), slots=True, init=False,
                                        weakref_slot=False, eq=False, repr=False)
    assert draft.__slots__ == cls.__slots__, "the twin must have the same layout"
    return draft


_DecisionDraft: Final = _draft_class(Decision)
_ParametersDraft: Final = _draft_class(TlsParameters)


def _decision(
    domain: str, binding: str, binding_group: str, mx_host: str | None, plan: Action,
    plan_status: Status | None, tls: Tls, verification: Verification, fallback: bool,
    requiretls: bool, outcomes: Mapping[Observation, Outcome], parameters: TlsParameters,
    reference_identities: tuple[str, ...], effective: Mapping[str, object],
    explanation: Mapping[str, Source], decided_by: Mapping[str, Source],
    tlsa_records: tuple[TlsaRecord, ...], reports: tuple[PolicyReport, ...],
    notes: tuple[str, ...], mta_sts: MtaStsPolicy | None, dane: DaneApplicability | None,
) -> Decision:
    """``Decision(...)`` of these fields, made as a draft (see above)."""
    # Stored here rather than through an __init__: calling one costs about as much
    # again as the stores (it packs the arguments anew).  A draft has no __init__ of
    # its own, so calling its class is a cheaper object.__new__.
    d = _DecisionDraft()
    d.domain = domain
    d.binding = binding
    d.binding_group = binding_group
    d.mx_host = mx_host
    d.plan = plan
    d.plan_status = plan_status
    d.tls = tls
    d.verification = verification
    d.fallback = fallback
    d.requiretls = requiretls
    d.outcomes = outcomes
    d.parameters = parameters
    d.reference_identities = reference_identities
    d.effective = effective
    d.explanation = explanation
    d.decided_by = decided_by
    d.tlsa_records = tlsa_records
    d.reports = reports
    d.notes = notes
    d.mta_sts = mta_sts
    d.dane = dane
    d.__class__ = Decision
    return d  # type: ignore[no-any-return]


def _parameters(ca_file: str | None, certificate_file: str | None, key_file: str | None,
                ciphers: str | None, tls13_ciphersuites: str | None,
                protocols: frozenset[TlsVersion], sni: str | None,
                engine: TlsEngine) -> TlsParameters:
    """``TlsParameters(...)`` of these fields, made as a draft (see above)."""
    p = _ParametersDraft()
    p.ca_file = ca_file
    p.certificate_file = certificate_file
    p.key_file = key_file
    p.ciphers = ciphers
    p.tls13_ciphersuites = tls13_ciphersuites
    p.protocols = protocols
    p.sni = sni
    p.engine = engine
    p.__class__ = TlsParameters
    return p  # type: ignore[no-any-return]


def _configured_shape(tls: Tls, verification: Verification, fallback: bool) -> _Shape:
    """:func:`_shape_of` requirements from configuration alone (no destination policy)."""
    key = (_NONE_ID, id(tls), False, id(verification), fallback, False)
    found = _SHAPES.get(key)
    if found is None:
        found = _SHAPES[key] = _shape(Requirements(tls, verification, fallback, ()))
    return found


_NONE_ID: Final = id(None)


def _owning(data: dict[Any, Any]) -> _FrozenMap:
    """A :class:`_FrozenMap` of ``data`` itself, not a copy: for a dict no one else holds."""
    frozen: Any = _new_object(_FrozenMap)
    frozen._data = data
    frozen._hash = None
    return frozen  # type: ignore[no-any-return]


_new_object: Final = object.__new__


def _like(proto: Decision, domain: str, binding: str, binding_group: str,
          mx_host: str | None, sni: str | None, reference_identities: tuple[str, ...],
          explanation: Mapping[str, Source]) -> Decision:
    """``proto`` with its names, SNI, identities and explanation replaced.

    Equal to ``Decision(...)`` given every other field of ``proto`` (and its
    parameters but for ``sni``); the resolver makes each decision after the first
    from equal values this way.
    """
    parameters = proto.parameters
    if sni != parameters.sni:
        parameters = _parameters(parameters.ca_file, parameters.certificate_file,
                                 parameters.key_file, parameters.ciphers,
                                 parameters.tls13_ciphersuites, parameters.protocols, sni,
                                 parameters.engine)
    return _decision(
        domain, binding, binding_group, mx_host, proto.plan, proto.plan_status, proto.tls,
        proto.verification, proto.fallback, proto.requiretls, proto.outcomes, parameters,
        reference_identities, proto.effective, explanation, proto.decided_by,
        proto.tlsa_records, proto.reports, proto.notes, proto.mta_sts, proto.dane)
