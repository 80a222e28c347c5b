"""The DNS client's own wire handling agrees with dnspython's.

Queries for plain names are written without a dnspython message, and a SERVFAIL or
REFUSED reply is recognised from its header, question and OPT record before any full
parse.  Hypothesis checks that the query bytes are dnspython's, and that whatever the
quick reading accepts -- from well-formed refusals to mutated and arbitrary bytes --
dnspython reads the same way (a reply to this query, that rcode, those Extended DNS
Errors); a reply that is not one never raises out of the socket's handler.
"""

from __future__ import annotations

import asyncio

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rrset
from hypothesis import given, settings
from hypothesis import strategies as st

from tlspolicy.discovery.dns import (
    _BOGUS_EDE,
    EDNS_PAYLOAD,
    _Channel,
    _question_wire,
    _Refusal,
    _refusal,
    _Request,
)

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
    request = _Request(_question_wire(name, rdtype))
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
        _question_wire("example.test", "NOSUCHTYPE")
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
def replies(draw: st.DrawFn) -> tuple[_Request, dns.message.Message, bytes]:
    """A query, and a reply in the shapes resolvers send (and some they should not)."""
    name = draw(PLAIN_NAMES.filter(lambda n: len(n) < 200))
    rdtype = draw(st.sampled_from(RDTYPES[:6]))
    request = _Request(_question_wire(name, rdtype))
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
        case: tuple[_Request, dns.message.Message, bytes]) -> None:
    request, query, data = case
    quick = _refusal(data, request)
    if quick is None:
        return
    assert dnspython_reading(data, query) == (quick.rcode, quick.errors)
    assert quick.rcode in (dns.rcode.SERVFAIL, dns.rcode.REFUSED)


@settings(max_examples=300, deadline=None)
@given(replies())
def test_a_reply_is_taken_as_an_answer_exactly_when_dnspython_would(
        case: tuple[_Request, dns.message.Message, bytes]) -> None:
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
    request = _Request(_question_wire("example.test", "TXT"))
    request.id = ident
    data = ident.to_bytes(2) + tail
    quick = _refusal(data, request)
    if quick is not None:
        assert dnspython_reading(data, request.message()) == (quick.rcode, quick.errors)


def test_plain_refusals_are_read_without_dnspython() -> None:
    """The quick reading takes what resolvers send: SERVFAIL with a validation EDE, with
    no OPT record, with no question; REFUSED."""
    request = _Request(_question_wire("_mta-sts.example.test", "TXT"))
    query = request.message()
    shapes = []
    bogus = dns.message.make_response(query)
    bogus.set_rcode(dns.rcode.SERVFAIL)
    bogus.use_edns(0, 0, 1232, options=[dns.edns.EDEOption(dns.edns.EDECode.DNSSEC_BOGUS,
                                                           "validation failure")])
    shapes.append((bogus.to_wire(), _Refusal(2, (6,))))
    bare = dns.message.make_response(query)
    bare.set_rcode(dns.rcode.SERVFAIL)
    bare.use_edns(False)
    shapes.append((bare.to_wire(), _Refusal(2, ())))
    bare.question = []
    shapes.append((bare.to_wire(), _Refusal(2, ())))
    refused = dns.message.make_response(query)
    refused.set_rcode(dns.rcode.REFUSED)
    shapes.append((refused.to_wire(), _Refusal(5, ())))
    for data, expected in shapes:
        assert _refusal(data, request) == expected
        assert dnspython_reading(data, query) == (expected.rcode, expected.errors)
    assert 6 in _BOGUS_EDE


def test_the_socket_handler_settles_every_reply_without_raising() -> None:
    """Whatever arrives with a waiting query's id settles that query (a reply, a refusal
    or an error), and never raises out of the handler."""
    @settings(max_examples=300, deadline=None)
    @given(replies())
    def check(case: tuple[_Request, dns.message.Message, bytes]) -> None:
        request, _, data = case
        data = request.id.to_bytes(2) + data[2:]
        loop = asyncio.new_event_loop()
        try:
            channel = _Channel()
            future: asyncio.Future[dns.message.Message | _Refusal] = loop.create_future()
            channel.waiting[request.id] = (request, future)
            channel.datagram_received(data, ("127.0.0.1", 53))
            if len(data) >= 2:
                assert future.done()
                if future.exception() is None:
                    assert isinstance(future.result(), (dns.message.Message, _Refusal))
        finally:
            loop.close()

    check()
