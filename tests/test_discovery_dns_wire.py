"""The DNS client's own wire handling agrees with dnspython's.

Queries for plain names are written without a dnspython message; a SERVFAIL or
REFUSED reply is recognised from its header, question and OPT record before any full
parse, and a plain answer's records are read without building a message.  Hypothesis
checks that the query bytes are dnspython's, and that whatever the quick readings accept
-- from well-formed replies to mutated and arbitrary bytes -- dnspython reads the same way
(a reply to this query, that rcode, those Extended DNS Errors; the same answer, records
and time to live); a reply that is not one never raises out of the socket's handler.
"""

from __future__ import annotations

import asyncio

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discovery_support import UdpResponder
from tlspolicy.discovery._dnswire import (
    EDNS_PAYLOAD,
    MAX_RECORDS,
    Records,
    Refusal,
    Request,
    opaque_tlsa,
    parse_reply,
    question_wire,
    read_records,
    read_refusal,
    request_for,
)
from tlspolicy.discovery.dns import _BOGUS_EDE, DnsAnswer, DnsClient, DnsStatus, _Channel

RDTYPES = ("TXT", "MX", "TLSA", "A", "AAAA", "SOA", "CNAME", "TYPE65")
LABEL = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
                min_size=1, max_size=63)
PLAIN_NAMES = st.lists(LABEL, min_size=1, max_size=8).map(".".join)
#: Names the client does not write itself: escapes, IDNA, empty labels, the root, overlong.
ODD_NAMES = st.one_of(
    st.text(min_size=0, max_size=40),
    st.sampled_from(["", ".", "a..b", "a\\.b.test", "caf\u00e9.test", "x" * 64 + ".test",
                     ".".join(["a" * 63] * 4), "under_score.test", "-lead.test"]),
)


def dnspython_query(name: str, rdtype: str, ident: int) -> bytes:
    """The query as the client wrote it with dnspython before."""
    request = dns.message.make_query(dns.name.from_text(name or "."), rdtype, use_edns=0,
                                     payload=EDNS_PAYLOAD)
    request.flags |= dns.flags.AD | dns.flags.RD
    request.id = ident
    return request.to_wire()


def our_query(name: str, rdtype: str, ident: int) -> bytes:
    request = request_for(name, rdtype)
    request.id = ident
    return request.wire()


@settings(max_examples=300, deadline=None)
@given(PLAIN_NAMES, st.sampled_from(RDTYPES), st.integers(0, 0xFFFF))
def test_query_bytes_are_dnspythons_for_plain_names(name: str, rdtype: str, ident: int) -> None:
    try:
        expected = dnspython_query(name, rdtype, ident)
    except dns.exception.DNSException:
        # Too long a name: refused the same way.
        try:
            our_query(name, rdtype, ident)
        except dns.exception.DNSException:
            return
        raise AssertionError(f"{name!r} was written though dnspython refuses it") from None
    assert our_query(name, rdtype, ident) == expected


@settings(max_examples=200, deadline=None)
@given(ODD_NAMES, st.sampled_from(RDTYPES), st.integers(0, 0xFFFF))
def test_query_bytes_are_dnspythons_for_other_names(name: str, rdtype: str, ident: int) -> None:
    try:
        expected: bytes | type[Exception] = dnspython_query(name, rdtype, ident)
    except (dns.exception.DNSException, ValueError) as exc:
        expected = type(exc)
    try:
        ours: bytes | type[Exception] = our_query(name, rdtype, ident)
    except (dns.exception.DNSException, ValueError) as exc:
        ours = type(exc)
    assert ours == expected


def test_an_unknown_type_cannot_be_asked() -> None:
    try:
        question_wire("example.test", "NOSUCHTYPE")
    except dns.exception.DNSException:
        return
    raise AssertionError("an unknown type was written")


# ------------------------------------------------------------------ replies


