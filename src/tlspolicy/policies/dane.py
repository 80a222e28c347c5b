"""DANE for SMTP (RFC 6698, RFC 7671, RFC 7672): TLSA records and chain matching.

The caller performs the DNSSEC-validated lookups and the TLS handshake; this module
parses TLSA records, classifies what the lookup found (:class:`TlsaLookup`), and
decides whether a presented certificate chain (DER bytes, leaf first) matches the
records under DANE rules (:func:`match_chain`).  ``now`` is a parameter; nothing
here reads the clock, DNS or a socket.

Certificate parsing and signature checks use the ``cryptography`` package, which is
imported only when needed; without it :class:`~tlspolicy.errors.MissingDependencyError`
names the ``tlspolicy[dane]`` extra.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import attrs

from ..errors import MissingDependencyError, PolicyInputError, excerpt, strings_tuple

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

__all__ = [
    "DaneApplicability",
    "DaneMatchResult",
    "DaneProblem",
    "TlsaLookup",
    "TlsaLookupStatus",
    "TlsaMatchingType",
    "TlsaRecord",
    "TlsaSelector",
    "TlsaUsage",
    "classify_tlsa",
    "dns_name_matches",
    "match_chain",
    "parse_chain",
]

_DIGEST_SIZES: Final = {1: 32, 2: 64}
_HEX_RE: Final = re.compile(r"[0-9A-Fa-f]*")


class TlsaUsage(enum.IntEnum):
    """Certificate usage field (RFC 6698 section 2.1.1, names from RFC 7218)."""

    PKIX_TA = 0
    PKIX_EE = 1
    DANE_TA = 2
    DANE_EE = 3


class TlsaSelector(enum.IntEnum):
    """Selector field: what part of the certificate is matched."""

    CERT = 0
    SPKI = 1


class TlsaMatchingType(enum.IntEnum):
    """Matching type field: how the selected bytes are compared."""

    FULL = 0
    SHA256 = 1
    SHA512 = 2


class DaneProblem(enum.Enum):
    """A certificate problem that counts under DANE semantics (RFC 7672 section 3.1)."""

    #: No usable TLSA record matches the chain (or the chain does not lead to the anchor).
    TLSA_MISMATCH = "tlsa-mismatch"
    #: DANE-TA only: the leaf (or an intermediate below the anchor) is outside its dates.
    CERTIFICATE_EXPIRED = "certificate-expired"
    #: DANE-TA only: the leaf does not carry any of the reference names.
    NAME_MISMATCH = "name-mismatch"


# ------------------------------------------------------------------- records


def _byte_field(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 255:
        raise PolicyInputError(f"TLSA {attribute.name} {value!r} is not an integer in 0..255")


def _data_field(instance: object, attribute: attrs.Attribute[bytes], value: bytes) -> None:
    if not isinstance(value, bytes):
        raise PolicyInputError(f"TLSA data must be bytes, not {type(value).__name__}")


@attrs.frozen(slots=True)
class TlsaRecord:
    """One TLSA record: usage, selector, matching type and association data.

    Any values 0..255 can be held, as DNS can carry them; whether a record counts
    is :attr:`is_usable`.  ``data`` of the wrong digest length is held too (it came
    from DNS) and is unusable; :meth:`parse` of presentation text refuses it.
    """

    usage: int = attrs.field(validator=_byte_field)
    selector: int = attrs.field(validator=_byte_field)
    mtype: int = attrs.field(validator=_byte_field)
    data: bytes = attrs.field(validator=_data_field, repr=lambda d: d.hex())

    @classmethod
    def parse(cls, text: str) -> TlsaRecord:
        """Parse presentation format ``"3 1 1 <hex>"``; the hex may contain whitespace.

        Checks the three fields are decimal 0..255, the data is non-empty
        hexadecimal of whole bytes, and SHA-256 (1) / SHA-512 (2) data is 32 / 64
        bytes.  Raises :class:`~tlspolicy.errors.PolicyInputError` naming the field.
        """
        fields = text.split()
        if len(fields) < 4:
            raise PolicyInputError(
                f"TLSA record {excerpt(text)}: expected 'usage selector matching-type hex-data'"
            )
        numbers: list[int] = []
        for name, field in zip(("usage", "selector", "matching type"), fields[:3], strict=True):
            # At most three ASCII digits before int(): a field of thousands of digits
            # would otherwise end in int()'s own ValueError (its 4,300-digit limit).
            if (len(field) > 3 or not field.isdigit() or not field.isascii()
                    or int(field) > 255):
                raise PolicyInputError(
                    f"TLSA record {excerpt(text)}: {name} {excerpt(field)} is not a number "
                    "in 0..255"
                )
            numbers.append(int(field))
        hex_data = "".join(fields[3:])
        if _HEX_RE.fullmatch(hex_data) is None:
            raise PolicyInputError(f"TLSA record {excerpt(text)}: data is not hexadecimal")
        if len(hex_data) % 2:
            raise PolicyInputError(
                f"TLSA record {excerpt(text)}: data has an odd number of hex digits "
                f"({len(hex_data)})"
            )
        data = bytes.fromhex(hex_data)
        mtype = numbers[2]
        if mtype in _DIGEST_SIZES and len(data) != _DIGEST_SIZES[mtype]:
            raise PolicyInputError(
                f"TLSA record {excerpt(text)}: matching type {mtype} needs "
                f"{_DIGEST_SIZES[mtype]} bytes of data, found {len(data)}"
            )
        return cls(usage=numbers[0], selector=numbers[1], mtype=mtype, data=data)

    @classmethod
    def for_certificate(
        cls, cert_der: bytes, usage: int, selector: int, mtype: int
    ) -> TlsaRecord:
        """The record with the given parameters that matches ``cert_der``."""
        if selector not in (0, 1) or mtype not in (0, 1, 2):
            raise PolicyInputError(
                f"TLSA selector {selector} / matching type {mtype}: only 0-1 / 0-2 can be "
                "computed"
            )
        selected = cert_der if selector == 0 else _spki_der(cert_der, 0)
        return cls(usage=usage, selector=selector, mtype=mtype, data=_digest(mtype, selected))

    def to_text(self) -> str:
        """Presentation format, hex in upper case (as zone files usually show it)."""
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex().upper()}"

    @property
    def unusable_reason(self) -> str | None:
        """Why the record is unusable for SMTP (RFC 7672 section 3.1.3), or ``None``."""
        if self.usage not in (TlsaUsage.DANE_TA, TlsaUsage.DANE_EE):
            return f"usage {self.usage} is not DANE-TA(2) or DANE-EE(3)"
        if self.selector not in (TlsaSelector.CERT, TlsaSelector.SPKI):
            return f"selector {self.selector} is unknown"
        if self.mtype not in (0, 1, 2):
            return f"matching type {self.mtype} is unknown"
        if not self.data:
            return "data is empty"
        expected = _DIGEST_SIZES.get(self.mtype)
        if expected is not None and len(self.data) != expected:
            return f"matching type {self.mtype} data is {len(self.data)} bytes, not {expected}"
        return None

    @property
    def is_usable(self) -> bool:
        """Whether the record counts for SMTP: usage 2 or 3, known selector and type."""
        return self.unusable_reason is None

    def matches(self, cert_der: bytes) -> bool:
        """Whether this record's data matches the certificate (ignoring usage)."""
        if not self.is_usable:
            return False
        selected = cert_der if self.selector == TlsaSelector.CERT else _spki_der(cert_der, 0)
        return _digest(self.mtype, selected) == self.data


