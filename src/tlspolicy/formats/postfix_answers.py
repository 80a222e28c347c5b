"""Postfix policy answers with discovery: one answer per next hop, per MX host never weaker.

SEMANTICS section 11.  Postfix asks ``smtp_tls_policy_maps`` once per next-hop
domain and applies the answer to every MX host of it, so the answer must make
Postfix at least as strict, for *every* MX host, as tlspolicy's own decision for
that host.  This module is pure: the caller (the socketmap server's discovery
lookup) fetched MX, TLSA and MTA-STS, resolved a decision per host, and passes
what it found; :func:`compose_answer` picks the rule and writes the answer.

Per MX host h (:class:`HostState`): **D** usable TLSA records (the MX RRset and
h's addresses secure); **X** the TLSA lookup failed or was bogus (Postfix
defers h at ``dane`` and ``dane-only``); **U** secure TLSA records, none usable
(Postfix uses h with mandatory unauthenticated TLS at ``dane``, defers it at
``dane-only``); **N** every other host.  ``need`` (:class:`Need`) is what the
decision for h requires without DANE.

The rules, (a) to (e), are :data:`ANSWER_RULES` (the documentation's table is built
from it).

D/X/U hosts without N hosts (not in SEMANTICS' table) take ``dane`` when it is
never weaker for the U hosts, else ``dane-only``.  Under an enforce policy a D host
outside the policy's MX patterns is never used by tlspolicy: when every D and X host is
outside it, rule (d) answers (Postfix from 3.10.5 skips those hosts); otherwise the DANE
answer stands and the unfiltered hosts are reported as a loss.  ``match=`` and ``tafile=``
never go with ``dane``/``dane-only`` (Postfix rejects the entry), and
``policy_failure`` is never sent (it would force Postfix to fail enforcement).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from typing import Final

import attrs

from ..decision import Action, Decision, Verification
from ..options import Tls
from ..policies.mtasts import MtaStsPolicy
from .postfix import (
    PostfixLevel,
    PostfixMappingError,
    PostfixPolicy,
    PostfixVersion,
    PostfixWarning,
)

__all__ = [
    "ANSWER_RULES",
    "MX_FILTERING_SINCE",
    "SERVERNAME_SINCE",
    "STS_ATTRIBUTES_SINCE",
    "DiscoveredAnswer",
    "HostFacts",
    "HostState",
    "Need",
    "compose_answer",
    "need_of",
    "sts_policy_lines",
]

#: The first Postfix version taking ``servername=``.
SERVERNAME_SINCE: Final[PostfixVersion] = (3, 4)
#: The first Postfix version taking the MTA-STS attributes (TLSRPT support).
STS_ATTRIBUTES_SINCE: Final[PostfixVersion] = (3, 10)
#: The first Postfix version filtering MX hosts by ``mx_host_pattern``.
MX_FILTERING_SINCE: Final[PostfixVersion] = (3, 10, 5)

#: SEMANTICS 11's rules: (rule, the MX hosts, the answer), checked in order (a) and (d)
#: share one path; D/X/U hosts without N hosts are answered as rule (b) says for X and U.
ANSWER_RULES: Final[tuple[tuple[str, str, str], ...]] = (
    ("a", "MX RRset not DNSSEC-signed and an MTA-STS enforce policy in force",
     "`secure` with the MTA-STS attributes, never `dane` (Postfix would use TLSA records "
     "of unauthenticated MX hosts)"),
    ("b", "every host D (or only D, X and U hosts)",
     "`dane-only`; with X/U hosts and no N host, `dane` when that is never weaker for "
     "the U hosts (their need at most encrypt)"),
    ("c", "some host D, X or U and some host N",
     "`dane` when every N host needs at most `may` and every U host at most `encrypt`; "
     "otherwise `dane-only`, the N and U hosts reported as deferred"),
    ("d", "no D, X or U host and an MTA-STS enforce policy in force",
     "`secure match=<each policy mx, *.d as .d> servername=hostname`, plus the MTA-STS "
     "attributes for Postfix 3.10 and later"),
    ("e", "otherwise",
     "the operator's mapping without DANE, never weaker (`ifavailable` with fallback "
     "false as `encrypt`; every loss reported)"),
)

# What a policy line or pattern may hold inside Postfix's "{ }" attribute form:
# braces would end it early (injecting attributes), control characters split it.
_UNSAFE_LINE: Final = re.compile(r"[{}\x00-\x1f\x7f]")
# A policy mx pattern as Postfix reads it in match=/mx_host_pattern= (validated
# again here: a pattern with a separator would add names to the match list).
_SAFE_PATTERN: Final = re.compile(r"(?:\*\.)?[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
_DANE_DROPPED: Final = frozenset({"match", "tafile"})


class HostState(enum.Enum):
    """How DANE stands for one MX host (D, X, U, N in the module documentation)."""

    DANE = "dane"
    FAILED = "failed"
    UNUSABLE = "unusable"
    OTHER = "other"


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


@attrs.frozen(slots=True)
class HostFacts:
    """One MX host: its DANE state and what its decision needs without DANE."""

    name: str
    state: HostState
    need: Need
    detail: str = ""


@attrs.frozen(slots=True)
class DiscoveredAnswer:
    """The answer for one next hop, the rule that gave it, and every loss or note."""

    policy: PostfixPolicy
    rule: str
    warnings: tuple[PostfixWarning, ...] = ()

    @property
    def sts_derived(self) -> bool:
        """Whether the answer comes from an MTA-STS policy (rules (a) and (d))."""
        return self.rule in ("a", "d")


def sts_policy_lines(policy: MtaStsPolicy) -> tuple[str, ...]:
    """The policy as RFC 8461 lines, in the order Postfix's ``policy_string`` reports them."""
    return ("version: STSv1", f"mode: {policy.mode.value}",
            *(f"mx: {pattern}" for pattern in policy.mx), f"max_age: {policy.max_age}")