def dnspython_reading(data: bytes, query: dns.message.Message) -> tuple[int, tuple[int, ...]]:
    """What the client read from ``data`` with dnspython alone: the rcode and the EDE codes
    of a reply to ``query`` (raises for anything it would not take as that)."""
    reply = dns.message.from_wire(data, raise_on_truncation=True)
    assert query.is_response(reply)
    return (int(reply.rcode()),
            tuple(int(o.code) for o in reply.options if isinstance(o, dns.edns.EDEOption)))


@st.composite
def replies(draw: st.DrawFn) -> tuple[Request, dns.message.Message, bytes]:
    """A query, and a reply in the shapes resolvers send (and some they should not)."""
    name = draw(PLAIN_NAMES.filter(lambda n: len(n) < 200))
    rdtype = draw(st.sampled_from(RDTYPES[:6]))
    request = Request(question_wire(name, rdtype))
    query = request.message()
    reply = dns.message.make_response(query)
    reply.set_rcode(draw(st.sampled_from([dns.rcode.SERVFAIL, dns.rcode.REFUSED,
                                          dns.rcode.NOERROR, dns.rcode.NXDOMAIN,
                                          dns.rcode.FORMERR, dns.rcode.BADVERS])))
    question = draw(st.sampled_from(["same", "none", "upper", "other"]))
    if question == "none":
        reply.question = []
    elif question == "upper":
        reply.question = [dns.rrset.RRset(dns.name.from_text(name.upper()),
                                          query.question[0].rdclass, query.question[0].rdtype)]
    elif question == "other":
        reply.question = [dns.rrset.RRset(dns.name.from_text("other." + name[:100]),
                                          query.question[0].rdclass, query.question[0].rdtype)]
    if draw(st.booleans()):
        options: list[dns.edns.Option] = [
            dns.edns.EDEOption(code, text) for code, text in draw(st.lists(st.tuples(
                st.integers(0, 30), st.none() | st.text(max_size=20)), max_size=3))]
        if draw(st.booleans()):
            options.append(dns.edns.GenericOption(12, b"\x00" * draw(st.integers(0, 8))))
        reply.use_edns(0, dns.flags.DO if draw(st.booleans()) else 0,
                       draw(st.sampled_from([512, 1232, 4096])), options=options)
    else:
        reply.use_edns(False)
    if draw(st.booleans()):
        reply.flags |= dns.flags.TC
    data = reply.to_wire()
    # Mutations: a byte changed, the end cut off, bytes added.
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["byte", "cut", "junk"]))
        if kind == "byte" and data:
            at = draw(st.integers(0, len(data) - 1))
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1:]
        elif kind == "cut":
            data = data[:draw(st.integers(0, len(data)))]
        else:
            data += draw(st.binary(min_size=1, max_size=4))
    return request, query, data


@settings(max_examples=1500, deadline=None)
@given(replies())
def test_what_is_read_quickly_dnspython_reads_the_same(
        case: tuple[Request, dns.message.Message, bytes]) -> None:
    request, query, data = case
    quick = read_refusal(data, request)
    if quick is None:
        return
    assert dnspython_reading(data, query) == (quick.rcode, quick.errors)
    assert quick.rcode in (dns.rcode.SERVFAIL, dns.rcode.REFUSED)


@settings(max_examples=300, deadline=None)
@given(replies())
def test_a_reply_is_taken_as_an_answer_exactly_when_dnspython_would(
        case: tuple[Request, dns.message.Message, bytes]) -> None:
    request, query, data = case
    try:
        reply = dns.message.from_wire(data)
    except Exception:
        return
    assert request.answered_by(reply, data) == query.is_response(reply)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 0xFFFF), st.binary(max_size=80))
def test_arbitrary_bytes_are_never_read_as_something_dnspython_would_not(
        ident: int, tail: bytes) -> None:
    request = Request(question_wire("example.test", "TXT"))
    request.id = ident
    data = ident.to_bytes(2) + tail
    quick = read_refusal(data, request)
    if quick is not None:
        assert dnspython_reading(data, request.message()) == (quick.rcode, quick.errors)


