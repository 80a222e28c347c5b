"""Postfix's TLS security levels and policy answers, and the one strictness table.

Pure values shared by the static maps, the transport tables and the discovery answers.
:class:`Need` orders what a tlspolicy decision requires of Postfix for one host, and
:func:`need_of` reads it off a :class:`~tlspolicy.Decision`: the only place where a
decision is turned into a Postfix strictness.
"""

from __future__ import annotations

import enum

import attrs

from ..decision import Decision
from ..errors import TlsPolicyError
from ..options import Tls
from ..outcomes import Action, Verification

__all__ = [
    "Need",
    "PostfixLevel",
    "PostfixMappingError",
    "PostfixPolicy",
    "PostfixVersion",
    "PostfixWarning",
    "need_of",
]

PostfixVersion = tuple[int, ...]
"""A Postfix version as numbers, e.g. ``(3, 7, 11)`` (see :func:`parse_postfix_version`)."""

class PostfixMappingError(TlsPolicyError):
    """A value that cannot be written into a Postfix policy answer at all.

    Raised (and answered ``PERM`` by the socketmap server, so Postfix defers)
    rather than writing an answer that would silently weaken the policy, e.g.
    a ``tls_ca`` path containing white space or a comma.
    """


class PostfixLevel(enum.Enum):
    """The Postfix TLS security levels this module produces."""

    NONE = "none"
    MAY = "may"
    ENCRYPT = "encrypt"
    DANE = "dane"
    #: Only with discovery (SEMANTICS 11): mandatory DANE, every host needs usable TLSA.
    DANE_ONLY = "dane-only"
    VERIFY = "verify"
    SECURE = "secure"


@attrs.frozen(slots=True)
class PostfixPolicy:
    """One policy answer: a level and ``name=value`` attributes in output order."""

    level: PostfixLevel
    attributes: tuple[tuple[str, str], ...] = ()

    def text(self) -> str:
        """The answer as written in a table or sent in a socketmap ``OK`` reply."""
        return " ".join([self.level.value, *(f"{k}={v}" for k, v in self.attributes)])

    def __str__(self) -> str:
        return self.text()


@attrs.frozen(slots=True)
class PostfixWarning:
    """Something of the Momentum policy that one Postfix entry cannot express.

    ``key`` is the table key (a domain, an IP literal, ``/regex/``) or
    ``None`` for the binding's default (no entry matches); ``option`` names
    the option concerned and ``source`` the scope that set it.
    """

    binding: str
    key: str | None
    option: str
    message: str
    source: str | None = None
    #: A stable name for the kind of loss (see :data:`LOSS_CODES`), for tools and tests.
    code: str = ""

    def describe(self) -> str:
        """One line: ``binding "b" > key: option 'x' (from scope): message``."""
        where = f'binding "{self.binding}" > ' + (
            "default (no entry)" if self.key is None else self.key)
        origin = f" (set in {self.source})" if self.source else ""
        return f"{where}: option {self.option!r}{origin}: {self.message}"


class Need(enum.IntEnum):
    """What a decision requires of Postfix for one host, in increasing strictness."""

    NONE = 0
    MAY = 1
    ENCRYPT = 2
    VERIFIED = 3
    DEFER = 4


def need_of(decision: Decision) -> Need:
    """The Postfix strictness ``decision`` requires (its plan, TLS, verification, fallback)."""
    if decision.plan is Action.FAIL:
        return Need.DEFER
    if decision.plan is Action.SKIP:
        return Need.NONE
    if decision.verification in (Verification.CA, Verification.HOST, Verification.DANE):
        return Need.VERIFIED
    if decision.tls is Tls.REQUIRED or not decision.fallback:
        return Need.ENCRYPT
    return Need.MAY
