"""The Postfix socketmap server: codec, key parser, protocol over real sockets.

Servers run on 127.0.0.1 with an ephemeral port, in a background event loop
(protocol tests) or a subprocess (signal tests), and Debian's ``postmap``
queries them as Postfix would.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postfix_support import postmap_config_dir, postmap_query, postmap_query_many, requires_postmap
from tlspolicy.errors import PolicyInputError, TlsPolicyError
from tlspolicy.postfix.netstring import (
    MalformedNetstringError,
    NetstringDecoder,
    NetstringTooLongError,
    encode_netstring,
)
from tlspolicy.servers.socketmap import (
    PostfixKey,
    PostfixKeyError,
    ReplyStatus,
    SocketmapReply,
    SocketmapServer,
    parse_postfix_key,
)

TESTS = Path(__file__).parent
SRC = TESTS.parent / "src"
IO_TIMEOUT = 10.0

# --------------------------------------------------------------------- netstrings


def test_encode_netstring() -> None:
    assert encode_netstring(b"hello world!") == b"12:hello world!,"
    assert encode_netstring(b"") == b"0:,"


def test_decoder_byte_by_byte() -> None:
    decoder = NetstringDecoder(100)
    out = []
    for byte in b"3:abc,0:,5:x y z,":
        decoder.feed(bytes([byte]))
        while (payload := decoder.next_payload()) is not None:
            out.append(payload)
    assert out == [b"abc", b"", b"x y z"]
    assert decoder.buffered == 0


@pytest.mark.parametrize(
    "data",
    [b"x:abc,", b"3x:abc,", b":abc,", b"03:abc,", b"3:abcd", b"3:abc;", b"-1:,", b" 3:abc,"],
)
def test_decoder_malformed(data: bytes) -> None:
    decoder = NetstringDecoder(100)
    decoder.feed(data)
    with pytest.raises(MalformedNetstringError):
        decoder.next_payload()
    # The stream cannot resynchronise: the error sticks.
    decoder.feed(b"1:a,")
    with pytest.raises(MalformedNetstringError):
        decoder.next_payload()


def test_decoder_payloads_before_error_come_first() -> None:
    decoder = NetstringDecoder(100)
    decoder.feed(b"1:a,1:b,zz")
    assert decoder.next_payload() == b"a"
    assert decoder.next_payload() == b"b"
    with pytest.raises(MalformedNetstringError):
        decoder.next_payload()


@pytest.mark.parametrize("prefix", [b"101:", b"1000", b"999999999999"])
def test_decoder_refuses_oversize_before_the_payload(prefix: bytes) -> None:
    decoder = NetstringDecoder(100)
    decoder.feed(prefix)
    with pytest.raises(NetstringTooLongError) as info:
        decoder.next_payload()
    assert info.value.limit == 100
    assert isinstance(info.value, PolicyInputError)


def test_decoder_accepts_exact_limit() -> None:
    decoder = NetstringDecoder(5)
    decoder.feed(b"5:abcde,")
    assert decoder.next_payload() == b"abcde"


@given(st.lists(st.binary(max_size=300), max_size=20), st.data())
def test_decoder_roundtrip_any_chunking(payloads: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(encode_netstring(p) for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = NetstringDecoder(300)
    out: list[bytes] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        decoder.feed(stream[start:cut])
        start = cut
        while (payload := decoder.next_payload()) is not None:
            out.append(payload)
    assert out == payloads


# ------------------------------------------------------------------------ replies


def test_reply_encoding() -> None:
    assert SocketmapReply.ok("encrypt protocols=>=TLSv1.2").encode() == (
        b"30:OK encrypt protocols=>=TLSv1.2,"
    )
    assert SocketmapReply.notfound().encode() == b"9:NOTFOUND ,"
    assert SocketmapReply.temp("busy").encode() == b"9:TEMP busy,"
    assert SocketmapReply.timeout("slow").encode() == b"12:TIMEOUT slow,"
    assert SocketmapReply.perm("").encode() == b"5:PERM ,"
    assert SocketmapReply.ok("dañe").encode() == "8:OK dañe,".encode()


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (ReplyStatus.OK, ""),
        (ReplyStatus.OK, "a\nb"),
        (ReplyStatus.TEMP, "a\x00b"),
        (ReplyStatus.PERM, "a\rb"),
        (ReplyStatus.NOTFOUND, "x"),
    ],
)
def test_reply_refuses_bad_text(status: ReplyStatus, text: str) -> None:
    with pytest.raises(ValueError):
        SocketmapReply(status, text)


# ---------------------------------------------------------------------- key forms


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("example.com", PostfixKey("example.com", None, False, False)),
        ("Example.COM.", PostfixKey("example.com", None, False, False)),
        ("[example.com]", PostfixKey("example.com", None, False, True)),
        ("[example.com]:587", PostfixKey("example.com", 587, False, True)),
        ("[example.com.]:25", PostfixKey("example.com", 25, False, True)),
        ("example.com:587", PostfixKey("example.com", 587, False, False)),
        ("[mx.example.com]:submission", PostfixKey("mx.example.com", 587, False, True)),
        (".example.com", PostfixKey("example.com", None, True, False)),
        (".Example.com.", PostfixKey("example.com", None, True, False)),
        ("[192.0.2.1]", PostfixKey("[192.0.2.1]", None, False, True)),
        ("[192.0.2.1]:2525", PostfixKey("[192.0.2.1]", 2525, False, True)),
        ("192.0.2.1", PostfixKey("[192.0.2.1]", None, False, False)),
        ("[ipv6:2001:db8::1]", PostfixKey("[ipv6:2001:db8::1]", None, False, True)),
        ("[IPv6:2001:DB8:0::1]:25", PostfixKey("[ipv6:2001:db8::1]", 25, False, True)),
        ("[2001:db8::1]", PostfixKey("[ipv6:2001:db8::1]", None, False, True)),
        ("[::ffff:192.0.2.1]", PostfixKey("[192.0.2.1]", None, False, True)),
        ("bücher.example", PostfixKey("xn--bcher-kva.example", None, False, False)),
        ("_tcp.example.com", PostfixKey("_tcp.example.com", None, False, False)),
    ],
)
def test_parse_postfix_key(key: str, expected: PostfixKey) -> None:
    parsed = parse_postfix_key(key)
    assert parsed == expected
    domain, port, parent, bracketed = parsed
    assert (domain, port, parent, bracketed) == tuple(expected)
    assert parsed.is_ip == expected.domain.startswith("[")


@pytest.mark.parametrize(
    "key",
    [
        "", " ", "example.com ", "exa mple.com", "[example.com", "example.com]", "[]", "[]:25",
        "[example.com]x", "[example.com]:", "[example.com]:0", "[example.com]:65536",
        "example.com:", "example.com:http2", "..example.com", ".", ".:25", ".example.com:25",
        ".[192.0.2.1]", ".192.0.2.1", "a..b", "-a.example", "a-.example", "exa_mple!.com",
        "[ipv6:192.0.2.1]", "[ipv6:zz::1]", "[1.2.3.4.5]", "192.0.2.300", "a:b:c",
        "[a:b]", "[[x]]", "x" * 64 + ".com", ("a." * 127) + "com", "example.com\x00",
    ],
)
def test_parse_postfix_key_refuses_garbage(key: str) -> None:
    with pytest.raises(PostfixKeyError) as info:
        parse_postfix_key(key)
    assert isinstance(info.value, PolicyInputError)
    assert repr(key) in str(info.value) or "white space" in str(info.value)


_LABELS = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)


@given(st.lists(_LABELS, min_size=1, max_size=4), st.from_regex(r"[a-z]{2,6}", fullmatch=True),
       st.none() | st.integers(1, 65535), st.booleans())
def test_parse_postfix_key_generated(labels: list[str], tld: str, port: int | None,
                                     bracketed: bool) -> None:
    domain = ".".join([*labels, tld])
    key = f"[{domain}]" if bracketed else domain
    if port is not None:
        key += f":{port}"
    assert parse_postfix_key(key) == PostfixKey(domain, port, False, bracketed)
    assert parse_postfix_key(key.upper()) == PostfixKey(domain, port, False, bracketed)
    assert parse_postfix_key("." + domain) == PostfixKey(domain, None, True, False)


# ------------------------------------------------------------- server in a thread


class ServerThread:
    """A SocketmapServer on its own event loop in a daemon thread."""

    def __init__(self, server: SocketmapServer) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def call(self, coro: Any, timeout: float = IO_TIMEOUT) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        self.call(self.server.start())
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.call(self.server.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(IO_TIMEOUT)
            self.loop.close()


TABLE = {("tls", "example.com"): "encrypt", ("tls", "[mx.example.net]:25"): "secure match=nexthop",
         ("other", "example.com"): "may"}


def table_lookup(name: str, key: str) -> SocketmapReply:
    if key == "boom-policy":
        raise PolicyInputError("policy input broken\nsecond line")
    if key == "boom":
        raise RuntimeError("unexpected")
    if key == "notareply":
        return "OK x"  # type: ignore[return-value]
    if key == "huge":
        return SocketmapReply.ok("x" * 100_000)
    if key == "temp":
        return SocketmapReply.temp("try later")
    value = TABLE.get((name, key))
    return SocketmapReply.ok(value) if value is not None else SocketmapReply.notfound()


@contextmanager
def running(lookup: Callable[[str, str], SocketmapReply] = table_lookup,
            **kwargs: Any) -> Iterator[SocketmapServer]:
    server = SocketmapServer(lookup, host="127.0.0.1", port=0, **kwargs)
    with ServerThread(server) as st_:
        yield st_.server


def connect(server: SocketmapServer) -> socket.socket:
    sock = socket.create_connection(server.address, timeout=IO_TIMEOUT)
    sock.settimeout(IO_TIMEOUT)
    return sock


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def read_reply(sock: socket.socket) -> str | None:
    """Exactly one reply from the socket (nothing more is read); ``None`` at EOF.

    The client parses independently of the server's decoder: digits, ':',
    payload, ','.
    """
    try:
        prefix = b""
        while True:
            byte = _recv_exactly(sock, 1)
            if byte is None:
                return None
            if byte == b":":
                break
            assert byte.isdigit() and len(prefix) < 7, f"bad reply prefix {prefix + byte!r}"
            prefix += byte
        body = _recv_exactly(sock, int(prefix) + 1)
    except ConnectionResetError:
        return None
    assert body is not None and body.endswith(b","), f"truncated reply {body!r}"
    return body[:-1].decode("utf-8")


def ask(sock: socket.socket, request: str) -> str | None:
    sock.sendall(encode_netstring(request.encode()))
    return read_reply(sock)


def assert_closed(sock: socket.socket) -> None:
    with suppress(ConnectionResetError):
        assert sock.recv(1) == b""


def test_single_requests_on_one_connection() -> None:
    with running() as server, connect(server) as sock:
        assert ask(sock, "tls example.com") == "OK encrypt"
        assert ask(sock, "tls [mx.example.net]:25") == "OK secure match=nexthop"
        assert ask(sock, "other example.com") == "OK may"
        assert ask(sock, "tls example.org") == "NOTFOUND "
        assert ask(sock, "tls temp") == "TEMP try later"
        assert ask(sock, "tls ") == "NOTFOUND "
        assert server.accepted_connections == 1


def test_pipelined_requests_answered_in_order() -> None:
    keys = [f"host{i}.example" if i % 3 else "example.com" for i in range(300)]
    with running() as server, connect(server) as sock:
        sock.sendall(b"".join(encode_netstring(f"tls {k}".encode()) for k in keys))
        replies = [read_reply(sock) for _ in keys]
    assert replies == ["OK encrypt" if k == "example.com" else "NOTFOUND " for k in keys]


@pytest.mark.parametrize(
    ("request_", "reply"),
    [
        ("nospace", "PERM malformed request, expected 'name key'"),
        (" example.com", "PERM malformed request, expected 'name key'"),
        ("tls boom-policy", "PERM policy input broken second line"),
        ("tls boom", "TEMP internal error in the policy server"),
        ("tls notareply", "TEMP internal error in the policy server"),
        ("tls huge", "PERM reply too long"),
    ],
)
def test_bad_requests_and_lookups_keep_the_connection(request_: str, reply: str) -> None:
    with running() as server, connect(server) as sock:
        assert ask(sock, request_) == reply
        assert ask(sock, "tls example.com") == "OK encrypt"


def test_non_utf8_request() -> None:
    with running() as server, connect(server) as sock:
        sock.sendall(encode_netstring(b"tls \xff\xfe"))
        assert read_reply(sock) == "PERM request is not UTF-8"
        assert ask(sock, "tls example.com") == "OK encrypt"


@pytest.mark.parametrize("garbage", [b"abc", b"3:abcX", b"03:abc,", b"-1:"])
def test_malformed_netstring_closes_only_that_connection(garbage: bytes) -> None:
    with running() as server, connect(server) as other, connect(server) as bad:
        assert ask(other, "tls example.com") == "OK encrypt"
        bad.sendall(encode_netstring(b"tls example.com") + garbage)
        assert read_reply(bad) == "OK encrypt"
        assert read_reply(bad) == "PERM malformed netstring"
        assert_closed(bad)
        assert ask(other, "tls example.com") == "OK encrypt"
        with connect(server) as fresh:
            assert ask(fresh, "other example.com") == "OK may"


def test_oversized_request_refused_without_reading_it() -> None:
    with running(max_request_bytes=64) as server, connect(server) as other:
        with connect(server) as big:
            # Only the length prefix is sent: the refusal must not wait for the payload.
            big.sendall(b"1000000:")
            assert read_reply(big) == "PERM request too large (limit 64 bytes)"
            assert_closed(big)
        with connect(server) as edge:
            request = "tls " + "a" * 60
            assert ask(edge, request) == "NOTFOUND "
            edge.sendall(encode_netstring(("tls " + "a" * 61).encode()))
            assert read_reply(edge) == "PERM request too large (limit 64 bytes)"
        assert ask(other, "tls example.com") == "OK encrypt"


def test_connection_limit_closes_the_longest_idle() -> None:
    # When the slots are taken, the new connection is served and the one idle
    # the longest (here: first, whose last request is the oldest) is closed.
    with running(max_connections=2) as server:
        first, second = connect(server), connect(server)
        try:
            assert ask(first, "tls example.com") == "OK encrypt"
            assert ask(second, "tls example.com") == "OK encrypt"
            with connect(server) as third:
                assert ask(third, "tls example.com") == "OK encrypt"
                assert_closed(first)
                assert ask(second, "other example.com") == "OK may"
                assert server.active_connections == 2
                assert server.evicted_connections == 1
            deadline = time.monotonic() + IO_TIMEOUT
            while server.active_connections >= 2:
                assert time.monotonic() < deadline, "server did not notice the closed connection"
                time.sleep(0.02)
            with connect(server) as fourth:
                assert ask(fourth, "tls example.com") == "OK encrypt"
            assert ask(second, "tls example.com") == "OK encrypt"
            assert server.evicted_connections == 1
        finally:
            first.close()
            second.close()


def test_many_concurrent_clients() -> None:
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            with connect(server) as sock:
                for i in range(20):
                    key = "example.com" if (n + i) % 2 else f"h{n}-{i}.example"
                    expected = "OK encrypt" if key == "example.com" else "NOTFOUND "
                    assert ask(sock, f"tls {key}") == expected
        except BaseException as exc:  # collected for the main thread
            errors.append(exc)

    with running(max_connections=64) as server:
        threads = [threading.Thread(target=client, args=(n,)) for n in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(IO_TIMEOUT * 3)
        assert not errors
        assert server.accepted_connections == 40


def test_idle_connection_closed() -> None:
    with running(idle_timeout=0.3) as server, connect(server) as sock:
        assert ask(sock, "tls example.com") == "OK encrypt"
        started = time.monotonic()
        assert_closed(sock)
        assert time.monotonic() - started < 5


def test_partial_request_then_idle_is_closed() -> None:
    with running(idle_timeout=0.3) as server, connect(server) as sock:
        sock.sendall(b"15:tls exa")
        assert read_reply(sock) is None


def test_stop_closes_open_connections() -> None:
    server = SocketmapServer(table_lookup, port=0)
    with ServerThread(server) as thread:
        sock = connect(server)
        assert ask(sock, "tls example.com") == "OK encrypt"
        thread.call(server.stop())
        assert_closed(sock)
        sock.close()
        with pytest.raises(OSError):
            socket.create_connection(server.address, timeout=2).close()
        thread.call(server.start())  # stop() then __exit__'s stop() both work


def test_reload_in_process_good_and_bad() -> None:
    state: dict[str, Any] = {"fail": False, "value": "v2"}

    def factory() -> Callable[[str, str], SocketmapReply]:
        if state["fail"]:
            raise TlsPolicyError("broken configuration")
        value = str(state["value"])
        return lambda name, key: SocketmapReply.ok(value)

    server = SocketmapServer(lambda n, k: SocketmapReply.ok("v1"), port=0, reload=factory)
    with ServerThread(server) as thread, connect(server) as sock:
        assert ask(sock, "m k") == "OK v1"
        assert thread.call(server.reload()) is True
        assert ask(sock, "m k") == "OK v2"
        state["fail"] = True
        assert thread.call(server.reload()) is False
        assert ask(sock, "m k") == "OK v2"
        state["fail"], state["value"] = False, "v3"
        assert thread.call(server.reload()) is True
        assert ask(sock, "m k") == "OK v3"


def test_reload_without_callback_keeps_lookup() -> None:
    server = SocketmapServer(table_lookup, port=0)
    with ServerThread(server) as thread, connect(server) as sock:
        assert thread.call(server.reload()) is False
        assert ask(sock, "tls example.com") == "OK encrypt"


@pytest.mark.parametrize(
    "kwargs",
    [{"max_request_bytes": 0}, {"max_connections": 0}, {"idle_timeout": 0}, {"port": 70000}],
)
def test_server_refuses_bad_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SocketmapServer(table_lookup, **kwargs)


# --------------------------------------------------------- signals, in a subprocess


class AppProcess:
    """tests/socketmap_test_app.py running in a subprocess."""

    def __init__(self, table: Path) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(TESTS), env.get("PYTHONPATH", "")])
        self.process = subprocess.Popen(
            [sys.executable, str(TESTS / "socketmap_test_app.py"), str(table)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        self.stderr: list[str] = []
        self._stderr_reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_reader.start()
        assert self.process.stdout is not None
        line = _readline_with_timeout(self.process, IO_TIMEOUT)
        assert line.startswith("LISTENING "), f"unexpected output {line!r}, {self.stderr}"
        _, host, port = line.split()
        self.address = (host, int(port))

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)

    def wait_stderr(self, text: str) -> None:
        deadline = time.monotonic() + IO_TIMEOUT
        while not any(text in line for line in self.stderr):
            assert time.monotonic() < deadline, f"{text!r} not logged: {self.stderr}"
            time.sleep(0.02)

    def ask(self, request: str) -> str | None:
        with socket.create_connection(self.address, timeout=IO_TIMEOUT) as sock:
            sock.settimeout(IO_TIMEOUT)
            return ask(sock, request)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(IO_TIMEOUT)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def _readline_with_timeout(process: subprocess.Popen[str], timeout: float) -> str:
    result: list[str] = []
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: result.append(process.stdout.readline()),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    reader.join(timeout)
    if not result:
        process.kill()
        raise AssertionError(f"no output from the server within {timeout}s")
    return result[0].strip()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[AppProcess, Path]]:
    table = tmp_path / "table"
    table.write_text("tls example.com encrypt\n")
    proc = AppProcess(table)
    try:
        yield proc, table
    finally:
        proc.close()


def test_sighup_reload(app: tuple[AppProcess, Path]) -> None:
    proc, table = app
    assert proc.ask("tls example.com") == "OK encrypt"
    with socket.create_connection(proc.address, timeout=IO_TIMEOUT) as kept:
        kept.settimeout(IO_TIMEOUT)
        assert ask(kept, "tls example.com") == "OK encrypt"
        table.write_text("tls example.com secure match=nexthop\ntls example.org may\n")
        proc.process.send_signal(signal.SIGHUP)
        proc.wait_stderr("lookup reloaded")
        # An open connection sees the new lookup on its next request.
        assert ask(kept, "tls example.com") == "OK secure match=nexthop"
    assert proc.ask("tls example.org") == "OK may"


def test_sighup_bad_reload_keeps_old_lookup(app: tuple[AppProcess, Path]) -> None:
    proc, table = app
    table.write_text("tls example.com dane\n!fail\n")
    proc.process.send_signal(signal.SIGHUP)
    proc.wait_stderr("reload failed")
    assert any("table marked as broken" in line for line in proc.stderr)
    assert proc.process.poll() is None
    assert proc.ask("tls example.com") == "OK encrypt"
    table.write_text("tls example.com dane\n")
    proc.process.send_signal(signal.SIGHUP)
    proc.wait_stderr("lookup reloaded")
    assert proc.ask("tls example.com") == "OK dane"


def test_sigterm_clean_shutdown(app: tuple[AppProcess, Path]) -> None:
    proc, _ = app
    kept = socket.create_connection(proc.address, timeout=IO_TIMEOUT)
    kept.settimeout(IO_TIMEOUT)
    try:
        assert ask(kept, "tls example.com") == "OK encrypt"
        proc.process.send_signal(signal.SIGTERM)
        assert proc.process.wait(IO_TIMEOUT) == 0
        assert_closed(kept)
    finally:
        kept.close()
    assert proc.process.stdout is not None
    assert proc.process.stdout.read().strip() == "STOPPED"
    with pytest.raises(OSError):
        socket.create_connection(proc.address, timeout=2).close()


def test_failing_initial_load_does_not_start(tmp_path: Path) -> None:
    table = tmp_path / "table"
    table.write_text("!fail\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(TESTS)])
    result = subprocess.run([sys.executable, str(TESTS / "socketmap_test_app.py"), str(table)],
                            capture_output=True, text=True, env=env, timeout=IO_TIMEOUT * 2,
                            check=False)
    assert result.returncode != 0
    assert "LISTENING" not in result.stdout
    assert "table marked as broken" in result.stderr


# ------------------------------------------------------------- Debian's postmap


@pytest.fixture
def postmap_dir(tmp_path: Path) -> Path:
    return postmap_config_dir(tmp_path / "postmap")


def _table(server: SocketmapServer, name: str) -> str:
    host, port = server.address
    return f"socketmap:inet:{host}:{port}:{name}"


seen_keys: list[tuple[str, str]] = []


def recording_lookup(name: str, key: str) -> SocketmapReply:
    seen_keys.append((name, key))
    return table_lookup(name, key)


@requires_postmap
@pytest.mark.postfix
def test_postmap_single_queries(postmap_dir: Path) -> None:
    with running(recording_lookup) as server:
        found = postmap_query(postmap_dir, _table(server, "tls"), "example.com")
        assert (found.returncode, found.stdout) == (0, "encrypt\n"), found.stderr
        bracketed = postmap_query(postmap_dir, _table(server, "tls"), "[mx.example.net]:25")
        assert bracketed.stdout == "secure match=nexthop\n", bracketed.stderr
        other = postmap_query(postmap_dir, _table(server, "other"), "example.com")
        assert other.stdout == "may\n"
        missing = postmap_query(postmap_dir, _table(server, "tls"), "example.org")
        assert (missing.returncode, missing.stdout) == (1, "")
        assert "error" not in missing.stderr
        # A failed lookup is also exit status 1, but with a fatal query error.
        temp = postmap_query(postmap_dir, _table(server, "tls"), "temp")
        assert (temp.returncode, temp.stdout) == (1, "")
        assert "try later" in temp.stderr and "query error" in temp.stderr
        perm = postmap_query(postmap_dir, _table(server, "tls"), "boom-policy")
        assert (perm.returncode, perm.stdout) == (1, "")
        assert "policy input broken" in perm.stderr and "query error" in perm.stderr
        # Keys reach the server verbatim: Postfix does not fold case for socketmap
        # tables (it folds only for fixed-string tables), so the server must.
        seen_keys.clear()
        upper = postmap_query(postmap_dir, _table(server, "tls"), "EXAMPLE.com")
        assert upper.returncode == 1
        assert seen_keys == [("tls", "EXAMPLE.com")]
        assert parse_postfix_key(seen_keys[0][1]).domain == "example.com"


@requires_postmap
@pytest.mark.postfix
def test_postmap_many_keys_over_one_connection(postmap_dir: Path) -> None:
    keys = [f"host{i}.example" for i in range(500)] + ["example.com", "[mx.example.net]:25"]
    with running() as server:
        result = postmap_query_many(postmap_dir, _table(server, "tls"), keys)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [
            "example.com\tencrypt",
            "[mx.example.net]:25\tsecure match=nexthop",
        ]
        assert server.accepted_connections == 1


@requires_postmap
@pytest.mark.postfix
def test_postmap_against_stopped_server_fails(postmap_dir: Path) -> None:
    with running() as server:
        table = _table(server, "tls")
    result = postmap_query(postmap_dir, table, "example.com")
    assert (result.returncode, result.stdout) == (1, "")
    assert "query error" in result.stderr