def test_plain_refusals_are_read_without_dnspython() -> None:
    """The quick reading takes what resolvers send: SERVFAIL with a validation EDE, with
    no OPT record, with no question; REFUSED."""
    request = Request(question_wire("_mta-sts.example.test", "TXT"))
    query = request.message()
    shapes = []
    bogus = dns.message.make_response(query)
    bogus.set_rcode(dns.rcode.SERVFAIL)
    bogus.use_edns(0, 0, 1232, options=[dns.edns.EDEOption(dns.edns.EDECode.DNSSEC_BOGUS,
                                                           "validation failure")])
    shapes.append((bogus.to_wire(), Refusal(2, (6,))))
    bare = dns.message.make_response(query)
    bare.set_rcode(dns.rcode.SERVFAIL)
    bare.use_edns(False)
    shapes.append((bare.to_wire(), Refusal(2, ())))
    bare.question = []
    shapes.append((bare.to_wire(), Refusal(2, ())))
    refused = dns.message.make_response(query)
    refused.set_rcode(dns.rcode.REFUSED)
    shapes.append((refused.to_wire(), Refusal(5, ())))
    for data, expected in shapes:
        assert read_refusal(data, request) == expected
        assert dnspython_reading(data, query) == (expected.rcode, expected.errors)
    assert 6 in _BOGUS_EDE


def test_the_socket_handler_settles_every_reply_without_raising() -> None:
    """Whatever arrives with a waiting query's id settles that query (a reply, a refusal
    or an error), and never raises out of the handler."""
    @settings(max_examples=300, deadline=None)
    @given(replies())
    def check(case: tuple[Request, dns.message.Message, bytes]) -> None:
        request, _, data = case
        data = request.id.to_bytes(2) + data[2:]
        loop = asyncio.new_event_loop()
        try:
            channel = _Channel()
            future: asyncio.Future[dns.message.Message | Refusal | Records] = \
                loop.create_future()
            channel.waiting[request.id] = (request, future)
            channel.datagram_received(data, ("127.0.0.1", 53))
            if len(data) >= 2:
                assert future.done()
                if future.exception() is None:
                    assert isinstance(future.result(),
                                      (dns.message.Message, Refusal, Records))
        finally:
            loop.close()

    check()


# ------------------------------------------------------------------ answers with records

#: Record texts per type, few enough that a reply often repeats one.
RECORD_TEXTS = {
    "TXT": ['"v=STSv1; id=20240101T000000;"', '"v=STSv1; id=2;"', '"v=STSv1;" " id=3;"',
            '"v=TLSRPTv1; rua=mailto:tlsrpt@example.test"'],
    "MX": ["10 mx1.example.test.", "20 mx2.example.test.", "10 MX1.example.test.", "0 ."],
    "A": ["192.0.2.25", "192.0.2.26", "198.51.100.7"],
    "AAAA": ["2001:db8::25", "2001:db8::26"],
    "TLSA": ["3 1 1 " + "ab" * 32, "2 0 1 " + "cd" * 32, "3 1 2 " + "ef" * 64],
    "SOA": ["ns.example.test. host.example.test. 1 2 3 4 5",
            "ns.example.test. host.example.test. 2 2 3 4 5"],
    "CNAME": ["target.example.test.", "other.example.test."],
}
TTLS = st.sampled_from([0, 1, 300, 3600, 86400, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF])


def client(trusted: bool = True, max_ttl: int = 3600) -> DnsClient:
    return DnsClient("127.0.0.1", 53, trusted=trusted, max_ttl=max_ttl)


#: What may be odd about a reply in :func:`answers` (each drawn as often as "nothing").
ODDITIES = ("cname", "other name", "other class", "other rcode", "signature", "authority",
            "additional", "edns options", "no edns", "question upper", "no question",
            "mutated")


