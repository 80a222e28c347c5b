"""The static socketmap lookup: every key answered from the configuration alone.

:class:`PolicyLookup` answers Postfix's ``smtp_tls_policy_maps`` queries with each
domain's (or routed next hop's) effective policy, so that Postfix never falls back to its
own defaults.  It is also the answer "with discovery off" that the discovery answers are
never weaker than.  Pure values and memos; the server (:mod:`tlspolicy.servers.socketmap`)
does the I/O.
"""

from __future__ import annotations

import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Final

from ..decision import Source
from ..errors import (
    ConfigError,
    ConfigErrors,
    InvalidValueError,
    Location,
    UnknownBindingError,
)
from ..options import (
    CompatVersion,
)
from ..resolver import Resolver
from .keys import PostfixKey, PostfixKeyError, parse_postfix_key
from .levels import (
    PostfixLevel,
    PostfixMappingError,
    PostfixPolicy,
    PostfixVersion,
    PostfixWarning,
)
from .mapping import (
    VERIFY_MATCH,
    behaviour_notes,
    map_values,
)
from .replies import SocketmapReply
from .transport import NextHop, NextHopAnswer, NextHopConflictError, RouteTable, combine_nexthop

__all__ = [
    "DEFAULT_ANSWER_MEMO_SIZE",
    "MAX_UNATTRIBUTED_WARNINGS",
    "MEMO_REQUEST_CHARS",
    "PolicyLookup",
    "parse_postfix_version",
]

DEFAULT_ANSWER_MEMO_SIZE: Final = 65536
"""Answers :class:`PolicyLookup` keeps per map name and key (the resolver's memo size)."""

_FALLBACK_SINCE: Final = CompatVersion((4, 1))

MEMO_REQUEST_CHARS: Final = 400
"""The longest map name and key (together) whose answer is kept: a Postfix key is a
domain and a port and a map name a binding's, so only a client sending junk has longer
ones, and it should not fill the memo.  Longer requests are answered, not kept."""

# ---------------------------------------------------------------------- socketmap


log = logging.getLogger(__name__)

#: Distinct unattributed next-hop keys warned about per lookup (then counted only).
MAX_UNATTRIBUTED_WARNINGS: Final = 1000


