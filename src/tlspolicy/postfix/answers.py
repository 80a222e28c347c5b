"""Postfix answers with discovery: per-host decisions rendered into one answer per next hop.

SEMANTICS section 11.  Postfix asks ``smtp_tls_policy_maps`` once per next-hop
domain and applies the answer to every MX host of it, so the answer must make
Postfix at least as strict, for *every* MX host, as tlspolicy's own decision for
that host.  The decisions are the resolver's (one engine): the server fetched MX,
TLSA and MTA-STS, built a :class:`~tlspolicy.Destination` per host and asked
:meth:`~tlspolicy.Resolver.resolve`; :func:`render` only writes what those
decisions say in Postfix's vocabulary.  It cannot re-derive SEMANTICS 5, 7 or 8:
it reads a decision's plan, TLS, verification, fallback, parameters, and the MTA-STS
policy and DANE state the decision applied.  Pure: no I/O, time comes in as
``sts_ttl``.

Per MX host h (:class:`HostState`, read off h's decision): **D** DANE applied with
usable TLSA records; **X** the TLSA lookup failed (Postfix defers h at ``dane`` and
``dane-only``); **U** secure TLSA records, none usable (Postfix uses h with mandatory
unauthenticated TLS at ``dane``, defers it at ``dane-only``); **N** every other host.
What a decision needs of Postfix is :func:`~tlspolicy.postfix.levels.need_of`.  A host
whose DANE state is not known (its TLSA lookup failed, the resolver is not trusted) is
an X host that carries the decisions for the states it may turn out to be in
(:attr:`HostDecisions.alternatives`): Postfix does its own DANE there, and ``dane`` is
answered only when it is never weaker for any of them.

The rules, (a) to (e), are :data:`ANSWER_RULES` (the documentation's table is built
from it).  ``match=`` and ``tafile=`` never go with ``dane``/``dane-only`` (Postfix
rejects the entry), ``policy_failure`` is never sent (it would force Postfix to fail
enforcement), and an answer longer than Postfix accepts drops its MTA-STS attributes
(never the ``match=`` list).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from typing import Final

import attrs

from ..decision import Decision
from ..options import Tls, TlsProtocols, TlsVerify
from ..outcomes import Verification
from ..policies.dane import DaneApplicability, TlsaLookup
from ..policies.mtasts import MtaStsPolicy, StsMode
from .levels import (
    Need,
    PostfixLevel,
    PostfixMappingError,
    PostfixPolicy,
    PostfixVersion,
    PostfixWarning,
    need_of,
)
from .mapping import VERIFY_MATCH, map_values, tls_hole
from .replies import MAX_REPLY_CHARS

__all__ = [
    "ANSWER_RULES",
    "MX_FILTERING_SINCE",
    "OWN_LEVEL_RULE",
    "RULE_NAMES",
    "RULE_NAME_VALUES",
    "SERVERNAME_SINCE",
    "STS_ATTRIBUTES_SINCE",
    "STS_TESTING_RULE",
    "DiscoveredAnswer",
    "HostDecisions",
    "HostState",
    "NextHopView",
    "PostfixProfile",
    "host_state",
    "map_decision",
    "render",
    "sts_policy_lines",
    "tlsa_state",
    "with_policy_ttl",
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
    ("a", "MX RRset not DNSSEC-signed and an MTA-STS enforce policy in force, unless the "
     "answer without discovery is `dane-only`",
     "`secure` with the MTA-STS attributes, never `dane` (Postfix would use TLSA records "
     "of unauthenticated MX hosts)"),
    ("b", "every host D (or only D, X and U hosts)",
     "`dane-only`; with X/U hosts and no N host, `dane` when that is never weaker for "
     "the U hosts (their need at most encrypt) and for what X hosts may turn out to be"),
    ("c", "some host D, X or U and some host N",
     "`dane` when every N host needs at most `may` and every U host at most `encrypt`; "
     "otherwise `dane-only`, the N and U hosts reported as deferred"),
    ("d", "no D, X or U host and an MTA-STS enforce policy in force, unless the answer "
     "without discovery is `dane-only`",
     "`secure match=<each policy mx, *.d as .d> servername=hostname`, plus the MTA-STS "
     "attributes for Postfix 3.10 and later"),
    ("e", "otherwise",
     "the decision's mapping without DANE, never weaker (`ifavailable` with fallback "
     "false as `encrypt`; every loss reported); a testing-mode policy adds its MTA-STS "
     "attributes for Postfix 3.10 and later; `dane-only` where the answer without "
     "discovery is `dane-only` (DANE on with a gap in the TLS versions), which defers "
     "every host without usable TLSA records"),
)

#: The readable name of each rule (metrics, logs): one place, letter -> name.  A rule (e)
#: answer carrying a testing-mode policy's attributes is ``sts-testing``; a drop-in answer
#: that leaves Postfix's own level in force (``NOTFOUND``) is ``postfix-own-level``.
RULE_NAMES: Final[dict[str, str]] = {
    "a": "sts-enforce-insecure-mx",
    "b": "dane-hosts",
    "c": "dane-mixed-hosts",
    "d": "sts-enforce",
    "e": "configuration",
}
#: Rule names that no letter gives alone (see :attr:`DiscoveredAnswer.rule_name`).
STS_TESTING_RULE: Final = "sts-testing"
OWN_LEVEL_RULE: Final = "postfix-own-level"
#: Every rule name an answer can carry, in the documentation's order.
RULE_NAME_VALUES: Final[tuple[str, ...]] = (*RULE_NAMES.values(), STS_TESTING_RULE,
                                            OWN_LEVEL_RULE)

# What a policy line or pattern may hold inside Postfix's "{ }" attribute form:
# braces would end it early (injecting attributes), control characters split it.
_UNSAFE_LINE: Final = re.compile(r"[{}\x00-\x1f\x7f]")
# A policy mx pattern as Postfix reads it in match=/mx_host_pattern= (validated
# again here: a pattern with a separator would add names to the match list).
_SAFE_PATTERN: Final = re.compile(r"(?:\*\.)?[a-z0-9_-]+(?:\.[a-z0-9_-]+)*")
_DANE_DROPPED: Final = frozenset({"match", "tafile"})
_STS_ATTRIBUTES: Final = frozenset({"policy_type", "policy_domain", "policy_ttl",
                                    "policy_string", "mx_host_pattern"})
# "OK " before the answer in a socketmap reply.
_REPLY_OVERHEAD: Final = 3
_VERIFY_OF: Final = {Verification.NO: TlsVerify.NO, Verification.OPTIONAL: TlsVerify.OPTIONAL,
                     Verification.CA: TlsVerify.CA, Verification.HOST: TlsVerify.HOST,
                     Verification.DANE: TlsVerify.HOST}


class HostState(enum.Enum):
    """How DANE stands for one MX host (D, X, U, N in the module documentation)."""

    DANE = "dane"
    FAILED = "failed"
    UNUSABLE = "unusable"
    OTHER = "other"


_STATE_OF: Final = {DaneApplicability.USABLE: HostState.DANE,
                    DaneApplicability.FAILED: HostState.FAILED,
                    DaneApplicability.UNUSABLE_ONLY: HostState.UNUSABLE}


def host_state(decision: Decision) -> HostState:
    """The host's DANE state as the decision applied it."""
    dane = decision.dane
    return HostState.OTHER if dane is None else _STATE_OF.get(dane, HostState.OTHER)


