"""The socketmap lookup with discovery: DANE, MTA-STS and the operator's policy in one answer.

SEMANTICS section 11.  For every ``smtp_tls_policy_maps`` query the lookup asks
discovery (MX, TLSA per MX host, the cached MTA-STS state), judges each MX host
(:class:`~tlspolicy.formats.postfix_answers.HostFacts`) and lets
:func:`~tlspolicy.formats.postfix_answers.compose_answer` write the one answer that
makes Postfix at least as strict as tlspolicy's decision for every host.

- Keys without discovery: IP literals (no names to look up) and ``.parent`` keys
  (``NOTFOUND``, never a query) are answered at once, as without discovery.
- ``TEMP`` only when neither the MX lookup nor the MTA-STS cache could be read.
  An MTA-STS failure without an unexpired cached policy, one host's TLSA or
  address failure, or an MX lookup failure alone never give ``TEMP`` (Postfix
  defers those hosts itself).
- Every answer is ready within ``deadline`` seconds (10 by default, far under
  Postfix's 100 s): what has not arrived by then counts as failed.
- Answers are kept for ``memo_ttl`` seconds (30 by default) per (map, key), so a
  busy domain costs one computation per interval; see the documentation's choices.
- Domains answered for are remembered (at most ``max_in_use``) and their MTA-STS
  policies refreshed before they are due (:meth:`DiscoveryLookup.refresh_in_use`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import attrs

from ..errors import TlsPolicyError, UnknownBindingError
from ..formats.postfix import (
    PolicyLookup,
    PostfixLevel,
    PostfixMappingError,
    PostfixPolicy,
    PostfixVersion,
    PostfixWarning,
    map_values,
)
from ..formats.postfix_answers import (
    DiscoveredAnswer,
    HostFacts,
    HostState,
    Need,
    compose_answer,
)
from ..options import Tls, TlsVerify
from ..policies.dane import DaneApplicability, TlsaLookup, TlsaLookupStatus
from ..policies.mtasts import StsMode, policy_in_force
from .socketmap import PostfixKey, PostfixKeyError, SocketmapReply, parse_postfix_key

if TYPE_CHECKING:
    from ..discovery import Discovery, MxLookup, StsState

__all__ = [
    "DEFAULT_ANSWER_DEADLINE",
    "DEFAULT_ANSWER_MEMO_TTL",
    "DiscoveryLookup",
]

log = logging.getLogger(__name__)

#: Seconds within which every answer is sent (SEMANTICS 11: well under Postfix's 100 s).
DEFAULT_ANSWER_DEADLINE: Final = 10.0
#: Seconds an answer is reused for the same (map, key).
DEFAULT_ANSWER_MEMO_TTL: Final = 30.0
#: Domains remembered as in use for proactive refresh.
DEFAULT_MAX_IN_USE: Final = 100_000
#: MX hosts judged one by one; hosts beyond count as of unknown DANE state (both X and
#: N), which keeps the answer at dane/dane-only where Postfix checks TLSA itself.
MAX_MX_HOSTS: Final = 32
_MEMO_SIZE: Final = 65_536
_LEVEL_NEED: Final = {
    PostfixLevel.NONE: Need.NONE, PostfixLevel.MAY: Need.MAY,
    PostfixLevel.ENCRYPT: Need.ENCRYPT, PostfixLevel.DANE: Need.MAY,
    PostfixLevel.DANE_ONLY: Need.VERIFIED, PostfixLevel.VERIFY: Need.VERIFIED,
    PostfixLevel.SECURE: Need.VERIFIED,
}
_UNKNOWN_MX: Final = "(MX hosts unknown: MX lookup failed)"


def _aware(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


class DiscoveryLookup:
    """A socketmap :data:`~tlspolicy.servers.socketmap.Lookup` answering with discovery.

    ``policy`` is the operator's :class:`~tlspolicy.formats.postfix.PolicyLookup`
    (configuration, routes, Postfix version); ``discovery`` a started
    :class:`~tlspolicy.discovery.Discovery`.  ``postfix_version`` must be known
    (SEMANTICS 11: no default).  ``mx_patterns_enforced`` is main.cf's
    ``smtp_tls_enforce_sts_mx_patterns`` (Postfix 3.10.5 and later).  ``on_answer``
    is told the rule of every discovered answer (metrics).

    Calling it returns a :class:`~tlspolicy.servers.socketmap.SocketmapReply` for
    what needs no I/O, else an awaitable of one.
    """

    def __init__(self, policy: PolicyLookup, discovery: Discovery, *,
                 postfix_version: PostfixVersion,
                 deadline: float = DEFAULT_ANSWER_DEADLINE,
                 memo_ttl: float = DEFAULT_ANSWER_MEMO_TTL,
                 mx_patterns_enforced: bool = True,
                 max_in_use: int = DEFAULT_MAX_IN_USE,
                 clock: Callable[[], float] = time.time,
                 on_answer: Callable[[str], None] | None = None) -> None:
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
        self.max_in_use = max_in_use
        self._clock = clock
        self._on_answer = on_answer
        self._memo: OrderedDict[tuple[str, str], tuple[float, SocketmapReply]] = OrderedDict()
        self._judged: dict[tuple[object, ...], tuple[
            StsState | None, float, DiscoveredAnswer | SocketmapReply, SocketmapReply]] = {}
        self._keys: dict[str, PostfixKey] = {}
        # (map, key) -> (MTA-STS state, until, reply, domain, rule): the answer from
        # memory again without parsing the key, while its inputs are unchanged.
        self._held: dict[tuple[str, str], tuple[
            StsState | None, float, SocketmapReply, str, str]] = {}
        self._bindings = frozenset(policy.resolver.bindings)
        self._operators: dict[tuple[object, ...], tuple[
            PostfixPolicy | SocketmapReply, tuple[PostfixWarning, ...], Mapping[str, object]]] = {}
        #: Policy domains answered for, least recently used first, with when.
        self.in_use: OrderedDict[str, float] = OrderedDict()

    def with_policy(self, policy: PolicyLookup) -> DiscoveryLookup:
        """The same discovery and settings over a reloaded operator policy (SIGHUP)."""
        other = DiscoveryLookup(policy, self.discovery, postfix_version=self.postfix_version,
                                deadline=self.deadline, memo_ttl=self.memo_ttl,
                                mx_patterns_enforced=self.mx_patterns_enforced,
                                max_in_use=self.max_in_use, clock=self._clock,
                                on_answer=self._on_answer)
        other.in_use = self.in_use  # what is in use does not change with the configuration
        return other

    # ------------------------------------------------------------------ serving

    def __call__(self, map_name: str, key: str) -> SocketmapReply | Awaitable[SocketmapReply]:
        memo_key = (map_name, key)
        hit = self._memo.get(memo_key)
        now = self._clock()
        if hit is not None and hit[0] > now:
            return hit[1]
        held = self._held.get(memo_key)
        if held is not None and now < held[1] and (
                held[0] is None or self.discovery.sts_held(held[3]) is held[0]):
            # The very inputs of the last answer are still what discovery holds.
            if held[0] is not None:
                self._use(held[3])
            if self._on_answer is not None and held[4]:
                self._on_answer(held[4])
            return held[2]
        if map_name not in self._bindings:
            return self.policy(map_name, key)  # PERM unknown binding, as without discovery
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
            return self.policy(map_name, key)  # NOTFOUND: never needed, never a query
        if parsed.is_ip:
            return self._no_names(map_name, key, parsed)
        try:
            cached = self._cached(map_name, key, parsed)
        except (PostfixMappingError, UnknownBindingError) as exc:
            return SocketmapReply.perm(str(exc)[:1000])
        if cached is not None:
            # Everything was in memory: answered now, no task (the common case).
            result, reply = cached
            entry = self._judged.get((map_name, parsed.domain, parsed.port, parsed.bracketed))
            if entry is not None and entry[3] is reply:
                if len(self._held) >= _MEMO_SIZE:
                    self._held.clear()
                rule = result.rule if isinstance(result, DiscoveredAnswer) else ""
                self._held[memo_key] = (entry[0], entry[1], reply, parsed.domain, rule)
            return self._finish(memo_key, result, reply)
        return self._answer(map_name, key, parsed, memo_key)

    @staticmethod
    def _reply(result: DiscoveredAnswer | SocketmapReply) -> SocketmapReply:
        if isinstance(result, SocketmapReply):
            return result
        return SocketmapReply.ok(result.policy.text())

    def _finish(self, memo_key: tuple[str, str], result: DiscoveredAnswer | SocketmapReply,
                reply: SocketmapReply | None = None) -> SocketmapReply:
        if reply is None:
            reply = self._reply(result)
        if not isinstance(result, SocketmapReply):
            if self._on_answer is not None:
                self._on_answer(result.rule)
            if log.isEnabledFor(logging.DEBUG):
                for warning in result.warnings:
                    log.debug("socketmap: %s", warning.describe())
        if self.memo_ttl and reply.status.value in ("OK", "NOTFOUND"):
            memo = self._memo
            if len(memo) >= _MEMO_SIZE:
                with contextlib.suppress(KeyError):
                    memo.popitem(last=False)
            memo[memo_key] = (self._clock() + self.memo_ttl, reply)
        return reply

    def _no_names(self, binding: str, key: str, parsed: PostfixKey) -> SocketmapReply:
        """An IP-literal next hop: no name to look TLSA or MTA-STS up for, so no DANE
        (Postfix's own DANE needs names too): the operator's mapping without it."""
        try:
            operator, _warnings, _values = self._operator(binding, key, parsed)
        except (PostfixMappingError, UnknownBindingError) as exc:
            return SocketmapReply.perm(str(exc)[:1000])
        if isinstance(operator, SocketmapReply):
            return operator
        return SocketmapReply.ok(operator.text())

    def _values(self, binding: str, parsed: PostfixKey) -> Mapping[str, object]:
        return self._operator(binding, parsed.domain, parsed)[2]

    def _operator(self, binding: str, key: str, parsed: PostfixKey, *, tls: Tls | None = None
                  ) -> tuple[PostfixPolicy | SocketmapReply, tuple[PostfixWarning, ...],
                             Mapping[str, object]]:
        # A pure function of the configuration, which a reload replaces with this lookup.
        memo_key = (binding, parsed.domain, parsed.port, parsed.bracketed, tls)
        hit = self._operators.get(memo_key)
        if hit is None:
            hit = self._map_operator(binding, key, parsed, tls)
            if len(self._operators) >= _MEMO_SIZE:
                self._operators.clear()
            self._operators[memo_key] = hit
        return hit

    def _map_operator(self, binding: str, key: str, parsed: PostfixKey, tls: Tls | None
                      ) -> tuple[PostfixPolicy | SocketmapReply, tuple[PostfixWarning, ...],
                                 Mapping[str, object]]:
        values, sources, match, hop_notes = self.policy.operator_values(binding, parsed)
        plain = dict(values)
        plain["use_dane"] = False  # discovery says where DANE applies
        if tls is not None:
            plain["tls"] = tls
        operator, warnings = map_values(
            plain, sources, binding=binding, key=key,
            fallback_exists=self.policy.fallback_exists,
            postfix_version=self.postfix_version, match=match or "hostname")
        if match is None and operator.level is PostfixLevel.VERIFY:
            return SocketmapReply.perm(
                f"next hop {parsed.domain} carries several domains and needs a verified "
                "level: no match= list is never weaker for all of them"), (), values
        return operator, (*warnings, *hop_notes), values

    async def _answer(self, binding: str, key: str, parsed: PostfixKey,
                      memo_key: tuple[str, str]) -> SocketmapReply:
        try:
            result = await self._discovered(binding, key, parsed)
        except (PostfixMappingError, UnknownBindingError) as exc:
            result = SocketmapReply.perm(str(exc)[:1000])
        return self._finish(memo_key, result)

    def _use(self, domain: str) -> None:
        in_use = self.in_use
        in_use[domain] = self._clock()
        in_use.move_to_end(domain)
        while len(in_use) > self.max_in_use:
            in_use.popitem(last=False)

    async def answer(self, binding: str, key: str) -> DiscoveredAnswer | SocketmapReply:
        """The discovered answer for ``key`` with its rule and losses (for tools and
        tests), or the reply when the key takes no discovery or gets ``TEMP``."""
        parsed = parse_postfix_key(key)
        if parsed.parent:
            return self.policy(binding, key)
        if parsed.is_ip:
            return self._no_names(binding, key, parsed)
        return await self._discovered(binding, key, parsed)

    async def _discovered(self, binding: str, key: str, parsed: PostfixKey
                          ) -> DiscoveredAnswer | SocketmapReply:
        values = self._values(binding, parsed)
        dane_on = bool(values["use_dane"]) and bool(values["enable_dane"])
        sts_on = bool(values["use_mta_sts"]) and bool(values["enable_mta_sts"])
        inputs = await self._fetch(parsed, dane_on, sts_on)
        return self._judge(binding, key, parsed, values, inputs)

    def _cached(self, binding: str, key: str, parsed: PostfixKey
                ) -> tuple[DiscoveredAnswer | SocketmapReply, SocketmapReply] | None:
        """The answer from what discovery holds in memory, or ``None`` when anything it
        needs is not held (the query then takes the awaited path)."""
        discovery = self.discovery
        domain = parsed.domain
        values = self._values(binding, parsed)
        sts_on = bool(values["use_mta_sts"]) and bool(values["enable_mta_sts"])
        sts: StsState | None = None
        if sts_on:  # MTA-STS off: never consulted (nor refreshed)
            sts = discovery.sts_cached(domain)
            if sts is None:
                return None
        now = self._clock()
        judged_key = (binding, domain, parsed.port, parsed.bracketed)
        hit = self._judged.get(judged_key)
        if hit is not None and hit[0] is sts and now < hit[1]:
            # The same MTA-STS state and no DNS answer used has run out: same answer.
            if sts_on:
                self._use(domain)
            return hit[2], hit[3]
        dane_on = bool(values["use_dane"]) and bool(values["enable_dane"])
        port = parsed.port or 25
        tlsa: dict[str, TlsaLookup | None] = {}
        dnssec = discovery.dnssec and dane_on
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
        if sts_on:
            self._use(domain)
        result = self._judge(binding, key, parsed, values, _Inputs(mx, sts, tlsa))
        reply = self._reply(result)
        if len(self._judged) >= _MEMO_SIZE:
            self._judged.clear()
        self._judged[judged_key] = (sts, until, result, reply)
        return result, reply

    async def _fetch(self, parsed: PostfixKey, dane_on: bool, sts_on: bool) -> _Inputs:
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
        if sts_on:
            self._use(domain)
            sts_task = loop.create_task(discovery.sts_state(domain, wait=min(
                discovery.config.first_wait, self.deadline / 2)))
        mx: MxLookup | None = None
        if not parsed.bracketed:  # a smart host is its own policy domain: no MX
            try:
                mx = await asyncio.wait_for(discovery.mx(domain), remaining())
            except TimeoutError:
                mx = _failed_mx("MX lookup took too long")
        sts: StsState | None = None
        if sts_task is not None:
            try:
                sts = await asyncio.wait_for(asyncio.shield(sts_task), remaining())
            except TimeoutError:
                sts = None
        dnssec = discovery.dnssec and dane_on
        tlsa: dict[str, TlsaLookup | None] = {}
        if dnssec and mx is None:
            tlsa[domain] = await self._tlsa(domain, port, remaining())
        elif dnssec and mx is not None and mx.secure and mx.kind in ("mx", "implicit"):
            names = mx.hosts[:MAX_MX_HOSTS]
            found = await asyncio.gather(*(self._tlsa(h, port, remaining()) for h in names))
            tlsa.update(zip(names, found, strict=True))
        return _Inputs(mx, sts, tlsa)

    def _judge(self, binding: str, key: str, parsed: PostfixKey,
               values: Mapping[str, object], inputs: _Inputs
               ) -> DiscoveredAnswer | SocketmapReply:
        """The answer from the fetched inputs (no I/O)."""
        mx, sts, tlsa_of = inputs.mx, inputs.sts, inputs.tlsa
        domain = parsed.domain
        dane_on = bool(values["use_dane"]) and bool(values["enable_dane"])
        sts_on = bool(values["use_mta_sts"]) and bool(values["enable_mta_sts"])
        mapped, warnings, _values = self._operator(binding, key, parsed)
        if isinstance(mapped, SocketmapReply):
            return mapped
        operator = mapped
        mx_failed = mx is not None and mx.kind == "failed"
        if mx_failed and sts_on and (sts is None or sts.state == "unreadable"):
            return SocketmapReply.temp(
                f"{domain}: neither the MX lookup nor the MTA-STS cache could be read")

        now = _aware(self._clock())
        in_force = policy_in_force(sts.cached, now) if sts is not None else None
        enforce = in_force if in_force is not None and in_force.mode is StsMode.ENFORCE \
            else None
        base_need = _LEVEL_NEED[operator.level]
        if in_force is not None and in_force.mode is StsMode.TESTING and \
                values["tls"] is Tls.NO:
            # Testing mode raises "no TLS" to opportunistic TLS (SEMANTICS 5), with the
            # configuration's own fallback rule.
            mapped, warnings, _values = self._operator(binding, key, parsed,
                                                       tls=Tls.IFAVAILABLE)
            if isinstance(mapped, SocketmapReply):
                return mapped
            operator = mapped
            base_need = _LEVEL_NEED[operator.level]
            warnings = (*warnings, PostfixWarning(
                binding, key, "use_mta_sts", "MTA-STS testing mode raises tls = no to "
                "opportunistic TLS", None, "sts-testing-raises"))

        # Secure TLSA records, none usable: TLS becomes mandatory, verified as MTA-STS or
        # the configured tls_verify says, even where the configuration says tls = no.
        verify = values["tls_verify"]
        unusable_need = Need.VERIFIED if verify in (TlsVerify.CA, TlsVerify.HOST) \
            else Need.ENCRYPT

        def need(host: str, state: HostState = HostState.OTHER) -> Need:
            if enforce is not None:
                return Need.DEFER if not enforce.permits_mx(host) else Need.VERIFIED
            if state is HostState.UNUSABLE:
                return unusable_need
            return base_need

        def facts(host: str) -> HostFacts:
            tlsa = tlsa_of.get(host)
            state = _state(tlsa)
            return HostFacts(host, state, need(host, state),
                             (tlsa.detail or "") if tlsa is not None else "")

        dnssec = self.discovery.dnssec and dane_on
        hosts: list[HostFacts] = []
        mx_secure = False
        if mx is None:  # smart host
            tlsa = tlsa_of.get(domain)
            mx_secure = tlsa is not None and tlsa.status not in (
                TlsaLookupStatus.INSECURE, TlsaLookupStatus.FAILED, TlsaLookupStatus.BOGUS)
            hosts.append(facts(domain))
        elif mx_failed:
            if dnssec:
                # Whether DANE applies is unknown: Postfix looks up MX and TLSA itself.
                hosts.append(HostFacts(_UNKNOWN_MX, HostState.FAILED, base_need, mx.detail))
                hosts.append(HostFacts(_UNKNOWN_MX, HostState.OTHER, base_need
                                       if enforce is None else Need.VERIFIED, mx.detail))
        elif mx.kind in ("mx", "implicit"):
            mx_secure = mx.secure
            hosts.extend(facts(host) for host in mx.hosts[:MAX_MX_HOSTS])
            if len(mx.hosts) > MAX_MX_HOSTS and dnssec and mx.secure:
                # The hosts not judged may be D, X or N: keep the answer at dane/dane-only
                # (X) and never weaker than the strictest of them would need as N.
                beyond = mx.hosts[MAX_MX_HOSTS:]
                label = f"({len(beyond)} more MX hosts)"
                hosts.append(HostFacts(label, HostState.FAILED, base_need))
                hosts.append(HostFacts(label, HostState.OTHER, max(need(h) for h in beyond)))
        return compose_answer(
            binding=binding, key=key, operator=operator, operator_warnings=warnings,
            hosts=hosts, mx_secure=mx_secure, sts=enforce, sts_domain=domain,
            postfix_version=self.postfix_version,
            mx_patterns_enforced=self.mx_patterns_enforced)

    async def _tlsa(self, host: str, port: int, timeout: float) -> TlsaLookup:
        try:
            return await asyncio.wait_for(self.discovery.tlsa(host, port), timeout)
        except TimeoutError:
            return TlsaLookup(TlsaLookupStatus.FAILED, detail="TLSA lookup took too long")
        except TlsPolicyError as exc:  # a host name DNS gave us that is not a name
            return TlsaLookup(TlsaLookupStatus.FAILED, detail=str(exc)[:200])

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
class _Inputs:
    """What discovery found for one next hop: MX (``None`` for a smart host), the MTA-STS
    state (``None``: not known by the deadline) and the TLSA lookup per host looked up."""

    mx: MxLookup | None
    sts: StsState | None
    tlsa: dict[str, TlsaLookup | None]


def _failed_mx(detail: str) -> MxLookup:
    from ..discovery import MxLookup

    return MxLookup("failed", (), False, detail)


def _state(tlsa: TlsaLookup | None) -> HostState:
    if tlsa is None:
        return HostState.OTHER
    found = tlsa.classify()
    if found is DaneApplicability.USABLE:
        return HostState.DANE
    if found is DaneApplicability.FAILED:
        return HostState.FAILED
    if found is DaneApplicability.UNUSABLE_ONLY:
        return HostState.UNUSABLE
    return HostState.OTHER