class PolicyLookup:
    """A socketmap lookup answering Postfix's ``smtp_tls_policy_maps`` queries.

    The map name selects the binding (``socketmap:inet:127.0.0.1:PORT:bulk-1``).
    Answers: ``OK <policy>`` for every domain, IP literal and next-hop form
    (``[host]``, ``[host]:port``, ``host:port``); ``NOTFOUND`` for the
    parent-domain form ``.example.com`` (never needed: the full name was
    already answered); ``PERM unknown binding ...`` for an undeclared binding;
    ``PERM malformed key ...`` for a key that is no next hop; ``PERM`` for a
    policy Postfix cannot be given (:class:`PostfixMappingError`).
    Unexpected errors propagate so the server answers ``TEMP``.

    ``routes`` (from the operator's transport tables) say which domains reach
    which next hop: a next-hop key is answered with those domains'
    configuration at its strictest (:func:`combine_nexthop`, computed here, so
    a conflict is a load-time :class:`NextHopConflictError`).  A bracketed or
    ported key no route names is answered for the host itself and logged as
    unattributed (once per key, then ``on_unattributed`` is called with the
    reason: ``ip-literal`` for an address key without a port, the form of an
    IP-literal recipient, which no route can name; ``route-loss-accepted`` while
    ``route_losses`` lists route sources that could not be read, whose loss the
    operator accepted; ``no-route`` otherwise).  ``postfix_version`` selects the
    attribute syntax (``None``: Postfix 3.6 or newer).
    """

    def __init__(self, resolver: Resolver, *, memo_size: int = DEFAULT_ANSWER_MEMO_SIZE,
                 routes: RouteTable | None = None,
                 postfix_version: PostfixVersion | None = None,
                 route_losses: tuple[str, ...] = (),
                 on_unattributed: Callable[[str], None] | None = None) -> None:
        if isinstance(memo_size, bool) or not isinstance(memo_size, int) or memo_size < 0:
            raise ValueError(f"memo_size must be a whole number >= 0, got {memo_size!r}")
        self.resolver = resolver
        self.postfix_version = postfix_version
        self.routes = routes if routes is not None else RouteTable()
        self._bindings = frozenset(resolver.bindings)
        self._fallback_exists = resolver.compatibility >= _FALLBACK_SINCE
        # Answers are pure functions of (map name, key) for one resolver, and a
        # reload builds a new PolicyLookup, so these memos never go stale.  Both are
        # bounded: answers by memo_size (oldest entry out first), replies per set of
        # effective values by the same bound (a configuration has few such sets).
        self._memo_size = memo_size
        self._answers: OrderedDict[tuple[str, str], SocketmapReply] = OrderedDict()
        self._by_values: dict[Mapping[str, object], SocketmapReply] = {}
        self._nexthops: dict[tuple[str, NextHop], NextHopAnswer] = {}
        errors: list[ConfigError] = []
        displaced = self.routes.exact_domains()
        for hop, found in self.routes.by_nexthop().items():
            for binding in sorted(self._bindings):
                try:
                    self._nexthops[(binding, hop)] = combine_nexthop(
                        resolver, binding, hop, found, displaced=displaced)
                except NextHopConflictError as exc:
                    # The same conflict usually shows through every binding: once each.
                    if all(str(exc) != str(e) for e in errors):
                        errors.append(exc)
        ConfigErrors.raise_if_any(errors)
        self._unattributed: set[str] = set()
        self.unattributed_count = 0
        self.route_losses = route_losses
        self.on_unattributed = on_unattributed

    def policy(self, binding: str, domain: str) -> PostfixPolicy:
        """The policy for an already normalised ``domain`` through ``binding``."""
        values, sources = self.resolver.effective(domain, binding)
        policy, _warnings = map_values(values, sources, binding=binding, key=domain,
                                       fallback_exists=self._fallback_exists,
                                       postfix_version=self.postfix_version)
        return policy

    @property
    def fallback_exists(self) -> bool:
        """Whether a failed negotiation may fall back (false under compatibility 4.0)."""
        return self._fallback_exists

    def operator_values(self, binding: str, parsed: PostfixKey
                        ) -> tuple[Mapping[str, object], Mapping[str, Source], str | None,
                                   tuple[PostfixWarning, ...]]:
        """The configuration behind the answer to ``parsed`` through ``binding``: the
        effective values (a routed next hop's combined at their strictest), their
        sources, the ``match=`` list of verified levels (``None``: a shared next hop no
        list serves) and the next-hop notes.  Raises for an unknown binding.
        """
        if binding not in self._bindings:
            raise UnknownBindingError(f"unknown binding {binding!r}")
        answer = self._nexthops.get((binding, (parsed.domain, parsed.port, parsed.bracketed)))
        if answer is not None:
            return answer.values, answer.sources, answer.match, answer.notes
        values, sources = self.resolver.effective(parsed.domain, binding)
        return values, sources, VERIFY_MATCH, ()

    def nexthop_routed(self, binding: str, parsed: PostfixKey) -> bool:
        """Whether a transport route names the next hop ``parsed`` through ``binding`` (its
        answer then combines the routed domains' values)."""
        return (binding, (parsed.domain, parsed.port, parsed.bracketed)) in self._nexthops

    def nexthop(self, binding: str, key: str) -> NextHopAnswer | None:
        """The route-derived answer for a next-hop ``key`` (``None``: no route names it)."""
        parsed = parse_postfix_key(key)
        return self._nexthops.get((binding, (parsed.domain, parsed.port, parsed.bracketed)))

    def notes(self, binding: str, key: str) -> tuple[PostfixWarning, ...]:
        """Every loss of the answer to ``key`` through ``binding``: the mapping's
        warnings, the next-hop notes and Postfix's behaviour at the level
        (:func:`behaviour_notes`).  Raises for a malformed key or unknown binding."""
        if binding not in self._bindings:
            raise UnknownBindingError(f"unknown binding {binding!r}")
        parsed = parse_postfix_key(key)
        policy, warnings, extra = self._compute(binding, key, parsed)
        return (*warnings, *extra, *behaviour_notes(policy, binding=binding, key=key))

    def _compute(self, binding: str, key: str, parsed: PostfixKey
                 ) -> tuple[PostfixPolicy, tuple[PostfixWarning, ...],
                            tuple[PostfixWarning, ...]]:
        answer = self._nexthops.get((binding, (parsed.domain, parsed.port, parsed.bracketed)))
        if answer is not None:
            policy, warnings = map_values(answer.values, answer.sources, binding=binding,
                                          key=key, fallback_exists=self._fallback_exists,
                                          postfix_version=self.postfix_version,
                                          match=answer.match or VERIFY_MATCH)
            return policy, warnings, answer.notes
        values, sources = self.resolver.effective(parsed.domain, binding)
        policy, warnings = map_values(values, sources, binding=binding, key=key,
                                      fallback_exists=self._fallback_exists,
                                      postfix_version=self.postfix_version)
        extra: tuple[PostfixWarning, ...] = ()
        if parsed.bracketed or parsed.port is not None:
            extra = (PostfixWarning(
                binding, key, "domain", "no transport route names this next hop: answered "
                "with the host's own policy, not that of the domains routed through it "
                "(a route serve was not given or could not read, or an IP-literal "
                "recipient)", None, "nexthop-unattributed"),)
            if parsed.is_ip and policy.level is PostfixLevel.VERIFY:
                extra += (PostfixWarning(
                    binding, key, "tls_verify", f"match={VERIFY_MATCH} at an address next hop "
                    "compares the address with the certificate's names, so a verified "
                    "delivery defers unless the certificate names the address (stricter)",
                    None, "nexthop-match"),)
        return policy, warnings, extra

    def __call__(self, map_name: str, key: str) -> SocketmapReply:
        memo_key = (map_name, key)
        reply = self._answers.get(memo_key)
        if reply is None:
            reply = self._answer(map_name, key)
            if self._memo_size and len(map_name) + len(key) <= MEMO_REQUEST_CHARS:
                answers = self._answers
                if len(answers) >= self._memo_size:
                    # Oldest first; a concurrent caller may have emptied it already.
                    with contextlib.suppress(KeyError):
                        answers.popitem(last=False)
                answers[memo_key] = reply
        return reply

    def unattributed_reason(self, parsed: PostfixKey) -> str:
        """Why a next-hop key no route names is unattributed (see the class)."""
        if parsed.is_ip and parsed.port is None:
            return "ip-literal"
        return "route-loss-accepted" if self.route_losses else "no-route"

    def note_unattributed(self, map_name: str, key: str, parsed: PostfixKey) -> None:
        """Log (once per key, up to :data:`MAX_UNATTRIBUTED_WARNINGS` keys) and count a
        next-hop key no route names."""
        self.unattributed_count += 1
        if key in self._unattributed:
            return
        reason = self.unattributed_reason(parsed)
        if self.on_unattributed is not None:
            self.on_unattributed(reason)
        if len(self._unattributed) >= MAX_UNATTRIBUTED_WARNINGS:
            return
        self._unattributed.add(key)
        if reason == "ip-literal":
            log.warning("socketmap: next hop %r (map %r) is an address no route names (an "
                        "IP-literal recipient, or a route to it): answered with the host's "
                        "own policy", key, map_name)
        elif reason == "route-loss-accepted":
            log.warning("socketmap: next hop %r (map %r) is named by no readable route; "
                        "routes that could not be read may name it (loss accepted: %s): "
                        "answered with the host's own policy, not that of the domains "
                        "routed through it", key, map_name, "; ".join(self.route_losses))
        else:
            log.warning("socketmap: next hop %r (map %r) is named by no transport route: "
                        "answered with the host's own policy, not that of the domains routed "
                        "through it", key, map_name)

    def _answer(self, map_name: str, key: str) -> SocketmapReply:
        if map_name not in self._bindings:
            return SocketmapReply.perm(
                f"unknown binding {map_name!r} (declared: {', '.join(sorted(self._bindings))})"
                [:1000])
        try:
            parsed = parse_postfix_key(key)
        except PostfixKeyError as exc:
            return SocketmapReply.perm(f"malformed key: {exc}")
        if parsed.parent:
            return SocketmapReply.notfound()
        hop = (parsed.domain, parsed.port, parsed.bracketed)
        if self._nexthops:
            answer = self._nexthops.get((map_name, hop))
            if answer is not None:
                try:
                    policy, _w = map_values(answer.values, answer.sources, binding=map_name,
                                            key=key, fallback_exists=self._fallback_exists,
                                            postfix_version=self.postfix_version,
                                            match=answer.match or VERIFY_MATCH)
                except PostfixMappingError as exc:
                    return SocketmapReply.perm(str(exc))
                if answer.match is None and policy.level is PostfixLevel.VERIFY:
                    return SocketmapReply.perm(
                        f"next hop {key} carries several domains and needs a verified "
                        "level: no match= list is never weaker for all of them")
                return SocketmapReply.ok(policy.text())
        if parsed.bracketed or parsed.port is not None:
            self.note_unattributed(map_name, key, parsed)
        # The values alone decide the answer: the sources are made only on a miss.
        values_key = self.resolver.effective_values(parsed.domain, map_name)
        reply = self._by_values.get(values_key)
        if reply is not None:
            return reply
        values, sources = self.resolver.effective(parsed.domain, map_name)
        try:
            policy, _warnings = map_values(values, sources, binding=map_name, key=parsed.domain,
                                           fallback_exists=self._fallback_exists,
                                           postfix_version=self.postfix_version)
            reply = SocketmapReply.ok(policy.text())
        except PostfixMappingError as exc:
            # The message names the offending value only, so it too depends on the
            # values alone; keep it out of the memo all the same (errors are rare).
            return SocketmapReply.perm(str(exc))
        if self._memo_size:
            if len(self._by_values) >= self._memo_size:
                self._by_values.clear()
            self._by_values[values_key] = reply
        return reply


def parse_postfix_version(text: str) -> PostfixVersion:
    """``3.7.11`` (``postconf -h mail_version``) as numbers; a located error when it is not."""
    parts = text.strip().split(".")
    if len(parts) < 2 or not all(part.isdigit() for part in parts):
        raise InvalidValueError(f"not a Postfix version: {text!r} (expected e.g. 3.7.11)",
                                Location(option="postfix-version"), value=text,
                                has_value=True)
    return tuple(int(part) for part in parts)