def tlsa_state(tlsa: TlsaLookup | None) -> HostState:
    """The DANE state a TLSA lookup gives (``None``: not looked up)."""
    return HostState.OTHER if tlsa is None else _STATE_OF.get(tlsa.classify(),
                                                               HostState.OTHER)


@attrs.frozen(slots=True)
class PostfixProfile:
    """What the server learnt about the Postfix it answers.

    - ``version``: ``mail_version`` (attributes by version, SEMANTICS 11).
    - ``mx_patterns_enforced``: main.cf's ``smtp_tls_enforce_sts_mx_patterns``.
    - ``dane``: Postfix meets its own DANE prerequisites for every service that uses
      the map (SEMANTICS 10); without them no answer is ``dane``/``dane-only``.
    - ``sts_attributes``: whether to send the MTA-STS attributes (``None``: by version).
    """

    version: PostfixVersion
    mx_patterns_enforced: bool = True
    dane: bool = True
    sts_attributes: bool | None = None

    @property
    def sends_sts_attributes(self) -> bool:
        """Whether answers carry ``policy_type`` and the other MTA-STS attributes."""
        if self.sts_attributes is not None:
            return self.sts_attributes
        return tuple(self.version) >= STS_ATTRIBUTES_SINCE


@attrs.frozen(slots=True)
class HostDecisions:
    """One MX host: the resolver's decision for what discovery found, and, when the host's
    DANE state is unknown, the decisions for the states it may turn out to be in."""

    name: str
    decision: Decision
    alternatives: tuple[Decision, ...] = ()
    #: ``False`` for a stand-in (the MX hosts could not be looked up): kept out of lists
    #: of host names in notes.
    known: bool = True


