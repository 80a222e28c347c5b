"""Check the peer of a TLS connection after the handshake (SEMANTICS section 4).

The handshake runs without verification (see :mod:`.sslcontext`); this module
then judges the presented chain on three independent counts, so that
``tls_verify = optional`` can report every problem and ``ca`` / ``host`` fail
for the right reason:

* **trust** (:data:`~tlspolicy.Observation.CHAIN_NOT_TRUSTED`): a path from the
  leaf through the presented intermediates to a certificate of the CA bundle
  (``tls_ca``, else the system store), built and signature-checked by
  ``cryptography``'s X.509 verifier (``cryptography.x509.verification``, RFC 5280
  path validation).  CA certificates are judged as OpenSSL judges a CAfile, not
  by the WebPKI profile: basicConstraints must say cA, keyUsage is checked only
  when present (it must then allow keyCertSign; RFC 5280 section 6.1.4 (n)), and
  nothing else is required, so a private CA made with ``openssl req -x509``
  defaults (no keyUsage) is trusted.  Every certificate of the bundle is a trust
  anchor, also one that is not self-signed (a partial chain, as Postfix's
  ``tafile``), and its dates count as OpenSSL counts a CAfile's (unlike
  ``tafile``, whose anchors never expire).  The leaf's extensions are not
  judged, so a server certificate without ``serverAuth`` or without a
  subjectAltName is not called untrusted.  That verifier always
  checks dates, so trust is asked at several moments (now, and every edge of
  the validity windows involved): a chain that was valid at some moment is
  trusted, and its dates are reported separately.
* **dates** (:data:`~tlspolicy.Observation.CERTIFICATE_EXPIRED`): every presented
  certificate, and the trust anchor that completed the path, must be valid now.
* **names** (:data:`~tlspolicy.Observation.NAME_MISMATCH`): RFC 6125 matching
  with ``service-identity`` against every reference identity of the decision
  (the recipient domain or the MX host name; either may match).  Only
  subjectAltName dNSName (and iPAddress for an address-literal domain) count;
  the subject CN is used only when the certificate has no dNSName at all, as
  SEMANTICS requires.  ``service-identity`` no longer falls back to the CN, so
  that fallback is implemented here, with the same pattern rules.

Under DANE (:data:`~tlspolicy.Verification.DANE`) the chain is matched against
the TLSA records the caller passes, with
:func:`tlspolicy.policies.dane.match_chain`; PKIX trust does not count.

Getting the whole presented chain: Python 3.13 has
``SSLSocket.get_unverified_chain()``; Python 3.10 to 3.12 have the same method on
the private ``_sslobj`` and it is used when present.  Without either only the
leaf is known, and a chain whose intermediates the server sent is then judged
without them (reported in :attr:`PeerEvaluation.chain_complete`).
"""

from __future__ import annotations

import _ssl
import datetime
import functools
import ipaddress
import os
import ssl
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from tlspolicy.decision import Decision, PeerJudge
from tlspolicy.errors import MissingDependencyError, PolicyInputError, TlsPolicyError
from tlspolicy.outcomes import Observation, Verification
from tlspolicy.policies.dane import match_chain, parse_chain
from tlspolicy.policies.destination import dane_observations
from tlspolicy.reuse import ConnectionFacts, VerifiedAs

from .sslcontext import TlsSetupError

__all__ = [
    "PeerEvaluation",
    "evaluate_peer",
    "observation_for_verify_code",
    "peer_judge",
    "presented_chain",
]

# OpenSSL X509_V_ERR_* codes, for a caller whose handshake did verify and failed.
_EXPIRY_CODES: Final = frozenset({9, 10, 13, 14})  # not yet valid, expired, bad time fields
_NAME_CODES: Final = frozenset({62, 63, 64})  # hostname / email / IP mismatch


def observation_for_verify_code(code: int) -> Observation:
    """The certificate observation for an OpenSSL ``verify_code``.

    For callers whose context verifies during the handshake: an
    :class:`ssl.SSLCertVerificationError` is a certificate problem, never a
    handshake failure.  Dates (9, 10, 13, 14) and names (62-64) have their own
    observations; every other code (18-21 untrusted or self-signed, 7 bad
    signature, 24 invalid CA, ...) means the chain is not trusted.
    """
    if code in _EXPIRY_CODES:
        return Observation.CERTIFICATE_EXPIRED
    if code in _NAME_CODES:
        return Observation.NAME_MISMATCH
    return Observation.CHAIN_NOT_TRUSTED