def _since(version: PostfixVersion, since: PostfixVersion) -> bool:
    return tuple(version) >= since


def _kept(attributes: Sequence[tuple[str, str]], drop: frozenset[str]
          ) -> list[tuple[str, str]]:
    return [(name, value) for name, value in attributes if name not in drop]


def compose_answer(
    *,
    binding: str,
    key: str,
    operator: PostfixPolicy,
    operator_warnings: Sequence[PostfixWarning] = (),
    hosts: Sequence[HostFacts],
    mx_secure: bool,
    sts: MtaStsPolicy | None,
    sts_domain: str,
    postfix_version: PostfixVersion,
    mx_patterns_enforced: bool = True,
) -> DiscoveredAnswer:
    """The answer for next hop ``key`` through ``binding`` (SEMANTICS 11, rules (a)-(e)).

    ``operator`` is the operator's mapping for the next hop *without* DANE (the
    never-weaker export of the configuration) and ``operator_warnings`` its
    losses; ``hosts`` are the MX hosts as discovery found them (none for a null
    MX or a nonexistent domain); ``sts`` the enforce-mode MTA-STS policy in force
    and applied by the configuration (``None`` otherwise) for ``sts_domain``.
    ``mx_patterns_enforced`` is main.cf's ``smtp_tls_enforce_sts_mx_patterns``.
    Raises :class:`~tlspolicy.formats.postfix.PostfixMappingError` when no policy
    mx pattern can be written (the server answers ``PERM``, Postfix defers).
    """
    warnings: list[PostfixWarning] = []

    def note(option: str, code: str, message: str) -> None:
        warnings.append(PostfixWarning(binding, key, option, message, None, code))

    dane_hosts = [h for h in hosts if h.state is HostState.DANE]
    failed = [h for h in hosts if h.state is HostState.FAILED]
    unusable = [h for h in hosts if h.state is HostState.UNUSABLE]
    others = [h for h in hosts if h.state is HostState.OTHER]

    # MTA-STS still filters MX hosts under DANE (SEMANTICS 5): a D host the enforce
    # policy does not permit needs DEFER, which no DANE level gives it.
    stray = [h for h in dane_hosts if h.need is Need.DEFER] if sts is not None else []
    if sts is not None and stray and all(h.need is Need.DEFER
                                         for h in (*dane_hosts, *failed)):
        # No D or X host to protect: the policy's own answer, which filters MX hosts.
        return _sts_answer(binding, key, operator, operator_warnings, hosts, mx_secure, sts,
                           sts_domain, postfix_version, mx_patterns_enforced)
    if stray:
        note("use_mta_sts", "sts-mx-not-filtered", "Postfix does not filter MX hosts by the "
             "MTA-STS policy at dane or dane-only: it uses "
             f"{', '.join(h.name for h in stray)} (usable TLSA records, outside the policy), "
             "which tlspolicy never uses")

    if dane_hosts or failed or unusable:
        if hosts and len(dane_hosts) == len(hosts):
            rule, level = "b", PostfixLevel.DANE_ONLY
        else:
            rule = "c" if others else "b"
            weak_enough = (all(h.need <= Need.MAY for h in others)
                           and all(h.need <= Need.ENCRYPT for h in unusable))
            level = PostfixLevel.DANE if weak_enough else PostfixLevel.DANE_ONLY
            if level is PostfixLevel.DANE_ONLY:
                deferred = [h.name for h in (*others, *unusable)]
                if deferred:
                    note("use_dane", "dane-only-defers", "dane-only: Postfix defers "
                         f"{', '.join(deferred)} (no usable TLSA records), where tlspolicy "
                         "would deliver to them under MTA-STS or the configuration "
                         "(stricter)")
        attributes = _kept(operator.attributes, _DANE_DROPPED)
        if any(name in _DANE_DROPPED for name, _ in operator.attributes):
            note("tls_ca", "dane-drops-match", "match= and tafile= cannot go with "
                 f"{level.value} (Postfix rejects the entry): dropped; DANE's own "
                 "authentication applies")
        return DiscoveredAnswer(PostfixPolicy(level, tuple(attributes)), rule,
                                (*operator_warnings, *warnings))

    if sts is not None:
        return _sts_answer(binding, key, operator, operator_warnings, hosts, mx_secure, sts,
                           sts_domain, postfix_version, mx_patterns_enforced)
    return DiscoveredAnswer(operator, "e", tuple(operator_warnings))


