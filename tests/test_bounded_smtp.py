"""A report's mail against mail servers run by strangers: real servers on loopback that
trickle, flood or stall, and an MX list longer than the attempts a report gets.

The servers here are asyncio servers written for the misbehaviour (aiosmtpd behaves);
each stops on its own.  No test measures time: a session that is not bounded would
finish the trickle or the flood and succeed, which each test asserts does not happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tlspolicy.discovery.models import TlsRptRecord
from tlspolicy.policies.tlsrpt import PolicyType, SessionResult
from tlspolicy.reporting import DAY, BufferedSink, Reporter, ReportingConfig, period_start
from tlspolicy.reporting.bounded_smtp import REPLY_BYTES, BoundedSMTP, bounded
from tlspolicy.stores import SqliteStore

pytestmark = [pytest.mark.network, pytest.mark.timeout(60)]

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.contextmanager
def server(handler: Handler, host: str = "127.0.0.1", port: int = 0) -> Iterator[int]:
    """A loopback server running ``handler`` for each connection in its own thread and
    loop; yields its port, and closes it and every connection after the block."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, object] = {}

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(handler(reader, writer), 20)
        except (OSError, TimeoutError, asyncio.CancelledError):
            pass  # the client went, the handler ran out of time, or the server stops
        finally:
            writer.close()

    async def start() -> None:
        srv = await asyncio.start_server(guarded, host, port)
        holder["server"] = srv
        holder["port"] = srv.sockets[0].getsockname()[1]
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    started.wait(10)
    try:
        yield int(holder["port"])  # type: ignore[call-overload]
    finally:
        async def stop() -> None:
            srv = holder["server"]
            srv.close()  # type: ignore[attr-defined]
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            # Each handler's own ending (its writer closed) runs before the loop stops.
            await asyncio.gather(*tasks, return_exceptions=True)
            await srv.wait_closed()  # type: ignore[attr-defined]

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_a_greeting_trickled_a_byte_at_a_time_is_cut_off_at_the_block_end() -> None:
    """Every byte comes within the read timeout (2 s), so smtplib alone waits for all of
    them; the greeting would be complete after about 6 s, and the block ends at 0.5 s."""
    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for byte in b"220 slow.example ESMTP\r\n":
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.25)
        await reader.read(100)

    with server(trickle) as port, bounded(0.5):
        smtp = BoundedSMTP(timeout=2)
        with pytest.raises(smtplib.SMTPServerDisconnected, match=r"longer than 0\.5 s"):
            smtp.connect("127.0.0.1", port)


def test_a_reply_of_endless_lines_is_refused_past_its_bound() -> None:
    """A greeting of 4 MB of ``220-`` lines, then its last line: read whole, it would be
    accepted; it is refused once it passes REPLY_BYTES."""
    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = b"220-" + b"x" * 1000 + b"\r\n"
        for _ in range(4000):
            writer.write(line)
            await writer.drain()
        writer.write(b"220 done\r\n")
        await writer.drain()
        await reader.read(100)

    with server(flood) as port:
        smtp = BoundedSMTP(timeout=5)
        with pytest.raises(smtplib.SMTPServerDisconnected,
                           match=f"a reply longer than {REPLY_BYTES} bytes"):
            smtp.connect("127.0.0.1", port)