@attrs.frozen(slots=True)
class NextHopView:
    """Everything :func:`render` takes besides the profile, for one next-hop key.

    ``base`` is the decision for the next hop without an MX host (configuration and
    message only): the answer when there are no hosts (null MX, no domain).
    ``mx_secure`` is whether the MX RRset was DNSSEC-signed (rule (a)); ``match`` the
    ``match=`` list of verified levels from the configuration's side (``None``: no list
    serves every domain routed through the next hop; a verified answer is then refused).
    ``sts_ttl`` is how many seconds the answer's MTA-STS policy remains valid.
    """

    binding: str
    key: str
    policy_domain: str
    hosts: tuple[HostDecisions, ...]
    base: Decision
    mx_secure: bool = True
    match: str | None = VERIFY_MATCH
    notes: tuple[PostfixWarning, ...] = ()
    sts_ttl: int = 0


@attrs.frozen(slots=True)
class DiscoveredAnswer:
    """The answer for one next hop, the rule that gave it, and every loss or note.

    ``notfound`` (drop-in mode, :mod:`tlspolicy.postfix.dropin`): the reply is
    ``NOTFOUND``, so that Postfix's own level stands; ``policy`` is then the answer
    that was not sent.
    """

    policy: PostfixPolicy
    rule: str
    warnings: tuple[PostfixWarning, ...] = ()
    notfound: bool = False

    @property
    def rule_name(self) -> str:
        """The rule as a reader names it (:data:`RULE_NAMES`)."""
        if self.notfound:
            return OWN_LEVEL_RULE
        if self.rule == "e" and self.sts_derived:
            return STS_TESTING_RULE
        return RULE_NAMES.get(self.rule, self.rule)

    @property
    def sts_derived(self) -> bool:
        """Whether the answer comes from an MTA-STS policy (rules (a), (d), and (e)
        under a testing-mode policy)."""
        return self.rule in ("a", "d") or any(
            name == "policy_type" for name, _ in self.policy.attributes)


def with_policy_ttl(policy: PostfixPolicy, seconds: float) -> PostfixPolicy:
    """``policy`` with its ``policy_ttl`` lowered to ``seconds`` (whole seconds, at least 0),
    never raised: an answer given again later must not claim more of the MTA-STS policy's
    lifetime than remains (SEMANTICS 11).  Without ``policy_ttl`` it is returned as it is."""
    if not any(name == "policy_ttl" for name, _ in policy.attributes):
        return policy
    remaining = max(0, int(seconds))
    attributes = tuple(
        (name, str(min(int(value), remaining)) if value.isdigit() else str(remaining))
        if name == "policy_ttl" else (name, value)
        for name, value in policy.attributes)
    return PostfixPolicy(policy.level, attributes)


def sts_policy_lines(policy: MtaStsPolicy) -> tuple[str, ...]:
    """The policy as RFC 8461 lines, in the order Postfix's ``policy_string`` reports them."""
    return ("version: STSv1", f"mode: {policy.mode.value}",
            *(f"mx: {pattern}" for pattern in policy.mx), f"max_age: {policy.max_age}")


