"""What reporting keeps and is configured with: settings, built reports and their
deliveries (RFC 8460), and the names a report and its mail carry."""

from __future__ import annotations

import gzip
import json
import math
import re
import urllib.parse
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import attrs

from tlspolicy._serialise import (
    LAST_TIME,
    LONGEST_SETTING,
    is_setting_time,
    stored_count,
    stored_time,
)
from tlspolicy.errors import TlsPolicyError
from tlspolicy.names import normalise_domain

from ..stores import StoreError, dumps_json, loads_json
from .recording import DAY

if TYPE_CHECKING:
    pass

__all__ = [
    "MAX_RUA",
    "MEDIA_TYPE",
    "REPORTS_NAMESPACE",
    "Delivery",
    "ReportingConfig",
    "ReportingError",
    "StoredReport",
    "mail_address",
    "report_msg_id",
    "stamp",
]


#: Where built reports and their delivery state live.
REPORTS_NAMESPACE = "tlsrpt-reports"
#: The media type of a gzip-compressed report (RFC 8460 sections 5.3 and 6).
MEDIA_TYPE = "application/tlsrpt+gzip"
#: At most this many ``rua`` URIs of one record are used (the record is a stranger's).
MAX_RUA = 10
#: A mail address in a ``mailto:`` rua: no blanks or control characters, one ``@``.
_ADDRESS_RE = re.compile(r"[^\s@\x00-\x1f\x7f]+@[A-Za-z0-9.-]+")


class ReportingError(TlsPolicyError):
    """A reporting job that cannot run as asked (an open period, bad settings)."""


def _submitter(value: str) -> str:
    return normalise_domain(value)


def _contact(value: object) -> str:
    # RFC 8460 section 4.4: contact-info is an RFC 5322 addr-spec, a bare address; a
    # mailto: URI, a common way to write one, is taken for its address.
    if not isinstance(value, str):
        raise ReportingError(f"reporting option contact_info must be text, not {value!r}")
    text = value.strip()
    if text[:7].lower() == "mailto:":
        text = urllib.parse.unquote(text[7:].split("?", 1)[0])
    if not _ADDRESS_RE.fullmatch(text):
        raise ReportingError(f"reporting option contact_info {value[:80]!r} is not a mail "
                             "address (RFC 8460 section 4.4: an addr-spec such as "
                             "tlsrpt@example.net)")
    return text


def _positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            0 < value < math.inf):  # NaN and infinity fail too
        raise ReportingError(f"reporting option {attribute.name} must be positive, "
                             f"not {value!r}")


def _port(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or not 0 < value < 65536):
        raise ReportingError(f"reporting option {attribute.name} must be a port, 1 to "
                             f"65535, not {value!r}")