def _digest(mtype: int, data: bytes) -> bytes:
    if mtype == TlsaMatchingType.SHA256:
        return hashlib.sha256(data).digest()
    if mtype == TlsaMatchingType.SHA512:
        return hashlib.sha512(data).digest()
    return data


def _der_element(data: bytes, pos: int) -> tuple[int, int, int]:
    """Return (tag, content start, end) of the DER element at ``pos``."""
    if pos + 2 > len(data):
        raise ValueError("truncated")
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise ValueError("bad length")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise ValueError("truncated")
    return tag, pos, pos + length


def _spki_der(cert_der: bytes, index: int) -> bytes:
    """The exact SubjectPublicKeyInfo bytes of a DER certificate, as presented.

    Walked by hand rather than re-encoded, so the digest covers the server's own
    bytes (RFC 6698 section 2.1.2).
    """
    try:
        tag, start, _ = _der_element(cert_der, 0)  # Certificate
        if tag != 0x30:
            raise ValueError("not a SEQUENCE")
        tag, pos, tbs_end = _der_element(cert_der, start)  # TBSCertificate
        if tag != 0x30:
            raise ValueError("no tbsCertificate")
        tag, _, end = _der_element(cert_der, pos)
        if tag == 0xA0:  # explicit version
            pos = end
        for _field in ("serial", "signature", "issuer", "validity", "subject"):
            _, _, pos = _der_element(cert_der, pos)
        tag, _, end = _der_element(cert_der, pos)
        if tag != 0x30 or end > tbs_end:
            raise ValueError("no subjectPublicKeyInfo")
        return cert_der[pos:end]
    except ValueError as exc:
        raise PolicyInputError(
            f"certificate {index} of the chain is not a DER X.509 certificate ({exc})"
        ) from None


