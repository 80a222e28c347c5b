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
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

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
        if map_name not in self.policy.resolver.bindings:
            return self.policy(map_name, key)  # PERM unknown binding, as without discovery
        try:
            parsed = parse_postfix_key(key)
        except PostfixKeyError:
            return self.policy(map_name, key)
        if parsed.parent:
            return self.policy(map_name, key)  # NOTFOUND: never needed, never a query
        if parsed.is_ip:
            return self._no_names(map_name, key, parsed)
        return self._answer(map_name, key, parsed, memo_key)

    def _no_names(self, binding: str, key: str, parsed: PostfixKey) -> SocketmapReply:
        """An IP-literal next hop: no name to look TLSA or MTA-STS up for, so no DANE
        (Postfix's own DANE needs names too): the operator's mapping without it."""
        try:
            operator, _warnings = self._operator(binding, key, parsed)
        except (PostfixMappingError, UnknownBindingError) as exc:
            return SocketmapReply.perm(str(exc)[:1000])
        if isinstance(operator, SocketmapReply):
            return operator
        return SocketmapReply.ok(operator.text())

    def _operator(self, binding: str, key: str, parsed: PostfixKey, *, tls: Tls | None = None
                  ) -> tuple[PostfixPolicy | SocketmapReply, tuple[PostfixWarning, ...]]:
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
                f"next hop {key} carries several domains and needs a verified level: no "
                "match= list is never weaker for all of them"), ()
        return operator, (*warnings, *hop_notes)

    async def _answer(self, binding: str, key: str, parsed: PostfixKey,
                      memo_key: tuple[str, str]) -> SocketmapReply:
        try:
            reply = await self._compute(binding, key, parsed)
        except (PostfixMappingError, UnknownBindingError) as exc:
            reply = SocketmapReply.perm(str(exc)[:1000])
        if self.memo_ttl and reply.status.value in ("OK", "NOTFOUND"):
            memo = self._memo
            if len(memo) >= _MEMO_SIZE:
                with contextlib.suppress(KeyError):
                    memo.popitem(last=False)
            memo[memo_key] = (self._clock() + self.memo_ttl, reply)
        return reply

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

    async def _compute(self, binding: str, key: str, parsed: PostfixKey) -> SocketmapReply:
        result = await self._discovered(binding, key, parsed)
        if isinstance(result, SocketmapReply):
            return result
        if self._on_answer is not None:
            self._on_answer(result.rule)
        if log.isEnabledFor(logging.DEBUG):
            for warning in result.warnings:
                log.debug("socketmap: %s", warning.describe())
        return SocketmapReply.ok(result.policy.text())

    async def _discovered(self, binding: str, key: str, parsed: PostfixKey
                          ) -> DiscoveredAnswer | SocketmapReply:
        loop = asyncio.get_running_loop()
        ends = loop.time() + self.deadline
        values, _sources, _match, _notes = self.policy.operator_values(binding, parsed)
        dane_on = bool(values["use_dane"]) and bool(values["enable_dane"])
        sts_on = bool(values["use_mta_sts"]) and bool(values["enable_mta_sts"])
        mapped, warnings = self._operator(binding, key, parsed)
        if isinstance(mapped, SocketmapReply):
            return mapped
        operator = mapped
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
        mx: MxLookup | None
        if parsed.bracketed:
            mx = None  # a smart host: its own policy domain, TLSA at _port._tcp.host
        else:
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
            mapped, warnings = self._operator(binding, key, parsed, tls=Tls.IFAVAILABLE)
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

        dnssec = discovery.dnssec and dane_on
        hosts: list[HostFacts] = []
        mx_secure = False
        if mx is None:  # smart host
            tlsa = await self._tlsa(domain, port, remaining()) if dnssec else None
            state = _state(tlsa)
            mx_secure = tlsa is not None and tlsa.status not in (
                TlsaLookupStatus.INSECURE, TlsaLookupStatus.FAILED, TlsaLookupStatus.BOGUS)
            hosts.append(HostFacts(domain, state, need(domain, state), tlsa.detail or ""
                                   if tlsa is not None else ""))
        elif mx_failed:
            if dnssec:
                # Whether DANE applies is unknown: Postfix looks up MX and TLSA itself.
                hosts.append(HostFacts(_UNKNOWN_MX, HostState.FAILED, base_need, mx.detail))
                hosts.append(HostFacts(_UNKNOWN_MX, HostState.OTHER, base_need
                                       if enforce is None else Need.VERIFIED, mx.detail))
        elif mx.kind in ("mx", "implicit"):
            mx_secure = mx.secure
            names = mx.hosts[:MAX_MX_HOSTS]
            found: list[TlsaLookup | None]
            if dnssec and mx.secure:
                found = await asyncio.gather(*(self._tlsa(h, port, remaining())
                                               for h in names))
            else:
                found = [None for _ in names]
            for host, tlsa in zip(names, found, strict=True):
                state = _state(tlsa)
                hosts.append(HostFacts(host, state, need(host, state),
                                       (tlsa.detail or "") if tlsa is not None else ""))
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