@st.composite
def answers(draw: st.DrawFn) -> tuple[str, str, Request, bytes]:
    """A query for a plain name, and a reply with records in the shape resolvers send,
    with repeats and any TTL, and with up to two oddities (see :data:`ODDITIES`)."""
    name = draw(PLAIN_NAMES.filter(lambda n: len(n) < 200))
    rdtype = draw(st.sampled_from(list(RECORD_TEXTS)))
    odd = set(draw(st.lists(st.sampled_from(ODDITIES), max_size=2)))
    request = Request(question_wire(name, rdtype), plain=True)
    request.id = draw(st.integers(0, 0xFFFF))
    query = request.message()
    reply = dns.message.make_response(query)
    if draw(st.booleans()):
        reply.flags |= dns.flags.AD
    if draw(st.booleans()):
        reply.flags |= dns.flags.AA
    owner = query.question[0].name
    rdclass = "IN"
    if "cname" in odd:  # a CNAME first: the records are the target's
        reply.answer.append(dns.rrset.from_text(owner, draw(TTLS), "IN", "CNAME",
                                                "target.example.test."))
        owner = dns.name.from_text("target.example.test.")
    if "other name" in odd:  # records of a name not asked about (the parent, if any, is
        # written as a pointer into the question, as the name asked is)
        owner = (owner.parent() if len(owner) > 2
                 else dns.name.from_text("other.example.test."))
    if "other class" in odd and rdtype == "TXT":  # TXT reads the same in any class
        rdclass = "CH"
    for _ in range(draw(st.integers(1, 4))):
        # Each its own RRset, so that a repeated record is written twice.
        reply.answer.append(dns.rrset.from_text(
            owner, draw(TTLS), rdclass, rdtype,
            *draw(st.lists(st.sampled_from(RECORD_TEXTS[rdtype]), min_size=1, max_size=3))))
    if "signature" in odd:
        reply.answer.append(dns.rrset.from_text(
            owner, 300, "IN", "RRSIG",
            f"{rdtype} 13 3 300 20300101000000 20200101000000 1 example.test. AAAA"))
    if "authority" in odd:
        reply.authority.append(dns.rrset.from_text("example.test.", 300, "IN", "NS",
                                                   "ns.example.test."))
    if "additional" in odd:
        reply.additional.append(dns.rrset.from_text("ns.example.test.", 300, "IN", "A",
                                                    "192.0.2.53"))
    if "no edns" in odd:
        reply.use_edns(False)
    elif "edns options" in odd:
        reply.use_edns(0, 0, 1232, options=[dns.edns.EDEOption(dns.edns.EDECode.STALE_ANSWER,
                                                            "stale")])
    else:
        reply.use_edns(0, dns.flags.DO if draw(st.booleans()) else 0, 1232)
    if "other rcode" in odd:  # after EDNS: BADVERS is an extended rcode
        reply.set_rcode(draw(st.sampled_from([dns.rcode.NXDOMAIN, dns.rcode.SERVFAIL]
                                             + ([] if "no edns" in odd
                                                else [dns.rcode.BADVERS]))))
    if "question upper" in odd:
        reply.question = [dns.rrset.RRset(dns.name.from_text(name.upper()),
                                          query.question[0].rdclass, query.question[0].rdtype)]
    elif "no question" in odd:
        reply.question = []
    data = reply.to_wire(want_shuffle=False)  # the same bytes for the same draws
    if "mutated" in odd:
        kind = draw(st.sampled_from(["byte", "cut", "junk"]))
        if kind == "byte":
            at = draw(st.integers(0, len(data) - 1))
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1:]
        elif kind == "cut":
            data = data[:draw(st.integers(0, len(data) - 1))]
        else:
            data += draw(st.binary(min_size=1, max_size=4))
    return name, rdtype, request, data


def read_in_full(name: str, rdtype: str, request: Request, data: bytes,
                 reader: DnsClient) -> DnsAnswer:
    """What the client made of ``data`` through dnspython alone."""
    reply = dns.message.from_wire(data, raise_on_truncation=True)
    assert request.answered_by(reply, data)
    return reader._read(name, rdtype, reply)