# -------------------------------------------------------------------- lookups


class TlsaLookupStatus(enum.Enum):
    """What the caller's TLSA lookup for one MX host found.

    ``RECORDS``, ``NODATA`` and ``NXDOMAIN`` are DNSSEC-validated (secure) answers.
    """

    #: The MX host (or its TLSA answer) is not DNSSEC-signed; TLSA not used.
    INSECURE = "insecure"
    #: Secure answer with one or more TLSA records.
    RECORDS = "records"
    #: Secure answer: the name exists but has no TLSA records.
    NODATA = "nodata"
    #: Secure answer: the TLSA name does not exist.
    NXDOMAIN = "nxdomain"
    #: The lookup failed (SERVFAIL, timeout): the answer's security is unknown.
    FAILED = "failed"
    #: DNSSEC validation failed.
    BOGUS = "bogus"


class DaneApplicability(enum.Enum):
    """The classification that drives SEMANTICS section 5's DANE table."""

    #: Secure, with at least one usable record: DANE applies.
    USABLE = "usable"
    #: Secure records, none usable: TLS required, verification from elsewhere.
    UNUSABLE_ONLY = "unusable-only"
    #: Secure denial (NODATA/NXDOMAIN): configuration and MTA-STS apply.
    NONE = "none"
    #: Lookup failed or bogus: do not use the host.
    FAILED = "failed"
    #: Not secure: configuration and MTA-STS apply.
    INSECURE = "insecure"


def _records_tuple(value: Iterable[TlsaRecord]) -> tuple[TlsaRecord, ...]:
    records = tuple(value)
    for record in records:
        if not isinstance(record, TlsaRecord):
            raise PolicyInputError(f"TLSA records must be TlsaRecord, not {type(record).__name__}")
    return records


def _names_tuple(value: Iterable[str]) -> tuple[str, ...]:
    return strings_tuple(
        value, one_string="TLSA reference_names must be a sequence of names, not one string",
        not_a_string=lambda name: f"TLSA reference names must be str, not {type(name).__name__}")


def _check_lookup(instance: TlsaLookup, attribute: attrs.Attribute[tuple[TlsaRecord, ...]],
                  value: tuple[TlsaRecord, ...]) -> None:
    if instance.status is TlsaLookupStatus.RECORDS and not value:
        raise PolicyInputError("TLSA lookup status 'records' needs at least one record")
    if instance.status is not TlsaLookupStatus.RECORDS and value:
        raise PolicyInputError(
            f"TLSA lookup status {instance.status.value!r} cannot carry records"
        )


@attrs.frozen(slots=True)
class TlsaLookup:
    """What the caller observed when looking up TLSA records for one MX host.

    ``base_domain`` is the TLSA base domain (RFC 7672 section 2.2.3: the MX host
    name, or its secure CNAME target) when known; ``reference_names`` are further
    names a DANE-TA certificate may carry (RFC 7672 section 3.2.2: the CNAME
    target and the original MX host name), checked after the base domain;
    ``detail`` is free text for logs.
    """

    status: TlsaLookupStatus = attrs.field(
        validator=attrs.validators.instance_of(TlsaLookupStatus)
    )
    records: tuple[TlsaRecord, ...] = attrs.field(
        default=(), converter=_records_tuple, validator=_check_lookup
    )
    base_domain: str | None = None
    detail: str | None = None
    reference_names: tuple[str, ...] = attrs.field(default=(), converter=_names_tuple)

    @property
    def usable_records(self) -> tuple[TlsaRecord, ...]:
        """The records that count for SMTP, in the order given."""
        return tuple(r for r in self.records if r.is_usable)

    def classify(self) -> DaneApplicability:
        """Same as :func:`classify_tlsa`."""
        return classify_tlsa(self)


