"""Actions, observations, statuses and outcomes (SEMANTICS sections 4 and 4.1).

The tables of SEMANTICS sections 4 and 4.1 live here and only here:
:data:`STATUSES` (section 4.1), :func:`negotiation_outcome` and
:func:`certificate_outcome` (section 4).  The docs render the same tables from
these functions.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

import attrs

from .options import Tls, TlsVerify

__all__ = [
    "CERTIFICATE_OBSERVATIONS",
    "NEGOTIATION_OBSERVATIONS",
    "REQUIRETLS_BOUNCE",
    "STATUSES",
    "Action",
    "Observation",
    "Outcome",
    "Reason",
    "Status",
    "Verification",
    "certificate_outcome",
    "negotiation_outcome",
]


class Action(enum.Enum):
    """What the client does next (SEMANTICS section 4)."""

    SKIP = "skip"
    """Do not issue STARTTLS; carry on in plaintext on this connection."""
    ATTEMPT = "attempt"
    """Issue STARTTLS; on success check the peer as the decision says."""
    PROCEED = "proceed"
    """TLS is up and the peer is acceptable: deliver over TLS."""
    FALLBACK = "fallback"
    """TLS failed; deliver in plaintext (this connection if usable, else a new one)."""
    DEFER = "defer"
    """Give the message back to the queue; a later retry tries TLS again."""
    FAIL = "fail"
    """Stop using this host for this attempt, with the status given."""


class Observation(enum.Enum):
    """What the client saw and reports back to the decision."""

    STARTTLS_NOT_ADVERTISED = "starttls-not-advertised"
    STARTTLS_REJECTED = "starttls-rejected"
    HANDSHAKE_FAILED = "handshake-failed"
    CHAIN_NOT_TRUSTED = "chain-not-trusted"
    CERTIFICATE_EXPIRED = "certificate-expired"
    NAME_MISMATCH = "name-mismatch"
    TLSA_MISMATCH = "tlsa-mismatch"
    REQUIRETLS_NOT_ADVERTISED = "requiretls-not-advertised"


NEGOTIATION_OBSERVATIONS: Final = (
    Observation.STARTTLS_NOT_ADVERTISED,
    Observation.STARTTLS_REJECTED,
    Observation.HANDSHAKE_FAILED,
)
CERTIFICATE_OBSERVATIONS: Final = (
    Observation.CHAIN_NOT_TRUSTED,
    Observation.CERTIFICATE_EXPIRED,
    Observation.NAME_MISMATCH,
    Observation.TLSA_MISMATCH,
)


class Reason(enum.Enum):
    """Every cause of a failure status: the rows of SEMANTICS section 4.1.

    An observation's failure carries the reason spelled as the observation (see
    :meth:`of`), so those members take the observation's value.
    """

    STARTTLS_NOT_ADVERTISED = Observation.STARTTLS_NOT_ADVERTISED.value
    STARTTLS_REJECTED = Observation.STARTTLS_REJECTED.value
    HANDSHAKE_FAILED = Observation.HANDSHAKE_FAILED.value
    CHAIN_NOT_TRUSTED = Observation.CHAIN_NOT_TRUSTED.value
    CERTIFICATE_EXPIRED = Observation.CERTIFICATE_EXPIRED.value
    NAME_MISMATCH = Observation.NAME_MISMATCH.value
    TLSA_MISMATCH = Observation.TLSA_MISMATCH.value
    TLSA_LOOKUP_FAILED = "tlsa-lookup-failed"
    MX_NOT_PERMITTED = "mx-not-permitted"
    REQUIRETLS_NOT_SUPPORTED = "requiretls-not-supported"
    TLS_REMEMBERED_BROKEN = "tls-remembered-broken"

    @classmethod
    def of(cls, observation: Observation) -> Reason:
        """The reason whose status an observation's failure carries."""
        if observation is Observation.REQUIRETLS_NOT_ADVERTISED:
            return cls.REQUIRETLS_NOT_SUPPORTED
        return cls(observation.value)


@attrs.frozen(slots=True)
class Status:
    """An SMTP-style status: reply code, enhanced code, text and TLS-RPT result type."""

    code: int
    enhanced: str
    text: str
    tlsrpt: str | None

    @property
    def permanent(self) -> bool:
        """True for 5xx statuses (only the final REQUIRETLS bounce)."""
        return self.code >= 500

    def __str__(self) -> str:
        return f"{self.code} {self.enhanced} {self.text}"


STATUSES: Final[Mapping[Reason, Status]] = {
    Reason.STARTTLS_NOT_ADVERTISED: Status(
        451, "4.7.6", "STARTTLS required but not advertised", "starttls-not-supported"),
    Reason.STARTTLS_REJECTED: Status(451, "4.7.5", "no tls go-ahead", "starttls-not-supported"),
    Reason.HANDSHAKE_FAILED: Status(451, "4.7.5", "TLS negotiation failed", "validation-failure"),
    Reason.CHAIN_NOT_TRUSTED: Status(
        451, "4.7.5", "remote node SSL certificate not signed by a valid CA",
        "certificate-not-trusted"),
    Reason.CERTIFICATE_EXPIRED: Status(
        451, "4.7.5", "SSL certificate expired or not yet valid", "certificate-expired"),
    Reason.NAME_MISMATCH: Status(
        451, "4.7.5", "SSL certificate subject does not match host", "certificate-host-mismatch"),
    Reason.TLSA_MISMATCH: Status(
        451, "4.7.5", "certificate does not match any TLSA record", "tlsa-invalid"),
    Reason.TLSA_LOOKUP_FAILED: Status(451, "4.7.5", "TLSA lookup failed", "dnssec-invalid"),
    Reason.MX_NOT_PERMITTED: Status(
        451, "4.7.5", "MX host not permitted by MTA-STS policy", "validation-failure"),
    Reason.REQUIRETLS_NOT_SUPPORTED: Status(451, "4.7.30", "REQUIRETLS support required", None),
    Reason.TLS_REMEMBERED_BROKEN: Status(451, "4.7.5", "TLS to this host failed recently", None),
}