@settings(max_examples=1500, deadline=None)
@given(answers(), st.booleans(), st.sampled_from([60, 3600, 86400]))
def test_records_read_quickly_are_the_answer_dnspython_reads(
        case: tuple[str, str, Request, bytes], trusted: bool, max_ttl: int) -> None:
    name, rdtype, request, data = case
    quick = read_records(data, request)
    if quick is None:
        return
    reader = client(trusted, max_ttl)
    answer = reader._read(name, rdtype, quick)
    assert answer == read_in_full(name, rdtype, request, data, reader)
    assert answer.status is DnsStatus.RECORDS and answer.records


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 0xFFFF), st.binary(max_size=120), st.sampled_from(["TXT", "MX", "A"]))
def test_arbitrary_bytes_are_never_read_as_records_dnspython_would_not(
        ident: int, tail: bytes, rdtype: str) -> None:
    request = Request(question_wire("example.test", rdtype), plain=True)
    request.id = ident
    question = request.question
    # The header and question a resolver's reply starts with, then anything.
    for data in (ident.to_bytes(2) + tail,
                 ident.to_bytes(2) + b"\x81\x80\x00\x01" + tail[:2] + b"\x00\x00"
                 + tail[2:4] + question + tail[4:]):
        quick = read_records(data, request)
        if quick is not None:
            reader = client()
            assert reader._read("example.test", rdtype, quick) == read_in_full(
                "example.test", rdtype, request, data, reader)


def test_plain_answers_are_read_without_dnspython() -> None:
    """The quick reading takes what resolvers send for a name with records: the records
    (a repeat once), the lowest TTL (one past 2**31 - 1 counting as 0), the AD bit."""
    request = Request(question_wire("_mta-sts.example.test", "TXT"), plain=True)
    query = request.message()
    reply = dns.message.make_response(query)
    reply.flags |= dns.flags.AD
    owner = query.question[0].name
    reply.answer.append(dns.rrset.from_text(owner, 3600, "IN", "TXT", '"v=STSv1; id=1;"'))
    reply.answer.append(dns.rrset.from_text(owner, 600, "IN", "TXT", '"v=STSv1; id=1;"',
                                            '"other"'))
    data = reply.to_wire()
    quick = read_records(data, request)
    assert quick is not None
    assert [record.strings for record in quick.records] == [(b"v=STSv1; id=1;",), (b"other",)]
    assert quick.ttl == 600 and quick.flags & dns.flags.AD
    reader = client()
    answer = reader._read("_mta-sts.example.test", "TXT", quick)
    assert answer == read_in_full("_mta-sts.example.test", "TXT", request, data, reader)
    assert (answer.secure, answer.ttl, answer.canonical) == (True, 600,
                                                             "_mta-sts.example.test")
    reply.answer[1].ttl = 0x80000000
    assert read_records(reply.to_wire(), request) == Records(quick.flags, quick.records, 0)


def test_records_are_read_quickly_only_for_a_plain_question() -> None:
    """A name written by dnspython (IDNA, escapes) is read in full: the reply's question
    is not the name asked, as text."""
    request = Request(question_wire("caf\u00e9.test", "A"))
    reply = dns.message.make_response(request.message())
    reply.answer.append(dns.rrset.from_text(reply.question[0].name, 60, "IN", "A",
                                            "192.0.2.1"))
    assert read_records(reply.to_wire(), request) is None


def test_too_many_records_are_read_in_full() -> None:
    """An answer over the record limit fails as before, through dnspython."""
    request = Request(question_wire("many.example.test", "A"), plain=True)
    reply = dns.message.make_response(request.message())
    reply.answer.append(dns.rrset.from_text_list(
        reply.question[0].name, 60, "IN", "A",
        [f"10.0.{n // 256}.{n % 256}" for n in range(MAX_RECORDS + 1)]))
    data = reply.to_wire(max_size=65535)
    assert read_records(data, request) is None
    answer = read_in_full("many.example.test", "A", request, data, client())
    assert answer.status is DnsStatus.FAILED