_STATUS_CLASS: Final = {
    TlsaLookupStatus.INSECURE: DaneApplicability.INSECURE,
    TlsaLookupStatus.NODATA: DaneApplicability.NONE,
    TlsaLookupStatus.NXDOMAIN: DaneApplicability.NONE,
    TlsaLookupStatus.FAILED: DaneApplicability.FAILED,
    TlsaLookupStatus.BOGUS: DaneApplicability.FAILED,
}


def classify_tlsa(lookup: TlsaLookup) -> DaneApplicability:
    """Classify a lookup: usable / unusable-only / none / failed / insecure."""
    if lookup.status is TlsaLookupStatus.RECORDS:
        if lookup.usable_records:
            return DaneApplicability.USABLE
        return DaneApplicability.UNUSABLE_ONLY
    return _STATUS_CLASS[lookup.status]


# -------------------------------------------------------------------- names


def _normalise_name(name: str) -> str:
    lowered = name.lower()
    return lowered[:-1] if lowered.endswith(".") else lowered


def dns_name_matches(pattern: str, reference: str) -> bool:
    """RFC 6125 matching of one certificate name against one reference name.

    Case-insensitive, a trailing dot ignored.  A wildcard counts only as the whole
    leftmost label (``*.example.com``) and stands for exactly one non-empty label;
    a wildcard over fewer than two labels (``*.com``) and partial wildcards
    (``mx*.example.com``) never match.  Compare A-labels.
    """
    pat = _normalise_name(pattern)
    ref = _normalise_name(reference)
    if not pat or not ref or "*" in ref:
        return False
    if pat.startswith("*."):
        rest = pat[2:]
        if "*" in rest or rest.count(".") < 1:
            return False
        first, dot, ref_rest = ref.partition(".")
        return bool(first) and bool(dot) and ref_rest == rest
    if "*" in pat:
        return False
    return pat == ref


# ------------------------------------------------------------------ matching


@attrs.frozen(slots=True)
class DaneMatchResult:
    """Outcome of matching a chain against TLSA records.

    ``record`` is the record that authenticated the chain, or for DANE-TA the
    anchor record whose path is reported when only date/name problems remain;
    ``None`` when nothing matched.  ``problems`` is empty exactly when the chain
    is acceptable under DANE.  ``anchor_index`` is the chain position of the
    DANE-TA anchor (``None`` for DANE-EE, or when the anchor is the record's own
    full certificate or key).  ``detail`` explains the result in words.
    """

    record: TlsaRecord | None
    problems: tuple[DaneProblem, ...]
    anchor_index: int | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        """Whether DANE authenticated the peer."""
        return not self.problems

    @property
    def usage(self) -> TlsaUsage | None:
        """Usage of the matched record (DANE_EE or DANE_TA), ``None`` if none matched."""
        return None if self.record is None else TlsaUsage(self.record.usage)


def _crypto() -> Any:
    """Import ``cryptography.x509`` lazily, naming the extra that provides it."""
    try:
        from cryptography import x509 as x509_module  # the dane extra
    except ImportError as exc:
        raise MissingDependencyError.for_extra("DANE certificate matching", "cryptography",
                                               "dane") from exc
    return x509_module


def parse_chain(chain: Sequence[bytes]) -> list[x509.Certificate | None]:
    """The certificates of a presented chain (DER, leaf first), ``None`` for one after the
    leaf that cannot be parsed: it can never be on a path, so it is passed over, not an
    error.  A leaf that cannot be parsed is a :class:`~tlspolicy.errors.PolicyInputError`."""
    x509_module = _crypto()
    certs: list[x509.Certificate | None] = []
    for index, der in enumerate(chain):
        try:
            certs.append(x509_module.load_der_x509_certificate(der))
        except ValueError:
            if index == 0:
                raise PolicyInputError(
                    "certificate 0 of the chain is not a DER X.509 certificate") from None
            certs.append(None)
    return certs