def presented_chain(connection: ssl.SSLSocket | ssl.SSLObject) -> tuple[tuple[bytes, ...], bool]:
    """The DER chain the server presented, leaf first, and whether it is complete.

    ``complete`` is false when only the leaf could be read (no chain API).
    """
    public = getattr(connection, "get_unverified_chain", None)
    if public is not None:  # Python 3.13+
        return tuple(bytes(c) for c in public()), True
    private = getattr(getattr(connection, "_sslobj", None), "get_unverified_chain", None)
    if private is not None:  # Python 3.10 - 3.12: same OpenSSL call, not yet public
        chain = private() or []
        return tuple(c.public_bytes(_ssl.ENCODING_DER) for c in chain), True
    leaf = connection.getpeercert(binary_form=True)
    return ((leaf,) if leaf else ()), False


@attrs.frozen(slots=True)
class PeerEvaluation:
    """What the peer check found.

    ``problems`` are certificate observations in the order of the SEMANTICS
    table; ``verified`` is what the connection achieved from the facts (a
    trusted, in-date chain whose name matched is HOST even when only CA was
    asked for).  ``checked`` is false under ``tls_verify = no``, where nothing is
    evaluated.
    """

    problems: tuple[Observation, ...]
    verified: VerifiedAs
    checked: bool
    chain_length: int
    chain_complete: bool
    trusted: bool | None = None
    in_dates: bool | None = None
    matched_name: str | None = None
    dane_detail: str | None = None
    details: tuple[str, ...] = ()


def _x509() -> Any:
    try:
        from cryptography import x509  # the adapters extra
    except ImportError as exc:  # pragma: no cover - the adapters extra installs it
        raise MissingDependencyError.for_extra("peer checks", "cryptography",
                                               "adapters") from exc
    return x509


def _pem_files(ca_file: str | None) -> tuple[tuple[str, int], ...]:
    if ca_file is not None:
        paths = [ca_file]
    else:
        defaults = ssl.get_default_verify_paths()
        paths = [p for p in (defaults.cafile, defaults.openssl_cafile) if p]
        for directory in (defaults.capath, defaults.openssl_capath):
            if directory and os.path.isdir(directory):
                paths.extend(str(p) for p in sorted(Path(directory).iterdir())
                             if p.is_file() and not p.name.endswith((".0.old", ".r0")))
    result: list[tuple[str, int]] = []
    for path in dict.fromkeys(paths):
        try:
            result.append((path, os.stat(path).st_mtime_ns))
        except OSError as exc:
            if ca_file is not None:
                raise TlsSetupError(f"tls_ca {ca_file!r} cannot be read: {exc}") from exc
    return tuple(result)


@functools.lru_cache(maxsize=32)
def _anchors(files: tuple[tuple[str, int], ...], explicit: bool) -> tuple[Any, ...]:
    x509 = _x509()
    seen: dict[bytes, Any] = {}
    for path, _mtime in files:
        try:
            data = Path(path).read_bytes()
            certs = x509.load_pem_x509_certificates(data)
        except (OSError, ValueError) as exc:
            if explicit:
                raise TlsSetupError(f"tls_ca {path!r} holds no usable PEM certificate: {exc}"
                                    ) from exc
            continue  # a stray non-certificate file in the system directory
        for cert in certs:
            seen.setdefault(cert.fingerprint(_sha256()), cert)
    return tuple(seen.values())


def _sha256() -> Any:
    from cryptography.hazmat.primitives import hashes  # the adapters extra

    return hashes.SHA256()


def trust_anchors(ca_file: str | None) -> tuple[Any, ...]:
    """The CA certificates trusted for ``tls_ca`` (``None``: the system store)."""
    return _anchors(_pem_files(ca_file), ca_file is not None)


def _in_window(cert: Any, moment: datetime.datetime) -> bool:
    return bool(cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc)


def _require_ca(_policy: Any, _cert: Any, constraints: Any) -> None:
    # The verifier itself also rejects cA false and checks pathLenConstraint.
    if not constraints.ca:
        raise ValueError("basicConstraints does not say cA")


def _key_cert_sign_if_present(_policy: Any, _cert: Any, usage: Any) -> None:
    # RFC 5280 6.1.4 (n): keyUsage on a CA is checked only when present.
    if usage is not None and not usage.key_cert_sign:
        raise ValueError("keyUsage is present without keyCertSign")


