"""An independent model of Postfix's client-side TLS security levels, and judges.

Written from Postfix's documentation: postconf(5) ``smtp_tls_security_level``,
``smtp_tls_policy_maps`` (levels and their ``match=``, ``servername=``,
``protocols=``, ``ciphers=``, ``exclude=``, ``tafile=`` attributes),
``smtp_tls_verify_cert_match``, ``smtp_tls_secure_cert_match``,
``smtp_tls_trust_anchor_file`` and ``smtp_tls_dane_insecure_mx_policy``;
TLS_README "Client-side TLS security levels" and "DANE TLS authentication";
RFC 7672 sections 2.2 and 3.  It shares no table or code with tlspolicy's own
Postfix mapping: nothing here comes from ``tlspolicy.postfix`` or
``tlspolicy.servers``.  tlspolicy's
decisions are evaluated through the core public API only.

The world
---------

A :class:`HostWorld` is one MX host as Postfix meets it: whether STARTTLS is
offered, whether the handshake succeeds, whether the presented chain is
PKIX-trusted by the system store and by which trust-anchor files, whether the
certificate is in date, the DNS names it is valid for (literal names: wildcard
certificates are not modelled), the host's DANE state as Postfix's own DNS
lookups see it (:class:`Dane`), whether the MX RRset was DNSSEC-validated,
which usable TLSA record (DANE-EE or DANE-TA) the chain matches, if any, the
protocol versions the server accepts, and which trust-anchor files hold an
expired anchor for the chain.

Choices:

* Protocol versions are modelled: the handshake succeeds iff
  ``HostWorld.handshake`` and the client's allowed versions meet the server's
  (``HostWorld.versions``; ``None``: any).  Postfix's allowed versions come from
  ``protocols=`` (postconf(5) ``smtp_tls_mandatory_protocols``: ``>=V`` / ``<=V``
  bounds, names to include, ``!V`` exclusions, where excluding a version also
  drops every version above it once a lower one is enabled) or, without it,
  the default ``>=TLSv1``; tlspolicy's are ``decision.parameters.protocols``.
* ``ciphers=`` and ``exclude=`` only narrow the handshake further: ignored
  (``HostWorld.handshake`` is the outcome under the cipher settings in force,
  assumed the same for Postfix and for tlspolicy).
* ``servername=`` only chooses the SNI, so which certificate the server shows;
  the world's certificate is the one shown.  Ignored.
* A STARTTLS command refused by the server counts as a failed handshake.
* REQUIRETLS is not modelled (the server is taken to announce it).
* Trust anchors in a ``tafile`` are not subject to expiration (postconf(5)
  ``smtp_tls_trust_anchor_file``): Postfix ignores ``HostWorld.expired_anchors``;
  tlspolicy reports an expired anchor of its ``tls_ca`` as an expired
  certificate.  ``in_date`` is about the server's certificate.

Postfix's delivery (:func:`postfix_action`)
-------------------------------------------

:class:`Delivery` is ordered DEFER < PLAINTEXT < ENCRYPTED < AUTHENTICATED: Postfix
does not deliver to this host / delivers in cleartext / over TLS without a
binding authentication / over TLS authenticated at the level's rules.

"TLS up" below means STARTTLS offered and the handshake succeeding with the
answer's protocol versions.

=============  ==========================================================================
level          delivery
=============  ==========================================================================
none           PLAINTEXT
may            no STARTTLS: PLAINTEXT; handshake fails: PLAINTEXT (retried without
               TLS); otherwise ENCRYPTED, whatever the certificate
encrypt        no STARTTLS or handshake fails: DEFER; otherwise ENCRYPTED
verify,        no STARTTLS or handshake fails: DEFER; chain not trusted (by the system
secure         store, or with ``tafile=`` by one of those files only), certificate out of
               date, or no certificate name matching the ``match=`` list: DEFER;
               otherwise AUTHENTICATED.  Default list: verify ``hostname``, secure
               ``nexthop:dot-nexthop``.  Patterns: ``hostname`` (the MX host; the
               next hop when it is bracketed), ``nexthop`` (next-hop domain without
               brackets or port), ``dot-nexthop`` (its sub-domains), ``.domain`` (its
               sub-domains), anything else a name (case ignored).  The two levels
               differ only in where ``hostname`` comes from (an unauthenticated MX
               lookup is trusted by verify, not by secure); per host, with the host
               name given, the same list gives the same check.
dane           X: DEFER; N: as may; U: as encrypt; D: mandatory TLS (no STARTTLS or
               handshake fails: DEFER), then the chain must match a usable TLSA
               record: DANE-EE with no name or date check, DANE-TA with the date
               and the MX host name checked; else DEFER.  Success is
               AUTHENTICATED.  MX RRset insecure (``mx_secure`` false): by
               ``smtp_tls_dane_insecure_mx_policy`` (default ``dane``): ``may`` -> as
               may before any TLSA lookup; ``encrypt`` -> usable records give
               encrypt; ``dane`` -> as if secure
dane-only      D with a secure MX RRset: as dane at D; anything else DEFER
=============  ==========================================================================

``fingerprint`` is not modelled (:class:`ValueError`).  The DANE-TA reference
identifiers are the MX host's names (its TLSA base domain, RFC 7672 section 3.2.3),
not the next-hop domain: TLS_README's "DANE TLS authentication" lists "nexthop,
hostname", but RFC 7672 and Postfix's DANE code use the TLSA base domain and the
MX host names, and a model more lenient than Postfix would only report too much.

tlspolicy's delivery (:func:`tlspolicy_action`)
-----------------------------------------------

From the decision's own API: plan FAIL -> DEFER, SKIP -> PLAINTEXT; ATTEMPT: no
STARTTLS -> ``outcome(STARTTLS_NOT_ADVERTISED)``, failed handshake (including no
common protocol version with ``parameters.protocols``) ->
``outcome(HANDSHAKE_FAILED)`` (SKIP / FALLBACK deliver in PLAINTEXT, the rest
DEFER); TLS up -> ``after_certificate`` of the certificate observations the
world gives for the decision's verification (the chain judged against
``parameters.ca_file`` when set, an expired anchor there being an expired
certificate, else the system store; names against
``reference_identities``; under DANE the TLSA match against the decision's
``tlsa_records``: a DANE-EE match when it holds a usage-3 record, a DANE-TA
match, with names and dates checked, when it holds a usage-2 record).  PROCEED
is AUTHENTICATED for ``host`` and DANE verification and ENCRYPTED otherwise (``ca``
checks no name, ``no`` and ``optional`` nothing); anything else DEFER.

Judges
------

``allowed(answer, decision, host, nexthop, world)``: Postfix with ``answer``
delivers only where the decision allows it.  True iff Postfix defers, or
tlspolicy delivers too and tlspolicy's delivery <= Postfix's.  (Postfix may
defer where tlspolicy delivers, and may deliver with more security.)

``never_weaker(answer, baseline, host, nexthop, world)``: with ``a`` Postfix's
delivery for ``answer`` and ``b`` for ``baseline``, ``answer`` is weaker iff
``a`` is not DEFER and either ``b > a``, or ``b`` is DEFER and the baseline's
requirement in that world (:func:`postfix_requirement`: none, may, and dane at
N need PLAINTEXT; encrypt and dane at U need ENCRYPTED; verify, secure, and
dane / dane-only at D need AUTHENTICATED; dane at X and dane-only outside D
accept no delivery at all) is none or above ``a``.  Levels are compared by what
they deliver, not by name: ``secure match=...`` and ``dane-only`` both
AUTHENTICATE, so neither is weaker than the other where both deliver.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Iterable
from typing import Final

import attrs

from tlspolicy import Action, Decision, Observation, TlsaRecord, Verification
from tlspolicy.policies.dane import TlsaUsage

__all__ = [
    "DEFAULT_PROTOCOLS",
    "PROTOCOLS",
    "Answer",
    "Dane",
    "Delivery",
    "HostWorld",
    "TlsaMatch",
    "allowed",
    "certificate_observations",
    "never_weaker",
    "parse_answer",
    "postfix_action",
    "postfix_protocols",
    "postfix_requirement",
    "tlspolicy_action",
]


@functools.total_ordering
class Delivery(enum.Enum):
    """What happens to the message at one host, ordered by security."""

    DEFER = 0
    PLAINTEXT = 1
    ENCRYPTED = 2
    AUTHENTICATED = 3

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Delivery):
            return NotImplemented
        return self.value < other.value


class Dane(enum.Enum):
    """The host's DANE state as Postfix's own DNS lookups see it."""

    D = "usable"
    """Secure TLSA records, at least one usable (address records secure)."""
    U = "unusable"
    """Secure TLSA records, none usable (e.g. only PKIX-TA / PKIX-EE usages)."""
    N = "none"
    """No TLSA records (secure denial), or the host's address is insecure."""
    X = "failed"
    """The TLSA lookup failed or was bogus."""