def _require_aware(now: datetime) -> None:
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise PolicyInputError(f"now must be a timezone-aware datetime, got {now!r}")


def _signed_by_key(cert: x509.Certificate, key: CertificatePublicKeyTypes) -> bool:
    """Whether ``cert``'s signature verifies under ``key``."""
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm  # the dane extra

    # the dane extra
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa

    signature = cert.signature
    tbs = cert.tbs_certificate_bytes
    try:
        hash_alg = cert.signature_hash_algorithm
        params = cert.signature_algorithm_parameters
        if isinstance(key, rsa.RSAPublicKey):
            if not isinstance(params, padding.PSS | padding.PKCS1v15) or hash_alg is None:
                return False
            key.verify(signature, tbs, params, hash_alg)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if not isinstance(params, ec.ECDSA):
                return False
            key.verify(signature, tbs, params)
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, tbs)
        elif isinstance(key, dsa.DSAPublicKey):
            if hash_alg is None:
                return False
            key.verify(signature, tbs, hash_alg)
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    return cert.issuer == issuer.subject and _signed_by_key(cert, issuer.public_key())


def _is_ca(cert: x509.Certificate) -> bool:
    x509_module = _crypto()
    try:
        ext = cert.extensions.get_extension_for_class(x509_module.BasicConstraints)
    except x509_module.ExtensionNotFound:
        return False
    return bool(ext.value.ca)


def _in_dates(cert: x509.Certificate, now: datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _leaf_names(cert: x509.Certificate) -> list[str]:
    """dNSName subjectAltNames; the subject CN only when there is no dNSName at all."""
    x509_module = _crypto()
    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509_module.SubjectAlternativeName)
        names = [str(n) for n in san.value.get_values_for_type(x509_module.DNSName)]
    except x509_module.ExtensionNotFound:
        pass
    if names:
        return names
    return [
        str(attr.value)
        for attr in cert.subject.get_attributes_for_oid(x509_module.NameOID.COMMON_NAME)
    ]


@attrs.frozen(slots=True)
class _TaCandidate:
    record: TlsaRecord
    anchor_index: int | None
    # Chain positions whose issuers must be checked: chain[i] issued by chain[i+1]
    # for i < top, and chain[top] signed by the anchor (when the anchor is not chain[top]).
    top: int
    anchor_key: Any


