"""The discovery lookup's inputs: the configuration's side of a next hop, then MX,
MTA-STS state and TLSA per MX host, from memory when discovery holds them all, else
fetched within the answer deadline (SEMANTICS 11)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import attrs

from ..errors import TlsPolicyError
from ..names import normalise_domain
from ..policies.dane import TlsaLookup, TlsaLookupStatus
from ..policies.destination import Destination
from ..postfix.dropin import answer_reads_no_mx_host
from ..postfix.keys import PostfixKey
from ..postfix.lookup import PolicyLookup
from .discovered_models import (
    _MEMO_SIZE,
    MAX_MX_HOSTS,
    FetchedInputs,
    ShadowInputsMissingError,
    _aware,
    _failed_mx,
    _Inputs,
    _unasked_mx,
    _Values,
)

if TYPE_CHECKING:
    from ..discovery import Discovery, MxLookup, StsState


class _Fetching:
    """The lookup's inputs (a part of :class:`~tlspolicy.servers.discovered.DiscoveryLookup`)."""

    policy: PolicyLookup
    discovery: Discovery
    deadline: float
    drop_in: bool
    dane_ready: bool
    max_in_use: int
    in_use: dict[str, float]
    _use_stamp: float
    _clock: Callable[[], float]
    _value_memo: dict[tuple[str, str | None, int | None, bool], _Values]
    _values_domain_free: bool
    _value_shapes: dict[object, _Values]
    _last_mx: OrderedDict[str, MxLookup]

    def _completed(self, parsed: PostfixKey, values: _Values, fetched: FetchedInputs
                   ) -> _Inputs:
        """The live inputs, with what this configuration needs and the live one did not
        look up taken from discovery's memory."""
        inputs = fetched.inputs
        domain = parsed.domain
        if not inputs.mx_asked and not self._mx_unneeded(
                values, inputs.sts, fetched.dnssec, fetched.at):
            held = self.discovery.mx_cached(domain)
            if held is None:
                raise ShadowInputsMissingError(
                    f"{domain}: no MX answer held for the candidate")
            inputs = attrs.evolve(inputs, mx=held[0], mx_asked=True)
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

    def _mx_unneeded(self, values: _Values, sts: StsState | None, dnssec: bool,
                     now: float) -> bool:
        """Whether the answer needs no MX hosts (drop-in mode only): the Postfix
        dialect's :func:`~tlspolicy.postfix.dropin.answer_reads_no_mx_host` on the
        MTA-STS state held, with DANE usable for this next hop or not."""
        if not self.drop_in or sts is None:
            return False
        found = Destination.from_cache(sts.cached, _aware(now), fetch=sts.outcome)
        return answer_reads_no_mx_host(found, dane_usable=values.dane_on and dnssec)

    def _values(self, binding: str, parsed: PostfixKey, key: str = "") -> _Values:
        # A pure function of the configuration, which a reload replaces with this lookup.
        domain: str | None = parsed.domain
        if self._values_domain_free and not self.policy.nexthop_routed(binding, parsed):
            # A configuration naming no domain (drop-in mode) gives every next hop no
            # route names the same values: one memo entry for all, not one per domain.
            domain = None
        memo_key = (binding, domain, parsed.port, parsed.bracketed)
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
                self._value_shapes.clear()
            found = self._shared_values(found)
            self._value_memo[memo_key] = found
        return found

    def _shared_values(self, values: _Values) -> _Values:
        """One object for equal values: most next hops share the configuration's values
        (in drop-in mode all of them), so memory does not grow by a copy per domain."""
        try:
            shape = (tuple(values.values.items()), tuple(values.sources.items()),
                     values.match, values.notes, values.routed, values.dane_on,
                     values.sts_on)
            return self._value_shapes.setdefault(shape, values)
        except TypeError:  # a value that cannot be hashed: kept as it is
            return values

    def _compute_values(self, binding: str, parsed: PostfixKey) -> _Values:
        values, sources, match, notes = self.policy.operator_values(binding, parsed)
        routed = self.policy.nexthop_routed(binding, parsed)
        dane_on = bool(values["use_dane"]) and bool(values["enable_dane"]) and self.dane_ready
        sts_on = bool(values["use_mta_sts"]) and bool(values["enable_mta_sts"])
        return _Values(values, sources, match, notes, routed, dane_on, sts_on)

    def _use(self, domain: str) -> None:
        # A plain dict in the order of last use (a domain used again is moved to the end
        # by taking it out first): an OrderedDict's links cost about 50 bytes a domain
        # more.  The time is shared by every domain used within the same second (one
        # float object, not one each): the refresh window is days long.
        now = self._clock()
        stamp = self._use_stamp
        if not stamp <= now < stamp + 1.0:
            stamp = self._use_stamp = now
        in_use = self.in_use
        in_use.pop(domain, None)
        # Under the name's one string: a later request brings its own copy of the name,
        # and the shared cache of normalised names (which discovery's states are kept
        # under too) gives back the first one, so a domain's name is held once, not
        # twice (some 70 bytes a domain).  A name it refuses is kept as it came: the
        # lookup that follows reports it, and a refresh pass lets it go.
        with contextlib.suppress(TlsPolicyError):
            domain = normalise_domain(domain)
        in_use[domain] = stamp
        if len(in_use) > self.max_in_use:
            for old in list(itertools.islice(in_use, len(in_use) - self.max_in_use)):
                del in_use[old]

    def _remember_mx(self, domain: str, mx: MxLookup) -> None:
        if mx.kind == "failed":
            return
        last = self._last_mx
        last[domain] = mx
        last.move_to_end(domain)
        while len(last) > _MEMO_SIZE:
            last.popitem(last=False)

    def _from_memory(self, parsed: PostfixKey, values: _Values) -> _Inputs | None:
        """The inputs from what discovery holds in memory or its store reads at once,
        or ``None`` when anything needed is not there (the query then takes the awaited
        path)."""
        discovery = self.discovery
        domain = parsed.domain
        sts: StsState | None = None
        stored = False
        if values.sts_on:  # MTA-STS off: never consulted (nor refreshed)
            sts = discovery.sts_cached(domain)
            if sts is None:
                sts, stored = discovery.sts_stored(domain), True
                if sts is None:
                    return None
        port = parsed.port or 25
        tlsa: dict[str, TlsaLookup | None] = {}
        dnssec = discovery.dnssec and values.dane_on
        mx: MxLookup | None = None
        mx_asked = True
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
        elif self._mx_unneeded(values, sts, discovery.dnssec, self._clock()):
            mx, mx_asked = _unasked_mx(), False
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
        # A state just read back from the store is kept for reuse no more than an awaited
        # answer's: a pass over more domains than memory holds would keep answers (about
        # 350 bytes each) that its states' eviction drops before any reuse.
        complete = not stored and all(
            t is None or t.status not in (TlsaLookupStatus.FAILED, TlsaLookupStatus.BOGUS)
            for t in tlsa.values())
        return _Inputs(mx, sts, tlsa, until, complete, values.sts_on, dnssec, mx_asked)

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
        mx_asked = True
        sts: StsState | None = None
        sts_known = False
        if sts_task is not None and not parsed.bracketed and self.drop_in and not (
                values.dane_on and discovery.dnssec):
            # Drop-in mode without DANE: an enforce policy in force makes the answer
            # without the MX hosts, so the MTA-STS state comes first.
            sts, sts_known = await self._sts(sts_task, remaining()), True
            if self._mx_unneeded(values, sts, discovery.dnssec, self._clock()):
                mx, mx_asked = _unasked_mx(), False
        if not parsed.bracketed and mx_asked:  # a smart host is its own policy domain
            try:
                mx = await asyncio.wait_for(discovery.mx(domain), remaining())
            except TimeoutError:
                mx = _failed_mx("MX lookup took too long")
            self._remember_mx(domain, mx)
        if sts_task is not None and not sts_known:
            sts = await self._sts(sts_task, remaining())
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
        return _Inputs(mx, sts, tlsa, math.inf, False, values.sts_on, dnssec, mx_asked)

    @staticmethod
    async def _sts(task: asyncio.Task[StsState], timeout: float) -> StsState | None:
        try:
            async with asyncio.timeout(timeout):  # cheaper than wait_for on Python 3.11
                return await asyncio.shield(task)
        except TimeoutError:
            return None  # not known by the deadline

    async def _tlsa(self, host: str, port: int, timeout: float) -> TlsaLookup:
        try:
            return await asyncio.wait_for(self.discovery.tlsa(host, port), timeout)
        except TimeoutError:
            return TlsaLookup(TlsaLookupStatus.FAILED, detail="TLSA lookup took too long")
        except TlsPolicyError as exc:  # a host name DNS gave us that is not a name
            return TlsaLookup(TlsaLookupStatus.FAILED, detail=str(exc)[:200])

    # ------------------------------------------------- decisions, then render