def map_decision(decision: Decision, *, binding: str, key: str, version: PostfixVersion,
                 match: str = VERIFY_MATCH, cover_holes: bool | None = None,
                 opportunistic: bool = False, keep_dane: bool = False
                 ) -> tuple[PostfixPolicy, tuple[PostfixWarning, ...]]:
    """The Postfix answer for ``decision`` without DANE: its TLS, verification and fallback
    with the configuration's other values (CA, ciphers, protocols), through the one value
    mapping of :mod:`tlspolicy.postfix.mapping`."""
    values = dict(decision.effective)
    values["tls"] = decision.tls
    values["tls_verify"] = _VERIFY_OF[decision.verification]
    values["tls_ifavailable_fallback"] = decision.fallback
    if opportunistic:
        # Raised to opportunistic TLS (see render, rule (e)): the answer's own side.
        values["tls"] = Tls.IFAVAILABLE
        values["tls_ifavailable_fallback"] = True
    # DANE is rendered by the rules (or, with keep_dane, as the mapping without discovery
    # does), and MTA-STS came in through the decision itself.
    if not keep_dane:
        values["use_dane"] = False
    values["use_mta_sts"] = False
    return map_values(values, decision.explanation, binding=binding, key=key,
                      fallback_exists=True, postfix_version=version, match=match,
                      cover_holes=cover_holes)


def _since(version: PostfixVersion, since: PostfixVersion) -> bool:
    return tuple(version) >= since


def _kept(attributes: Sequence[tuple[str, str]], drop: frozenset[str]
          ) -> list[tuple[str, str]]:
    return [(name, value) for name, value in attributes if name not in drop]


class _Notes:
    def __init__(self, binding: str, key: str) -> None:
        self.binding, self.key = binding, key
        self.items: list[PostfixWarning] = []

    def add(self, option: str, code: str, message: str) -> None:
        self.items.append(PostfixWarning(self.binding, self.key, option, message, None, code))