def match_chain(
    chain: Sequence[bytes],
    records: Iterable[TlsaRecord],
    *,
    reference_names: Sequence[str],
    now: datetime,
) -> DaneMatchResult:
    """Match a presented chain (DER, leaf first) against TLSA records (RFC 7672 3.1).

    Only usable records count (usage 2 or 3; RFC 7672 section 3.1.3); passing none
    is a caller error.  DANE-EE(3): the leaf must match; names and dates are
    ignored.  DANE-TA(2): some certificate above the leaf must match (the leaf
    itself only when it is self-issued, RFC 7671 section 5.2), or a ``2 0 0`` /
    ``2 1 0`` record supplies the anchor certificate / key itself when the server
    left it out (RFC 7671 section 5.2.2); the chain from the leaf up to the anchor
    must then be correctly signed, with CA intermediates, the leaf and the
    intermediates below the anchor within their dates at ``now``, and the leaf
    must carry one of ``reference_names`` (the TLSA base domain / MX host name).
    DANE-EE is tried first; among DANE-TA anchors the one with fewest problems
    wins.
    """
    _require_aware(now)
    x509_module = _crypto()
    if not chain:
        raise PolicyInputError("the presented certificate chain is empty")
    for index, der in enumerate(chain):
        if not isinstance(der, bytes):
            raise PolicyInputError(f"certificate {index} of the chain is not bytes")
    usable = [r for r in records if r.is_usable]
    if not usable:
        raise PolicyInputError("no usable TLSA record to match (usage 2 or 3 needed)")
    names = [_normalise_name(n) for n in reference_names]
    if not names:
        raise PolicyInputError("reference_names is empty: DANE-TA needs the MX host name")

    leaf_der = chain[0]
    leaf_spki = _spki_der(leaf_der, 0)
    for record in usable:
        if record.usage != TlsaUsage.DANE_EE:
            continue
        selected = leaf_der if record.selector == TlsaSelector.CERT else leaf_spki
        if _digest(record.mtype, selected) == record.data:
            return DaneMatchResult(record=record, problems=(), detail="DANE-EE record matches the "
                                   "leaf certificate")

    ta_records = [r for r in usable if r.usage == TlsaUsage.DANE_TA]
    if not ta_records:
        return DaneMatchResult(record=None, problems=(DaneProblem.TLSA_MISMATCH,),
                               detail="no DANE-EE record matches the leaf certificate")

    certs = parse_chain(chain)
    leaf = certs[0]
    assert leaf is not None

    candidates: list[_TaCandidate] = []
    for record in ta_records:
        for index, cert in enumerate(certs):
            if cert is None:
                continue
            if index == 0 and cert.issuer != cert.subject:
                continue
            selected = chain[index] if record.selector == TlsaSelector.CERT else (
                _spki_der(chain[index], index)
            )
            if _digest(record.mtype, selected) == record.data:
                candidates.append(_TaCandidate(record, index, index, None))
        if record.mtype == TlsaMatchingType.FULL:
            anchor_key = _anchor_key_from_record(record, x509_module)
            if anchor_key is None:
                continue
            for index, cert in enumerate(certs):
                if cert is not None and _signed_by_key(cert, anchor_key):
                    candidates.append(_TaCandidate(record, None, index, anchor_key))

    best: DaneMatchResult | None = None
    for candidate in candidates:
        result = _evaluate_ta(candidate, certs, names, now)
        if result is None:
            continue
        if best is None or len(result.problems) < len(best.problems):
            best = result
        if best.ok:
            break
    if best is not None:
        return best
    if candidates:
        return DaneMatchResult(record=None, problems=(DaneProblem.TLSA_MISMATCH,),
                               detail="a DANE-TA anchor matches but the chain from the leaf "
                               "to it is not validly signed")
    return DaneMatchResult(record=None, problems=(DaneProblem.TLSA_MISMATCH,),
                           detail="no TLSA record matches any certificate of the chain")


def _anchor_key_from_record(record: TlsaRecord, x509_module: Any) -> Any:
    """The anchor public key carried in full by a ``2 0 0`` or ``2 1 0`` record."""
    from cryptography.hazmat.primitives.serialization import load_der_public_key  # the dane extra

    try:
        if record.selector == TlsaSelector.CERT:
            return x509_module.load_der_x509_certificate(record.data).public_key()
        return load_der_public_key(record.data)
    except (ValueError, TypeError):
        return None


def _evaluate_ta(
    candidate: _TaCandidate,
    certs: Sequence[x509.Certificate | None],
    names: Sequence[str],
    now: datetime,
) -> DaneMatchResult | None:
    """Check one DANE-TA path; ``None`` when the path itself is broken."""
    top = candidate.top
    for index in range(top):
        cert, issuer = certs[index], certs[index + 1]
        if cert is None or issuer is None or not _issued_by(cert, issuer):
            return None
        if index + 1 != candidate.anchor_index and not _is_ca(issuer):
            return None  # an intermediate below the anchor must be a CA
    if candidate.anchor_index is None:
        top_cert = certs[top]
        if top_cert is None or not _signed_by_key(top_cert, candidate.anchor_key):
            return None
    problems: list[DaneProblem] = []
    last_dated = top if candidate.anchor_index is None else max(top - 1, 0)
    if any(
        (cert := certs[i]) is not None and not _in_dates(cert, now)
        for i in range(last_dated + 1)
    ):
        problems.append(DaneProblem.CERTIFICATE_EXPIRED)
    leaf = certs[0]
    assert leaf is not None
    leaf_names = _leaf_names(leaf)
    if not any(dns_name_matches(p, n) for p in leaf_names for n in names):
        problems.append(DaneProblem.NAME_MISMATCH)
    where = (
        f"certificate {candidate.anchor_index} of the chain"
        if candidate.anchor_index is not None else "the key in the TLSA record"
    )
    detail = f"DANE-TA anchor is {where}"
    if problems:
        detail += "; " + ", ".join(p.value for p in problems)
    return DaneMatchResult(record=candidate.record, problems=tuple(problems),
                           anchor_index=candidate.anchor_index, detail=detail)