# ------------------------------------------- TLSA records dnspython refuses to read

_GOOD_DIGEST = bytes(range(32))


def _tlsa_reply(request: Request, *, cname: bool = False) -> bytes:
    """A secure reply to ``request`` (a TLSA query) with a usable record and one whose
    SHA-256 data is two octets (written as matching type 0, then patched to 1: dnspython
    writes no such record), through a CNAME when ``cname``."""
    query = request.message()
    reply = dns.message.make_response(query)
    reply.flags |= dns.flags.AD
    owner = query.question[0].name
    if cname:
        reply.answer.append(dns.rrset.from_text(owner, 300, "IN", "CNAME", "t.example.test."))
        owner = dns.name.from_text("t.example.test.")
    reply.answer.append(dns.rrset.from_text(owner, 300, "IN", "TLSA",
                                            f"3 1 1 {_GOOD_DIGEST.hex()}", "3 1 0 abcd"))
    data = bytearray(reply.to_wire())
    at = data.index(bytes.fromhex("030100abcd"))
    data[at + 2] = 1
    return bytes(data)


@pytest.mark.parametrize("cname", [False, True])
def test_a_tlsa_record_of_the_wrong_length_is_unusable_not_a_failed_lookup(
        cname: bool) -> None:
    """Such a record is only unusable (RFC 7671 section 5, RFC 7672 section 3.1.3): the
    answer's other records still count, as in Postfix.  dnspython refuses the whole reply;
    it is read with its TLSA records as opaque data instead."""
    request = request_for("_25._tcp.mx.example.test", "TLSA")
    data = _tlsa_reply(request, cname=cname)
    with pytest.raises(dns.exception.DNSException):
        dns.message.from_wire(data)
    assert read_records(data, request) is None
    answer = client()._read("_25._tcp.mx.example.test", "TLSA", parse_reply(data, request))
    assert answer.status is DnsStatus.RECORDS and answer.secure
    assert sorted((r.usage, r.selector, r.mtype, bytes(r.data)) for r in answer.records) == [
        (3, 1, 1, _GOOD_DIGEST), (3, 1, 1, bytes.fromhex("abcd"))]
    assert answer.cnames == (("_25._tcp.mx.example.test",) if cname else ())


def test_a_tlsa_reply_read_as_opaque_data_may_echo_the_question_in_another_case() -> None:
    request = request_for("_25._tcp.mx.example.test", "TLSA")
    data = bytearray(_tlsa_reply(request))
    upper = request.question.upper()
    data[12:12 + len(upper)] = upper  # the resolver's echo: letters only, the type kept
    answer = client()._read("_25._tcp.mx.example.test", "TLSA",
                            parse_reply(bytes(data), request))
    assert answer.status is DnsStatus.RECORDS and len(answer.records) == 2


def test_a_tlsa_record_shorter_than_its_fixed_fields_fails_the_lookup() -> None:
    request = request_for("_25._tcp.mx.example.test", "TLSA")
    data = bytearray(_tlsa_reply(request))
    # The two-octet record's length 5 -> 2: usage and selector alone.
    at = data.index(bytes.fromhex("030101abcd"))
    assert data[at - 2:at] == b"\x00\x05"
    data[at - 2:at] = b"\x00\x02"
    del data[at + 2:at + 5]
    answer = client()._read("_25._tcp.mx.example.test", "TLSA",
                            parse_reply(bytes(data), request))
    assert answer.status is DnsStatus.FAILED and "2 octets" in answer.detail


