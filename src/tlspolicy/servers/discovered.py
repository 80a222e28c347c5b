"""The socketmap lookup with discovery: fetch, ask the resolver per MX host, render.

SEMANTICS sections 10 and 11, one engine.  For every ``smtp_tls_policy_maps``
query this lookup fetches what discovery knows of the next hop (MX, TLSA per MX
host, the cached MTA-STS state), builds a :class:`~tlspolicy.Destination` per MX
host, asks the :class:`~tlspolicy.Resolver` for each host's decision and lets
:func:`tlspolicy.postfix.answers.render` write the one answer.  Nothing here judges
a policy: which inputs exist is I/O, what they mean is the resolver's.

- Keys without discovery: IP literals (no names to look up) and ``.parent`` keys
  (``NOTFOUND``, never a query) are answered as without discovery.
- DANE inputs are *unknown*, never insecure, while the resolver is not trusted or a
  TLSA lookup fails: such a host carries the decisions for the states it may turn
  out to be in, so that Postfix does its own DANE (``dane``) only where that is
  never weaker.  Without Postfix's own DANE prerequisites no DANE is rendered.
- Outages (SEMANTICS 11): an MX lookup that fails uses the last MX hosts while their
  TLSA answers are cached, then an unexpired enforce policy's ``secure`` answer, then
  the configuration alone; ``TEMP`` only when neither the MX state nor a cached
  MTA-STS state can be read.
- Freshness: an answer is kept for reuse only when computed from complete inputs,
  keyed by them (the MTA-STS state object, the resolver's trust epoch, the first DNS
  TTL to run out), and dropped the moment one changes.  An answer given while the
  first fetch ran is never served again after it.
- Every answer is ready within ``deadline`` seconds (10 by default, far under
  Postfix's 100 s): what has not arrived by then counts as failed.
- Domains answered for are remembered (at most ``max_in_use``) and their MTA-STS
  policies refreshed before they are due (:meth:`DiscoveryLookup.refresh_in_use`).
- Shadow evaluation (SEMANTICS 9): a lookup tells its ``shadow`` every reply with the
  inputs it was computed from (:class:`FetchedInputs`); a candidate built with
  :meth:`DiscoveryLookup.candidate` is judged on them by :meth:`DiscoveryLookup.replay`,
  which makes no query.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import attrs

from ..decision import Decision, Source
from ..errors import InvalidDomainError, TlsPolicyError, UnknownBindingError
from ..formats.settings import DEFAULT_ANSWER_DEADLINE
from ..policies.dane import TlsaLookup, TlsaLookupStatus, TlsaRecord
from ..policies.destination import Destination
from ..policies.mtasts import StsMode
from ..postfix.answers import (
    RULE_NAMES,
    DiscoveredAnswer,
    HostDecisions,
    NextHopView,
    PostfixProfile,
    map_decision,
    render,
    with_policy_ttl,
)
from ..postfix.dropin import drop_in, sends_sts_attributes_for
from ..postfix.keys import PostfixKey, PostfixKeyError, parse_postfix_key
from ..postfix.levels import (
    PostfixLevel,
    PostfixMappingError,
    PostfixPolicy,
    PostfixVersion,
    PostfixWarning,
)
from ..postfix.lookup import PolicyLookup
from ..postfix.mapping import VERIFY_MATCH
from ..postfix.replies import SocketmapReply

if TYPE_CHECKING:
    from ..discovery import Discovery, MxLookup, StsState

__all__ = [
    "DEFAULT_ANSWER_DEADLINE",
    "DEFAULT_ANSWER_MEMO_TTL",
    "DiscoveryLookup",
    "FetchedInputs",
    "ShadowInputsMissingError",
]

log = logging.getLogger(__name__)

#: Longest time an answer is reused while every input it came from is unchanged.
DEFAULT_ANSWER_MEMO_TTL: Final = 30.0
#: Domains remembered as in use for proactive refresh.
DEFAULT_MAX_IN_USE: Final = 100_000
#: MX hosts decided one by one; the hosts beyond count as of unknown DANE state, which
#: keeps the answer at dane/dane-only where Postfix checks TLSA itself.
MAX_MX_HOSTS: Final = 32
_MEMO_SIZE: Final = 65_536
# The binding every map name is answered through in drop-in mode (its configuration
# declares no other).
_DEFAULT_BINDING: Final = "default"
_UNKNOWN_MX: Final = "(MX hosts unknown: MX lookup failed)"
# The decisions a host of unknown DANE state may turn out to have: no TLSA records
# (N) and secure records none of which is usable (U).  The record's data is never
# matched: only its class matters here.
_NO_TLSA: Final = TlsaLookup(TlsaLookupStatus.NODATA, detail="if the host has no TLSA records")
_UNUSABLE_RECORD: Final = TlsaRecord(1, 1, 1, bytes(32))
# MTA-STS switched off for a next hop: its answers depend on no MTA-STS state.
_STS_OFF: Final = object()


def _aware(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


@attrs.frozen(slots=True)
class _Inputs:
    """What discovery found for one next hop: MX (``None`` for a smart host), the MTA-STS
    state (``None``: MTA-STS off, or not known by the deadline), the TLSA lookup per host
    looked up, when the first DNS answer used runs out, and whether all of it came from
    complete, successful lookups (only then is the answer kept for reuse)."""

    mx: MxLookup | None
    sts: StsState | None
    tlsa: dict[str, TlsaLookup | None]
    until: float = math.inf
    complete: bool = False
    #: Whether MTA-STS and TLSA were looked up at all (the next hop's switches and the
    #: resolver's trust): a shadow candidate that needs what was not looked up takes it
    #: from what discovery holds in memory, never from a new query.
    sts_asked: bool = True
    tlsa_asked: bool = True


@attrs.frozen(slots=True)
class FetchedInputs:
    """What one answer was computed from: discovery's inputs, the time of the answer and
    the resolver's trust then.  A shadow candidate is judged on them (SEMANTICS 9: the
    same request with the same fetched inputs), never on a fetch of its own."""

    inputs: _Inputs
    at: float
    dnssec: bool
    dnssec_detail: str


class ShadowInputsMissingError(TlsPolicyError):
    """A shadow candidate needs an input the live answer did not fetch and discovery does
    not hold: the request is not compared (counted as a candidate error)."""


@attrs.frozen(slots=True)
class _Held:
    """An answer kept for reuse: the MTA-STS state (or ``_STS_OFF``) and trust epoch it
    came from, until when, the reply and rule name, the answer and its policy's expiry
    when it carries ``policy_ttl``, and what it was computed from."""

    sts: object
    epoch: int
    until: float
    reply: SocketmapReply
    domain: str
    rule: str
    timed: PostfixPolicy | None
    expires: float
    fetched: FetchedInputs


class DiscoveryLookup:
    """A socketmap :data:`~tlspolicy.servers.socketmap.Lookup` answering with discovery.

    ``policy`` is the operator's :class:`~tlspolicy.postfix.lookup.PolicyLookup`
    (configuration, routes, Postfix version) and also the answer with discovery off;
    ``discovery`` a started :class:`~tlspolicy.discovery.Discovery`.
    ``postfix_version`` must be known (SEMANTICS 11: no default).
    ``mx_patterns_enforced`` is main.cf's ``smtp_tls_enforce_sts_mx_patterns``
    (Postfix 3.10.5 and later); ``dane_ready`` whether Postfix meets its own DANE
    prerequisites (SEMANTICS 10).  ``on_answer`` is told the rule name
    (:data:`~tlspolicy.postfix.answers.RULE_NAMES`) of every discovered answer, and
    ``on_temp`` the cause of every ``TEMP`` this lookup answers (``store``: neither the MX
    lookup nor the MTA-STS cache could be read) (metrics).

    Calling it returns a :class:`~tlspolicy.postfix.replies.SocketmapReply` for what
    needs no I/O, else an awaitable of one.
    """

    def __init__(self, policy: PolicyLookup, discovery: Discovery, *,
                 postfix_version: PostfixVersion,
                 deadline: float = DEFAULT_ANSWER_DEADLINE,
                 memo_ttl: float = DEFAULT_ANSWER_MEMO_TTL,
                 mx_patterns_enforced: bool = True,
                 dane_ready: bool = True,
                 max_in_use: int = DEFAULT_MAX_IN_USE,
                 clock: Callable[[], float] | None = None,
                 on_answer: Callable[[str], None] | None = None,
                 drop_in: bool = False, own_level: str | None = None,
                 on_temp: Callable[[str], None] | None = None) -> None:
        if not deadline > 0:
            raise ValueError(f"deadline must be positive, got {deadline}")
        if not memo_ttl >= 0:
            raise ValueError(f"memo_ttl must be >= 0, got {memo_ttl}")
        self.policy = policy
        self.discovery = discovery
        self.postfix_version = tuple(postfix_version)
        self.deadline = deadline
        self.memo_ttl = memo_ttl
        self.mx_patterns_enforced = mx_patterns_enforced
        self.dane_ready = dane_ready
        self.max_in_use = max_in_use
        # Discovery's own clock by default: the policies' expiry and the answers' validity
        # are then read on one clock.
        self._clock = clock if clock is not None else getattr(discovery, "_clock", time.time)
        self._on_answer = on_answer
        self._on_temp = on_temp
        #: Told every reply this lookup gives with what it was computed from (``None``:
        #: no discovery was involved): a shadow candidate is judged on the same inputs.
        self.shadow: Callable[[str, str, SocketmapReply, FetchedInputs | None], None] | None \
            = None
        self._shadowed = 0
        self.profile = PostfixProfile(self.postfix_version, mx_patterns_enforced,
                                      dane_ready)
        # Drop-in mode (SEMANTICS 11): any map name, NOTFOUND where neither MTA-STS nor
        # DANE applies, never less strict than Postfix's own level; postfix-tlspol's
        # QUERY map asks without the MTA-STS attributes.
        self.drop_in = drop_in
        self.own_level = own_level
        self._quiet_profile = attrs.evolve(self.profile, sts_attributes=False)
        self._resolver = policy.resolver
        self._bindings = frozenset(self._resolver.bindings)
        # (map, key) -> the answer again while its inputs are unchanged (see _Held).
        self._held: dict[tuple[str, str], _Held] = {}
        self._keys: dict[str, PostfixKey] = {}
        self._value_memo: dict[tuple[str, str, int | None, bool], _Values] = {}
        # The last MX answer of each domain that was not a failure, for outages.
        self._last_mx: OrderedDict[str, MxLookup] = OrderedDict()
        #: Policy domains answered for, least recently used first, with when.
        self.in_use: OrderedDict[str, float] = OrderedDict()

    def with_policy(self, policy: PolicyLookup) -> DiscoveryLookup:
        """The same discovery and settings over a reloaded operator policy (SIGHUP)."""
        other = DiscoveryLookup(policy, self.discovery, postfix_version=self.postfix_version,
                                deadline=self.deadline, memo_ttl=self.memo_ttl,
                                mx_patterns_enforced=self.mx_patterns_enforced,
                                dane_ready=self.dane_ready,
                                max_in_use=self.max_in_use, clock=self._clock,
                                on_answer=self._on_answer, drop_in=self.drop_in,
                                own_level=self.own_level, on_temp=self._on_temp)
        other.in_use = self.in_use  # what is in use does not change with the configuration
        other._last_mx = self._last_mx
        return other

    # ------------------------------------------------------------------ serving

    def candidate(self, policy: PolicyLookup) -> DiscoveryLookup:
        """A shadow candidate over ``policy``: the same discovery and settings, judged with
        :meth:`replay` on the live answers' inputs; nothing counted, nothing kept."""
        other = DiscoveryLookup(policy, self.discovery, postfix_version=self.postfix_version,
                                deadline=self.deadline, memo_ttl=0.0,
                                mx_patterns_enforced=self.mx_patterns_enforced,
                                dane_ready=self.dane_ready, max_in_use=self.max_in_use,
                                clock=self._clock, drop_in=self.drop_in,
                                own_level=self.own_level)
        other._last_mx = self._last_mx  # the MX hosts an outage answer falls back on
        return other

    def __call__(self, map_name: str, key: str) -> SocketmapReply | Awaitable[SocketmapReply]:
        shadow = self.shadow
        if shadow is None:
            return self._reply(map_name, key)
        before = self._shadowed
        reply = self._reply(map_name, key)
        if isinstance(reply, SocketmapReply) and self._shadowed == before:
            shadow(map_name, key, reply, None)  # answered without discovery
        return reply

    def _record(self, map_name: str, key: str, reply: SocketmapReply,
                fetched: FetchedInputs) -> None:
        shadow = self.shadow
        if shadow is not None:
            self._shadowed += 1
            shadow(map_name, key, reply, fetched)

    def replay(self, map_name: str, key: str, fetched: FetchedInputs | None
               ) -> SocketmapReply:
        """The reply to ``key`` from the inputs a live answer was computed from (a shadow
        candidate, SEMANTICS 9): no query is made.  An input this configuration needs that
        the live answer did not fetch is taken from what discovery holds in memory; when
        it holds none, :class:`ShadowInputsMissingError`."""
        if fetched is None:
            reply = self._reply(map_name, key)
            if isinstance(reply, SocketmapReply):
                return reply
            close = getattr(reply, "close", None)
            if close is not None:
                close()
            raise ShadowInputsMissingError(
                f"{key}: the live answer used no discovery, the candidate needs it")
        binding = map_name
        if map_name not in self._bindings:
            if not self.drop_in:
                return self.policy(map_name, key)
            binding = _DEFAULT_BINDING
        try:
            parsed = parse_postfix_key(key)
        except PostfixKeyError:
            return self.policy(map_name, key)
        if parsed.parent:
            return self.policy(binding, key)
        try:
            values = self._values(binding, parsed)
            if parsed.is_ip:
                return self._no_names(binding, key, parsed, values)
            inputs = self._completed(parsed, values, fetched)
            result = self._judge(binding, key, parsed, values, inputs, map_name,
                                 fetched=fetched)
        except (PostfixMappingError, UnknownBindingError) as exc:
            return SocketmapReply.perm(str(exc)[:1000])
        if isinstance(result, SocketmapReply):
            return result
        return SocketmapReply.notfound() if result.notfound else \
            SocketmapReply.ok(result.policy.text())

    def _completed(self, parsed: PostfixKey, values: _Values, fetched: FetchedInputs
                   ) -> _Inputs:
        """The live inputs, with what this configuration needs and the live one did not
        look up taken from discovery's memory."""
        inputs = fetched.inputs
        domain = parsed.domain
        if values.sts_on and not inputs.sts_asked:
            sts = self.discovery.sts_cached(domain)
            if sts is None:
                raise ShadowInputsMissingError(
                    f"{domain}: no MTA-STS state held for the candidate")
            inputs = attrs.evolve(inputs, sts=sts, sts_asked=True)
        if values.dane_on and fetched.dnssec and not inputs.tlsa_asked:
            port = parsed.port or 25
            names: Sequence[str] = (domain,) if inputs.mx is None else (
                inputs.mx.hosts[:MAX_MX_HOSTS]
                if inputs.mx.secure and inputs.mx.kind in ("mx", "implicit") else ())
            tlsa: dict[str, TlsaLookup | None] = {}
            for name in names:
                found = self.discovery.tlsa_cached(name, port)
                if found is None:
                    raise ShadowInputsMissingError(
                        f"{name}: no TLSA answer held for the candidate")
                tlsa[name] = found[0]
            inputs = attrs.evolve(inputs, tlsa=tlsa, tlsa_asked=True)
        return inputs

    def _reply(self, map_name: str, key: str) -> SocketmapReply | Awaitable[SocketmapReply]:
        memo_key = (map_name, key)
        held = self._held.get(memo_key)
        if held is not None:
            now = self._clock()
            if now < held.until and held.epoch == self.discovery.trust_epoch and (
                    held.sts is _STS_OFF or self.discovery.sts_held(held.domain) is held.sts):
                # The very inputs of the last answer are still what discovery holds.
                if held.sts is not _STS_OFF:
                    self._use(held.domain)
                reply = held.reply
                if held.timed is not None:
                    # policy_ttl: what remains of the policy now, not when first answered.
                    reply = SocketmapReply.ok(
                        with_policy_ttl(held.timed, held.expires - now).text())
                if self._on_answer is not None:
                    self._on_answer(held.rule)
                if self.shadow is not None:
                    self._record(map_name, key, reply, held.fetched)
                return reply
            del self._held[memo_key]
        binding = map_name
        if map_name not in self._bindings:
            if not self.drop_in:
                return self.policy(map_name, key)  # PERM unknown binding, as without discovery
            # Drop-in: every map name the peers' main.cf lines use is answered.
            binding = _DEFAULT_BINDING
        parsed = self._keys.get(key)
        if parsed is None:
            try:
                parsed = parse_postfix_key(key)
            except PostfixKeyError:
                return self.policy(map_name, key)
            if len(self._keys) >= _MEMO_SIZE:
                self._keys.clear()
            self._keys[key] = parsed
        if parsed.parent:
            return self.policy(binding, key)  # NOTFOUND: never needed, never a query
        try:
            values = self._values(binding, parsed, key)
            if parsed.is_ip:
                return self._no_names(binding, key, parsed, values)
        except (PostfixMappingError, UnknownBindingError) as exc:
            return SocketmapReply.perm(str(exc)[:1000])
        inputs = self._from_memory(parsed, values)
        if inputs is not None:
            # Everything was in memory: answered now, no task (the common case).
            return self._finish(binding, key, parsed, values, inputs, map_name)
        return self._answer(binding, key, parsed, values, map_name)

    def _no_names(self, binding: str, key: str, parsed: PostfixKey, values: _Values
                  ) -> SocketmapReply:
        """An IP-literal next hop: no name to look TLSA or MTA-STS up for, and Postfix's
        own DANE needs names too: the decision without a host, mapped without DANE.
        In drop-in mode neither MTA-STS nor DANE applies to it: ``NOTFOUND``."""
        if self.drop_in:
            return SocketmapReply.notfound()
        decision = self._decide(values, binding, parsed.domain, None, None)
        policy, notes = map_decision(decision, binding=binding, key=key,
                                     version=self.postfix_version,
                                     match=values.match or VERIFY_MATCH)
        if log.isEnabledFor(logging.DEBUG):
            # The next hop's own notes too (an address with one routed domain named alone
            # in match=, several domains behind one address).
            for warning in (*values.notes, *notes):
                log.debug("socketmap: %s", warning.describe())
        if values.match is None and policy.level is PostfixLevel.VERIFY:
            return SocketmapReply.perm(
                f"next hop {key} carries several domains and needs a verified level: no "
                "match= list is never weaker for all of them")
        return SocketmapReply.ok(policy.text())

    async def _answer(self, binding: str, key: str, parsed: PostfixKey,
                      values: _Values, map_name: str) -> SocketmapReply:
        inputs = await self._fetch(parsed, values)
        return self._finish(binding, key, parsed, values, inputs, map_name)

    def _finish(self, binding: str, key: str, parsed: PostfixKey, values: _Values,
                inputs: _Inputs, map_name: str) -> SocketmapReply:
        discovery = self.discovery
        fetched = FetchedInputs(inputs, self._clock(), discovery.dnssec,
                                discovery.dnssec_detail)
        try:
            result = self._judge(binding, key, parsed, values, inputs, map_name,
                                 fetched=fetched)
        except (PostfixMappingError, UnknownBindingError) as exc:
            result = SocketmapReply.perm(str(exc)[:1000])
        if isinstance(result, SocketmapReply):
            if self.shadow is not None:
                self._record(map_name, key, result, fetched)
            return result
        reply = SocketmapReply.notfound() if result.notfound else \
            SocketmapReply.ok(result.policy.text())
        if self._on_answer is not None:
            self._on_answer(result.rule_name)
        if log.isEnabledFor(logging.DEBUG):
            for warning in result.warnings:
                log.debug("socketmap: %s", warning.describe())
        if inputs.complete and self.memo_ttl:
            until = min(inputs.until, self._clock() + self.memo_ttl)
            if len(self._held) >= _MEMO_SIZE:
                self._held.clear()
            sts: object = inputs.sts if values.sts_on else _STS_OFF
            timed, expires = None, math.inf
            cached = inputs.sts.cached if inputs.sts is not None else None
            if not result.notfound and cached is not None and any(
                    name == "policy_ttl" for name, _ in result.policy.attributes):
                timed, expires = result.policy, cached.expires_at.timestamp()
            self._held[(map_name, key)] = _Held(sts, self.discovery.trust_epoch, until, reply,
                                                parsed.domain, result.rule_name, timed,
                                                expires, fetched)
        if self.shadow is not None:
            self._record(map_name, key, reply, fetched)
        return reply

    async def answer(self, binding: str, key: str) -> DiscoveredAnswer | SocketmapReply:
        """The discovered answer for ``key`` with its rule and losses (for tools and
        tests), or the reply when the key takes no discovery or gets ``TEMP``."""
        parsed = parse_postfix_key(key)
        map_name = binding
        if self.drop_in and binding not in self._bindings:
            binding = _DEFAULT_BINDING
        if parsed.parent:
            return self.policy(binding, key)
        values = self._values(binding, parsed, key)
        if parsed.is_ip:
            return self._no_names(binding, key, parsed, values)
        inputs = await self._fetch(parsed, values)
        return self._judge(binding, key, parsed, values, inputs, map_name)

    # ------------------------------------------------------------- the inputs

    def _values(self, binding: str, parsed: PostfixKey, key: str = "") -> _Values:
        # A pure function of the configuration, which a reload replaces with this lookup.
        memo_key = (binding, parsed.domain, parsed.port, parsed.bracketed)
        found = self._value_memo.get(memo_key)
        if found is None:
            found = self._compute_values(binding, parsed)
            if key and not self.drop_in and not found.routed and \
                    (parsed.bracketed or parsed.port is not None):
                # A next hop no route names: logged once per key and counted, as with
                # discovery off.
                self.policy.note_unattributed(binding, key, parsed)
            if len(self._value_memo) >= _MEMO_SIZE:
                self._value_memo.clear()
            self._value_memo[memo_key] = found
        return found

    def _compute_values(self, binding: str, parsed: PostfixKey) -> _Values:
        values, sources, match, notes = self.policy.operator_values(binding, parsed)
        routed = self.policy.nexthop_routed(binding, parsed)
        dane_on = bool(values["use_dane"]) and bool(values["enable_dane"]) and self.dane_ready
        sts_on = bool(values["use_mta_sts"]) and bool(values["enable_mta_sts"])
        return _Values(values, sources, match, notes, routed, dane_on, sts_on)

    def _use(self, domain: str) -> None:
        in_use = self.in_use
        in_use[domain] = self._clock()
        in_use.move_to_end(domain)
        while len(in_use) > self.max_in_use:
            in_use.popitem(last=False)

    def _remember_mx(self, domain: str, mx: MxLookup) -> None:
        if mx.kind == "failed":
            return
        last = self._last_mx
        last[domain] = mx
        last.move_to_end(domain)
        while len(last) > _MEMO_SIZE:
            last.popitem(last=False)

    def _from_memory(self, parsed: PostfixKey, values: _Values) -> _Inputs | None:
        """The inputs from what discovery holds in memory, or ``None`` when anything
        needed is not held (the query then takes the awaited path)."""
        discovery = self.discovery
        domain = parsed.domain
        sts: StsState | None = None
        if values.sts_on:  # MTA-STS off: never consulted (nor refreshed)
            sts = discovery.sts_cached(domain)
            if sts is None:
                return None
        port = parsed.port or 25
        tlsa: dict[str, TlsaLookup | None] = {}
        dnssec = discovery.dnssec and values.dane_on
        mx: MxLookup | None = None
        # The answer holds until the first input runs out: the policy's expiry, the
        # state's next check, and every DNS answer used.
        until = math.inf if sts is None else min(
            sts.next_check, sts.cached.expires_at.timestamp()
            if sts.cached is not None else math.inf)
        if parsed.bracketed:
            if dnssec:
                found = discovery.tlsa_cached(domain, port)
                if found is None:
                    return None
                tlsa[domain], expires = found
                until = min(until, expires)
        else:
            held = discovery.mx_cached(domain)
            if held is None or held[0].kind == "failed":
                return None  # a failure is retried on the awaited path
            mx, expires = held
            until = min(until, expires)
            if dnssec and mx.secure and mx.kind in ("mx", "implicit"):
                for host in mx.hosts[:MAX_MX_HOSTS]:
                    found = discovery.tlsa_cached(host, port)
                    if found is None:
                        return None
                    tlsa[host], expires = found
                    until = min(until, expires)
        if values.sts_on:
            self._use(domain)
        complete = all(t is None or t.status not in (TlsaLookupStatus.FAILED,
                                                     TlsaLookupStatus.BOGUS)
                       for t in tlsa.values())
        return _Inputs(mx, sts, tlsa, until, complete, values.sts_on, dnssec)

    async def _fetch(self, parsed: PostfixKey, values: _Values) -> _Inputs:
        """MX, MTA-STS state and TLSA per MX host, within the deadline."""
        loop = asyncio.get_running_loop()
        ends = loop.time() + self.deadline
        discovery = self.discovery
        domain = parsed.domain
        port = parsed.port or 25

        def remaining() -> float:
            return max(0.001, ends - loop.time())

        # MTA-STS switched off for this next hop: its policy host is never contacted (nor
        # refreshed), and its cache is no reason for TEMP.
        sts_task: asyncio.Task[StsState] | None = None
        if values.sts_on:
            self._use(domain)
            sts_task = loop.create_task(discovery.sts_state(domain, wait=min(
                discovery.config.first_wait, self.deadline / 2)))
        mx: MxLookup | None = None
        if not parsed.bracketed:  # a smart host is its own policy domain: no MX
            try:
                mx = await asyncio.wait_for(discovery.mx(domain), remaining())
            except TimeoutError:
                mx = _failed_mx("MX lookup took too long")
            self._remember_mx(domain, mx)
        sts: StsState | None = None
        if sts_task is not None:
            try:
                sts = await asyncio.wait_for(asyncio.shield(sts_task), remaining())
            except TimeoutError:
                sts = None
        dnssec = discovery.dnssec and values.dane_on
        tlsa: dict[str, TlsaLookup | None] = {}
        if dnssec and mx is None:
            tlsa[domain] = await self._tlsa(domain, port, remaining())
        elif dnssec and mx is not None and mx.secure and mx.kind in ("mx", "implicit"):
            names = mx.hosts[:MAX_MX_HOSTS]
            found = await asyncio.gather(*(self._tlsa(h, port, remaining()) for h in names))
            tlsa.update(zip(names, found, strict=True))
        elif dnssec and mx is not None and mx.kind == "failed":
            # The last MX hosts, with their TLSA answers while those are still cached.
            last = self._last_mx.get(domain)
            if last is not None and last.secure and last.kind in ("mx", "implicit"):
                for host in last.hosts[:MAX_MX_HOSTS]:
                    held = discovery.tlsa_cached(host, port)
                    if held is None:
                        tlsa.clear()
                        break
                    tlsa[host] = held[0]
        return _Inputs(mx, sts, tlsa, math.inf, False, values.sts_on, dnssec)

    async def _tlsa(self, host: str, port: int, timeout: float) -> TlsaLookup:
        try:
            return await asyncio.wait_for(self.discovery.tlsa(host, port), timeout)
        except TimeoutError:
            return TlsaLookup(TlsaLookupStatus.FAILED, detail="TLSA lookup took too long")
        except TlsPolicyError as exc:  # a host name DNS gave us that is not a name
            return TlsaLookup(TlsaLookupStatus.FAILED, detail=str(exc)[:200])

    # ------------------------------------------------- decisions, then render

    def _decide(self, values: _Values, binding: str, domain: str, mx_host: str | None,
                destination: Destination | None) -> Decision:
        if values.routed:
            # A next hop carrying routed domains: their values combined at their strictest.
            return self._resolver.decide(values.values, values.sources, domain, binding,
                                         mx_host=mx_host, destination=destination)
        return self._resolver.resolve(domain, binding, mx_host=mx_host,
                                      destination=destination)

    def _host(self, values: _Values, binding: str, domain: str, host: str,
              tlsa: TlsaLookup | None, found: Destination, mx_secure: bool, *,
              name: str | None = None) -> HostDecisions:
        """One MX host's decision from what discovery found, with the decisions for what
        it may turn out to be when its DANE state is unknown."""
        def destination(lookup: TlsaLookup | None) -> Destination:
            return attrs.evolve(found, tlsa=lookup, mx_dnssec=mx_secure)

        decision = self._decide(values, binding, domain, host, destination(tlsa))
        alternatives: tuple[Decision, ...] = ()
        if tlsa is not None and tlsa.status in (TlsaLookupStatus.FAILED,
                                                TlsaLookupStatus.BOGUS):
            unusable = TlsaLookup(TlsaLookupStatus.RECORDS, (_UNUSABLE_RECORD,),
                                  base_domain=host, detail="if its records are unusable")
            alternatives = (self._decide(values, binding, domain, host, destination(_NO_TLSA)),
                            self._decide(values, binding, domain, host,
                                         destination(unusable)))
        return HostDecisions(name or host, decision, alternatives, known=name is None)

    def _judge(self, binding: str, key: str, parsed: PostfixKey, values: _Values,
               inputs: _Inputs, map_name: str | None = None, *,
               fetched: FetchedInputs | None = None) -> DiscoveredAnswer | SocketmapReply:
        """The answer from the fetched inputs (no I/O): decisions, then render.  The time
        and resolver trust are ``fetched``'s when given (a replay), else now's."""
        mx, sts, tlsa_of = inputs.mx, inputs.sts, inputs.tlsa
        domain = parsed.domain
        mx_failed = mx is not None and mx.kind == "failed"
        if mx_failed and values.sts_on and (sts is None or sts.state == "unreadable"):
            if self._on_temp is not None:
                # No MTA-STS state by the answer deadline, or a cache that cannot be read.
                self._on_temp("deadline" if sts is None else "store")
            return SocketmapReply.temp(
                f"{domain}: neither the MX lookup nor the MTA-STS cache could be read")
        now = self._clock() if fetched is None else fetched.at
        dnssec = self.discovery.dnssec if fetched is None else fetched.dnssec
        dnssec_detail = self.discovery.dnssec_detail if fetched is None \
            else fetched.dnssec_detail
        # The MTA-STS cache rule (an unexpired policy applies whatever the latest fetch
        # did) is the core's: Destination.from_cache.
        if sts is not None and values.sts_on:
            found = Destination.from_cache(sts.cached, _aware(now), fetch=sts.outcome)
        else:
            found = Destination()
        sts_ttl = 0
        if found.mta_sts is not None and sts is not None and sts.cached is not None:
            # What remains of the policy: the answer is valid no longer (SEMANTICS 11).
            sts_ttl = int(max(0.0, sts.cached.expires_at.timestamp() - now))
        # DANE inputs are unknown, never insecure, while the resolver is not trusted.
        # In drop-in mode DANE comes on only while the resolver validates, as Postfix's own.
        dane_on = values.dane_on and (dnssec or not self.drop_in)
        untrusted = dane_on and not dnssec
        unknown = TlsaLookup(TlsaLookupStatus.FAILED, detail=dnssec_detail)
        base = self._decide(values, binding, domain, None, None)
        hosts: list[HostDecisions] = []
        mx_secure = False

        def host(name: str, tlsa: TlsaLookup | None, secure: bool,
                 label: str | None = None) -> HostDecisions:
            return self._host(values, binding, domain, name, tlsa, found, secure,
                              name=label)

        def from_dns(names: Sequence[str], tlsa_of_name: Callable[[str], TlsaLookup | None],
                     secure: bool, label: str | None = None) -> list[HostDecisions]:
            # MX host names come from strangers' DNS: one that is no host name is a host
            # Postfix cannot use either, so it is left out (it never fails the answer).
            found: list[HostDecisions] = []
            for name in names:
                try:
                    found.append(host(name, tlsa_of_name(name), secure, label))
                except InvalidDomainError:
                    log.debug("socketmap: MX host %r of %s is no host name", name[:100],
                              domain)
            return found

        if mx is None:  # smart host
            tlsa = unknown if untrusted else tlsa_of.get(domain)
            mx_secure = tlsa is not None and tlsa.status not in (
                TlsaLookupStatus.INSECURE, TlsaLookupStatus.FAILED, TlsaLookupStatus.BOGUS)
            hosts.append(host(domain, tlsa, mx_secure))
        elif mx_failed:
            last = self._last_mx.get(domain)
            if tlsa_of and last is not None:
                # DANE state from cache while its TTLs last (the last MX hosts).
                mx_secure = last.secure
                hosts.extend(from_dns(last.hosts[:MAX_MX_HOSTS], tlsa_of.get, mx_secure))
            elif (standin := host(domain, None, True, _UNKNOWN_MX)).decision.mta_sts \
                    is not None and standin.decision.mta_sts.mode is StsMode.ENFORCE:
                # Then the cached enforce policy's own answer while it is unexpired.
                mx_secure = True
                hosts.append(standin)
            else:
                # Then the configuration alone, as with discovery off; never TEMP for it.
                # (A Postfix that cannot do DANE gets it rendered without DANE below.)
                if self.drop_in:
                    return SocketmapReply.notfound()  # Postfix's own level stands
                if self.dane_ready:
                    reply = self.policy(binding, key)
                    if self._on_answer is not None and reply.status.value == "OK":
                        self._on_answer(RULE_NAMES["e"])
                    return reply
        elif mx.kind in ("mx", "implicit"):
            mx_secure = mx.secure
            hosts.extend(from_dns(mx.hosts[:MAX_MX_HOSTS],
                                  (lambda _n: unknown) if untrusted else tlsa_of.get,
                                  mx_secure and not untrusted))
            if len(mx.hosts) > MAX_MX_HOSTS and dane_on and (mx.secure or untrusted):
                # The hosts not decided may be D, X, U or N: one stand-in of unknown state
                # per host beyond, so that dane is answered only where it is never weaker.
                beyond = mx.hosts[MAX_MX_HOSTS:]
                label = f"({len(beyond)} more MX hosts)"
                hosts.extend(from_dns(beyond, lambda _n: unknown, True, label))
        view = NextHopView(
            binding=binding, key=key, policy_domain=domain, hosts=tuple(hosts), base=base,
            mx_secure=mx_secure, match=values.match, notes=values.notes, sts_ttl=sts_ttl)
        if not self.drop_in:
            return render(view, self.profile)
        quiet = not sends_sts_attributes_for(map_name or binding,
                                             self.profile.sends_sts_attributes)
        return drop_in(render(view, self._quiet_profile if quiet else self.profile),
                       self.own_level)

    # ------------------------------------------------------------ refreshing

    async def refresh_in_use(self, *, interval: float = 60.0, ahead: float | None = None,
                             window: float = 7 * 86400.0, batch: int = 64) -> None:
        """Refresh, forever, the MTA-STS policies of domains answered for within
        ``window`` seconds, ``ahead`` seconds before their next check is due
        (default: one ``interval``), at most ``batch`` at a time."""
        ahead = interval if ahead is None else ahead
        while True:
            await asyncio.sleep(interval)
            await self.refresh_once(ahead=ahead, window=window, batch=batch)

    async def refresh_once(self, *, ahead: float = 60.0, window: float = 7 * 86400.0,
                           batch: int = 64) -> int:
        """One pass of :meth:`refresh_in_use`; returns how many refreshes it started."""
        now = self._clock()
        started = 0
        for domain, used in list(self.in_use.items()):
            if now - used > window:
                self.in_use.pop(domain, None)
                continue
            try:
                if self.discovery.refresh_if_due(domain, ahead=ahead):
                    started += 1
            except TlsPolicyError:
                self.in_use.pop(domain, None)
                continue
            if started and started % batch == 0:
                # Let the refreshes (and the answers) run before starting more.
                await asyncio.sleep(0.05)
        return started


@attrs.frozen(slots=True)
class _Values:
    """The configuration's side of one next hop: its effective values (a routed next
    hop's combined), their sources, the ``match=`` list of verified levels, the next-hop
    notes, whether routes combined them, and whether DANE and MTA-STS apply."""

    values: Mapping[str, object]
    sources: Mapping[str, Source]
    match: str | None
    notes: tuple[PostfixWarning, ...]
    routed: bool
    dane_on: bool
    sts_on: bool


def _failed_mx(detail: str) -> MxLookup:
    from ..discovery import MxLookup  # the discovery extra

    return MxLookup("failed", (), False, detail)

