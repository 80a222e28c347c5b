"""The DNS client's wire work without dnspython's message objects (see :mod:`.dns`).

Per query, dnspython was most of the client's CPU.  A query for a plain name is written
here (the same bytes dnspython writes); a SERVFAIL or REFUSED reply in the plain shape
resolvers send is read from its header, question and OPT record; and a NOERROR reply
that is only records of the question's type under the question's own name has its
records read one by one with dnspython's record reader, without building a message.
Every other reply is read by dnspython in full (:func:`parse_reply`).  Each quick
reading accepts only what dnspython would read the same way
(tests/test_discovery_dns_wire.py checks that over generated and mutated replies).

One exception: dnspython refuses a TLSA record whose data does not have its matching
type's length, and with it the whole reply, where such a record is only unusable (RFC
7671 section 5, RFC 7672 section 3.1.3) and the answer's other records still count.  A
reply to a TLSA query that dnspython refuses is read again with its TLSA records as
opaque data (:func:`opaque_tlsa`, :func:`tlsa_record`).
"""

from __future__ import annotations

import re
import struct
from typing import Any, Final

import attrs
import dns.edns
import dns.entropy
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.wire

from ..policies.dane import TlsaRecord

#: Answers with more records than this are treated as malformed (a stranger's zone
#: must not make us hold or walk an unbounded list).
MAX_RECORDS: Final = 128
#: EDNS payload size (the DNS flag day 2020 value); larger answers go over TCP.
EDNS_PAYLOAD: Final = 1232

#: A query's header flags: RD, and AD (RFC 6840 section 5.7), opcode QUERY.
_QUERY_FLAGS: Final = int(dns.flags.RD | dns.flags.AD)
#: The OPT record every query ends with: root owner, the payload size, EDNS version 0,
#: no flags (DO unset), no options -- what dnspython writes for ``use_edns=0``.
_OPT_RECORD: Final = (b"\x00" + struct.pack("!HH", dns.rdatatype.OPT, EDNS_PAYLOAD)
                      + b"\x00\x00\x00\x00" + b"\x00\x00")
#: A label written as is: letters, digits, hyphen, underscore (no escapes, no IDNA).
_PLAIN_LABEL: Final = re.compile(r"[A-Za-z0-9_-]{1,63}\Z")
#: The reply codes recognised from the header alone (the lookup failed either way).
_REFUSALS: Final = frozenset({int(dns.rcode.SERVFAIL), int(dns.rcode.REFUSED)})
_EDE: Final = int(dns.edns.OptionType.EDE)


_RDTYPES: dict[str, int] = {}


def _rdtype_code(rdtype: str) -> int:
    """``rdtype``'s number (read by dnspython once per type name)."""
    code = _RDTYPES.get(rdtype)
    if code is None:
        code = _RDTYPES[rdtype] = int(dns.rdatatype.from_text(rdtype))
    return code


def plain_question(name: str, rdtype: str) -> bytes | None:
    """The question section for ``name`` / ``rdtype`` when ``name`` is plain labels
    (letters, digits, hyphen, underscore) short enough to ask; ``None`` otherwise."""
    code = _rdtype_code(rdtype)
    labels = name.split(".")
    if all(_PLAIN_LABEL.match(label) for label in labels):
        qname = b"".join([bytes((len(label),)) + label.encode("ascii") for label in labels])
        if len(qname) < 255:  # with the root label, at most 255 octets (RFC 1035 3.1)
            return qname + b"\x00" + struct.pack("!HH", code, dns.rdataclass.IN)
    return None


def question_wire(name: str, rdtype: str) -> bytes:
    """The question section of a query for ``name`` / ``rdtype``: QNAME, QTYPE, QCLASS IN.

    A name of plain labels is written here (building a dnspython message per query cost
    more than the rest of the query); any other name (escapes, IDNA, the root) is
    written by dnspython, which also rejects what cannot be asked.
    """
    plain = plain_question(name, rdtype)
    return plain if plain is not None else _dnspython_question(name, rdtype)


def _dnspython_question(name: str, rdtype: str) -> bytes:
    request = dns.message.make_query(dns.name.from_text(name or "."),
                                     dns.rdatatype.from_text(rdtype), use_edns=0,
                                     payload=EDNS_PAYLOAD)
    return request.to_wire()[12:-len(_OPT_RECORD)]


class Request:
    """One query: its id and question section, as sent over the shared socket.
    ``plain`` says the question was written from plain labels (see
    :func:`plain_question`), so that the name in a reply's question is the name asked."""

    __slots__ = ("id", "plain", "question")

    def __init__(self, question: bytes, *, plain: bool = False) -> None:
        self.id = dns.entropy.random_16()
        self.question = question
        self.plain = plain

    def wire(self) -> bytes:
        """The query: header, the question, the OPT record (EDNS, payload size)."""
        return struct.pack("!HHHHHH", self.id, _QUERY_FLAGS, 1, 0, 0, 1) \
            + self.question + _OPT_RECORD

    def message(self) -> dns.message.Message:
        """The query as a dnspython message (for the full question check)."""
        return dns.message.from_wire(self.wire())

    @property
    def rdtype(self) -> int:
        """The type asked for."""
        return int.from_bytes(self.question[-4:-2])

    def answered_by(self, reply: dns.message.Message, data: bytes) -> bool:
        """Whether ``reply`` (read from ``data``) answers this query: its id, opcode and
        question (dnspython's check, unless the reply's question is ours byte for byte)."""
        if (reply.flags & dns.flags.QR and reply.id == self.id
                and dns.opcode.from_flags(reply.flags) == dns.opcode.QUERY
                and len(reply.question) == 1 and data[4:6] == b"\x00\x01"
                and data[12:12 + len(self.question)] == self.question):
            return True
        return self.message().is_response(reply)