REQUIRETLS_BOUNCE: Final = Status(550, "5.7.30", "REQUIRETLS support required", None)
"""The final bounce of a REQUIRETLS message that never found a compliant host."""


class Verification(enum.Enum):
    """How the peer is checked once TLS is up: ``tls_verify`` values plus DANE.

    The ``tls_verify`` members take the option's values, which :meth:`of` maps by.
    """

    NO = TlsVerify.NO.value
    OPTIONAL = TlsVerify.OPTIONAL.value
    CA = TlsVerify.CA.value
    HOST = TlsVerify.HOST.value
    DANE = "dane"

    @classmethod
    def of(cls, verify: TlsVerify) -> Verification:
        """The verification a configured ``tls_verify`` asks for."""
        return _VERIFICATIONS[verify]


_VERIFICATIONS: Final[Mapping[TlsVerify, Verification]] = {
    v: Verification(v.value) for v in TlsVerify}


@attrs.frozen(slots=True)
class Outcome:
    """The action for one observation, its status, and whether to report it.

    ``report`` is true when the problem must be recorded (TLS-RPT, logs) even
    though delivery goes on, as under ``tls_verify = optional``.
    """

    action: Action
    status: Status | None = None
    reason: Reason | None = None
    report: bool = False

    @classmethod
    def failing(cls, action: Action, reason: Reason) -> Outcome:
        """An outcome carrying the SEMANTICS 4.1 status of ``reason``."""
        return cls(action, STATUSES[reason], reason, True)


_PROCEED: Final = Outcome(Action.PROCEED)


def negotiation_outcome(
    tls: Tls, observation: Observation, *, fallback: bool
) -> Outcome | None:
    """The outcome of a STARTTLS negotiation observation (SEMANTICS 4, first table).

    ``fallback`` is the effective ``tls_ifavailable_fallback``, already false
    under 4.0 compatibility and whenever a destination policy forbids
    cleartext.  ``None`` means the observation cannot happen (tls = no).
    """
    if tls is Tls.NO or observation not in NEGOTIATION_OBSERVATIONS:
        return None
    reason = Reason.of(observation)
    if tls is Tls.REQUIRED:
        return Outcome.failing(Action.FAIL, reason)
    if observation is Observation.STARTTLS_NOT_ADVERTISED:
        return Outcome(Action.SKIP)
    return Outcome.failing(Action.FALLBACK if fallback else Action.DEFER, reason)


_CERT_ROWS: Final[Mapping[Verification, Mapping[Observation, Action | None]]] = {
    Verification.NO: {
        Observation.CHAIN_NOT_TRUSTED: Action.PROCEED,
        Observation.CERTIFICATE_EXPIRED: Action.PROCEED,
        Observation.NAME_MISMATCH: Action.PROCEED,
        Observation.TLSA_MISMATCH: None,
    },
    Verification.OPTIONAL: {
        Observation.CHAIN_NOT_TRUSTED: Action.PROCEED,
        Observation.CERTIFICATE_EXPIRED: Action.PROCEED,
        Observation.NAME_MISMATCH: Action.PROCEED,
        Observation.TLSA_MISMATCH: None,
    },
    Verification.CA: {
        Observation.CHAIN_NOT_TRUSTED: Action.FAIL,
        Observation.CERTIFICATE_EXPIRED: Action.FAIL,
        Observation.NAME_MISMATCH: Action.PROCEED,
        Observation.TLSA_MISMATCH: None,
    },
    Verification.HOST: {
        Observation.CHAIN_NOT_TRUSTED: Action.FAIL,
        Observation.CERTIFICATE_EXPIRED: Action.FAIL,
        Observation.NAME_MISMATCH: Action.FAIL,
        Observation.TLSA_MISMATCH: None,
    },
    # Under DANE the client reports problems as the TLSA matcher judges them:
    # a DANE-EE match never reports dates or names, a DANE-TA match does, and
    # PKIX trust is replaced by the TLSA anchor (RFC 7672 section 3.1).
    Verification.DANE: {
        Observation.CHAIN_NOT_TRUSTED: Action.PROCEED,
        Observation.CERTIFICATE_EXPIRED: Action.FAIL,
        Observation.NAME_MISMATCH: Action.FAIL,
        Observation.TLSA_MISMATCH: Action.FAIL,
    },
}


def certificate_outcome(verification: Verification, observation: Observation) -> Outcome | None:
    """The outcome of a certificate problem (SEMANTICS 4, second table).

    ``None`` means the observation does not apply (a TLSA mismatch without
    DANE).  A certificate problem never yields FALLBACK.
    """
    action = _CERT_ROWS[verification].get(observation)
    if action is None:
        return None
    reason = Reason.of(observation)
    if action is Action.FAIL:
        return Outcome.failing(Action.FAIL, reason)
    if verification is Verification.OPTIONAL:
        return Outcome(Action.PROCEED, STATUSES[reason], reason, True)
    return _PROCEED