def render(view: NextHopView, profile: PostfixProfile) -> DiscoveredAnswer:
    """The answer for ``view``'s next hop (SEMANTICS 11, rules (a)-(e)).

    Raises :class:`~tlspolicy.postfix.levels.PostfixMappingError` when no answer can be
    written that is never weaker (no policy mx pattern can be written, a verified level
    at a shared next hop no ``match=`` list serves, a value Postfix cannot take): the
    server answers ``PERM`` and Postfix defers.
    """
    notes = _Notes(view.binding, view.key)
    hosts = view.hosts
    states = [host_state(h.decision) for h in hosts]
    enforce = next((h.decision.mta_sts for h in hosts if h.decision.mta_sts is not None
                    and h.decision.mta_sts.mode is StsMode.ENFORCE), None)
    reference = _strictest([h.decision for h in hosts
                            if host_state(h.decision) is not HostState.DANE]) or view.base
    operator, operator_warnings = _operator(view, reference, profile.version)
    if not profile.dane and any(s is not HostState.OTHER for s in states):
        # The server never gives DANE inputs to a Postfix that cannot use them; were it
        # to, no answer could be never weaker for the D hosts.
        raise PostfixMappingError(
            f"{view.key}: DANE applies but Postfix cannot do DANE (SEMANTICS 10)")

    dane_hosts = [h for h, s in zip(hosts, states, strict=True) if s is HostState.DANE]
    failed = [h for h, s in zip(hosts, states, strict=True) if s is HostState.FAILED]
    unusable = [h for h, s in zip(hosts, states, strict=True) if s is HostState.UNUSABLE]
    others = [h for h, s in zip(hosts, states, strict=True) if s is HostState.OTHER]

    # MTA-STS still filters MX hosts under DANE (SEMANTICS 5): a D host the enforce
    # policy does not permit is decided FAIL, which no DANE level gives it.
    def outside(host: HostDecisions) -> bool:
        # Ruled out whatever its DANE state: the enforce policy does not name it.
        if host_state(host.decision) is HostState.FAILED:
            return bool(host.alternatives) and all(
                need_of(a) is Need.DEFER for a in host.alternatives)
        return need_of(host.decision) is Need.DEFER

    stray = [h for h in (*dane_hosts, *failed) if outside(h)] if enforce is not None else []
    if enforce is not None and stray and len(stray) == len(dane_hosts) + len(failed):
        # No D or X host to protect: the policy's own answer, which filters MX hosts.
        return _enforce_answer(view, profile, operator, operator_warnings, enforce, notes,
                               stray)
    if stray:
        _note_stray(notes, stray)

    if dane_hosts or failed or unusable:
        # Mandatory TLS for the DANE hosts: a gap in the allowed TLS versions narrows to
        # the highest range (offering the gap would be TLS tlspolicy refuses there).
        # Only the TLS attributes (protocols, ciphers) go with a DANE level, written as
        # for TLS in use even where the decision without DANE says tls = no.
        operator, operator_warnings = _operator(view, reference, profile.version,
                                                cover_holes=False, opportunistic=True)
        protocols = reference.effective.get("tls_protocols")
        hole = isinstance(protocols, TlsProtocols) and tls_hole(protocols)
        if hosts and len(dane_hosts) == len(hosts):
            rule, level = "b", PostfixLevel.DANE_ONLY
        else:
            rule = "c" if others else "b"
            level = PostfixLevel.DANE if _dane_is_enough(others, unusable, failed) \
                else PostfixLevel.DANE_ONLY
            if level is PostfixLevel.DANE and hole:
                # At dane a host without TLSA records gets may, where the narrowed range
                # would end in plaintext: no range serves both kinds of host, and the
                # answer without discovery is dane-only for the same reason.
                level = PostfixLevel.DANE_ONLY
                notes.add("tls_protocols", "protocols-hole-dane-only", "the allowed TLS "
                          "versions have a gap, which no range at dane serves for hosts "
                          "with and without TLSA records: dane-only (stricter)")
            if level is PostfixLevel.DANE_ONLY:
                deferred = [h.name for h in (*others, *unusable) if h.known]
                if deferred:
                    notes.add("use_dane", "dane-only-defers", "dane-only: Postfix defers "
                              f"{', '.join(deferred)} (no usable TLSA records), where "
                              "tlspolicy would deliver to them under MTA-STS or the "
                              "configuration (stricter)")
                if failed:
                    notes.add("use_dane", "dane-unknown-strict", "DANE state unknown for "
                              f"{', '.join(h.name for h in failed)}: dane-only, since dane "
                              "would let Postfix deliver below what tlspolicy requires if "
                              "the host has no usable TLSA records")
        attributes = _kept(operator.attributes, _DANE_DROPPED)
        if any(name in _DANE_DROPPED for name, _ in operator.attributes):
            notes.add("tls_ca", "dane-drops-match", "match= and tafile= cannot go with "
                      f"{level.value} (Postfix rejects the entry): dropped; DANE's own "
                      "authentication applies")
        return DiscoveredAnswer(PostfixPolicy(level, tuple(attributes)), rule,
                                (*view.notes, *operator_warnings, *notes.items))

    if enforce is not None:
        return _enforce_answer(view, profile, operator, operator_warnings, enforce, notes, ())
    dane_on = bool(reference.effective.get("use_dane")) and bool(
        reference.effective.get("enable_dane"))
    if dane_on and operator.level in (PostfixLevel.NONE, PostfixLevel.MAY):
        # Never weaker than the answer without discovery, dane: Postfix takes it as may for
        # hosts without TLSA records (so tls = no becomes may here), and where the MX
        # RRset is not signed it still applies the hosts' TLSA records
        # (smtp_tls_dane_insecure_mx_policy), which discovery does not judge: dane there,
        # as without discovery.  A Postfix that cannot do DANE makes may of dane.
        insecure = not view.mx_secure and bool(hosts) and profile.dane
        protocols = reference.effective.get("tls_protocols")
        # A gap in the TLS versions: the answer without discovery is dane-only (no range
        # serves dane's hosts with and without TLSA records), and this one too.
        hole = profile.dane and isinstance(protocols, TlsProtocols) and tls_hole(protocols)
        if insecure or hole or operator.level is PostfixLevel.NONE:
            operator, operator_warnings = map_decision(
                reference, binding=view.binding, key=view.key, version=profile.version,
                match=view.match or VERIFY_MATCH, keep_dane=insecure or hole,
                opportunistic=operator.level is PostfixLevel.NONE)
            notes.add("use_dane", "dane-as-without-discovery", f"{operator.level.value}: "
                      "never weaker than the answer without discovery (dane), which Postfix "
                      + ("applies to the TLSA records of MX hosts of an unsigned MX RRset"
                         if insecure else "takes as may for hosts without TLSA records"))
    if operator.level is not PostfixLevel.DANE_ONLY:
        # verify and secure are no exception: they deliver, with a certificate check, to
        # hosts without usable TLSA records, which dane-only defers.
        alone = _alone_dane_only(view, profile)
        if alone is not None:
            operator, operator_warnings = alone
    testing = reference.mta_sts
    if testing is not None and testing.mode is StsMode.TESTING:
        if reference.decided_by.get("tls") is not None and \
                reference.decided_by["tls"].scope == "mta-sts":
            notes.add("use_mta_sts", "sts-testing-raises", "MTA-STS testing mode raises "
                      "tls = no to opportunistic TLS")
        if profile.sends_sts_attributes and operator.level is not PostfixLevel.NONE:
            attributes = [*operator.attributes, *_sts_attributes(view, testing, notes)]
            return _fit(DiscoveredAnswer(PostfixPolicy(operator.level, tuple(attributes)), "e",
                                         (*view.notes, *operator_warnings, *notes.items)),
                        notes)
    return DiscoveredAnswer(operator, "e", (*view.notes, *operator_warnings, *notes.items))


