"""Mapping tlspolicy's effective values to a Postfix policy answer (one table).

Level mapping (effective ``tls`` / ``tls_verify``; see the Postfix migration
guide for the reasoning):

============  =======================  ==========================================
tls           tls_verify               Postfix level
============  =======================  ==========================================
no            any                      ``none``
ifavailable   no, optional             ``may`` (``dane`` when DANE is on)
ifavailable   no, opt. (no fallback)   ``encrypt`` (stricter, SEMANTICS 11 (e))
required      no, optional             ``encrypt``
ifavailable   ca, host                 ``verify match=hostname:nexthop`` (stricter)
required      ca, host                 ``verify match=hostname:nexthop``
============  =======================  ==========================================

Where Postfix has no exact equivalent the mapping is the *stricter* neighbour
and a :class:`~tlspolicy.postfix.levels.PostfixWarning` says so.  Pure.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Final

from ..decision import Source
from ..options import Tls, TlsProtocols, TlsVerify
from ..options import TlsVersion as V
from ..scopes import DEFAULT_NAME
from .levels import PostfixLevel, PostfixMappingError, PostfixPolicy, PostfixVersion, PostfixWarning

__all__ = ["PROTOCOL_RANGES_SINCE", "VERIFY_MATCH", "behaviour_notes", "map_values",
           "tls_hole"]

VERIFY_MATCH: Final = "hostname:nexthop"
"""``match=`` for verified levels: Momentum accepts the MX host name or the recipient domain."""

_GRADES: Final = {"HIGH": "high", "MEDIUM": "medium", "LOW": "low", "EXPORT": "export",
                  "NULL": "null"}
_CIPHER_NAME: Final = re.compile(r"[A-Za-z0-9_+\-.]+")
# Values in a Postfix policy table may not hold white space or commas.
_BAD_VALUE: Final = re.compile(r"[\s,\x00-\x1f\x7f]")
_CIPHER_SEPARATORS: Final = re.compile(r"[:, ]+")
_POSTFIX_VERSION_NAMES: Final = {
    V.SSLv2: "SSLv2", V.SSLv3: "SSLv3", V.TLSv1_0: "TLSv1", V.TLSv1_1: "TLSv1.1",
    V.TLSv1_2: "TLSv1.2", V.TLSv1_3: "TLSv1.3",
}
_ORDER: Final = tuple(V)

PROTOCOL_RANGES_SINCE: Final[PostfixVersion] = (3, 6)
"""The first Postfix version taking ``>=V:<=W`` protocol ranges; older ones take ``!V`` lists."""
_MODERN: Final = frozenset({V.TLSv1_0, V.TLSv1_1, V.TLSv1_2, V.TLSv1_3})


# --------------------------------------------------------------------------- mapping


def tls_hole(protocols: TlsProtocols) -> bool:
    """Whether the TLS versions (SSL aside: Postfix never offers it) allowed by
    ``protocols`` leave a gap, e.g. ``TLSv1.0:TLSv1.2``: no Postfix range is exactly it."""
    held = [i for i, v in enumerate(_ORDER) if v in protocols.versions and v in _MODERN]
    return bool(held) and held != list(range(held[0], held[-1] + 1))


def _protocols(protocols: TlsProtocols, version: PostfixVersion | None = None, *,
               cover_holes: bool = False) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    # Every answer maps its protocols, and the distinct arguments are few, so the result
    # is kept.  The text is part of the key: TlsProtocols equality ignores it (``+ALL``
    # equals ``+ALL:-SSLv2:+SSLv2``), and the notes quote it.
    return _mapped_protocols(protocols.spec, protocols, version, cover_holes)


@functools.lru_cache(maxsize=256)
def _mapped_protocols(spec: str, protocols: TlsProtocols, version: PostfixVersion | None,
                      cover_holes: bool) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """Postfix ``protocols=`` value (``None``: Postfix's default) and ``(code, note)`` losses.

    Only forms Postfix accepts are written: from 3.6 a range whose bounds are
    TLSv1 or newer (``>=SSLv2`` makes Postfix abort the TLS session, so the
    lower bound is never below ``TLSv1``); before 3.6 the exclusion list
    (``!SSLv2:!SSLv3``).  Allowed TLS versions with a gap become one range: the
    highest contiguous part (stricter at a mandatory level), or with ``cover_holes``
    the range over all of them (at ``may``, where the alternative to a failed
    handshake is plaintext, offering the versions in the gap is the stricter side).
    """
    allowed = [v in protocols.versions for v in _ORDER]
    top = max(i for i, ok in enumerate(allowed) if ok)
    low = top
    while low > 0 and allowed[low - 1]:
        low -= 1
    notes: list[tuple[str, str]] = []
    if cover_holes and tls_hole(protocols):
        first = min(i for i, ok in enumerate(allowed) if ok and _ORDER[i] in _MODERN)
        gap = ", ".join(v.value for v in _ORDER[first:top] if not allowed[_ORDER.index(v)])
        notes.append(("protocols-hole-covered",
                      f"the allowed versions {protocols.spec!r} have a gap; OpenSSL (and "
                      f"Postfix) can only use a range, and at may a failed handshake ends in "
                      f"plaintext, so the range {_ORDER[first].value} to {_ORDER[top].value} "
                      f"is offered ({gap} too: TLS with them rather than plaintext)"))
        low = first
    if any(allowed[:low]):
        dropped = ", ".join(v.value for v in _ORDER[:low] if allowed[_ORDER.index(v)])
        notes.append(("protocols-not-contiguous",
                      f"the allowed versions {protocols.spec!r} are not contiguous; OpenSSL "
                      f"(and Postfix) can only use a range, so only {_ORDER[low].value} to "
                      f"{_ORDER[top].value} are allowed ({dropped} dropped; stricter)"))
    first_tls = _ORDER.index(V.TLSv1_0)
    ssl_allowed = low < first_tls
    if ssl_allowed:
        low = first_tls
        if top < low:
            raise PostfixMappingError(
                f"tls_protocols {protocols.spec!r} allows only SSL versions, which Postfix "
                "cannot be asked for")
    versions = frozenset(_ORDER[low:top + 1])
    if versions >= _MODERN:
        # Postfix's default (>=TLSv1) is the same range.
        return None, tuple(notes)
    if ssl_allowed:
        notes.append(("protocols-ssl", "SSLv2 and SSLv3 are not offered: Postfix's range "
                      "starts at TLSv1 (and current OpenSSL builds have no SSL); stricter"))
    if version is not None and version < PROTOCOL_RANGES_SINCE:
        excluded = [f"!{_POSTFIX_VERSION_NAMES[v]}" for v in _ORDER if v not in versions]
        return ":".join(excluded), tuple(notes)
    parts = [f">={_POSTFIX_VERSION_NAMES[_ORDER[low]]}"]
    if _ORDER[top] is not V.TLSv1_3:
        parts.append(f"<={_POSTFIX_VERSION_NAMES[_ORDER[top]]}")
    return ":".join(parts), tuple(notes)


def _ciphers(text: str) -> tuple[str, str | None] | None:
    """``(grade, exclude)`` when a cipher list is exactly a grade plus ``!`` exclusions."""
    tokens = [t.strip() for t in _CIPHER_SEPARATORS.split(text.strip()) if t.strip()]
    if not tokens:
        return None
    grade = _GRADES.get(tokens[0])
    if grade is None:
        return None
    excluded = []
    for token in tokens[1:]:
        if not token.startswith("!") or not _CIPHER_NAME.fullmatch(token[1:]):
            return None
        excluded.append(token[1:])
    return grade, (":".join(excluded) if excluded else None)


def _value(name: str, value: str) -> str:
    if not value or _BAD_VALUE.search(value):
        raise PostfixMappingError(
            f"{name} value {value!r} cannot be written in a Postfix policy answer "
            "(attribute values may not contain white space or commas, nor control characters)")
    return value


def map_values(
    values: Mapping[str, object],
    sources: Mapping[str, Source] | None = None,
    *,
    binding: str = DEFAULT_NAME,
    key: str | None = None,
    fallback_exists: bool = True,
    postfix_version: PostfixVersion | None = None,
    match: str = VERIFY_MATCH,
    cover_holes: bool | None = None,
) -> tuple[PostfixPolicy, tuple[PostfixWarning, ...]]:
    """Map effective option values (as :meth:`Resolver.effective` gives) to a policy.

    Returns the policy and a warning for every part Postfix cannot express.
    ``fallback_exists`` is false under compatibility 4.0, where a failed
    negotiation always defers.  ``postfix_version`` selects the attribute
    syntax (``None``: Postfix 3.6 or newer); ``match`` is the ``match=`` list
    of verified levels.  Raises :class:`PostfixMappingError` for a value that
    cannot be written at all.
    """
    warnings: list[PostfixWarning] = []

    def warn(option: str, code: str, message: str) -> None:
        source = str(sources[option]) if sources is not None and option in sources else None
        warnings.append(PostfixWarning(binding, key, option, message, source, code))

    tls = values["tls"]
    verify = values["tls_verify"]
    assert isinstance(tls, Tls) and isinstance(verify, TlsVerify)
    fallback = bool(values["tls_ifavailable_fallback"]) and fallback_exists
    dane = bool(values["use_dane"]) and bool(values["enable_dane"])
    sts = bool(values["use_mta_sts"]) and bool(values["enable_mta_sts"])

    if tls is Tls.NO:
        level = PostfixLevel.NONE
    elif verify in (TlsVerify.NO, TlsVerify.OPTIONAL):
        # SEMANTICS 11 (e): at may Postfix delivers in plaintext after a refused
        # STARTTLS (and retries in plaintext after a failed handshake) where a
        # fallback-false decision defers, so such a policy is exported as encrypt.
        level = PostfixLevel.MAY if tls is Tls.IFAVAILABLE and fallback \
            else PostfixLevel.ENCRYPT
    else:
        level = PostfixLevel.VERIFY

    if tls is not Tls.NO:
        if verify is TlsVerify.OPTIONAL:
            warn("tls_verify", "optional-unchecked", "'optional' (check and report, deliver "
                 "anyway) has no Postfix level: Postfix delivers without a certificate check "
                 "and only logs untrusted peers; nothing is reported")
        elif verify is TlsVerify.CA:
            warn("tls_verify", "ca-as-verify", "'ca' (chain only, any name) has no Postfix "
                 f"level: mapped to verify match={match}, which also checks the name, so a "
                 "trusted certificate for another name defers (stricter)")
        if tls is Tls.IFAVAILABLE and level is PostfixLevel.VERIFY:
            warn("tls", "ifavailable-verify", "'ifavailable' with certificate verification has "
                 "no Postfix level: mapped to verify, which defers when STARTTLS is not "
                 "offered, refused or fails where tlspolicy delivers in plaintext (stricter)")
        if tls is Tls.IFAVAILABLE and level is PostfixLevel.ENCRYPT:
            warn("tls_ifavailable_fallback", "fallback-false-encrypt", "false (or compatibility "
                 "4.0) with no certificate check is exported as encrypt: Postfix at may would "
                 "deliver in plaintext after a refused STARTTLS or failed handshake where "
                 "tlspolicy defers; encrypt also defers when STARTTLS is not offered where "
                 "tlspolicy delivers in plaintext (stricter)")

    protocols = values["tls_protocols"]
    assert isinstance(protocols, TlsProtocols)
    if dane:
        if level in (PostfixLevel.NONE, PostfixLevel.MAY):
            if level is PostfixLevel.NONE:
                warn("use_dane", "dane-without-tls", "mapped to level dane: without usable "
                     "TLSA records Postfix then uses opportunistic TLS (may) where Momentum "
                     "sends in plaintext (tls = no)")
            if tls_hole(protocols):
                # dane is may for hosts without TLSA records (a gap dropped there means
                # plaintext) and mandatory TLS with them (a gap offered there means TLS
                # tlspolicy refuses): no range serves both, dane-only is never weaker.
                warn("tls_protocols", "protocols-hole-dane-only", f"the allowed versions "
                     f"{protocols.spec!r} have a gap, which no Postfix range at dane serves "
                     "for hosts both with and without TLSA records: mapped to dane-only, "
                     "which defers hosts without usable TLSA records (stricter; make the "
                     "versions contiguous)")
                level = PostfixLevel.DANE_ONLY
            else:
                level = PostfixLevel.DANE
        else:
            warn("use_dane", "dane-not-combined", f"Postfix has no level combining DANE with "
                 f"{level.value}; kept {level.value}, so TLSA records are not used for this "
                 "destination")
    if sts:
        warn("use_mta_sts", "mta-sts-not-applied", "a Postfix policy answer cannot apply "
             "MTA-STS; this answer reflects the configuration only (combine it with an "
             "MTA-STS policy source)")

    attributes: list[tuple[str, str]] = []
    if level is PostfixLevel.VERIFY:
        attributes.append(("match", match))
        ca = values["tls_ca"]
        if isinstance(ca, str):
            attributes.append(("tafile", _value("tafile", ca)))
    elif level is not PostfixLevel.NONE and isinstance(values["tls_ca"], str) \
            and verify is TlsVerify.OPTIONAL:
        warn("tls_ca", "ca-not-used", "Postfix takes a per-destination trust anchor (tafile) "
             "only at the verify and secure levels; not used at this level")

    if level is not PostfixLevel.NONE:
        ciphers = values["tls_ciphers"]
        if isinstance(ciphers, str):
            grade = _ciphers(ciphers)
            if grade is None:
                warn("tls_ciphers", "ciphers-not-applied", f"{ciphers!r} is not a cipher grade "
                     "(HIGH, MEDIUM, LOW, EXPORT, NULL) with '!' exclusions; Postfix's policy "
                     "table takes only a grade and exclusions: not applied (set "
                     "tls_high_cipherlist with -o in this transport's master.cf entry and use "
                     "ciphers=high)")
            else:
                attributes.append(("ciphers", grade[0]))
                if grade[1] is not None:
                    attributes.append(("exclude", grade[1]))
        spec, notes = _protocols(protocols, postfix_version, cover_holes=(
            level is PostfixLevel.MAY if cover_holes is None else cover_holes))
        if spec is not None:
            attributes.append(("protocols", spec))
        for code, note in notes:
            warn("tls_protocols", code, note)
        if isinstance(values["tlsv13_ciphersuites"], str):
            warn("tlsv13_ciphersuites", "tls13-suites-not-applied", "Postfix has no "
                 "per-destination TLS 1.3 suite list: not applied (OpenSSL's default suites "
                 "are used)")
        for name in ("tls_certificate", "tls_key"):
            if isinstance(values[name], str):
                warn(name, "client-certificate-not-applied", "Postfix has no per-destination "
                     "client certificate: not applied (set smtp_tls_cert_file / "
                     "smtp_tls_key_file with -o in this transport's master.cf entry if the "
                     "whole binding uses it)")
    return PostfixPolicy(level, tuple(attributes)), tuple(warnings)


def behaviour_notes(policy: PostfixPolicy, *, binding: str = DEFAULT_NAME,
                    key: str | None = None) -> tuple[PostfixWarning, ...]:
    """The differences that come from how Postfix acts at a level, not from the mapping.

    They hold for every answer at that level (so :func:`map_values` and the
    static tables do not repeat them per entry); :meth:`PolicyLookup.notes`
    includes them.
    """
    notes = []
    # dane acts as may without usable TLSA records and as a mandatory level with them.
    if policy.level in (PostfixLevel.MAY, PostfixLevel.DANE):
        notes.append(PostfixWarning(
            binding, key, "tls_ifavailable_fallback", "after a failed TLS handshake Postfix "
            "at may defers and delivers in plaintext only at the next attempt (after "
            "minimal_backoff_time), where tlspolicy falls back at once (later, not weaker)",
            None, "handshake-fallback-delayed"))
    if policy.level in (PostfixLevel.ENCRYPT, PostfixLevel.VERIFY, PostfixLevel.SECURE,
                        PostfixLevel.DANE):
        notes.append(PostfixWarning(
            binding, key, "tls", "a 5xx reply to STARTTLS makes Postfix bounce the message "
            "where tlspolicy defers (451 4.7.5), unless main.cf sets the "
            "smtp_delivery_status_filter the Postfix guide gives; Postfix's deferral texts "
            "and enhanced codes are its own", None, "starttls-5xx"))
    return tuple(notes)


