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
- Freshness: an answer is kept for reuse only when computed from complete inputs
  that were held in memory (not awaited, nor just read back from the store), keyed by
  them (the MTA-STS state object, the resolver's trust epoch, the first DNS TTL to run
  out), and dropped the moment one changes.  An answer given while the
  first fetch ran is never served again after it.
- Every answer is ready within ``deadline`` seconds (10 by default, far under
  Postfix's 100 s): what has not arrived by then counts as failed.
- Domains answered for are remembered (at most ``max_in_use``) and their MTA-STS
  policies checked in the background once due (:meth:`DiscoveryLookup.refresh_in_use`).
- Shadow evaluation (SEMANTICS 9): a lookup tells its ``shadow`` every reply with the
  inputs it was computed from (:class:`FetchedInputs`); a candidate built with
  :meth:`DiscoveryLookup.candidate` is judged on them by :meth:`DiscoveryLookup.replay`,
  which makes no query.
"""

from __future__ import annotations

import logging
import math
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import attrs

from ..errors import UnknownBindingError
from ..formats.settings import DEFAULT_ANSWER_DEADLINE
from ..postfix.answers import DiscoveredAnswer, PostfixProfile, with_policy_ttl
from ..postfix.dropin import DROP_IN_CONFIG
from ..postfix.keys import PostfixKey, PostfixKeyError, parse_postfix_key
from ..postfix.levels import PostfixMappingError, PostfixVersion
from ..postfix.lookup import MEMO_REQUEST_CHARS, PolicyLookup
from ..postfix.replies import SocketmapReply
from .discovered_fetch import _Fetching
from .discovered_judge import _Judging
from .discovered_models import (
    _DEFAULT_BINDING,
    _KEY_MEMO_SIZE,
    _MEMO_SIZE,
    _STS_OFF,
    DEFAULT_ANSWER_MEMO_TTL,
    DEFAULT_MAX_IN_USE,
    MAX_MX_HOSTS,
    FetchedInputs,
    ShadowInputsMissingError,
    _Held,
    _Inputs,
    _Values,
)
from .discovered_refresh import _Refreshing

if TYPE_CHECKING:
    from ..discovery import Discovery, MxLookup, StsState

__all__ = [
    "DEFAULT_ANSWER_DEADLINE",
    "DEFAULT_ANSWER_MEMO_TTL",
    "MAX_MX_HOSTS",
    "DiscoveryLookup",
    "FetchedInputs",
    "ShadowInputsMissingError",
]

log = logging.getLogger(__name__)


class _StateRef(weakref.ref):  # type: ignore[type-arg]
    """A weak reference to the MTA-STS state of a kept answer, naming that answer's
    memo key, so that the answer is dropped as soon as the state is freed."""

    __slots__ = ("memo_key",)
    memo_key: tuple[str, str]


def _is_current(kept: object, current: StsState | None) -> bool:
    """Whether the MTA-STS state an answer was kept with (a weak reference to it, or
    ``None`` for none) is the one discovery holds now.  A reference whose state has been
    freed never matches, even when discovery holds none now: the state may have been let
    go and the store may hold a newer one."""
    if kept is None:
        return current is None
    state = kept() if isinstance(kept, weakref.ref) else None
    return state is not None and state is current


class DiscoveryLookup(_Fetching, _Judging, _Refreshing):
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
        self._held_swept = self._clock()
        self._keys: dict[str, PostfixKey] = {}
        self._value_memo: dict[tuple[str, str | None, int | None, bool], _Values] = {}
        # The drop-in configuration names no domain: its values are the same for every
        # next hop no route names (see _values).
        self._values_domain_free = self._resolver.config is DROP_IN_CONFIG
        self._value_shapes: dict[object, _Values] = {}
        # The last MX answer of each domain that was not a failure, for outages.
        self._last_mx: OrderedDict[str, MxLookup] = OrderedDict()
        #: Policy domains answered for, least recently used first, with when (to the
        #: second).
        self.in_use: dict[str, float] = {}
        self._use_stamp = -math.inf

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
            return self.policy(binding, key)  # the key's error, not an unknown binding's
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

    def _reply(self, map_name: str, key: str) -> SocketmapReply | Awaitable[SocketmapReply]:
        memo_key = (map_name, key)
        held = self._held.get(memo_key)
        if held is not None:
            now = self._clock()
            sts = held.sts
            if now < held.until and held.epoch == self.discovery.trust_epoch and (
                    sts is _STS_OFF or _is_current(sts, self.discovery.sts_held(held.domain))
            ) and (held.fetched is not None or self.shadow is None):
                # The very inputs of the last answer are still what discovery holds (and a
                # shadow attached since it was kept, which needs its inputs, has them).
                if held.sts is not _STS_OFF:
                    self._use(held.domain)
                reply = held.reply
                if held.timed is not None:
                    # policy_ttl: what remains of the policy now, not when first answered.
                    reply = SocketmapReply.ok(
                        with_policy_ttl(held.timed, held.expires - now).text())
                if self._on_answer is not None:
                    self._on_answer(held.rule)
                if self.shadow is not None and held.fetched is not None:
                    self._record(map_name, key, reply, held.fetched)
                return reply
            # pop: the answer may have gone already, its state freed in the meantime.
            self._held.pop(memo_key, None)
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
                # The key's error (in drop-in, under the binding answering every map name).
                return self.policy(binding, key)
            if len(self._keys) >= _KEY_MEMO_SIZE:
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
        if inputs.complete and self.memo_ttl and len(map_name) + len(key) <= MEMO_REQUEST_CHARS:
            until = min(inputs.until, self._clock() + self.memo_ttl)
            if len(self._held) >= _MEMO_SIZE:
                self._held.clear()
            elif self._clock() >= self._held_swept + self.memo_ttl:
                self._sweep_held()
            # The state by weak reference, and the answer dropped when the state is
            # freed: holding it would keep alive what the bounded memory let go (up to a
            # memo time's worth of evicted states), and such an answer is never reused.
            # One tuple for the memo and the reference: each a tuple of its own cost
            # some 60 bytes an answer kept.
            memo_key = (map_name, key)
            sts: object = _STS_OFF
            if values.sts_on:
                sts = None
                if inputs.sts is not None:
                    sts = _StateRef(inputs.sts, self._forget_held)
                    sts.memo_key = memo_key
            timed, expires = None, math.inf
            cached = inputs.sts.cached if inputs.sts is not None else None
            if not result.notfound and cached is not None and any(
                    name == "policy_ttl" for name, _ in result.policy.attributes):
                timed, expires = result.policy, cached.expires_at.timestamp()
            self._held[memo_key] = _Held(sts, self.discovery.trust_epoch, until, reply,
                                         parsed.domain, result.rule_name, timed, expires,
                                         fetched if self.shadow is not None else None)
        if self.shadow is not None:
            self._record(map_name, key, reply, fetched)
        return reply

    def _forget_held(self, ref: weakref.ref[StsState]) -> None:
        # Called by the interpreter when a kept answer's state is freed: that answer can
        # no longer be reused.  Another answer kept since for the key has its own ref.
        memo_key = ref.memo_key  # type: ignore[attr-defined]
        held = self._held.get(memo_key)
        if held is not None and held.sts is ref:
            self._held.pop(memo_key, None)

    def _sweep_held(self) -> None:
        # Answers past their time are otherwise dropped only when their key is asked
        # again: a key asked once would hold its answer, key and inputs (about 1 KB) until
        # the memo filled.  Every answer is kept at most memo_ttl seconds and the memo is
        # in the order answers were kept, so those kept longer ago than that, at its
        # front, are all past their time: at most memo_ttl seconds of answers stay held.
        now = self._clock()
        self._held_swept = now
        # Over a copy of the keys: a collection may free states, and so drop their
        # answers, at any allocation.
        held = self._held
        for memo_key in list(held):
            kept = held.get(memo_key)
            if kept is not None:
                if kept.until > now:
                    break
                held.pop(memo_key, None)

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