#: TLSA's type number, and the private-use type (RFC 6895 section 3.1) a TLSA record's
#: type is rewritten to for dnspython to read it as opaque data.
_TLSA: Final = int(dns.rdatatype.TLSA)
_OPAQUE: Final = 65534


def opaque_tlsa(data: bytes) -> bytes | None:
    """``data`` with the type of its question and of every TLSA record rewritten to a
    private-use type, so that dnspython reads TLSA records as opaque data, nothing else
    changed; ``None`` when its records cannot be walked, or one already has that type."""
    end = len(data)
    if end < 12:
        return None
    questions, *records = struct.unpack_from("!HHHH", data, 4)
    out = bytearray(data)
    at = 12
    for index in range(questions + sum(records)):
        at = _past_name(data, at)
        fixed = 4 if index < questions else 10
        if at < 0 or at + fixed > end:
            return None
        kind = int.from_bytes(data[at:at + 2])
        if kind == _OPAQUE:
            return None
        if kind == _TLSA:
            out[at:at + 2] = _OPAQUE.to_bytes(2)
        at += fixed if index < questions else fixed + int.from_bytes(data[at + 8:at + 10])
        if at > end:
            return None
    return bytes(out)


def _past_name(data: bytes, at: int) -> int:
    """Where the name at ``at`` ends (after its root label or its pointer); -1 when it
    runs past the message or uses a label type that is not a length or a pointer."""
    end = len(data)
    while at < end:
        length = data[at]
        if length == 0:
            return at + 1
        if length & 0xC0 == 0xC0:
            return at + 2 if at + 2 <= end else -1
        if length & 0xC0:
            return -1
        at += 1 + length
    return -1


def tlsa_record(rdata: Any) -> TlsaRecord:
    """A TLSA answer's record as discovery holds it, from dnspython's TLSA record or from
    the opaque data of one dnspython refused (``ValueError`` for fewer than three octets,
    which no TLSA record has); one whose data has the wrong length is unusable."""
    if isinstance(rdata, dns.rdata.GenericRdata):
        raw = rdata.data
        if len(raw) < 3:
            raise ValueError(f"a TLSA record of {len(raw)} octets")
        return TlsaRecord(raw[0], raw[1], raw[2], bytes(raw[3:]))
    return TlsaRecord(rdata.usage, rdata.selector, rdata.mtype, bytes(rdata.cert))


def parse_reply(data: bytes, request: Request, *,
                truncation: bool = True) -> dns.message.Message:
    """``data`` read by dnspython in full as the reply to ``request``: raises what
    dnspython raises for it (``Truncated`` when ``truncation`` and TC is set, a malformed
    message), or ``BadResponse`` when it answers another query.  A reply to a TLSA query
    that dnspython refuses is read again as :func:`opaque_tlsa` writes it: its TLSA
    records are then opaque data, for :func:`tlsa_record`."""
    try:
        reply = dns.message.from_wire(data, raise_on_truncation=truncation)
    except dns.message.Truncated:
        raise
    except Exception:
        opaque = opaque_tlsa(data) if request.rdtype == _TLSA else None
        if opaque is None:
            raise
        reply = dns.message.from_wire(opaque, raise_on_truncation=truncation)
        # Checked as the answer to the same question asked for the private type, which
        # is what its question now says (in whatever letter case the resolver echoed).
        asked = Request(request.question[:-4] + _OPAQUE.to_bytes(2) + request.question[-2:],
                        plain=request.plain)
        asked.id = request.id
        request, data = asked, opaque
    if not request.answered_by(reply, data):
        raise dns.query.BadResponse()  # type: ignore[no-untyped-call]
    return reply


def request_for(name: str, rdtype: str) -> Request:
    """A query for ``name`` / ``rdtype``, marked plain when its question was written
    from plain labels (see :func:`question_wire`, which raises for what cannot be asked)."""
    plain = plain_question(name, rdtype)
    if plain is not None:
        return Request(plain, plain=True)
    return Request(_dnspython_question(name, rdtype))


@attrs.frozen(slots=True)
class Refusal:
    """A SERVFAIL or REFUSED reply, recognised without a full parse: its rcode and the
    codes of its Extended DNS Errors."""

    rcode: int
    errors: tuple[int, ...]