def _seconds(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    _positive(instance, attribute, value)
    if not is_setting_time(value):
        raise ReportingError(f"reporting option {attribute.name} must be at most "
                             f"{LONGEST_SETTING:,} seconds (ten years), not {value!r}")


#: How many times ``timeout`` the send lock lasts at least: a delivery's four tries and
#: its lookups.
DELIVERY_TRIES_LOCKED: Final = 5


@attrs.frozen(slots=True)
class ReportingConfig:
    """Who reports and how.  Times are in seconds.

    - ``organization_name``, ``contact_info``: the report's own fields;
      ``contact_info`` is a mail address (a ``mailto:`` URI is taken for its
      address, as RFC 8460 section 4.4 asks for an addr-spec).
    - ``submitter``: the reporting domain: the file name's sender, the DKIM
      ``d=`` and the ``TLS-Report-Submitter`` header.
    - ``mail_from``: the envelope sender and ``From:`` of mailed reports.
    - ``period`` (a UTC day) and ``grace``: a period is built only once
      ``grace`` has passed after its end, so every node has flushed.
    - ``retention``: how long built reports (and their state) are kept.
    - ``max_report_bytes``: the cap on the gzip body; larger reports are kept
      but not sent (``too-large``).
    - ``retry_window`` (24 h, RFC 8460 section 5.5), ``backoff_initial`` and
      ``backoff_max``: retries of a failed delivery, doubling.
    - ``dkim_selector``, ``dkim_key_file``: the DKIM key for mailed reports
      (its record must carry ``s=tlsrpt``); without a key no report is mailed.
    - ``smtp_port``, ``https_port``: 25 and the URI's port in production.
    - ``ca_file``: a CA bundle for HTTPS receivers (the system store if unset).
    """

    organization_name: str
    contact_info: str = attrs.field(converter=_contact)
    submitter: str = attrs.field(converter=_submitter)
    mail_from: str
    period: int = DAY
    grace: float = attrs.field(default=900.0, validator=_seconds)
    retention: float = attrs.field(default=30 * DAY, validator=_seconds)
    max_report_bytes: int = attrs.field(default=10 * 1024 * 1024, validator=_positive)
    retry_window: float = attrs.field(default=DAY, validator=_seconds)
    backoff_initial: float = attrs.field(default=300.0, validator=_seconds)
    backoff_max: float = attrs.field(default=3600.0, validator=_seconds)
    dkim_selector: str = "tlsrpt"
    dkim_key_file: str | None = None
    smtp_port: int = attrs.field(default=25, validator=_port)
    https_port: int | None = attrs.field(default=None, validator=_port)
    ca_file: str | None = None
    timeout: float = attrs.field(default=60.0, validator=_seconds)
    lock_ttl: float = attrs.field(default=900.0, validator=_seconds)

    def __attrs_post_init__(self) -> None:
        if self.period <= 0 or DAY % self.period:
            raise ReportingError(f"reporting period {self.period!r} must divide a day")
        if self.lock_ttl < DELIVERY_TRIES_LOCKED * self.timeout:
            # A delivery takes at most four tries of `timeout`: a lock that ran out within
            # one would let another node send the same report again.
            raise ReportingError(
                f"reporting option lock_ttl ({self.lock_ttl:g} s) must be at least "
                f"{DELIVERY_TRIES_LOCKED} times timeout ({self.timeout:g} s)")


@attrs.frozen(slots=True)
class Delivery:
    """The state of one report for one ``rua``.

    ``state``: ``pending``, ``delivered``, ``gave-up`` (the retry window
    passed), ``too-large``, ``unsupported`` (a scheme other than https/mailto)
    or ``no-dkim-key``.
    """

    uri: str
    state: str = "pending"
    attempts: int = 0
    next_at: float = 0.0
    error: str = ""
    delivered_at: float | None = None


#: Every ``Delivery.state``.
_DELIVERY_STATES = frozenset({"pending", "delivered", "gave-up", "too-large", "unsupported",
                              "no-dkim-key"})
_DELIVERY_FIELDS = frozenset(attrs.fields_dict(Delivery))


def _delivery(data: object) -> Delivery:
    """A stored delivery, its fields checked (``ValueError`` when damaged); a field
    missing takes its default, as in :class:`Delivery`."""
    if type(data) is not dict or not data.keys() <= _DELIVERY_FIELDS:
        raise ValueError("a delivery is not a table of its fields")
    uri, state, error = data["uri"], data.get("state", "pending"), data.get("error", "")
    if type(uri) is not str or state not in _DELIVERY_STATES or type(error) is not str:
        raise ValueError("a delivery field of the wrong type or value")
    delivered = data.get("delivered_at")
    return Delivery(uri, state, stored_count(data.get("attempts", 0)),
                    stored_time(data.get("next_at", 0.0)), error,
                    None if delivered is None else stored_time(delivered))


@attrs.frozen(slots=True)
class StoredReport:
    """A built report, its file name and where it goes."""

    key: str
    domain: str
    start: int
    end: int
    report: dict[str, Any]
    filename: str
    created: float
    rua: tuple[str, ...] | None
    rua_detail: str
    deliveries: tuple[Delivery, ...]

    @property
    def body(self) -> bytes:
        """The gzip-compressed JSON (fixed mtime, so every node makes the same bytes)."""
        return gzip.compress(json.dumps(self.report, indent=None).encode(), mtime=0)

    def to_bytes(self) -> bytes:
        """The stored form."""
        return dumps_json({
            "v": 1, "domain": self.domain, "start": self.start, "end": self.end,
            "report": self.report, "filename": self.filename, "created": self.created,
            "rua": None if self.rua is None else list(self.rua), "rua_detail": self.rua_detail,
            "deliveries": [attrs.asdict(d) for d in self.deliveries]})

    @classmethod
    def from_bytes(cls, key: str, data: bytes) -> StoredReport:
        """Read the stored form; a corrupt value raises ``StoreError``."""
        try:
            value = loads_json(data)
        except StoreError as exc:
            raise StoreError(f"stored TLS-RPT report {key[:200]!r} is malformed: "
                             f"{exc}") from None
        try:
            if type(value) is not dict or value.get("v") != 1:
                raise ValueError("unknown record version")
            rua = value["rua"]
            # Written by this package as these types only: anything else is damage,
            # which a send would meet as a TypeError after delivering.
            rua_ok = rua is None or (type(rua) is list and all(type(u) is str for u in rua))
            if not rua_ok or type(value["rua_detail"]) is not str or type(
                    value["domain"]) is not str:
                raise ValueError("a field of the wrong type")
            stored = cls(key, value["domain"], stored_count(value["start"], LAST_TIME),
                         stored_count(value["end"], LAST_TIME), value["report"],
                         value["filename"], stored_time(value["created"]),
                         None if rua is None else tuple(rua), value["rua_detail"],
                         tuple(map(_delivery, value["deliveries"])))
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            # ArithmeticError: a number too large for a float (OverflowError).
            raise StoreError(f"stored TLS-RPT report {key!r} is malformed: {exc}") from None
        # A shared store's report must be the one its key names, for a normalised domain.
        try:
            domain_ok = normalise_domain(stored.domain) == stored.domain
        except (TlsPolicyError, TypeError):
            domain_ok = False
        if not domain_ok or key != f"{stored.start}/{stored.domain}" or not isinstance(
                stored.report, dict) or not isinstance(stored.filename, str) or any(
                c in stored.filename for c in '/\\"\r\n'):
            raise StoreError(f"stored TLS-RPT report {key[:200]!r} is malformed: its key, "
                             "domain or file name do not agree")
        return stored


# RFC 5322 atext: what a dot-atom-text may hold besides the dots between atoms.
_ATEXT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
                   "!#$%&'*+-/=?^_`{|}~")


