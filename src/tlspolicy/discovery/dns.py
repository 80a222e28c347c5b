"""DNS through dnspython against one resolver the operator trusts (SEMANTICS 10).

Queries set the AD bit (RFC 6840 section 5.7) and read DNSSEC status from the AD
bit of the answer: AD = secure; NOERROR / NXDOMAIN without AD = insecure;
SERVFAIL, a timeout or a malformed answer = the lookup failed.  Answers are
cached in process no longer than their TTL (capped, never raised), failures are
never cached as answers, and concurrent queries for one (name, type) share one
query.  A failed (name, type) is not asked again during its backoff (1 s doubling
up to 60 s by default, :mod:`.backoff`): the failure itself is the answer meanwhile.

A resolver on loopback is asked over UDP sockets kept open, each shared by up to
:data:`QUERIES_PER_SOCKET` queries in flight (replies matched by id and question):
opening a socket per query cost more than the rest of the query, and one socket's
receive buffer holds that many replies (past it the kernel drops them, and the lookups
time out).  No one off the host can send from a loopback address, so the fixed source
port gives nothing away; any other resolver gets a fresh socket (a random source port)
per query, as before.

Per query, dnspython was most of the client's CPU: a query for a plain name, a refusal
and a plain answer with records are written and read without dnspython's message
objects (:mod:`._dnswire`); every other reply is read by dnspython in full.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import ipaddress
import itertools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, cast

import attrs

from ..errors import MissingDependencyError
from .backoff import FailureBackoff

try:
    import dns.edns
    import dns.entropy
    import dns.exception
    import dns.flags
    import dns.message
    import dns.name
    import dns.rcode
    import dns.rdatatype

    from . import _dnswire as wire
    from ._dnswire import MAX_RECORDS
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError.for_extra("discovery", "dnspython", "discovery") from exc

__all__ = ["DnsAnswer", "DnsClient", "DnsStatus"]

_log = logging.getLogger("tlspolicy.discovery")

#: Answers cached at most: past it, expired ones are dropped, then the oldest tenth.
MAX_CACHED_ANSWERS: Final = 500_000
#: (name, type) pairs counted in :attr:`DnsClient.sent` at most: past it the oldest tenth
#: go (a daemon asks about ever more names; the count is for tests and tools, and each
#: pair counted holds its name, about 170 bytes).
MAX_COUNTED: Final = 1_024
#: Queries in flight on one UDP socket to a loopback resolver; more open another socket.
QUERIES_PER_SOCKET: Final = 16
#: Extended DNS Error codes that mean "DNSSEC validation failed" (RFC 8914 section 4).
_BOGUS_EDE: Final = frozenset({1, 2, 5, 6, 7, 8, 9, 10, 11, 12})


class DnsStatus(enum.Enum):
    """What a lookup found."""

    RECORDS = "records"
    NODATA = "nodata"
    NXDOMAIN = "nxdomain"
    FAILED = "failed"


@attrs.frozen(slots=True)
class DnsAnswer:
    """One answer: status, AD-bit security, the records of the queried type (after
    CNAMEs), the CNAME chain, how long it may be cached, and a detail for logs.

    ``bogus`` is set when the resolver's Extended DNS Error says validation failed;
    ``unanswered`` when no answer came at all (timeout, connection refused): the
    resolver is down or unreachable, as opposed to answering SERVFAIL or REFUSED.
    """

    name: str
    rdtype: str
    status: DnsStatus
    secure: bool
    records: tuple[Any, ...] = ()
    canonical: str = ""
    cnames: tuple[str, ...] = ()
    ttl: int = 0
    bogus: bool = False
    detail: str = ""
    #: When the answer runs out (seconds since the epoch, by the client's clock): anything
    #: derived from it must not outlive this, however long it sits in a cache.
    expires_at: float = 0.0
    unanswered: bool = False

    @property
    def exists(self) -> bool:
        """NOERROR with or without records (the name exists)."""
        return self.status in (DnsStatus.RECORDS, DnsStatus.NODATA)


@attrs.frozen(slots=True)
class _Unsent(DnsAnswer):
    """The failure of a query never sent: no slot for queries in flight came free in its
    time.  It says nothing of the name or the resolver, so it is not remembered as the
    name's failure (the next lookup asks again) and is not ``unanswered``."""


