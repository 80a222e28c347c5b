"""MTA-STS (RFC 8461): TXT record, policy document, MX patterns, cache lifetime.

Everything here is pure.  The caller fetches the ``_mta-sts`` TXT record and the
policy over HTTPS, remembers when it did so, and passes ``now`` (a timezone-aware
``datetime``) to the lifetime functions; nothing here reads the clock.

Deliberate tolerances of the policy parser (each one keeps a policy in force that
a strict reading of the ABNF would throw away, which would only weaken delivery
security): empty lines are skipped, trailing whitespace on a line is dropped, and
a trailing dot on an ``mx`` value is removed.  Everything else that breaks RFC
8461 section 3.2 is rejected with :class:`MtaStsPolicyError`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import ClassVar, Final

import attrs

from ..errors import PolicyInputError, excerpt

__all__ = [
    "DEFAULT_REFRESH_INTERVAL",
    "MAX_MAX_AGE",
    "MAX_POLICY_BYTES",
    "CachedMtaStsPolicy",
    "FetchOutcome",
    "MtaStsPolicy",
    "MtaStsPolicyError",
    "MtaStsTxtRecord",
    "MtaStsTxtRecordError",
    "StsMode",
    "apply_fetch",
    "mx_matches",
    "parse_policy",
    "parse_txt_record",
    "policy_in_force",
    "select_txt_record",
]

#: Largest ``max_age`` RFC 8461 section 3.2 allows (about one year, in seconds).
MAX_MAX_AGE: Final = 31_557_600
#: Size bound on a policy document (RFC 8461 section 3.3: senders SHOULD limit to 64 KiB).
MAX_POLICY_BYTES: Final = 64 * 1024
#: Default proactive refresh interval (RFC 8461 section 10.2 suggests refreshing periodically).
DEFAULT_REFRESH_INTERVAL: Final = timedelta(days=1)

_TXT_VERSION: Final = "v=STSv1"
_ID_RE: Final = re.compile(r"[A-Za-z0-9]{1,32}")
_EXT_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}")
# sts-ext-value: printable ASCII except "=", ";" and space.
_TXT_EXT_VALUE_RE: Final = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+")
_TXT_FIELD_RE: Final = re.compile(r"([^=\s]*)([ \t]*)=([ \t]*)(.*)", re.DOTALL)
_LABEL_RE: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_DIGITS_RE: Final = re.compile(r"[0-9]{1,10}")
_STS_PREFIX_RE: Final = re.compile(r"v=STSv1[ \t]*;")
#: A character no policy line may hold (a tab may; CR and LF end lines and are checked
#: apart): one search of the whole document instead of a test per character.
_CONTROL_RE: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_WSP: Final = " \t"


class MtaStsTxtRecordError(PolicyInputError):
    """A ``_mta-sts`` TXT record that is not valid per RFC 8461 section 3.1.

    RFC 8461 says to treat the domain as having no policy then; TLS-RPT has no
    result type for it, so unlike :class:`MtaStsPolicyError` nothing is reported.
    """


class MtaStsPolicyError(PolicyInputError):
    """An MTA-STS policy document that is not valid per RFC 8461 section 3.2.

    ``line`` (1-based) and ``key`` say where, when known; the message names both.
    """

    #: The TLS-RPT result type (RFC 8460 section 4.3.2.2) for this failure.
    tlsrpt_result_type: ClassVar[str] = "sts-policy-invalid"

    def __init__(self, message: str, *, line: int | None = None, key: str | None = None) -> None:
        self.message = message
        self.line = line
        self.key = key
        where: list[str] = []
        if line is not None:
            where.append(f"line {line}")
        if key is not None:
            where.append(f"key {key!r}")
        text = f"MTA-STS policy: {', '.join(where)}: {message}" if where else (
            f"MTA-STS policy: {message}"
        )
        super().__init__(text)


class StsMode(enum.Enum):
    """The policy ``mode`` (RFC 8461 section 5)."""

    ENFORCE = "enforce"
    TESTING = "testing"
    NONE = "none"


# --------------------------------------------------------------------------- TXT


@attrs.frozen(slots=True)
class MtaStsTxtRecord:
    """A parsed ``_mta-sts`` TXT record: the policy ``id`` and any extension fields."""

    id: str
    extensions: tuple[tuple[str, str], ...] = ()
    #: What the parser ignored and why (a repeated field keeps its first value, RFC 8461
    #: section 3.2 applied to the record, SEMANTICS section 5); not part of equality.
    notes: tuple[str, ...] = attrs.field(default=(), eq=False)


def parse_txt_record(text: str) -> MtaStsTxtRecord:
    """Parse one ``_mta-sts`` TXT record (its strings already concatenated).

    Follows RFC 8461 section 3.1: ``v=STSv1`` first, then ``;``-separated fields;
    ``id`` (1-32 letters or digits) is required, extension fields ``name=value``
    are kept, anything unparseable is rejected.  A repeated field (``id``
    included) keeps its first value; the later ones are ignored and listed in
    :attr:`MtaStsTxtRecord.notes`, never a reason to drop the record
    (SEMANTICS section 5).  Whitespace after the final ``;`` is tolerated.
    """
    if not text.startswith(_TXT_VERSION):
        raise MtaStsTxtRecordError(
            f"MTA-STS TXT record must start with {_TXT_VERSION!r}: {text[:40]!r}"
        )
    rest = text[len(_TXT_VERSION):]
    if rest.strip(_WSP) == "":
        raise MtaStsTxtRecordError("MTA-STS TXT record has no 'id' field")
    if rest.lstrip(_WSP)[:1] != ";":
        raise MtaStsTxtRecordError(
            f"MTA-STS TXT record: expected ';' after {_TXT_VERSION!r}, found {rest[:20]!r}"
        )
    parts = rest.lstrip(_WSP)[1:].split(";")
    # One trailing ";" (optionally followed by whitespace) is allowed by the ABNF.
    if len(parts) > 1 and parts[-1].strip(_WSP) == "":
        parts = parts[:-1]
    record_id: str | None = None
    seen: set[str] = {"v"}
    extensions: list[tuple[str, str]] = []
    notes: list[str] = []
    for number, raw in enumerate(parts, start=1):
        field = raw.strip(_WSP)
        if field == "":
            raise MtaStsTxtRecordError(f"MTA-STS TXT record: field {number} is empty")
        match = _TXT_FIELD_RE.fullmatch(field)
        if match is None:
            raise MtaStsTxtRecordError(
                f"MTA-STS TXT record: field {number} {excerpt(field)} is not name=value"
            )
        name, space_before, space_after, value = match.groups()
        if name in seen:
            # RFC 8461 section 3.2's rule for the policy, applied to the record: the
            # first value counts. Rejecting would drop MTA-STS for the domain.
            notes.append(f"MTA-STS TXT record: field {number} repeats {excerpt(name)}; the "
                         "first value is kept, this one is ignored")
            continue
        seen.add(name)
        if name == "id":
            if space_before or space_after:
                raise MtaStsTxtRecordError(
                    "MTA-STS TXT record: 'id=' must not have whitespace around '='"
                )
            if _ID_RE.fullmatch(value) is None:
                raise MtaStsTxtRecordError(
                    f"MTA-STS TXT record: id {excerpt(value)} must be 1 to 32 letters or digits"
                )
            record_id = value
            continue
        if _EXT_NAME_RE.fullmatch(name) is None:
            raise MtaStsTxtRecordError(
                f"MTA-STS TXT record: field name {excerpt(name)} is not a valid extension name"
            )
        if _TXT_EXT_VALUE_RE.fullmatch(value) is None:
            raise MtaStsTxtRecordError(
                f"MTA-STS TXT record: value {excerpt(value)} of field {excerpt(name)} is not valid"
            )
        extensions.append((name, value))
    if record_id is None:
        raise MtaStsTxtRecordError("MTA-STS TXT record has no 'id' field")
    return MtaStsTxtRecord(id=record_id, extensions=tuple(extensions), notes=tuple(notes))


def select_txt_record(records: Sequence[str]) -> MtaStsTxtRecord | None:
    """Pick the MTA-STS record out of all TXT records at ``_mta-sts.<domain>``.

    RFC 8461 section 3.1: records not starting with ``v=STSv1;`` are discarded; if
    the number left is not exactly one the domain has no usable policy (``None``).
    A single remaining record that is invalid raises :class:`MtaStsTxtRecordError`
    so the caller can log why; it too means "no policy".
    """
    candidates = [r for r in records if _STS_PREFIX_RE.match(r)]
    if len(candidates) != 1:
        return None
    return parse_txt_record(candidates[0])


# ------------------------------------------------------------------ MX patterns


def _normalise_host(name: str) -> str:
    lowered = name.lower()
    return lowered[:-1] if lowered.endswith(".") else lowered


#: Patterns already found valid and normalised, so that a policy read back from a cache,
#: and the policy object made from it (and any copy ``attrs.evolve`` makes), do not
#: check the same pattern again: a check is a regex per label.  Bounded: emptied when
#: full.
_VALID_MX: dict[str, None] = {}
_VALID_MX_SIZE: Final = 4096


def _check_mx_pattern(value: str, *, line: int | None = None) -> str:
    """Validate one ``mx`` value (``["*."] Domain``) and return it normalised."""
    if value in _VALID_MX:
        return value
    pattern = value.lower()
    if pattern.endswith("."):
        pattern = pattern[:-1]
    body = pattern[2:] if pattern.startswith("*.") else pattern
    if not body.isascii():
        raise MtaStsPolicyError(
            f"mx {excerpt(value)} is not an ASCII host name (write IDNs as A-labels)", line=line,
            key="mx",
        )
    if len(body) > 253:
        raise MtaStsPolicyError(f"mx {excerpt(value)} is longer than 253 characters", line=line,
                                key="mx")
    labels = body.split(".")
    for label in labels:
        if _LABEL_RE.fullmatch(label) is None:
            if "*" in label:
                raise MtaStsPolicyError(
                    f"mx {excerpt(value)}: a wildcard is allowed only as a leading '*.'",
                    line=line, key="mx",
                )
            raise MtaStsPolicyError(
                f"mx {excerpt(value)}: label {label!r} is not a valid host name label",
                line=line, key="mx",
            )
    # Normalising is idempotent (a valid result never ends with a dot), so what is
    # returned here is itself valid and normalised.
    if len(_VALID_MX) >= _VALID_MX_SIZE:
        _VALID_MX.clear()
    _VALID_MX[pattern] = None
    return pattern


def mx_matches(pattern: str, host: str) -> bool:
    """Whether the MX ``host`` matches one policy ``mx`` pattern (RFC 8461 section 4.1).

    Comparison is case-insensitive and ignores a trailing dot on either side.  A
    pattern ``*.example.com`` matches a host with exactly one more, non-empty,
    leftmost label (``mx1.example.com``), never ``example.com`` itself nor
    ``a.b.example.com``.  Both names are compared as ASCII: pass A-labels.
    """
    pat = _normalise_host(pattern)
    name = _normalise_host(host)
    if not pat or not name:
        return False
    if pat.startswith("*."):
        suffix = pat[1:]  # ".example.com"
        if not name.endswith(suffix):
            return False
        first = name[: -len(suffix)]
        return first != "" and "." not in first
    return pat == name


# ------------------------------------------------------------------- policy


def _to_patterns(value: Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        raise MtaStsPolicyError("mx must be a sequence of patterns, not one string", key="mx")
    return tuple(value)


def _validate_mx(instance: MtaStsPolicy, attribute: attrs.Attribute[tuple[str, ...]],
                 value: tuple[str, ...]) -> None:
    for item in value:
        if _check_mx_pattern(item) != item:
            raise MtaStsPolicyError(
                f"mx {excerpt(item)} is not normalised (lower case, no final dot)", key="mx")
    if instance.mode is not StsMode.NONE and not value:
        raise MtaStsPolicyError(f"mode {instance.mode.value!r} needs at least one mx",
                                key="mx")


def _validate_max_age(instance: MtaStsPolicy, attribute: attrs.Attribute[int],
                      value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_MAX_AGE:
        raise MtaStsPolicyError(f"max_age {excerpt(value)} is not an integer in 0..{MAX_MAX_AGE}",
                                key="max_age")


@attrs.frozen(slots=True)
class MtaStsPolicy:
    """A valid MTA-STS policy (RFC 8461 section 3.2).

    ``mx`` holds the patterns in document order, lower case, without a final dot.
    Unknown keys of the document are not kept (RFC 8461 says to ignore them).
    """

    mode: StsMode = attrs.field(validator=attrs.validators.instance_of(StsMode))
    mx: tuple[str, ...] = attrs.field(converter=_to_patterns, validator=_validate_mx)
    max_age: int = attrs.field(validator=_validate_max_age)
    #: What :func:`parse_policy` ignored or changed (a repeated key, a capped max_age),
    #: one line each; not part of equality.
    notes: tuple[str, ...] = attrs.field(default=(), eq=False)

    def permits_mx(self, host: str) -> bool:
        """Whether ``host`` matches one of the policy's ``mx`` patterns.

        This is the pattern test only; what a mismatch means depends on the mode
        (enforce: do not use the host; testing: report; none: nothing), which is
        the resolver's business.
        """
        return any(mx_matches(pattern, host) for pattern in self.mx)

    def render(self) -> str:
        """The policy as a document (CRLF lines) that :func:`parse_policy` reads back."""
        lines = ["version: STSv1", f"mode: {self.mode.value}"]
        lines.extend(f"mx: {pattern}" for pattern in self.mx)
        lines.append(f"max_age: {self.max_age}")
        return "\r\n".join(lines) + "\r\n"

    def policy_strings(self) -> tuple[str, ...]:
        """The policy as TLS-RPT ``policy-string`` lines (RFC 8460 section 4.4)."""
        return tuple(self.render().split("\r\n")[:-1])


_SINGLE_KEYS: Final = ("version", "mode", "max_age")


def parse_policy(document: bytes | str) -> MtaStsPolicy:
    """Parse an MTA-STS policy document (the body fetched from ``/.well-known/mta-sts.txt``).

    Rules (RFC 8461 section 3.2): ``key: value`` lines ended by LF or CRLF;
    ``version: STSv1`` required; ``mode`` one of ``enforce``, ``testing``, ``none``
    (case-sensitive); one or more ``mx`` unless the mode is ``none``; ``max_age`` of
    1 to 10 digits, a value above 31557600 capped to it; unknown keys ignored.
    A repeated ``version``, ``mode`` or ``max_age`` keeps its first value and
    the rest are ignored.  What was ignored or capped is listed in
    :attr:`MtaStsPolicy.notes` (SEMANTICS section 5); never an invalid policy.
    Documents over 64 KiB are refused.  Raises :class:`MtaStsPolicyError`
    naming the line and key at fault.
    """
    if isinstance(document, str):
        raw = document.encode("utf-8", errors="surrogatepass")
        text = document
    else:
        raw = bytes(document)
        text = ""
    if len(raw) > MAX_POLICY_BYTES:
        raise MtaStsPolicyError(
            f"document is {len(raw)} bytes, more than the {MAX_POLICY_BYTES} byte limit"
        )
    if isinstance(document, bytes | bytearray | memoryview):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MtaStsPolicyError(
                f"byte {exc.start} is not valid UTF-8", line=raw[: exc.start].count(b"\n") + 1
            ) from None
    if text.strip(" \t\r\n") == "":
        raise MtaStsPolicyError("document is empty")

    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    values: dict[str, tuple[str, int]] = {}
    mx: list[str] = []
    notes: list[str] = []
    controls = _CONTROL_RE.search(text) is not None
    for number, line in enumerate(lines, start=1):
        if line.endswith("\r"):
            line = line[:-1]
        if "\r" in line:
            raise MtaStsPolicyError("bare CR inside a line (lines end with LF or CRLF)",
                                    line=number)
        if line.strip(_WSP) == "":
            continue
        if controls:
            found = _CONTROL_RE.search(line)
            if found is not None:
                raise MtaStsPolicyError(f"control character {found.group()!r} in the line",
                                        line=number)
        key, colon, rest = line.partition(":")
        if not colon:
            raise MtaStsPolicyError(f"{line[:60]!r} is not a 'key: value' line", line=number)
        if _EXT_NAME_RE.fullmatch(key) is None:
            raise MtaStsPolicyError(
                f"{key[:60]!r} is not a valid key (letters, digits, '_', '-', '.'; no"
                " space before ':')",
                line=number,
            )
        value = rest.strip(_WSP)
        if (key in _SINGLE_KEYS or key == "mx") and value == "":
            raise MtaStsPolicyError("value is empty", line=number, key=key)
        if key == "mx":
            mx.append(_check_mx_pattern(value, line=number))
        elif key in _SINGLE_KEYS:
            if key in values:
                # RFC 8461 section 3.2: the first value counts, later ones are ignored.
                notes.append(f"line {number}: {key!r} appears again (first on line "
                             f"{values[key][1]}); the first value is kept")
                continue
            values[key] = (value, number)
        # Any other key is an extension: ignored (RFC 8461 section 3.2).

    if "version" not in values:
        raise MtaStsPolicyError("required key is missing", key="version")
    version, version_line = values["version"]
    if version != "STSv1":
        raise MtaStsPolicyError(f"{excerpt(version)} is not 'STSv1'", line=version_line,
                                key="version")
    if "mode" not in values:
        raise MtaStsPolicyError("required key is missing", key="mode")
    mode_text, mode_line = values["mode"]
    try:
        mode = StsMode(mode_text)
    except ValueError:
        raise MtaStsPolicyError(
            f"{excerpt(mode_text)} is not one of 'enforce', 'testing', 'none'",
            line=mode_line, key="mode",
        ) from None
    if "max_age" not in values:
        raise MtaStsPolicyError("required key is missing", key="max_age")
    age_text, age_line = values["max_age"]
    if _DIGITS_RE.fullmatch(age_text) is None:
        raise MtaStsPolicyError(
            f"{excerpt(age_text)} is not 1 to 10 decimal digits", line=age_line, key="max_age"
        )
    max_age = int(age_text)
    if max_age > MAX_MAX_AGE:
        notes.append(f"line {age_line}: max_age {max_age} is more than the maximum "
                     f"{MAX_MAX_AGE}; capped to it")
        max_age = MAX_MAX_AGE
    if mode is not StsMode.NONE and not mx:
        raise MtaStsPolicyError(f"mode {mode.value!r} needs at least one mx line", key="mx")
    return MtaStsPolicy(mode=mode, mx=tuple(mx), max_age=max_age, notes=tuple(notes))


# ------------------------------------------------------------------ lifetime


class FetchOutcome(enum.Enum):
    """What the latest policy fetch gave, with its TLS-RPT result type."""

    OK = "ok"
    FETCH_ERROR = "fetch-error"
    INVALID = "invalid"
    WEBPKI_INVALID = "webpki-invalid"

    @property
    def tlsrpt_result_type(self) -> str | None:
        """``sts-policy-fetch-error`` / ``sts-policy-invalid`` / ``sts-webpki-invalid``."""
        return _OUTCOME_RESULT_TYPES[self]


_OUTCOME_RESULT_TYPES: Final[dict[FetchOutcome, str | None]] = {
    FetchOutcome.OK: None,
    FetchOutcome.FETCH_ERROR: "sts-policy-fetch-error",
    FetchOutcome.INVALID: "sts-policy-invalid",
    FetchOutcome.WEBPKI_INVALID: "sts-webpki-invalid",
}


def _require_aware(value: datetime, what: str) -> None:
    if not isinstance(value, datetime):
        raise PolicyInputError(f"{what} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise PolicyInputError(f"{what} {value.isoformat()} has no timezone; pass an aware "
                               "datetime")


def _validate_fetched_at(instance: CachedMtaStsPolicy, attribute: attrs.Attribute[datetime],
                         value: datetime) -> None:
    _require_aware(value, "fetched_at")


@attrs.frozen(slots=True)
class CachedMtaStsPolicy:
    """A policy as the caller's cache holds it: when it was fetched, under which TXT id.

    The policy lives ``max_age`` seconds from ``fetched_at`` (RFC 8461 section 3.2;
    section 5.1 says a later failed fetch does not shorten that).
    """

    policy: MtaStsPolicy = attrs.field(validator=attrs.validators.instance_of(MtaStsPolicy))
    fetched_at: datetime = attrs.field(validator=_validate_fetched_at)
    policy_id: str | None = None

    @property
    def expires_at(self) -> datetime:
        """``fetched_at + max_age``; the policy is expired from this instant on."""
        return self.fetched_at + timedelta(seconds=self.policy.max_age)

    def is_expired(self, now: datetime) -> bool:
        """Whether ``now`` is at or after :attr:`expires_at`."""
        _require_aware(now, "now")
        return now >= self.expires_at

    def is_in_force(self, now: datetime) -> bool:
        """Whether the policy still applies at ``now`` (it has not expired).

        A ``now`` before ``fetched_at`` (the caller's clock stepped back) still
        counts as in force: a policy is never dropped early because of clock skew.
        """
        return not self.is_expired(now)

    def due_for_refresh(
        self,
        now: datetime,
        *,
        current_id: str | None = None,
        refresh_interval: timedelta = DEFAULT_REFRESH_INTERVAL,
    ) -> bool:
        """Whether the caller should fetch the policy again now.

        The rule: refresh when the policy has expired; when ``current_id`` (the
        ``id`` of the TXT record the caller just looked up) differs from the id the
        policy was fetched under (RFC 8461 section 3.3: a new id means a new
        policy); or when ``refresh_interval`` has passed since ``fetched_at``
        (proactive refresh, section 10.2).  The cached policy stays in force
        until it expires whatever the refresh gives (use :func:`apply_fetch`).
        """
        _require_aware(now, "now")
        if refresh_interval <= timedelta(0):
            raise PolicyInputError(f"refresh_interval {refresh_interval} must be positive")
        if self.is_expired(now):
            return True
        if current_id is not None and current_id != self.policy_id:
            return True
        return now - self.fetched_at >= refresh_interval


def policy_in_force(cached: CachedMtaStsPolicy | None, now: datetime) -> MtaStsPolicy | None:
    """The MTA-STS policy that applies at ``now``, or ``None`` for "configuration alone".

    An unexpired cached policy applies even when the latest fetch failed (RFC 8461
    sections 3.3 and 5.1); only when no unexpired policy exists does configuration
    alone apply.  A policy in force with mode ``none`` is returned as it is: the
    resolver treats that mode as "configuration applies".
    """
    _require_aware(now, "now")
    if cached is None or cached.is_expired(now):
        return None
    return cached.policy


def apply_fetch(
    cached: CachedMtaStsPolicy | None,
    outcome: FetchOutcome,
    policy: MtaStsPolicy | None = None,
    *,
    fetched_at: datetime,
    policy_id: str | None = None,
) -> CachedMtaStsPolicy | None:
    """The cache entry after a fetch attempt.

    On :attr:`FetchOutcome.OK` the new ``policy`` replaces the old one (fetched at
    ``fetched_at`` under TXT ``policy_id``).  On any failure the old entry is kept
    unchanged, expired or not (callers drop expired entries via
    :func:`policy_in_force`); a failure never installs or extends a policy.
    """
    _require_aware(fetched_at, "fetched_at")
    if outcome is FetchOutcome.OK:
        if policy is None:
            raise PolicyInputError("FetchOutcome.OK needs the fetched policy")
        return CachedMtaStsPolicy(policy=policy, fetched_at=fetched_at, policy_id=policy_id)
    if policy is not None:
        raise PolicyInputError(f"FetchOutcome.{outcome.name} cannot come with a policy")
    return cached