def _dot_atom(text: str) -> str:
    atoms = ["".join(c if c in _ATEXT else "-" for c in atom) for atom in text.split(".")]
    return ".".join(a for a in atoms if a) or "report"


def report_msg_id(report_id: str, submitter: str) -> str:
    """The ``Report-ID`` of a report mail's subject: an RFC 5322 ``msg-id``.

    RFC 8460 section 5.3 ends the subject with ``"<" id-left "@" id-right ">"``:
    the report's ``report-id`` (characters a ``dot-atom-text`` cannot hold
    replaced by ``-``) at the submitting domain.
    """
    return f"<{_dot_atom(report_id)}@{_dot_atom(submitter)}>"


#: A mail address a report is sent to: a dot-atom local part (RFC 5321's Dot-string, ASCII)
#: and a domain.  A quoted local part, or one holding what smtplib would take for the
#: address's end (``<>()``), is not sent to: smtplib would send another address.
_RCPT_RE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                      r"@[A-Za-z0-9.-]+")


def mail_address(uri: str) -> str | None:
    """The address of a ``mailto:`` URI (RFC 6068, without its query), or ``None`` when
    it is none this package sends to (see ``_RCPT_RE``)."""
    address = urllib.parse.unquote(uri[len("mailto:"):].split("?", 1)[0])
    return address if _RCPT_RE.fullmatch(address) else None


def stamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


