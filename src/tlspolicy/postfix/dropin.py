"""Drop-in mode: MTA-STS and DANE alone, with Postfix's own level as the configuration.

SEMANTICS section 11, "Drop-in mode".  ``serve socketmap --discovery`` with no policy
(no configuration file, or one holding only a ``[discovery]`` table) answers as
postfix-mta-sts-resolver and postfix-tlspol do: the decisions are made with
:data:`DROP_IN_CONFIG` (MTA-STS and DANE on, nothing else set), and where neither
applies the answer is ``NOTFOUND``, so that Postfix's own ``smtp_tls_security_level``
stands.  No answer may make Postfix less strict than ``NOTFOUND`` would:
:func:`drop_in` takes the answer :func:`~tlspolicy.postfix.answers.render` wrote and
Postfix's own level, and returns the answer to send (its ``notfound`` set for
``NOTFOUND``).

Pure: Postfix's settings come in as a mapping (:func:`own_security_level`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import attrs

from ..options import Options
from ..policies.destination import Destination
from ..policies.mtasts import StsMode
from ..scopes import Config
from .answers import DiscoveredAnswer
from .levels import PostfixLevel, PostfixPolicy, PostfixWarning

__all__ = [
    "DROP_IN_CONFIG",
    "OWN_LEVELS",
    "OWN_LEVEL_SETTINGS",
    "answer_reads_no_mx_host",
    "drop_in",
    "own_security_level",
    "sends_sts_attributes_for",
]

#: The policy drop-in mode decides with: MTA-STS and DANE on, every other option at its
#: built-in default.  The answers it gives where neither applies are never sent
#: (:func:`drop_in` turns them into ``NOTFOUND``).
DROP_IN_CONFIG: Final = Config(options=Options(use_mta_sts=True, use_dane=True))

#: Every value of Postfix's ``smtp_tls_security_level`` (postconf(5)).
OWN_LEVELS: Final = frozenset({"none", "may", "encrypt", "dane", "dane-only", "fingerprint",
                               "verify", "secure"})
#: The main.cf settings :func:`own_security_level` reads (the level, and the obsolete
#: switches an empty level leaves in charge).
OWN_LEVEL_SETTINGS: Final = ("smtp_tls_security_level", "smtp_use_tls", "smtp_enforce_tls",
                             "smtp_tls_enforce_peername")
# Postfix's own levels that authenticate the peer by its certificate (PKIX or a pin).
_AUTHENTICATED: Final = frozenset({"fingerprint", "verify", "secure"})
# The map name postfix-tlspol answers without the MTA-STS attributes (its other name,
# QUERYwithTLSRPT, asks for them).
_QUERY_WITHOUT_ATTRIBUTES: Final = "query"


def _yes(value: str | None, default: bool) -> bool:
    if value is None or not value.strip():
        return default
    return value.strip().lower() in ("yes", "true", "1", "on")


def _level_of(settings: Mapping[str, str], prefix: str) -> str | None:
    """One service's effective level (``prefix`` ``""`` for main.cf, else
    ``service/type/``, whose ``-o`` overrides win), or ``None`` when unreadable."""
    def value(name: str) -> str | None:
        return settings.get(prefix + name, settings.get(name)) if prefix else \
            settings.get(name)

    level = value("smtp_tls_security_level")
    if level is None:
        return None
    level = level.strip().lower()
    if level:
        return level if level in OWN_LEVELS else None
    # An empty level: the obsolete switches decide (postconf(5), smtp_use_tls).
    if _yes(value("smtp_enforce_tls"), False):
        return "verify" if _yes(value("smtp_tls_enforce_peername"), True) else "encrypt"
    return "may" if _yes(value("smtp_use_tls"), False) else "none"


def own_security_level(settings: Mapping[str, str], services: Sequence[str] = ()
                       ) -> str | None:
    """Postfix's own TLS security level, as ``NOTFOUND`` leaves it, from its settings
    (``postconf`` names; ``service/type/name`` for a master.cf ``-o`` override).

    ``services`` are the smtp(8) services (``smtp/unix``): when their levels differ the
    level is not one value and ``None`` is returned, as when it cannot be read (a level
    Postfix does not know included): :func:`drop_in` then answers as for the strictest.
    """
    levels = {_level_of(settings, "")} if not services else {
        _level_of(settings, f"{service}/") for service in services}
    if len(levels) != 1:
        return None
    return next(iter(levels))


def sends_sts_attributes_for(map_name: str, version_sends: bool) -> bool:
    """Whether an answer through ``map_name`` carries the MTA-STS attributes: only for a
    Postfix that takes them (``version_sends``, 3.10 and later), and never through
    postfix-tlspol's ``QUERY`` (any case), which asks without them."""
    return version_sends and map_name.lower() != _QUERY_WITHOUT_ATTRIBUTES