@functools.lru_cache(maxsize=1)
def _ca_policy() -> Any:
    """CA checks as OpenSSL applies them to a CAfile, without VERIFY_X509_STRICT."""
    from cryptography.x509 import BasicConstraints, KeyUsage  # the adapters extra
    from cryptography.x509 import verification as v  # the adapters extra

    return (v.ExtensionPolicy.permit_all()
            .require_present(BasicConstraints, v.Criticality.AGNOSTIC, _require_ca)
            .may_be_present(KeyUsage, v.Criticality.AGNOSTIC, _key_cert_sign_if_present))


def _check_trust(
    leaf: Any, intermediates: Sequence[Any], anchors: Sequence[Any], now: datetime.datetime
) -> tuple[bool, Any | None, str]:
    """Whether some moment exists at which the chain validates to an anchor."""
    if not anchors:
        return False, None, "no trust anchor is available (empty CA bundle)"
    from cryptography.x509 import verification as v  # the adapters extra

    store = v.Store(list(anchors))
    issuers = {c.issuer for c in (leaf, *intermediates)}
    involved = [leaf, *intermediates, *(a for a in anchors if a.subject in issuers)]
    edges = {t for c in involved for t in (c.not_valid_before_utc, c.not_valid_after_utc)}
    moments = [now, *sorted(edges)]
    last_error = ""
    for moment in moments[:16]:
        builder = (v.PolicyBuilder().store(store).time(moment)
                   .extension_policies(ca_policy=_ca_policy(),
                                       ee_policy=v.ExtensionPolicy.permit_all()))
        try:
            verified = builder.build_client_verifier().verify(leaf, list(intermediates))
        except v.VerificationError as exc:
            # The error at ``now`` is the one worth showing.
            last_error = last_error or str(exc)
            continue
        anchor = verified.chain[-1]
        return True, anchor, f"chain verified to {anchor.subject.rfc4514_string()}"
    return False, None, f"no path to a trusted CA: {last_error}"


def _reference_id(name: str) -> Any:
    from service_identity.hazmat import DNS_ID, IPAddress_ID  # the adapters extra

    try:
        return IPAddress_ID(str(ipaddress.ip_address(name)))
    except ValueError:
        return DNS_ID(name)