@attrs.frozen(slots=True)
class _Failed:
    """A failed lookup as the backoff remembers it: its detail after the question
    (``"SERVFAIL"``, shared between names) and its flags.  The answer is made again from
    the question while the failure is the answer (see :meth:`DnsClient._held`): equal to
    the one that failed, at under half its size (the name is held once, in the key)."""

    reason: str
    bogus: bool
    unanswered: bool
    expires_at: float


#: Reasons shared between remembered failures, at most; a full table starts again empty.
_REASONS_KEPT: Final = 256


def _text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def is_loopback(address: str) -> bool:
    """Whether ``address`` is a loopback IP address."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class _Channel(asyncio.DatagramProtocol):
    """One connected UDP socket to the resolver, shared by the queries in flight: each
    reply goes to the query with its id, and must answer that query's question."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.waiting: dict[int, tuple[wire.Request, asyncio.Future[wire.Reply]]] = {}
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport is not a DatagramTransport subclass.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        found = self.waiting.get(int.from_bytes(data[:2])) if len(data) >= 2 else None
        if found is None:
            return  # a reply to a query given up on (or a stray datagram)
        request, future = found
        if future.done():
            return
        # A resolver's refusal is read from its header and question (a full parse of one
        # was most of what a failing lookup cost), and a plain answer's records without
        # building a message; anything else is read by dnspython.
        quick = wire.read_refusal(data, request) or wire.read_records(data, request)
        if quick is not None:
            future.set_result(quick)
            return
        try:
            reply = wire.parse_reply(data, request)
        except Exception as exc:  # truncated (TCP next), malformed, another query's
            future.set_exception(exc)
            return
        future.set_result(reply)

    def error_received(self, exc: Exception) -> None:
        # An ICMP error (nothing listening): which query it was for is not known, and
        # every query in flight to that resolver meets the same.
        self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc if exc is not None else ConnectionError("DNS socket closed"))

    def _fail(self, exc: Exception) -> None:
        for _, future in self.waiting.values():
            if not future.done():
                future.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()



def _key(name: str, rdtype: str) -> tuple[str, str]:
    """What answers and remembered failures are kept under: the name in lower case
    without a final dot, and the type."""
    return (name.lower().rstrip("."), rdtype)