def _note(answer: DiscoveredAnswer, code: str, message: str,
          policy: PostfixPolicy | None = None) -> DiscoveredAnswer:
    """``answer`` with a note, answered with ``policy`` (``None``: ``NOTFOUND``)."""
    # The binding and key of the answer's own notes name the same next hop.
    first = answer.warnings[0] if answer.warnings else None
    note = PostfixWarning(first.binding if first else "default",
                          first.key if first else None, "smtp_tls_security_level",
                          message, None, code)
    if policy is None:
        return attrs.evolve(answer, notfound=True, warnings=(*answer.warnings, note))
    return attrs.evolve(answer, policy=policy, warnings=(*answer.warnings, note))


def drop_in(answer: DiscoveredAnswer, own: str | None) -> DiscoveredAnswer:
    """The answer to send in drop-in mode, never less strict than ``NOTFOUND`` with
    Postfix's own level ``own`` (``None``: not known); ``notfound`` is set on an answer
    that is to be ``NOTFOUND`` (its ``policy`` is then what would have been sent).

    - Neither MTA-STS nor DANE applies (rule (e) without a testing-mode policy):
      ``NOTFOUND``.
    - A testing-mode policy: Postfix's own level carrying the policy's attributes where
      that level is ``may`` or ``encrypt`` and the answer has them; ``NOTFOUND``
      otherwise (never a lower level to carry them).
    - ``dane`` (rules (b), (c)), which lets Postfix use hosts without TLSA records at
      ``may``: ``dane-only`` where Postfix's own level is stricter than ``may`` for such
      hosts or not known.
    - Postfix's own ``dane-only`` defers every host without usable TLSA records: every
      answer but ``NOTFOUND`` would be weaker somewhere.
    - An enforce policy's ``secure`` answer (rules (a), (d)) where Postfix's own level
      authenticates by certificate itself (``verify``, ``secure``, ``fingerprint``):
      ``NOTFOUND`` (the two match lists are not ordered; the operator's own stands).
    """
    policy = answer.policy
    if answer.notfound:
        return answer
    if own == "dane-only":
        return _note(answer, "dropin-own-level", "Postfix's own level is dane-only, "
                     "stricter than any answer: NOTFOUND")
    if answer.rule == "e":
        if not answer.sts_derived:
            return attrs.evolve(answer, notfound=True)
        # A testing-mode policy: the decided level is Postfix's own.
        if own in ("may", "encrypt"):
            level = PostfixLevel(own)
            if level is policy.level:
                return answer
            return _note(answer, "dropin-testing-own-level", f"testing mode: Postfix's own "
                         f"level {own} carries the policy's attributes",
                         PostfixPolicy(level, policy.attributes))
        return _note(answer, "dropin-testing-notfound", "testing mode: Postfix's own level "
                     f"({own or 'not known'}) stands; the policy's attributes are not sent")
    if policy.level is PostfixLevel.DANE and own not in ("none", "may", "dane"):
        return _note(answer, "dropin-dane-only", "dane would let Postfix use MX hosts "
                     f"without TLSA records at may, below its own level "
                     f"({own or 'not known'}): dane-only (stricter)",
                     PostfixPolicy(PostfixLevel.DANE_ONLY, policy.attributes))
    if policy.level is PostfixLevel.SECURE and own in _AUTHENTICATED:
        return _note(answer, "dropin-own-authenticated", f"Postfix's own level {own} "
                     "authenticates MX hosts itself: NOTFOUND (its match list and the "
                     "MTA-STS policy's are not ordered)")
    if policy.level is PostfixLevel.DANE_ONLY and own in _AUTHENTICATED:
        return _note(answer, "dropin-dane-over-own", f"DANE authenticates the MX hosts with "
                     f"usable TLSA records instead of Postfix's own {own} (the two are not "
                     "ordered; published TLSA records are the domain's own choice); the "
                     "others are deferred", policy)
    return answer


def answer_reads_no_mx_host(destination: Destination, dane_usable: bool) -> bool:
    """Whether a drop-in answer for ``destination`` is the same whatever its MX hosts are.

    Without DANE no host is D or X, so an MTA-STS policy in enforce mode answers with rule
    (d)'s ``secure`` and the policy's ``match=`` list for every host, which is also the
    answer when the MX lookup fails (SEMANTICS 11); the drop-in configuration is Postfix's
    own level, which names no MX host.  For a null MX or a domain that does not exist the
    policy's answer stands where the configuration alone would have been used: never
    weaker.  Discovery then need not look the hosts up."""
    policy = destination.mta_sts
    return not dane_usable and policy is not None and policy.mode is StsMode.ENFORCE