def _sts_answer(binding: str, key: str, operator: PostfixPolicy,
                operator_warnings: Sequence[PostfixWarning], hosts: Sequence[HostFacts],
                mx_secure: bool, sts: MtaStsPolicy, sts_domain: str,
                version: PostfixVersion, mx_patterns_enforced: bool) -> DiscoveredAnswer:
    warnings: list[PostfixWarning] = []

    def note(option: str, code: str, message: str) -> None:
        warnings.append(PostfixWarning(binding, key, option, message, None, code))

    patterns: list[str] = []
    for pattern in sts.mx:
        if _SAFE_PATTERN.fullmatch(pattern):
            patterns.append(pattern)
        else:
            note("use_mta_sts", "sts-pattern-dropped", f"policy mx {pattern[:80]!r} cannot be "
                 "written into a Postfix answer: dropped (fewer names match, stricter)")
    if not patterns:
        raise PostfixMappingError(
            f"MTA-STS policy of {sts_domain}: no mx pattern can be written into a Postfix "
            "answer")
    match = ":".join(p[1:] if p.startswith("*.") else p for p in patterns)
    # The operator's trust anchor (tafile) and cipher/protocol choices still apply; its
    # own match= gives way to the policy's names, as the decision's identities do.
    attributes = [("match", match), *_kept(operator.attributes, frozenset({"match"}))]
    if _since(version, SERVERNAME_SINCE):
        attributes.append(("servername", "hostname"))
    else:
        note("use_mta_sts", "sts-no-sni", "Postfix before 3.4 takes no servername=: no SNI "
             "is sent, and an MX host that picks its certificate by SNI may fail "
             "verification (stricter)")
    if _since(version, STS_ATTRIBUTES_SINCE):
        attributes += [("policy_type", "sts"), ("policy_domain", sts_domain)]
        for line in sts_policy_lines(sts):
            if _UNSAFE_LINE.search(line):
                note("use_mta_sts", "sts-policy-line-dropped", f"policy line {line[:80]!r} "
                     "holds a brace or control character and would inject attributes: not "
                     "reported to Postfix's TLSRPT")
                continue
            attributes.append(("policy_string", "{" + line + "}"))
        attributes += [("mx_host_pattern", p) for p in patterns]
    else:
        note("use_mta_sts", "sts-attributes-omitted", "Postfix before 3.10 takes no MTA-STS "
             "attributes (policy_type, policy_domain, policy_string, mx_host_pattern): its "
             "TLSRPT cannot name the policy")
    if not _since(version, MX_FILTERING_SINCE) or not mx_patterns_enforced:
        why = ("before 3.10.5" if not _since(version, MX_FILTERING_SINCE)
               else "with smtp_tls_enforce_sts_mx_patterns = no")
        outside = [h.name for h in hosts if not sts.permits_mx(h.name)]
        note("use_mta_sts", "sts-mx-not-filtered", f"Postfix {why} does not filter MX hosts "
             "by the policy's patterns: it connects to every MX host and accepts any "
             "certificate matching a pattern" + (
                 f" (MX hosts outside the policy: {', '.join(outside)}, which tlspolicy "
                 "never uses)" if outside else ""))
        if any(p.startswith("*.") for p in patterns):
            note("use_mta_sts", "sts-wildcard-depth", "a policy mx '*.d' is written as match "
                 "'.d', which Postfix matches at any depth below d where MTA-STS allows one "
                 "label")
    if not mx_secure:
        rule = "a"
        note("use_dane", "sts-insecure-mx", "the MX RRset is not DNSSEC-signed: secure, never "
             "dane (Postfix would use TLSA records of unauthenticated MX hosts)")
    else:
        rule = "d"
    return DiscoveredAnswer(PostfixPolicy(PostfixLevel.SECURE, tuple(attributes)), rule,
                            (*operator_warnings, *warnings))