def read_refusal(data: bytes, request: Request) -> Refusal | None:
    """``data`` as a SERVFAIL / REFUSED reply to ``request``, when it is one in the
    plain shape a resolver sends (header, our question or none, at most an OPT record
    with Extended DNS Errors, nothing else); ``None`` for anything else, which dnspython
    then reads in full.  What this accepts, dnspython would read the same way."""
    if len(data) < 12:
        return None
    ident, flags, questions, answers, authority, additional = struct.unpack_from(
        "!HHHHHH", data)
    # QR set, opcode QUERY, TC clear (a truncated reply goes to TCP as before).
    if (ident != request.id or flags & 0xFA00 != 0x8000 or flags & 0xF not in _REFUSALS
            or answers or authority or questions > 1 or additional > 1):
        return None
    at = 12
    if questions:
        question = request.question
        if data[at:at + len(question)] != question:
            return None  # another question, or ours spelled otherwise: dnspython judges
        at += len(question)
    errors: list[int] = []
    if additional:
        # OPT: root owner, type 41, any payload size, extended rcode 0, version 0.
        if data[at:at + 3] != b"\x00\x00\x29" or len(data) < at + 11 \
                or data[at + 5] or data[at + 6]:
            return None
        end = at + 11 + int.from_bytes(data[at + 9:at + 11])
        if end != len(data):
            return None
        at += 11
        while at < end:
            if end - at < 4:
                return None
            code, size = struct.unpack_from("!HH", data, at)
            at += 4
            if code != _EDE or size < 2 or at + size > end:
                return None  # other options are left to dnspython
            text = data[at + 2:at + size]
            if text:
                try:  # as dnspython reads it: UTF-8, maybe NUL-terminated
                    (text[:-1] if text[-1] == 0 else text).decode("utf8")
                except UnicodeDecodeError:
                    return None
            errors.append(int.from_bytes(data[at:at + 2]))
            at += size
    if at != len(data):
        return None
    return Refusal(flags & 0xF, tuple(errors))


@attrs.frozen(slots=True)
class Records:
    """A NOERROR reply holding only records of the question's type under the question's
    name, recognised without a full parse: its header flags, the records (a repeated
    record once, as dnspython keeps it) and their lowest TTL."""

    flags: int
    records: tuple[Any, ...]
    ttl: int


#: The types whose records :func:`read_records` reads (dnspython treats none of them
#: specially in an answer: no singleton, no signature).
_RECORD_TYPES: Final = frozenset(int(dns.rdatatype.from_text(rdtype))
                                 for rdtype in ("TXT", "MX", "A", "AAAA", "TLSA"))
#: An answer record's owner as resolvers write it: a pointer to the question's name.
_QUESTION_POINTER: Final = b"\xc0\x0c"
#: The most a TTL may be; a larger one counts as 0 (RFC 2181 section 8), as dnspython reads it.
_MAX_TTL: Final = 0x7FFFFFFF


def read_records(data: bytes, request: Request) -> Records | None:
    """``data`` as a NOERROR reply to ``request`` with records, when it has the plain
    shape a resolver sends for a name that exists without a CNAME: our question, answer
    records owned by a pointer to it, of its type and class, no authority, at most an OPT
    record without options; ``None`` for anything else, which dnspython then reads in full.
    The records themselves are read by dnspython.  What this accepts, dnspython would read
    the same way."""
    if len(data) < 12 or not request.plain:
        return None
    ident, flags, questions, answers, authority, additional = struct.unpack_from(
        "!HHHHHH", data)
    # QR set, opcode QUERY, TC clear, rcode NOERROR.
    if (ident != request.id or flags & 0xFA0F != 0x8000 or questions != 1 or not answers
            or answers > MAX_RECORDS or authority or additional > 1):
        return None
    question = request.question
    at = 12 + len(question)
    if data[12:at] != question:
        return None
    rdtype = int.from_bytes(question[-4:-2])
    if rdtype not in _RECORD_TYPES:
        return None
    parser = dns.wire.Parser(data)
    found: dict[Any, None] = {}
    ttl = _MAX_TTL
    end = len(data)
    try:
        for _ in range(answers):
            if data[at:at + 2] != _QUESTION_POINTER or end < at + 12:
                return None
            kind, rdclass, life, size = struct.unpack_from("!HHIH", data, at + 2)
            if kind != rdtype or rdclass != dns.rdataclass.IN:
                return None
            at += 12
            parser.seek(at)
            with parser.restrict_to(size):
                record = dns.rdata.from_wire_parser(
                    dns.rdataclass.IN, rdtype,  # type: ignore[arg-type]
                    parser)
            at += size
            ttl = min(ttl, life if life <= _MAX_TTL else 0)
            found.setdefault(record)
    except Exception:  # malformed: dnspython reads it again and says why
        return None
    if additional:
        # OPT: root owner, type 41, any payload size, extended rcode 0, version 0, no options.
        if (data[at:at + 3] != b"\x00\x00\x29" or end != at + 11 or data[at + 5]
                or data[at + 6] or data[at + 9:at + 11] != b"\x00\x00"):
            return None
        at += 11
    if at != end:
        return None
    return Records(flags, tuple(found), ttl)


#: What a query's reply is read as: a refusal or plain records read quickly, or
#: dnspython's message.
Reply = dns.message.Message | Refusal | Records