def test_only_tlsa_queries_read_refused_records_as_opaque() -> None:
    """The same reply answering a TXT query is refused, as dnspython refuses it."""
    request = request_for("_25._tcp.mx.example.test", "TLSA")
    data = bytearray(_tlsa_reply(request))
    txt = request_for("_25._tcp.mx.example.test", "TXT")
    txt.id = request.id
    data[12:12 + len(request.question)] = txt.question
    with pytest.raises(dns.exception.DNSException):
        parse_reply(bytes(data), txt)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_the_opaque_rewrite_changes_only_tlsa_types_of_any_bytes(data: bytes) -> None:
    rewritten = opaque_tlsa(data)
    if rewritten is not None:
        assert len(rewritten) == len(data)
        assert all(a == b for a, b in zip(data, rewritten, strict=True) if a == b)


def _answer_to(query: bytes, *, truncated: bool) -> bytes:
    """The reply a test resolver sends to ``query``: for a TLSA query the reply of
    :func:`_tlsa_reply` (TC set and no records when ``truncated``)."""
    message = dns.message.from_wire(query)
    request = Request(query[12:-11], plain=True)  # the question, between header and OPT
    request.id = message.id
    if truncated:
        reply = dns.message.make_response(message)
        reply.flags |= dns.flags.TC
        return reply.to_wire()
    return _tlsa_reply(request)


@pytest.mark.parametrize("shared", [True, False])
def test_a_truncated_tlsa_reply_is_read_over_tcp_with_the_same_rules(shared: bool) -> None:
    """UDP says truncated, TCP brings the records: read whole by the client and parsed as a
    UDP reply is (a record of the wrong length unusable, the others counted), over the
    shared socket to a loopback resolver and over a fresh socket per query to another."""
    async def main() -> DnsAnswer:
        loop = asyncio.get_running_loop()

        async def tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            size = int.from_bytes(await reader.readexactly(2))
            reply = _answer_to(await reader.readexactly(size), truncated=False)
            writer.write(len(reply).to_bytes(2) + reply)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(tcp, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        udp, _ = await loop.create_datagram_endpoint(
            lambda: UdpResponder(lambda query: _answer_to(query, truncated=True)),
            local_addr=("127.0.0.1", port))
        try:
            client = DnsClient("127.0.0.1", port, timeout=5.0)
            client._shared_socket = shared  # as for a resolver off the host
            answer = await client.query("_25._tcp.mx.example.test", "TLSA")
            assert (len(client._channels) == 1) is shared  # a fresh socket is closed after
            client.close()
            return answer
        finally:
            udp.close()
            server.close()
            await server.wait_closed()

    answer = asyncio.run(asyncio.wait_for(main(), 30))
    assert answer.status is DnsStatus.RECORDS and answer.secure
    assert sorted((r.mtype, bytes(r.data)) for r in answer.records) == [
        (1, _GOOD_DIGEST), (1, bytes.fromhex("abcd"))]


def test_a_reply_that_cannot_be_read_is_an_answer_from_a_resolver_that_is_up() -> None:
    """A malformed reply fails the lookup, but the resolver answered (``unanswered`` is
    false: ``discover`` does not report it down); silence is ``unanswered``."""
    async def main() -> tuple[DnsAnswer, DnsAnswer]:
        loop = asyncio.get_running_loop()

        # The query's id and flags of a reply, then bytes that are no question.
        garbled, _ = await loop.create_datagram_endpoint(
            lambda: UdpResponder(lambda query: query[:2] + b"\x81\x80\x00\x01" + bytes(6)
                                 + b"\xff\xff"),
            local_addr=("127.0.0.1", 0))
        silent, _ = await loop.create_datagram_endpoint(
            lambda: UdpResponder(lambda query: None), local_addr=("127.0.0.1", 0))
        try:
            ports = [t.get_extra_info("sockname")[1] for t in (garbled, silent)]
            got = [await DnsClient("127.0.0.1", p, timeout=0.3).query("a.example", "A")
                   for p in ports]
            return got[0], got[1]
        finally:
            garbled.close()
            silent.close()

    malformed, unanswered = asyncio.run(asyncio.wait_for(main(), 30))
    assert malformed.status is DnsStatus.FAILED and not malformed.unanswered
    assert unanswered.status is DnsStatus.FAILED and unanswered.unanswered