def _alone_dane_only(view: NextHopView, profile: PostfixProfile
                     ) -> tuple[PostfixPolicy, tuple[PostfixWarning, ...]] | None:
    """The configuration alone's answer where it is ``dane-only``, else ``None``.

    Never weaker than the configuration alone (SEMANTICS 11): with DANE on, a gap in the
    allowed TLS versions maps to ``dane-only`` without discovery (no range at ``dane``
    serves hosts both with and without TLSA records, see the mapping), and Postfix then
    defers every host without usable TLSA records.  No answer that delivers to such a
    host, ``secure match=...`` included, is as strict, so the answer stays ``dane-only``.
    """
    base = view.base
    protocols = base.effective.get("tls_protocols")
    if not (profile.dane and base.effective.get("use_dane") and base.effective.get(
            "enable_dane") and isinstance(protocols, TlsProtocols) and tls_hole(protocols)):
        return None
    alone, warnings = map_decision(base, binding=view.binding, key=view.key,
                                   version=profile.version, match=view.match or VERIFY_MATCH,
                                   keep_dane=True)
    return (alone, warnings) if alone.level is PostfixLevel.DANE_ONLY else None


def _strictest(decisions: Sequence[Decision]) -> Decision | None:
    return max(decisions, key=need_of, default=None)


def _operator(view: NextHopView, decision: Decision, version: PostfixVersion, *,
              cover_holes: bool | None = None, opportunistic: bool = False
              ) -> tuple[PostfixPolicy, tuple[PostfixWarning, ...]]:
    # A decision whose plan fails (an MX host outside an enforce policy, a failed TLSA
    # lookup) still carries the TLS, verification and parameters it demands of a
    # connection: those are what is mapped.
    policy, warnings = map_decision(decision, binding=view.binding, key=view.key,
                                    version=version,
                                    match=view.match or VERIFY_MATCH,
                                    cover_holes=cover_holes,
                                    opportunistic=opportunistic)
    if view.match is None and policy.level is PostfixLevel.VERIFY:
        raise PostfixMappingError(
            f"next hop {view.policy_domain} carries several domains and needs a verified "
            "level: no match= list is never weaker for all of them")
    return policy, warnings


