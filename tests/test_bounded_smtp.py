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
    """Within the bounds nothing changes: greeting, a long EHLO reply, QUIT."""
    async def polite(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 ok.example ESMTP\r\n")
        await writer.drain()
        while line := await reader.readline():
            if line.upper().startswith(b"EHLO"):
                writer.write(b"".join(b"250-EXT%d\r\n" % i for i in range(200)) + b"250 OK\r\n")
            elif line.upper().startswith(b"QUIT"):
                writer.write(b"221 bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"250 OK\r\n")
            await writer.drain()

    with server(polite) as port, bounded(10):
        smtp = BoundedSMTP(timeout=5, local_hostname="client.test")
        assert smtp.connect("127.0.0.1", port)[0] == 220
        assert smtp.ehlo()[0] == 250 and smtp.has_extn("ext199")
        smtp.quit()


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
    start = period_start(1_800_000_000)

    async def main(port: int) -> list[str]:
        store = SqliteStore(tmp_path / "reports.sqlite3")
        try:
            sink = BufferedSink(lambda: store, clock=lambda: start + 10)
            sink.record(SessionResult(PolicyType.NO_POLICY_FOUND, "victim.test"))
            await sink._flush(store)
            config = ReportingConfig(
                organization_name="o", contact_info="postmaster@sender.test",
                submitter="sender.test", mail_from="tlsrpt@sender.test",
                dkim_key_file=_dkim_key(tmp_path), timeout=5.0, smtp_port=port)
            reporter = Reporter(store, config, clock=lambda: start + DAY + config.grace + 1,
                                lookups=_Lookups(addresses))
            await reporter.build(start)
            return [d.state for d in await reporter.send()]
        finally:
            await store.close()

    with server(hang_up("127.0.0.10"), "127.0.0.10") as port, contextlib.ExitStack() as stack:
        for address in (a for host in addresses.values() for a in host if a != "127.0.0.10"):
            stack.enter_context(server(hang_up(address), address, port))
        states = asyncio.run(asyncio.wait_for(main(port), 40))
    assert states == ["pending"]  # not delivered: tried again later
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


def test_a_send_that_outlasts_the_lock_keeps_it_and_sends_each_rua_once(
        tmp_path: Path) -> None:
    """Three rua of 0.7 s each against a 1 s lock: node A takes the lock again before each
    delivery, so node B, starting at 1.2 s (after a lock taken once would have run out),
    finds it held and sends nothing; each rua gets the report once."""
    start = period_start(1_800_000_000)
    rua = ("https://a.victim.test/r", "https://b.victim.test/r", "https://c.victim.test/r")
    delivered: list[tuple[str, str]] = []

    class Lookups(_Lookups):
        async def tlsrpt(self, domain: str) -> TlsRptRecord:
            return TlsRptRecord("v=TLSRPTv1; rua=" + ",".join(rua), rua)

    async def main() -> None:
        path = tmp_path / "shared.sqlite3"
        store_a, store_b = SqliteStore(path), SqliteStore(path)
        try:
            sink = BufferedSink(lambda: store_a, clock=lambda: start + 10)
            sink.record(SessionResult(PolicyType.NO_POLICY_FOUND, "victim.test"))
            await sink._flush(store_a)
            config = ReportingConfig(
                organization_name="o", contact_info="postmaster@sender.test",
                submitter="sender.test", mail_from="tlsrpt@sender.test", timeout=0.2,
                lock_ttl=1.0)
            clock = lambda: start + DAY + config.grace + 1  # noqa: E731
            node_a = Reporter(store_a, config, clock=clock, lookups=Lookups({}),
                              sender=_SlowSender("a", 0.7, delivered))
            node_b = Reporter(store_b, config, clock=clock, lookups=Lookups({}),
                              sender=_SlowSender("b", 0.7, delivered))
            await node_a.build(start)

            async def later() -> object:
                await asyncio.sleep(1.2)
                return await node_b.send()

            await asyncio.gather(node_a.send(), later())
        finally:
            await store_a.close()
            await store_b.close()

    asyncio.run(asyncio.wait_for(main(), 30))
    assert sorted(uri for _node, uri in delivered) == sorted(rua)
    assert {node for node, _uri in delivered} == {"a"}