class TlsaMatch(enum.Enum):
    """Which usable TLSA record the presented chain matches."""

    NONE = "none"
    EE = "dane-ee"
    """A DANE-EE(3) record: the server certificate or its key."""
    TA = "dane-ta"
    """A DANE-TA(2) record: an issuer in the chain."""


def _names(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        raise TypeError("names must be an iterable of names, not one string")
    return frozenset(_key(n) for n in value)


def _files(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        raise TypeError("anchor files must be an iterable of paths, not one string")
    return frozenset(value)


PROTOCOLS: Final = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
"""Postfix's protocol names (postconf(5) ``smtp_tls_mandatory_protocols``), oldest first."""


def _versions(value: Iterable[str] | None) -> frozenset[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError("versions must be an iterable of protocol names, not one string")
    versions = frozenset(value)
    unknown = versions - set(PROTOCOLS)
    if unknown:
        raise ValueError(f"unknown protocol names {sorted(unknown)} (use {PROTOCOLS})")
    return versions


@attrs.frozen
class HostWorld:
    """One MX host as Postfix would meet it (see the module docstring)."""

    starttls: bool = True
    handshake: bool = True
    pkix_trusted: bool = True
    """The chain is trusted by the system CA store."""
    tafiles: frozenset[str] = attrs.field(default=frozenset(), converter=_files)
    """Trust-anchor files (paths) one of whose anchors the chain leads to."""
    in_date: bool = True
    names: frozenset[str] = attrs.field(default=frozenset(), converter=_names)
    """DNS names (or addresses) the certificate is valid for."""
    dane: Dane = Dane.N
    tlsa_match: TlsaMatch = TlsaMatch.NONE
    """Meaningful at :attr:`Dane.D` only."""
    mx_secure: bool = True
    """Whether the MX RRset that named the host was DNSSEC-validated."""
    versions: frozenset[str] | None = attrs.field(default=None, converter=_versions)
    """The protocol versions the server accepts (Postfix's names); ``None``: any."""
    expired_anchors: frozenset[str] = attrs.field(default=frozenset(), converter=_files)
    """Trust-anchor files (of :attr:`tafiles`) whose anchor for the chain has expired."""

    def tls_up(self, client: frozenset[str] | None = None) -> bool:
        """STARTTLS offered and the handshake succeeds for a client allowing ``client``
        versions (``None``: any)."""
        if not (self.starttls and self.handshake):
            return False
        return self.versions is None or client is None or bool(self.versions & client)

    def trusted(self, tafiles: Iterable[str]) -> bool:
        """Whether the chain is trusted: by these anchor files only, or the system store."""
        files = tuple(tafiles)
        if files:
            return any(f in self.tafiles for f in files)
        return self.pkix_trusted


# --------------------------------------------------------------------- answers

LEVELS: Final = ("none", "may", "encrypt", "dane", "dane-only", "fingerprint", "verify",
                 "secure")
_ATTRIBUTES: Final = frozenset({"match", "servername", "protocols", "ciphers", "exclude",
                                "tafile", "connection_reuse", "enable_rpk",
                                # Postfix 3.10's TLSRPT attributes (postconf(5),
                                # smtp_tls_policy_maps): they name the policy for reports;
                                # only mx_host_pattern changes what is done (from 3.10.5,
                                # the MX hosts used), which callers judge themselves.
                                "policy_type", "policy_domain", "policy_ttl", "policy_string",
                                "mx_host_pattern", "policy_failure"})
# One attribute: a name=value word, or name={ value with spaces } (postconf(5)).
_WORD: Final = re.compile(r"[^\s,=]+=\{[^}]*\}|[^\s,]+")
_DEFAULT_MATCH: Final = {"verify": ("hostname",), "secure": ("nexthop", "dot-nexthop")}


@attrs.frozen
class Answer:
    """A policy table answer: a level and its ``name=value`` attributes, in order."""

    level: str
    attributes: tuple[tuple[str, str], ...] = ()

    def values(self, name: str) -> tuple[str, ...]:
        """Every value given for ``name`` (``tafile`` and ``match`` may repeat)."""
        return tuple(v for n, v in self.attributes if n == name)

    @property
    def match(self) -> tuple[str, ...]:
        """The match list in force at verify / secure (colon-separated; default if none)."""
        given = [p for v in self.values("match") for p in v.split(":") if p]
        return tuple(given) if given else _DEFAULT_MATCH.get(self.level, ())


def parse_answer(answer: str) -> Answer:
    """Parse ``level name=value ...`` (whitespace or comma separated, postconf(5))."""
    words = _WORD.findall(answer)
    if not words:
        raise ValueError("an empty policy answer")
    level = words[0].lower()
    if level not in LEVELS:
        raise ValueError(f"not a Postfix TLS security level: {words[0]!r}")
    attributes: list[tuple[str, str]] = []
    for word in words[1:]:
        name, eq, value = word.partition("=")
        if value.startswith("{") and value.endswith("}"):
            value = value[1:-1].strip()
        if not eq or name.lower() not in _ATTRIBUTES:
            raise ValueError(f"not a policy attribute: {word!r}")
        attributes.append((name.lower(), value))
    return Answer(level, tuple(attributes))


# ----------------------------------------------------------------------- names


def _key(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _nexthop_domain(nexthop: str) -> tuple[str, bool]:
    """The next-hop name used for certificate checks, and whether it was bracketed.

    Brackets and a ``:port`` are not part of the name (postconf(5)
    ``smtp_tls_policy_maps``); an address literal's ``IPv6:`` tag is dropped.
    """
    text = nexthop.strip()
    if text.startswith("["):
        inside, _close, _rest = text[1:].partition("]")
        inside = inside[5:] if inside.lower().startswith("ipv6:") else inside
        return _key(inside), True
    if text.count(":") == 1:
        text = text.partition(":")[0]
    return _key(text), False


def _subdomain(name: str, parent: str) -> bool:
    return name.endswith("." + parent) and len(name) > len(parent) + 1


def _pattern_matches(pattern: str, name: str, *, host: str, nexthop: str) -> bool:
    word = pattern.lower()
    if word == "hostname":
        return name == host
    if word == "nexthop":
        return name == nexthop
    if word == "dot-nexthop":
        return _subdomain(name, nexthop)
    if word.startswith("."):
        return _subdomain(name, _key(word[1:]))
    return name == _key(word)


def _names_match(patterns: Iterable[str], names: Iterable[str], *, host: str,
                 nexthop: str) -> bool:
    listed = tuple(patterns)
    return any(_pattern_matches(p, n, host=host, nexthop=nexthop)
               for p in listed for n in names)


# ------------------------------------------------------------------- protocols

_HEX_VERSIONS: Final = {0x0300: "SSLv3", 0x0301: "TLSv1", 0x0302: "TLSv1.1",
                        0x0303: "TLSv1.2", 0x0304: "TLSv1.3"}
DEFAULT_PROTOCOLS: Final = ">=TLSv1"
"""The default of ``smtp_tls_protocols`` and ``smtp_tls_mandatory_protocols`` (Postfix >= 3.6)."""


def _protocol_index(word: str) -> int:
    for i, name in enumerate(PROTOCOLS):
        if word.lower() == name.lower():
            return i
    text = word.lower().removeprefix("0x")
    try:
        number = int(text, 16)
    except ValueError:
        raise ValueError(f"not a protocol: {word!r}") from None
    if number not in _HEX_VERSIONS:
        raise ValueError(f"a protocol number unknown to the model: {word!r}")
    return PROTOCOLS.index(_HEX_VERSIONS[number])


def postfix_protocols(spec: str) -> frozenset[str]:
    """The versions a ``protocols=`` value enables (colon-separated in a policy answer).

    Bounds ``>=V`` and ``<=V``, names to include, ``!V`` exclusions; an empty value
    allows every version.  Then, as postconf(5) ``smtp_tls_mandatory_protocols``
    says, a disabled version above the lowest enabled one disables every
    version above it too: the result is the run upward from the lowest enabled.
    """
    low, high = 0, len(PROTOCOLS) - 1
    included: set[int] = set()
    excluded: set[int] = set()
    for word in (w.strip() for w in spec.replace(",", ":").split(":")):
        if not word:
            continue
        if word.startswith(">="):
            low = max(low, _protocol_index(word[2:]))
        elif word.startswith("<="):
            high = min(high, _protocol_index(word[2:]))
        elif word.startswith("!"):
            excluded.add(_protocol_index(word[1:]))
        else:
            included.add(_protocol_index(word))
    candidates = included or set(range(len(PROTOCOLS)))
    enabled = [i for i in range(low, high + 1) if i in candidates and i not in excluded]
    if not enabled:
        return frozenset()
    run = [enabled[0]]
    while run[-1] + 1 in enabled:
        run.append(run[-1] + 1)
    return frozenset(PROTOCOLS[i] for i in run)


# --------------------------------------------------------------------- Postfix

INSECURE_MX_POLICIES: Final = ("may", "encrypt", "dane")


def _dane_authenticated(world: HostWorld, *, host: str, nexthop: str,
                        versions: frozenset[str]) -> Delivery:
    """Mandatory TLS, then the chain against the usable TLSA records (RFC 7672 3.1)."""
    if not world.tls_up(versions):
        return Delivery.DEFER
    if world.tlsa_match is TlsaMatch.EE:
        return Delivery.AUTHENTICATED
    if world.tlsa_match is TlsaMatch.TA and world.in_date and _names_match(
            ("hostname",), world.names, host=host, nexthop=nexthop):
        return Delivery.AUTHENTICATED
    return Delivery.DEFER


def _effective_level(level: str, world: HostWorld, insecure_mx_policy: str) -> str:
    """What ``dane`` / ``dane-only`` become for this host: a level, ``dane-auth`` or ``defer``."""
    if not world.mx_secure and (level == "dane-only" or insecure_mx_policy == "may"):
        return "defer" if level == "dane-only" else "may"
    if world.dane is Dane.X:
        return "defer-unknown"
    if world.dane is Dane.N:
        return "defer" if level == "dane-only" else "may"
    if world.dane is Dane.U:
        return "defer" if level == "dane-only" else "encrypt"
    if not world.mx_secure and insecure_mx_policy == "encrypt":
        return "encrypt"
    return "dane-auth"


def postfix_action(answer: str, *, host: str, nexthop: str, world: HostWorld,
                   insecure_mx_policy: str = "dane") -> Delivery:
    """What Postfix does at this host with the policy ``answer`` (module docstring).

    ``host`` is the MX host name (for a bracketed next hop, the next hop
    itself); ``nexthop`` the next-hop destination as looked up (recipient domain
    or transport next hop, brackets and port allowed).
    """
    if insecure_mx_policy not in INSECURE_MX_POLICIES:
        raise ValueError(f"smtp_tls_dane_insecure_mx_policy: {insecure_mx_policy!r}")
    parsed = parse_answer(answer)
    hop, bracketed = _nexthop_domain(nexthop)
    server = hop if bracketed else _key(host)
    level = parsed.level
    given = parsed.values("protocols")
    versions = postfix_protocols(given[-1] if given else DEFAULT_PROTOCOLS)
    tls_up = world.tls_up(versions)
    if level in ("dane", "dane-only"):
        level = _effective_level(level, world, insecure_mx_policy)
    if level in ("defer", "defer-unknown"):
        return Delivery.DEFER
    if level == "none":
        return Delivery.PLAINTEXT
    if level == "may":
        return Delivery.ENCRYPTED if tls_up else Delivery.PLAINTEXT
    if level == "encrypt":
        return Delivery.ENCRYPTED if tls_up else Delivery.DEFER
    if level == "dane-auth":
        return _dane_authenticated(world, host=server, nexthop=hop, versions=versions)
    if level in ("verify", "secure"):
        if (tls_up and world.trusted(parsed.values("tafile")) and world.in_date
                and _names_match(parsed.match, world.names, host=server, nexthop=hop)):
            return Delivery.AUTHENTICATED
        return Delivery.DEFER
    raise ValueError(f"level {parsed.level!r} is not modelled")


def postfix_requirement(answer: str, *, world: HostWorld,
                        insecure_mx_policy: str = "dane") -> Delivery | None:
    """The least delivery ``answer`` accepts at this host; ``None``: none at all."""
    parsed = parse_answer(answer)
    level = parsed.level
    if level in ("dane", "dane-only"):
        level = _effective_level(level, world, insecure_mx_policy)
        if level == "defer-unknown":
            # A host deferred because its TLSA lookup failed is one whose requirement
            # could not be established: at most DANE authentication (RFC 7672 section
            # 2.2), so an authenticated delivery is never weaker than that deferral.
            return Delivery.AUTHENTICATED
    requirement = {"defer": None, "none": Delivery.PLAINTEXT, "may": Delivery.PLAINTEXT,
                   "encrypt": Delivery.ENCRYPTED, "dane-auth": Delivery.AUTHENTICATED,
                   "verify": Delivery.AUTHENTICATED, "secure": Delivery.AUTHENTICATED}
    if level not in requirement:
        raise ValueError(f"level {parsed.level!r} is not modelled")
    return requirement[level]


# ------------------------------------------------------------------- tlspolicy

_DELIVERS_PLAINTEXT: Final = frozenset({Action.SKIP, Action.FALLBACK})
# tlspolicy's version names (TlsVersion values) -> the model's (Postfix's) names.
_TLSPOLICY_VERSIONS: Final = {"SSLv2": "SSLv2", "SSLv3": "SSLv3", "TLSv1.0": "TLSv1",
                              "TLSv1.1": "TLSv1.1", "TLSv1.2": "TLSv1.2", "TLSv1.3": "TLSv1.3"}
_AUTHENTICATING: Final = frozenset({Verification.HOST, Verification.DANE})


def _has_usage(records: Iterable[TlsaRecord], usage: TlsaUsage) -> bool:
    return any(r.usage == usage and r.is_usable for r in records)


def certificate_observations(decision: Decision, world: HostWorld) -> tuple[Observation, ...]:
    """The certificate problems a client would report for this decision in ``world``."""
    identities = {_key(n) for n in decision.reference_identities}
    named = bool(identities & world.names)
    found: list[Observation] = []
    if decision.verification is Verification.DANE:
        records = decision.tlsa_records
        if world.tlsa_match is TlsaMatch.EE and _has_usage(records, TlsaUsage.DANE_EE):
            return ()
        if world.tlsa_match is TlsaMatch.TA and _has_usage(records, TlsaUsage.DANE_TA):
            if not world.in_date:
                found.append(Observation.CERTIFICATE_EXPIRED)
            if not named:
                found.append(Observation.NAME_MISMATCH)
            return tuple(found)
        return (Observation.TLSA_MISMATCH,)
    ca_file = decision.parameters.ca_file
    if not world.trusted((ca_file,) if ca_file is not None else ()):
        found.append(Observation.CHAIN_NOT_TRUSTED)
    anchor_expired = (ca_file is not None and ca_file in world.tafiles
                      and ca_file in world.expired_anchors)
    if not world.in_date or anchor_expired:
        found.append(Observation.CERTIFICATE_EXPIRED)
    if not named:
        found.append(Observation.NAME_MISMATCH)
    return tuple(found)


def tlspolicy_action(decision: Decision, world: HostWorld) -> Delivery:
    """What tlspolicy's ``decision`` does at this host (module docstring)."""
    if decision.plan is Action.FAIL:
        return Delivery.DEFER
    if decision.plan is Action.SKIP:
        return Delivery.PLAINTEXT
    versions = frozenset(_TLSPOLICY_VERSIONS[v.value] for v in decision.parameters.protocols)
    if not world.tls_up(versions):
        observation = (Observation.STARTTLS_NOT_ADVERTISED if not world.starttls
                       else Observation.HANDSHAKE_FAILED)
        action = decision.outcome(observation).action
        return Delivery.PLAINTEXT if action in _DELIVERS_PLAINTEXT else Delivery.DEFER
    outcome = decision.after_certificate(certificate_observations(decision, world))
    if outcome.action is not Action.PROCEED:
        return Delivery.DEFER
    if decision.verification in _AUTHENTICATING:
        return Delivery.AUTHENTICATED
    return Delivery.ENCRYPTED


# ---------------------------------------------------------------------- judges


def allowed(answer: str, decision: Decision, host: str, nexthop: str, world: HostWorld,
            *, insecure_mx_policy: str = "dane") -> bool:
    """Whether Postfix with ``answer`` delivers only where ``decision`` delivers too, and
    then with at least the decision's security (module docstring)."""
    postfix = postfix_action(answer, host=host, nexthop=nexthop, world=world,
                             insecure_mx_policy=insecure_mx_policy)
    if postfix is Delivery.DEFER:
        return True
    ours = tlspolicy_action(decision, world)
    return ours is not Delivery.DEFER and ours <= postfix


def never_weaker(answer: str, baseline: str, host: str, nexthop: str, world: HostWorld,
                 *, insecure_mx_policy: str = "dane") -> bool:
    """Whether ``answer`` delivers with no less security than ``baseline`` guarantees."""
    a = postfix_action(answer, host=host, nexthop=nexthop, world=world,
                       insecure_mx_policy=insecure_mx_policy)
    if a is Delivery.DEFER:
        return True
    b = postfix_action(baseline, host=host, nexthop=nexthop, world=world,
                       insecure_mx_policy=insecure_mx_policy)
    if b is not Delivery.DEFER:
        return not b > a
    required = postfix_requirement(baseline, world=world, insecure_mx_policy=insecure_mx_policy)
    return required is not None and a >= required
