"""The discovery lookup's answer from its inputs, with no I/O: the resolver's decision
per MX host (with the decisions a host of unknown DANE state may turn out to have),
then one rendered answer (SEMANTICS 10 and 11)."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

import attrs

from ..decision import Decision
from ..errors import InvalidDomainError
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
)
from ..postfix.dropin import drop_in, sends_sts_attributes_for
from ..postfix.keys import PostfixKey
from ..postfix.levels import PostfixLevel, PostfixVersion
from ..postfix.lookup import PolicyLookup
from ..postfix.mapping import VERIFY_MATCH
from ..postfix.replies import SocketmapReply
from ..resolver import Resolver
from .discovered_models import MAX_MX_HOSTS, FetchedInputs, _aware, _Inputs, _Values

if TYPE_CHECKING:
    from ..discovery import Discovery, MxLookup

# The lookup's one logger, whichever part of it writes: operators set its level once.
log = logging.getLogger("tlspolicy.servers.discovered")

_UNKNOWN_MX: Final = "(MX hosts unknown: MX lookup failed)"
_UNASKED_MX: Final = "(MX hosts not looked up: the enforce policy decides)"
# The decisions a host of unknown DANE state may turn out to have: no TLSA records
# (N) and secure records none of which is usable (U).  The record's data is never
# matched: only its class matters here.
_NO_TLSA: Final = TlsaLookup(TlsaLookupStatus.NODATA, detail="if the host has no TLSA records")
_UNUSABLE_RECORD: Final = TlsaRecord(1, 1, 1, bytes(32))


class _Judging:
    """The lookup's answers from inputs (a part of
    :class:`~tlspolicy.servers.discovered.DiscoveryLookup`)."""

    policy: PolicyLookup
    discovery: Discovery
    drop_in: bool
    dane_ready: bool
    own_level: str | None
    postfix_version: PostfixVersion
    profile: PostfixProfile
    _quiet_profile: PostfixProfile
    _resolver: Resolver
    _clock: Callable[[], float]
    _on_answer: Callable[[str], None] | None
    _on_temp: Callable[[str], None] | None
    _last_mx: OrderedDict[str, MxLookup]

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

    def _decide(self, values: _Values, binding: str, domain: str, mx_host: str | None,
                destination: Destination | None) -> Decision:
        # The next hop's values are at hand (a routed next hop's combined at their
        # strictest, else the configuration's for the domain, which resolve() would look
        # up again to build the same decision).  Not memoised by the resolver: discovered
        # inputs make every domain its own key, and the memo would keep several decisions
        # per domain answered for (about 4 KB), while this lookup keeps the answer itself.
        return self._resolver.decide(values.values, values.sources, domain, binding,
                                     mx_host=mx_host, destination=destination)

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
            elif (standin := host(domain, None, True, _UNKNOWN_MX if inputs.mx_asked
                                  else _UNASKED_MX)).decision.mta_sts \
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