def _name_patterns(cert: Any) -> list[Any]:
    """dNSName and iPAddress patterns; the CN only when there is no dNSName at all.

    Built entry by entry (not with ``extract_patterns``) so that one malformed
    entry (``*.test``, two wildcards) matches nothing instead of failing the
    whole check.
    """
    from service_identity.exceptions import CertificateError  # the adapters extra
    from service_identity.hazmat import DNSPattern, IPAddressPattern  # the adapters extra

    x509 = _x509()
    patterns: list[Any] = []
    dns_names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        dns_names = list(san.get_values_for_type(x509.DNSName))
        patterns.extend(IPAddressPattern(ip) for ip in san.get_values_for_type(x509.IPAddress))
    # SEMANTICS 4: the CN counts only when there is no dNSName at all.
    candidates = dns_names or [
        str(attr.value) for attr in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    for name in candidates:
        try:
            patterns.append(DNSPattern.from_bytes(name.encode("utf-8")))
        except (CertificateError, UnicodeError):
            continue
    return patterns


def _match_name(cert: Any, identities: Iterable[str]) -> str | None:
    from service_identity.exceptions import VerificationError  # the adapters extra
    from service_identity.hazmat import verify_service_identity  # the adapters extra

    patterns = _name_patterns(cert)
    for name in identities:
        try:
            reference = _reference_id(name)
        except (ValueError, TypeError):
            continue
        try:
            verify_service_identity(patterns, obligatory_ids=[reference], optional_ids=[])
        except VerificationError:
            continue
        return name
    return None


def evaluate_peer(
    decision: Decision,
    chain: Sequence[bytes],
    *,
    now: datetime.datetime,
    chain_complete: bool = True,
    tlsa_records: Iterable[Any] | None = None,
) -> PeerEvaluation:
    """Judge a presented chain (DER, leaf first) as ``decision.verification`` says.

    ``tlsa_records`` (:class:`tlspolicy.TlsaRecord`) are used when the
    verification is DANE and ignored otherwise; by default the usable records
    the decision carries (``decision.tlsa_records``).  ``now`` must be
    timezone-aware.  Fold the result with
    ``decision.after_certificate(result.problems)``.
    """
    if now.tzinfo is None:
        raise TlsPolicyError(f"now must be timezone-aware, got {now!r}")
    verification = decision.verification
    if not chain:
        # The server completed a handshake without a certificate (anonymous
        # suites are off in OpenSSL's defaults, so this is rare): nothing is
        # trusted, dated or named.
        problems: tuple[Observation, ...] = (
            (Observation.TLSA_MISMATCH,) if verification is Verification.DANE else
            (Observation.CHAIN_NOT_TRUSTED, Observation.CERTIFICATE_EXPIRED,
             Observation.NAME_MISMATCH))
        return PeerEvaluation(problems if verification is not Verification.NO else (),
                              VerifiedAs.NONE, verification is not Verification.NO, 0,
                              chain_complete, details=("the server presented no certificate",))
    if verification is Verification.NO:
        return PeerEvaluation((), VerifiedAs.NONE, False, len(chain), chain_complete)
    if verification is Verification.DANE:
        return _evaluate_dane(decision, chain, now, chain_complete, tlsa_records)

    try:
        parsed = parse_chain(chain)
    except PolicyInputError:
        return PeerEvaluation(
            (Observation.CHAIN_NOT_TRUSTED, Observation.CERTIFICATE_EXPIRED,
             Observation.NAME_MISMATCH), VerifiedAs.NONE, True, len(chain),
            chain_complete, details=("the leaf certificate cannot be parsed",))
    leaf, intermediates = parsed[0], [c for c in parsed[1:] if c is not None]
    assert leaf is not None  # parse_chain raises for a leaf it cannot parse
    details: list[str] = []

    trusted, anchor, trust_detail = _check_trust(
        leaf, intermediates, trust_anchors(decision.parameters.ca_file), now)
    details.append(trust_detail)
    dated = [leaf, *intermediates, *([anchor] if anchor is not None else [])]
    out_of_date = [c for c in dated if not _in_window(c, now)]
    for cert in out_of_date:
        details.append(f"{cert.subject.rfc4514_string()} is valid from "
                       f"{cert.not_valid_before_utc.isoformat()} to "
                       f"{cert.not_valid_after_utc.isoformat()}, not at {now.isoformat()}")
    matched = _match_name(leaf, decision.reference_identities)
    if matched is None:
        details.append(f"the certificate names none of {', '.join(decision.reference_identities)}")

    found: list[Observation] = []
    if not trusted:
        found.append(Observation.CHAIN_NOT_TRUSTED)
    if out_of_date:
        found.append(Observation.CERTIFICATE_EXPIRED)
    if matched is None:
        found.append(Observation.NAME_MISMATCH)
    verified = VerifiedAs.NONE
    if trusted and not out_of_date:
        verified = VerifiedAs.HOST if matched is not None else VerifiedAs.CA
    return PeerEvaluation(tuple(found), verified, True, len(chain), chain_complete,
                          trusted=trusted, in_dates=not out_of_date, matched_name=matched,
                          details=tuple(details))


def peer_judge(*, now: datetime.datetime,
               tlsa_records: Iterable[Any] | None = None) -> PeerJudge:
    """The judge :meth:`tlspolicy.decision.RequiredSecurity.check` needs: :func:`evaluate_peer`.

    A recorded chain is judged for a later message's decision exactly as a
    fresh connection's chain is judged by the drivers, at ``now``.
    """
    records = None if tlsa_records is None else tuple(tlsa_records)

    def judge(decision: Decision, facts: ConnectionFacts) -> tuple[Observation, ...]:
        return evaluate_peer(decision, facts.chain, now=now, chain_complete=facts.chain_complete,
                             tlsa_records=records).problems

    return judge


def _evaluate_dane(decision: Decision, chain: Sequence[bytes], now: datetime.datetime,
                   chain_complete: bool, tlsa_records: Iterable[Any] | None) -> PeerEvaluation:
    records = list(decision.tlsa_records if tlsa_records is None else tlsa_records)
    if not records:
        raise TlsPolicyError(
            "the decision says DANE applies but decision.tlsa_records is empty and no "
            "tlsa_records were passed to the driver")
    result = match_chain(list(chain), records,
                         reference_names=decision.reference_identities, now=now)
    problems = dane_observations(result)
    return PeerEvaluation(problems, VerifiedAs.DANE if result.ok else VerifiedAs.NONE, True,
                          len(chain), chain_complete, dane_detail=result.detail,
                          details=(result.detail,))