class DnsClient:
    """Queries one resolver at ``address``:``port``.

    ``trusted`` says whether its AD bits are believed at all; the caller sets it
    from the resolver-trust rule (loopback or explicitly trusted, and the AD
    probe passed).  ``timeout`` bounds each query (UDP, and TCP on truncation);
    ``max_ttl`` caps how long an answer is cached; ``max_in_flight`` bounds the
    queries outstanding at once.  ``backoff`` remembers failed lookups (a
    :class:`~tlspolicy.discovery.backoff.FailureBackoff`; 1 s doubling up to 60 s by
    default): while one is held, :meth:`query` returns the failure without sending,
    and ``on_suppressed`` (if given) is called.
    """

    def __init__(self, address: str, port: int = 53, *, timeout: float = 3.0,
                 max_ttl: int = 3600, trusted: bool = True, max_in_flight: int = 256,
                 clock: Callable[[], float] = time.time,
                 backoff: FailureBackoff[tuple[str, str], DnsAnswer | _Failed] | None = None,
                 on_suppressed: Callable[[], None] | None = None) -> None:
        self.address = address
        self.port = port
        self.timeout = timeout
        self.max_ttl = max_ttl
        self.trusted = trusted
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, DnsAnswer]] = {}
        self._in_flight: dict[tuple[str, str], asyncio.Task[DnsAnswer]] = {}
        self._limit = asyncio.Semaphore(max_in_flight)
        self._probe_limit = asyncio.Semaphore(1)
        #: Queries sent to the resolver, per (name, type): what caching saved is visible
        #: here (the latest :data:`MAX_COUNTED` pairs).
        self.sent: collections.Counter[tuple[str, str]] = collections.Counter()
        #: Failed lookups held back (their failure is the answer until the wait ends).
        self.backoff: FailureBackoff[tuple[str, str], DnsAnswer | _Failed] = (
            backoff if backoff is not None else FailureBackoff())
        self._reasons: dict[str, str] = {}
        self._on_suppressed = on_suppressed
        # The UDP sockets kept open to a loopback resolver (the first opened at the first
        # query, more while more queries are in flight).
        self._shared_socket = is_loopback(address)
        self._channels: list[_Channel] = []
        self._opening = asyncio.Lock()

    def close(self) -> None:
        """Close the sockets kept open to the resolver (a later query opens another)."""
        channels, self._channels = self._channels, []
        for channel in channels:
            channel.close()

    def _channel_with_room(self) -> _Channel | None:
        channels = self._channels
        for channel in list(channels):
            if channel.closed:
                channels.remove(channel)
            elif len(channel.waiting) < QUERIES_PER_SOCKET:
                return channel
        return None

    async def _free_channel(self) -> _Channel:
        """A socket with room for one more query; the caller registers its query before
        it next waits, so that queries starting together share sockets."""
        channel = self._channel_with_room()
        if channel is not None:
            return channel
        async with self._opening:  # one socket opened at a time, then looked at again
            channel = self._channel_with_room()
            if channel is None:
                _, channel = await asyncio.get_running_loop().create_datagram_endpoint(
                    _Channel, remote_addr=(self.address, self.port))
                self._channels.append(channel)
            return channel

    def forget(self, suffix: str | None = None) -> None:
        """Drop cached answers and remembered failures (all, or those for names ending
        in ``suffix``)."""
        if suffix is None:
            self._cache.clear()
            self.backoff.forget()
            return
        suffix = suffix.lower().rstrip(".")
        dotted = "." + suffix

        def under(key: tuple[str, str]) -> bool:
            return key[0] == suffix or key[0].endswith(dotted)

        for key in [k for k in self._cache if under(k)]:
            del self._cache[key]
        self.backoff.forget(under)

    def release(self, name: str, rdtype: str, until: float) -> bool:
        """Forget the remembered failure of (name, type) when its wait ends no later than
        ``until``: the caller holds the lookup back at least that long itself, so the
        entry would never hold anything back (see :meth:`FailureBackoff.release`)."""
        return self.backoff.release(_key(name, rdtype), until)

    def drop(self, name: str, rdtype: str) -> None:
        """Drop the cached answer for (name, type), if any (an answer no longer needed)."""
        self._cache.pop(_key(name, rdtype), None)

    def cached(self, name: str, rdtype: str) -> DnsAnswer | None:
        """The cached, unexpired answer for (name, type), if any."""
        key = _key(name, rdtype)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > self._clock():
            return hit[1]
        return None

    async def query(self, name: str, rdtype: str) -> DnsAnswer:
        """The answer for ``name`` / ``rdtype`` (``"MX"``, ``"TXT"``, ``"TLSA"``, ...).

        Never raises for anything the network or the resolver does: failures
        come back as :attr:`DnsStatus.FAILED`.
        """
        key = _key(name, rdtype)
        hit = self._cache.get(key)
        if hit is not None:
            if hit[0] > self._clock():
                return hit[1]
            del self._cache[key]
        pending = self._in_flight.get(key)
        if pending is None:
            held = self._held(key)
            if held is not None:
                # Failed a moment ago: the failure is the answer until its wait ends.
                if self._on_suppressed is not None:
                    self._on_suppressed()
                return held
            # The query runs as its own task: a caller that gives up (its deadline, its
            # client gone) cancels only its wait, never the answer others wait for.
            pending = asyncio.get_running_loop().create_task(self._shared(key, rdtype))
            self._in_flight[key] = pending
            pending.add_done_callback(self._settled)
        return await asyncio.shield(pending)

    async def _shared(self, key: tuple[str, str], rdtype: str) -> DnsAnswer:
        try:
            answer = await self._query(key[0], rdtype)
        finally:
            del self._in_flight[key]
        if isinstance(answer, _Unsent):
            pass  # never asked: nothing to remember of the name
        elif answer.status is DnsStatus.FAILED:
            self.backoff.failed(key, self._remembered(key, answer), self._clock())
        else:
            self.backoff.succeeded(key)
            if answer.ttl > 0:
                self._store(key, answer)
        return answer

    def _remembered(self, key: tuple[str, str], answer: DnsAnswer) -> DnsAnswer | _Failed:
        """What the backoff keeps of a failed ``answer``: the compact form when the
        answer can be made again from ``key`` and it, else the answer itself."""
        name, rdtype = key
        prefix = f"{rdtype} {name}: "
        if not (answer.name == answer.canonical == name and answer.rdtype == rdtype
                and not answer.secure and not answer.records and not answer.cnames
                and answer.ttl == 0 and answer.detail.startswith(prefix)):
            return answer
        reason = answer.detail[len(prefix):]
        reasons = self._reasons
        shared = reasons.get(reason)
        if shared is None:
            if len(reasons) >= _REASONS_KEPT:
                reasons.clear()
            shared = reasons[reason] = reason
        return _Failed(shared, answer.bogus, answer.unanswered, answer.expires_at)

    def _held(self, key: tuple[str, str]) -> DnsAnswer | None:
        """The remembered failure of ``key`` while its wait runs, as the answer."""
        held = self.backoff.held(key, self._clock())
        if not isinstance(held, _Failed):
            return held
        name, rdtype = key
        return DnsAnswer(name, rdtype, DnsStatus.FAILED, False, canonical=name,
                         bogus=held.bogus, detail=f"{rdtype} {name}: {held.reason}",
                         expires_at=held.expires_at, unanswered=held.unanswered)

    def _store(self, key: tuple[str, str], answer: DnsAnswer) -> None:
        cache = self._cache
        limit = MAX_CACHED_ANSWERS
        if key not in cache and len(cache) >= limit:
            # Expired answers are otherwise dropped only when asked for again.
            now = self._clock()
            for old in [k for k, (until, _) in cache.items() if until <= now]:
                del cache[old]
            if len(cache) >= limit * 9 // 10:
                for old in list(itertools.islice(cache, max(1, limit // 10))):
                    del cache[old]
        cache[key] = (answer.expires_at, answer)

    @staticmethod
    def _settled(task: asyncio.Task[DnsAnswer]) -> None:
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have given up

    def cancel_in_flight(self) -> list[asyncio.Task[DnsAnswer]]:
        """Cancel the queries still running (closing: nobody waits for them any more);
        returns them, for the caller to await."""
        tasks = list(self._in_flight.values())
        for task in tasks:
            task.cancel()
        return tasks

    def _failed(self, name: str, rdtype: str, detail: str, *, bogus: bool = False,
                unanswered: bool = False) -> DnsAnswer:
        return DnsAnswer(name, rdtype, DnsStatus.FAILED, False, canonical=name, bogus=bogus,
                         detail=detail, unanswered=unanswered)

    def _refused(self, name: str, rdtype: str, rcode: int, bogus: bool) -> DnsAnswer:
        text = dns.rcode.to_text(cast(dns.rcode.Rcode, rcode))
        return self._failed(name, rdtype, f"{rdtype} {name}: {text}"
                            + (" (DNSSEC validation failed)" if bogus else ""), bogus=bogus)

    async def _query(self, name: str, rdtype: str,
                     limit: asyncio.Semaphore | None = None) -> DnsAnswer:
        answer = await self._ask(name, rdtype, limit)
        if answer.ttl > 0:
            answer = attrs.evolve(answer, expires_at=self._clock() + answer.ttl)
        else:
            answer = attrs.evolve(answer, expires_at=self._clock())
        return answer

    async def _ask(self, name: str, rdtype: str,
                   limit: asyncio.Semaphore | None = None) -> DnsAnswer:
        try:
            request = wire.request_for(name, rdtype)
        except (dns.exception.DNSException, ValueError) as exc:
            return self._failed(name, rdtype, f"cannot query {name!r}: {exc}")
        if limit is None:
            limit = self._limit
        if not limit.locked():
            await limit.acquire()  # a slot is free: taken at once, no deadline to set
        else:
            try:
                # The wait for a slot is bounded too: behind a backlog of queries (a flood
                # of names the resolver never answers) a query gives up unsent within one
                # query's time, so that the backlog drains instead of holding every later
                # query back.
                async with asyncio.timeout(self.timeout * 2.5):
                    await limit.acquire()
            except TimeoutError:
                return _Unsent(name, rdtype, DnsStatus.FAILED, False, canonical=name,
                               detail=f"{rdtype} {name}: not sent: no free slot for queries "
                                      f"in flight within {self.timeout * 2.5:g} s")
        sent = self.sent
        sent[(name, rdtype)] += 1
        if len(sent) > MAX_COUNTED:
            for old in list(itertools.islice(sent, MAX_COUNTED // 10)):
                del sent[old]
        try:
            async with asyncio.timeout(self.timeout * 2.5):
                response = await self._over_channel(request)
        except (dns.exception.Timeout, OSError, TimeoutError, EOFError) as exc:
            return self._failed(name, rdtype, f"{rdtype} {name}: {type(exc).__name__}: {exc}",
                                unanswered=True)
        except (dns.exception.DNSException, ValueError) as exc:
            # A reply came, but none that can be read as the answer: the resolver is up.
            return self._failed(name, rdtype, f"{rdtype} {name}: {type(exc).__name__}: {exc}")
        finally:
            limit.release()
        return self._read(name, rdtype, response)

    def _read(self, name: str, rdtype: str, response: wire.Reply) -> DnsAnswer:
        """The answer a reply to the query for ``name`` / ``rdtype`` gives (its time to
        live not yet set)."""
        if isinstance(response, wire.Records):
            # ``name`` was asked in plain labels: its text is the question's (see _text).
            found = response.records
            if rdtype == "TLSA":
                found = tuple(map(wire.tlsa_record, found))
            return DnsAnswer(name, rdtype, DnsStatus.RECORDS,
                             self.trusted and bool(response.flags & dns.flags.AD),
                             found, name.lower(), (), max(min(response.ttl, self.max_ttl), 0))
        if isinstance(response, wire.Refusal):
            return self._refused(name, rdtype, response.rcode,
                                 any(code in _BOGUS_EDE for code in response.errors))
        rcode = response.rcode()
        secure = self.trusted and bool(response.flags & dns.flags.AD)
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            return self._refused(name, rdtype, rcode, any(
                isinstance(option, dns.edns.EDEOption) and int(option.code) in _BOGUS_EDE
                for option in response.options))
        try:
            chain = response.resolve_chaining()  # type: ignore[attr-defined]
        except dns.exception.DNSException as exc:
            return self._failed(name, rdtype, f"{rdtype} {name}: malformed answer: {exc}")
        cnames = tuple(_text(rrset.name) for rrset in chain.cnames)
        canonical = _text(chain.canonical_name)
        ttl = min(int(chain.minimum_ttl), self.max_ttl)
        if chain.answer is None and not any(
                rrset.rdtype == dns.rdatatype.SOA for rrset in response.authority):
            ttl = 0  # a negative answer without SOA may not be cached (RFC 2308 section 5)
        if rcode == dns.rcode.NXDOMAIN:
            return DnsAnswer(name, rdtype, DnsStatus.NXDOMAIN, secure, (), canonical, cnames,
                             max(ttl, 0))
        if chain.answer is None:
            return DnsAnswer(name, rdtype, DnsStatus.NODATA, secure, (), canonical, cnames,
                             max(ttl, 0))
        records = tuple(chain.answer)
        if rdtype == "TLSA":
            try:
                # TlsaRecords, from opaque data where dnspython refused a record (see
                # wire.parse_reply).
                records = tuple(wire.tlsa_record(r) for r in records)
            except ValueError as exc:
                return self._failed(name, rdtype, f"{rdtype} {name}: malformed answer: {exc}")
        if len(records) > MAX_RECORDS:
            return self._failed(name, rdtype,
                                f"{rdtype} {name}: {len(records)} records, over {MAX_RECORDS}")
        return DnsAnswer(name, rdtype, DnsStatus.RECORDS, secure, records, canonical, cnames,
                         max(ttl, 0))

    async def _over_channel(self, request: wire.Request) -> wire.Reply:
        """The reply over UDP, over TCP when it comes truncated: a shared socket to a
        resolver on loopback, a fresh one (a random source port) to any other."""
        shared = self._shared_socket
        if shared:
            channel = await self._free_channel()
        else:
            _, channel = await asyncio.get_running_loop().create_datagram_endpoint(
                _Channel, remote_addr=(self.address, self.port))
        waiting = channel.waiting
        while request.id in waiting:  # ids are random: another query in flight has it
            request.id = dns.entropy.random_16()
        future: asyncio.Future[wire.Reply] = \
            asyncio.get_running_loop().create_future()
        waiting[request.id] = (request, future)
        try:
            assert channel.transport is not None
            channel.transport.sendto(request.wire())
            try:
                async with asyncio.timeout(self.timeout):  # cheaper than wait_for on 3.11
                    return await future
            except TimeoutError:
                raise dns.exception.Timeout(  # type: ignore[no-untyped-call]
                    timeout=self.timeout) from None
        except dns.message.Truncated:
            return await self._over_tcp(request)
        finally:
            if waiting.get(request.id, (None, None))[1] is future:
                del waiting[request.id]
            channels = self._channels
            if not shared:
                channel.close()
            elif not waiting and channel in channels and channel is not channels[0]:
                # A burst is over: only the first socket stays open.
                channels.remove(channel)
                channel.close()

    async def _over_tcp(self, request: wire.Request) -> wire.Reply:
        """The reply over TCP (RFC 1035 section 4.2.2: each message after its length),
        read whole before dnspython reads it, as a UDP reply is."""
        async with asyncio.timeout(self.timeout):
            reader, writer = await asyncio.open_connection(self.address, self.port)
            try:
                query = request.wire()
                writer.write(len(query).to_bytes(2) + query)
                size = int.from_bytes(await reader.readexactly(2))
                data = await reader.readexactly(size)
            finally:
                writer.close()
        return wire.parse_reply(data, request, truncation=False)

    async def probe(self, name: str = ".") -> DnsAnswer:
        """Query ``name`` SOA, bypassing the cache, to check the resolver validates.  The
        probe has a slot of its own: a backlog of other queries must not make it fail,
        which would turn DNSSEC off."""
        return await self._query(name.rstrip(".") or ".", "SOA", self._probe_limit)


def check_resolv_conf(path: str | Path | None, resolver: str, port: int) -> None:
    """Warn when ``resolver``:``port`` is not a name server of ``path`` (the system's
    ``resolv.conf``, which Postfix reads), whose answers could then differ."""
    if path is None:
        return
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return
    servers = [line.split()[1] for line in text.splitlines()
               if line.startswith("nameserver") and len(line.split()) > 1]
    if resolver not in servers or port != 53:
        _log.warning("discovery resolver %s:%d is not the one in %s (%s): Postfix may see "
                     "different DNSSEC answers", resolver, port, path,
                     ", ".join(servers) or "none")