def test_a_well_behaved_server_is_talked_to_as_before() -> None:
    """Within the bounds nothing changes: greeting, a long EHLO reply, QUIT, and the
    server sees the connection closed once the session is, not when the block ends."""
    closed = threading.Event()

    async def polite(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 ok.example ESMTP\r\n")
        await writer.drain()
        while line := await reader.readline():
            if line.upper().startswith(b"EHLO"):
                writer.write(b"".join(b"250-EXT%d\r\n" % i for i in range(200)) + b"250 OK\r\n")
            elif line.upper().startswith(b"QUIT"):
                writer.write(b"221 bye\r\n")
            else:
                writer.write(b"250 OK\r\n")
            await writer.drain()
        closed.set()  # the client's end of the connection

    with server(polite) as port, bounded(30):
        smtp = BoundedSMTP(timeout=5, local_hostname="client.test")
        assert smtp.connect("127.0.0.1", port)[0] == 220
        assert smtp.ehlo()[0] == 250 and smtp.has_extn("ext199")
        smtp.quit()
        assert closed.wait(10)


class _Lookups:
    """The DNS answers a delivery gets (the servers behind them are real): MX hosts,
    each with its addresses."""

    def __init__(self, addresses: dict[str, list[str]]) -> None:
        self.hosts = tuple(addresses)
        self.addresses_of = addresses

    async def tlsrpt(self, domain: str) -> TlsRptRecord:
        return TlsRptRecord("v=TLSRPTv1; rua=mailto:r@victim.test", ("mailto:r@victim.test",))

    async def mx_hosts(self, domain: str) -> tuple[str, ...]:
        return self.hosts

    async def addresses(self, host: str) -> list[str]:
        return self.addresses_of[host]


def _dkim_key(tmp_path: Path) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "dkim.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    return str(path)


async def _one_result(store: SqliteStore, start: int) -> None:
    """A result for victim.test recorded in the period beginning at ``start``."""
    sink = BufferedSink(lambda: store, clock=lambda: start + 10)
    sink.record(SessionResult(PolicyType.NO_POLICY_FOUND, "victim.test"))
    await sink._flush(store)


def _reporting(**changes: Any) -> ReportingConfig:
    return ReportingConfig(organization_name="o", contact_info="postmaster@sender.test",
                           submitter="sender.test", mail_from="tlsrpt@sender.test",
                           **changes)


def _mailed_once(tmp_path: Path, lookups: _Lookups, port: int) -> list[Any]:
    """One report for victim.test, mailed to ``mailto:r@victim.test`` through ``lookups``
    to servers on ``port`` (timeout 5 s): the deliveries tried."""
    start = period_start(1_800_000_000)

    async def main() -> list[Any]:
        store = SqliteStore(tmp_path / "reports.sqlite3")
        try:
            await _one_result(store, start)
            config = _reporting(dkim_key_file=_dkim_key(tmp_path), timeout=5.0,
                                smtp_port=port)
            reporter = Reporter(store, config, clock=lambda: start + DAY + config.grace + 1,
                                lookups=lookups)
            await reporter.build(start)
            return await reporter.send()
        finally:
            await store.close()

    return asyncio.run(asyncio.wait_for(main(), 40))


def test_a_mailed_report_is_tried_at_four_addresses_whatever_the_mx_list(
        tmp_path: Path) -> None:
    """Four MX hosts of two addresses each, every one a server that hangs up at once: the
    report is tried at four of the eight, not at all of them (each try may take the
    whole timeout, and the stranger's list would set the total)."""
    connections: list[str] = []
    lock = threading.Lock()

    def hang_up(name: str) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with lock:
                connections.append(name)
        return handler

    addresses = {f"mx{i}.victim.test": [f"127.0.0.{10 + 2 * i}", f"127.0.0.{11 + 2 * i}"]
                 for i in range(4)}

    with server(hang_up("127.0.0.10"), "127.0.0.10") as port, contextlib.ExitStack() as stack:
        for address in (a for host in addresses.values() for a in host if a != "127.0.0.10"):
            stack.enter_context(server(hang_up(address), address, port))
        tried = _mailed_once(tmp_path, _Lookups(addresses), port)
    assert [d.state for d in tried] == ["pending"]  # not delivered: tried again later
    assert len(connections) == 4


class _SlowSender:
    """A sender whose every delivery takes ``seconds`` (within the timeout's four tries),
    recording what each node delivered."""

    def __init__(self, node: str, seconds: float, log: list[tuple[str, str]]) -> None:
        self.node, self.seconds, self.log = node, seconds, log

    async def deliver(self, uri: str, stored: object, body: bytes) -> None:
        await asyncio.sleep(self.seconds)
        self.log.append((self.node, uri))

    def message(self, stored: object, rcpt: str, body: bytes) -> bytes:
        return b""


_RUA = ("https://a.victim.test/r", "https://b.victim.test/r", "https://c.victim.test/r")


class _RuaLookups(_Lookups):
    async def tlsrpt(self, domain: str) -> TlsRptRecord:
        return TlsRptRecord("v=TLSRPTv1; rua=" + ",".join(_RUA), _RUA)


def _two_nodes(tmp_path: Path, sender_a: _SlowSender, sender_b: _SlowSender,
               b_after: float) -> list[str]:
    """A report for the three _RUA built by node A; A sends at once and B ``b_after``
    seconds later, on one SQLite file, ``timeout`` 0.2 s and ``lock_ttl`` 1 s; the
    report's delivery states afterwards."""
    start = period_start(1_800_000_000)

    async def main() -> list[str]:
        path = tmp_path / "shared.sqlite3"
        store_a, store_b = SqliteStore(path), SqliteStore(path)
        try:
            await _one_result(store_a, start)
            config = _reporting(timeout=0.2, lock_ttl=1.0)
            clock = lambda: start + DAY + config.grace + 1  # noqa: E731
            node_a = Reporter(store_a, config, clock=clock, lookups=_RuaLookups({}),
                              sender=sender_a)
            node_b = Reporter(store_b, config, clock=clock, lookups=_RuaLookups({}),
                              sender=sender_b)
            await node_a.build(start)

            async def later() -> object:
                await asyncio.sleep(b_after)
                return await node_b.send()

            await asyncio.gather(node_a.send(), later())
            [stored] = await node_a.stored()
            return [d.state for d in stored.deliveries]
        finally:
            await store_a.close()
            await store_b.close()

    return asyncio.run(asyncio.wait_for(main(), 30))


def test_a_send_that_outlasts_the_lock_keeps_it_and_sends_each_rua_once(
        tmp_path: Path) -> None:
    """Three rua of 0.7 s each against a 1 s lock: node A takes the lock again before each
    delivery, so node B, starting at 1.2 s (after a lock taken once would have run out),
    finds it held and sends nothing; each rua gets the report once."""
    delivered: list[tuple[str, str]] = []
    states = _two_nodes(tmp_path, _SlowSender("a", 0.7, delivered),
                        _SlowSender("b", 0.7, delivered), 1.2)
    assert states == ["delivered"] * 3
    assert sorted(uri for _node, uri in delivered) == sorted(_RUA)
    assert {node for node, _uri in delivered} == {"a"}


def test_a_stalled_handshake_is_cut_off_and_no_session_is_opened_after_the_block_end(
        ) -> None:
    """The server says 220 to STARTTLS and then nothing: the handshake runs on a socket
    that STARTTLS took over from the session, and is shut all the same when the block
    ends; the fallback's plaintext session, due after that, is not opened."""
    from tlspolicy import Resolver, loads_toml
    from tlspolicy.adapters.smtplib import starttls

    connections: list[int] = []

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        writer.write(b"220 stall.example ESMTP\r\n")
        await writer.drain()
        while line := await reader.readline():
            if line.upper().startswith(b"EHLO"):
                writer.write(b"250-stall.example\r\n250 STARTTLS\r\n")
            elif line.upper().startswith(b"STARTTLS"):
                writer.write(b"220 go ahead\r\n")
                await writer.drain()
                await asyncio.sleep(10)  # no handshake
                return
            await writer.drain()

    config = loads_toml('[global]\ntls = "ifavailable"\n', "t.toml")
    decision = Resolver(config).resolve("victim.test", mx_host="mx.victim.test")
    with server(stall) as port, bounded(0.5):
        smtp = BoundedSMTP(timeout=5, local_hostname="client.test")
        smtp.connect("127.0.0.1", port)
        with pytest.raises((smtplib.SMTPException, OSError)):
            result = starttls(decision, "mx.victim.test", port, smtp=smtp, timeout=5)
            result.smtp.quit()
    assert connections == [1]


def test_a_host_without_an_address_is_passed_over_and_lookups_stop_at_four(
        tmp_path: Path) -> None:
    """Forty MX hosts: the first has no address, the others hang up at once.  The report
    is tried at four addresses, after looking up no more than four hosts."""
    from tlspolicy.reporting import ReportingError

    looked_up: list[str] = []
    connections: list[str] = []

    class Lookups(_Lookups):
        async def addresses(self, host: str) -> list[str]:
            looked_up.append(host)
            if host == "mx0.victim.test":
                raise ReportingError(f"{host} has no address")
            return ["127.0.0.1"]

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append("x")

    hosts = {f"mx{i}.victim.test": ["127.0.0.1"] for i in range(40)}

    with server(hang_up) as port:
        [error] = [d.error for d in _mailed_once(tmp_path, Lookups(hosts), port)]
    assert looked_up == [f"mx{i}.victim.test" for i in range(4)]
    assert len(connections) == 3  # mx1 to mx3: mx0 has no address
    assert "mx0.victim.test has no address" in error and "mx3.victim.test [127.0.0.1]" in error


def test_a_node_whose_lock_was_taken_over_meanwhile_stops_and_keeps_the_newer_state(
        tmp_path: Path) -> None:
    """Node A's first delivery outlasts its lock (a sender slower than any real one);
    node B takes the lock, sends all three and gives the lock back.  A, taking the lock
    again, finds the report changed: it sends nothing more and does not write its older
    view over B's."""
    delivered: list[tuple[str, str]] = []

    class FirstSlow(_SlowSender):
        async def deliver(self, uri: str, stored: object, body: bytes) -> None:
            await asyncio.sleep(1.6 if not self.log else 0.0)
            self.log.append((self.node, uri))

    states = _two_nodes(tmp_path, FirstSlow("a", 0, delivered),
                        _SlowSender("b", 0.0, delivered), 1.2)
    assert states == ["delivered"] * 3  # B's state, not A's older view
    assert [uri for node, uri in delivered if node == "b"] == list(_RUA)
    assert [uri for node, uri in delivered if node == "a"] == [_RUA[0]]
