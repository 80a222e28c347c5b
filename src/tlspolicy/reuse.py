"""Connection reuse (SEMANTICS 4.2): what a client recorded about a connection, and
the verdict on whether it may carry another message.  The check itself re-runs a
decision's own checks, so it is the decision's
(:class:`~tlspolicy.decision.RequiredSecurity`)."""

from __future__ import annotations

import enum
from collections.abc import Iterable

import attrs

from .options import TlsVersion
from .outcomes import Action, Status

__all__ = [
    "ConnectionFacts",
    "PlaintextReason",
    "ReuseVerdict",
    "VerifiedAs",
]


class PlaintextReason(enum.Enum):
    """Why a connection is in plaintext (SEMANTICS 4.2), as its client recorded it."""

    NOT_ATTEMPTED = "not-attempted"
    """TLS was never tried: the plan was SKIP."""
    NOT_ADVERTISED = "not-advertised"
    """The server did not offer STARTTLS."""
    REFUSED = "refused"
    """STARTTLS was answered with a non-220 reply; the session went on in plaintext."""
    HANDSHAKE_FAILED = "handshake-failed"
    """The handshake (or the EHLO after it) failed; this is a new plaintext connection."""


class VerifiedAs(enum.Enum):
    """What a peer check established on one connection, for logs and records.

    A label, not a scale: whether a connection may carry another message is
    decided by re-running that message's own checks on the connection's
    :class:`ConnectionFacts` (:attr:`Decision.required_security`), never by
    comparing these values (a DANE-EE match says nothing about names or dates).
    """

    NONE = "none"
    """Nothing was established (plaintext, unchecked, or a failed check)."""
    CA = "ca"
    """A trusted, in-date chain whose names matched no reference identity."""
    HOST = "host"
    """A trusted, in-date chain naming a reference identity."""
    DANE = "dane"
    """The chain matched a TLSA record."""


def _host_key(name: str | None) -> str | None:
    return None if name is None else name.rstrip(".").lower()


def _chain(certificates: Iterable[bytes]) -> tuple[bytes, ...]:
    return tuple(bytes(c) for c in certificates)


def _keywords(words: Iterable[str]) -> frozenset[str]:
    return frozenset(w.upper() for w in words)


@attrs.frozen(slots=True)
class ConnectionFacts:
    """What a client recorded when it set a connection up (SEMANTICS 4.2).

    These are the facts a decision's checks read, so that a later message's
    decision can re-run its own checks on them before the connection carries
    it: the MX host name and binding the connection goes to; for TLS the SNI
    sent, the presented chain (DER, leaf first; ``chain_complete`` false when
    only the leaf could be read), the negotiated version, the configured
    client certificate, key, cipher list and TLS 1.3 suites (what was
    configured: Python's ``ssl`` cannot tell whether the certificate was sent),
    and the EHLO keywords the server announced after STARTTLS; for plaintext,
    ``plaintext`` says why.  ``plaintext`` is ``None`` exactly when TLS is up.
    """

    mx_host: str | None
    binding: str
    plaintext: PlaintextReason | None = None
    sni: str | None = None
    chain: tuple[bytes, ...] = attrs.field(default=(), converter=_chain)
    chain_complete: bool = True
    tls_version: TlsVersion | None = None
    certificate_file: str | None = None
    key_file: str | None = None
    ciphers: str | None = None
    tls13_ciphersuites: str | None = None
    ehlo_keywords: frozenset[str] = attrs.field(default=frozenset(), converter=_keywords)

    @property
    def encrypted(self) -> bool:
        """Whether the connection runs over TLS."""
        return self.plaintext is None


@attrs.frozen(slots=True)
class ReuseVerdict:
    """The answer of :meth:`RequiredSecurity.check` for one connection.

    ``permitted`` says whether the connection may carry the message.
    ``reached`` is the action re-running the decision's checks on the
    connection's facts gave (PROCEED, SKIP, FALLBACK, or the FAIL / DEFER that
    rules it out, with ``status``); ``None`` when the connection does not fit
    the decision at all (another MX host or binding, another SNI, client
    certificate, cipher list or protocol version than a fresh connection for
    this decision would use).  ``detail`` says why, for logs.
    """

    permitted: bool
    reached: Action | None
    detail: str
    status: Status | None = None