def _dane_is_enough(others: Sequence[HostDecisions], unusable: Sequence[HostDecisions],
                    failed: Sequence[HostDecisions]) -> bool:
    """Whether ``dane`` is never weaker: Postfix at ``dane`` uses an N host at ``may`` and
    a U host with mandatory unauthenticated TLS, so every N host may need at most ``may``
    and every U host at most ``encrypt``; an X host may turn out to be either."""
    if any(need_of(h.decision) > Need.MAY for h in others):
        return False
    if any(need_of(h.decision) > Need.ENCRYPT for h in unusable):
        return False
    for host in failed:
        for alternative in host.alternatives:
            state = host_state(alternative)
            if state is HostState.OTHER and need_of(alternative) > Need.MAY:
                return False
            if state is HostState.UNUSABLE and need_of(alternative) > Need.ENCRYPT:
                return False
    return True


def _sts_attributes(view: NextHopView, sts: MtaStsPolicy, notes: _Notes
                    ) -> list[tuple[str, str]]:
    attributes = [("policy_type", "sts"), ("policy_domain", view.policy_domain),
                  ("policy_ttl", str(max(0, view.sts_ttl)))]
    lines = 0
    for line in sts_policy_lines(sts):
        if _UNSAFE_LINE.search(line):
            notes.add("use_mta_sts", "sts-policy-line-dropped", f"policy line {line[:80]!r} "
                      "holds a brace or control character and would inject attributes: not "
                      "reported to Postfix's TLSRPT")
            continue
        attributes.append(("policy_string", "{" + line + "}"))
        lines += 1
    patterns = [p for p in sts.mx if _SAFE_PATTERN.fullmatch(p)]
    attributes += [("mx_host_pattern", p) for p in patterns]
    if not patterns or not lines:
        # Postfix reads each list unconditionally: at least one of each, or none at all.
        notes.add("use_mta_sts", "sts-attributes-omitted", "no policy line or mx pattern "
                  "could be written: the MTA-STS attributes are left out")
        return []
    return attributes


def _note_stray(notes: _Notes, stray: Sequence[HostDecisions]) -> None:
    notes.add("use_mta_sts", "sts-mx-not-filtered", "Postfix does not filter MX hosts by the "
              "MTA-STS policy at dane or dane-only: it uses "
              f"{', '.join(h.name for h in stray)} (usable or unknown TLSA records, outside "
              "the policy), which tlspolicy never uses")


def _enforce_answer(view: NextHopView, profile: PostfixProfile, operator: PostfixPolicy,
                    operator_warnings: Sequence[PostfixWarning], sts: MtaStsPolicy,
                    notes: _Notes, stray: Sequence[HostDecisions]) -> DiscoveredAnswer:
    """Rules (a) and (d), unless the configuration alone answers ``dane-only``: then
    ``secure`` would deliver to hosts without usable TLSA records, which ``dane-only``
    defers, so the answer is that ``dane-only`` (rule (e)); Postfix then uses the
    ``stray`` hosts (usable or unknown TLSA records, outside the policy)."""
    alone = _alone_dane_only(view, profile)
    if alone is None:
        return _sts_answer(view, profile, operator, operator_warnings, sts, notes)
    policy, warnings = alone
    notes.add("tls_protocols", "sts-dane-only-without-discovery", "the answer without "
              "discovery is dane-only (a gap in the allowed TLS versions with DANE on): the "
              "MTA-STS policy's secure answer would deliver to MX hosts without usable TLSA "
              "records, which dane-only defers; dane-only (stricter; make the versions "
              "contiguous)")
    if stray:
        _note_stray(notes, stray)
    return DiscoveredAnswer(policy, "e", (*view.notes, *warnings, *notes.items))


def _sts_answer(view: NextHopView, profile: PostfixProfile, operator: PostfixPolicy,
                operator_warnings: Sequence[PostfixWarning], sts: MtaStsPolicy,
                notes: _Notes) -> DiscoveredAnswer:
    version = profile.version
    patterns: list[str] = []
    for pattern in sts.mx:
        if _SAFE_PATTERN.fullmatch(pattern):
            patterns.append(pattern)
        else:
            notes.add("use_mta_sts", "sts-pattern-dropped", f"policy mx {pattern[:80]!r} "
                      "cannot be written into a Postfix answer: dropped (fewer names match, "
                      "stricter)")
    if not patterns:
        raise PostfixMappingError(
            f"MTA-STS policy of {view.policy_domain}: no mx pattern can be written into a "
            "Postfix answer")
    match = ":".join(p[1:] if p.startswith("*.") else p for p in patterns)
    # The operator's trust anchor (tafile) and cipher/protocol choices still apply; its
    # own match= gives way to the policy's names, as the decision's identities do.
    attributes = [("match", match), *_kept(operator.attributes, frozenset({"match"}))]
    notes.add("use_mta_sts", "sts-match-patterns", "Postfix checks each MX host's "
              "certificate against the policy's patterns, so it accepts a certificate naming "
              "another name the policy permits, where tlspolicy requires the MX host's own "
              "name (RFC 8461 section 4.2)")
    if _since(version, SERVERNAME_SINCE):
        attributes.append(("servername", "hostname"))
    else:
        notes.add("use_mta_sts", "sts-no-sni", "Postfix before 3.4 takes no servername=: no "
                  "SNI is sent, and an MX host that picks its certificate by SNI may fail "
                  "verification (stricter)")
    if profile.sends_sts_attributes:
        attributes += _sts_attributes(view, sts, notes)
    else:
        notes.add("use_mta_sts", "sts-attributes-omitted", "Postfix before 3.10 takes no "
                  "MTA-STS attributes (policy_type, policy_domain, policy_ttl, policy_string, "
                  "mx_host_pattern): its TLSRPT cannot name the policy")
    if not _since(version, MX_FILTERING_SINCE) or not profile.mx_patterns_enforced:
        why = ("before 3.10.5" if not _since(version, MX_FILTERING_SINCE)
               else "with smtp_tls_enforce_sts_mx_patterns = no")
        outside = [h.name for h in view.hosts if h.known and not sts.permits_mx(h.name)]
        notes.add("use_mta_sts", "sts-mx-not-filtered", f"Postfix {why} does not filter MX "
                  "hosts by the policy's patterns: it connects to every MX host and accepts "
                  "any certificate matching a pattern" + (
                      f" (MX hosts outside the policy: {', '.join(outside)}, which tlspolicy "
                      "never uses)" if outside else ""))
        if any(p.startswith("*.") for p in patterns):
            notes.add("use_mta_sts", "sts-wildcard-depth", "a policy mx '*.d' is written as "
                      "match '.d', which Postfix matches at any depth below d where MTA-STS "
                      "allows one label")
    if not view.mx_secure:
        rule = "a"
        notes.add("use_dane", "sts-insecure-mx", "the MX RRset is not DNSSEC-signed: secure, "
                  "never dane (Postfix would use TLSA records of unauthenticated MX hosts)")
    else:
        rule = "d"
    answer = DiscoveredAnswer(PostfixPolicy(PostfixLevel.SECURE, tuple(attributes)), rule,
                              (*view.notes, *operator_warnings, *notes.items))
    return _fit(answer, notes)


def _fit(answer: DiscoveredAnswer, notes: _Notes) -> DiscoveredAnswer:
    """The answer within Postfix's reply limit: the MTA-STS attributes go first (they only
    feed TLSRPT), never the ``match=`` list (SEMANTICS 11, "Answers that fit")."""
    if len(answer.policy.text()) + _REPLY_OVERHEAD <= MAX_REPLY_CHARS:
        return answer
    kept = tuple(_kept(answer.policy.attributes, _STS_ATTRIBUTES))
    notes.add("use_mta_sts", "sts-attributes-too-long", "the answer with the MTA-STS "
              f"attributes would pass Postfix's {MAX_REPLY_CHARS}-character reply limit: "
              "the attributes are left out (the match= list stays)")
    return DiscoveredAnswer(PostfixPolicy(answer.policy.level, kept), answer.rule,
                            (*answer.warnings, notes.items[-1]))

