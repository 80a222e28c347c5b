"""Socketmap answers per second as Postfix sees them, against a native ``hash:`` table.

Both sides run the same command, ``postmap -q - TABLE`` with every key on
standard input: Postfix's own client code sends the keys one by one and
prints ``key<TAB>value`` per answer.  The socketmap side talks to
:class:`tlspolicy.servers.socketmap.SocketmapServer` running in a thread of
this process; the ``hash:`` side reads a Berkeley DB file ``postmap`` built
from the very answers the socketmap server gives, so both print the same
output.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tlspolicy.servers.socketmap import SocketmapReply, SocketmapServer

Lookup = Callable[[str, str], SocketmapReply]


def find_postmap() -> str | None:
    """The ``postmap`` executable, or ``None`` when Postfix is not installed."""
    return shutil.which("postmap") or next(
        (p for p in ("/usr/sbin/postmap", "/usr/local/sbin/postmap") if Path(p).exists()), None)


@contextmanager
def serving(lookup: Lookup) -> Iterator[tuple[str, int]]:
    """Run a socketmap server on 127.0.0.1 in a thread; yield its address."""
    loop = asyncio.new_event_loop()
    server = SocketmapServer(lookup, host="127.0.0.1", port=0)
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start())
        except BaseException as exc:  # reported in the caller's thread
            failure.append(exc)
            started.set()
            return
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="socketmap-benchmark", daemon=True)
    thread.start()
    if not started.wait(10) or failure:
        raise RuntimeError(f"socketmap server did not start: {failure}")
    try:
        yield server.address
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def query_all(postmap: str, config_dir: Path, table: str, keys_text: str,
              expected_lines: int) -> float:
    """Seconds for ``postmap -q - TABLE`` to answer every key; checks the answer count."""
    start = time.perf_counter()
    done = subprocess.run([postmap, "-c", str(config_dir), "-q", "-", table], input=keys_text,
                          capture_output=True, text=True, timeout=600, check=False)
    elapsed = time.perf_counter() - start
    lines = done.stdout.count("\n")
    if done.returncode != 0 or lines != expected_lines:
        raise RuntimeError(f"postmap -q - {table} exited {done.returncode} with {lines} "
                           f"answers (expected {expected_lines}): {done.stderr.strip()[:500]}")
    return elapsed


def compare(postmap: str, lookup: Lookup, map_name: str, keys: Sequence[str],
            repeats: int) -> tuple[list[float], list[float], list[float]]:
    """Seconds per ``postmap -q -`` run, samples interleaved: the socketmap server,
    the ``hash:`` table, and :func:`constant_server` (the transport's ceiling)."""
    answers = [lookup(map_name, key) for key in keys]
    bad = [(k, a.to_text()) for k, a in zip(keys, answers, strict=True) if not a.text
           or a.to_text().split(" ", 1)[0] != "OK"]
    if bad:
        raise RuntimeError(f"lookup did not answer OK for every key, e.g. {bad[:3]}")
    with tempfile.TemporaryDirectory(prefix="tlspolicy-bench-") as tmp:
        config_dir = Path(tmp)
        (config_dir / "main.cf").write_text("compatibility_level = 3.6\n")
        source = config_dir / "policy"
        source.write_text("".join(f"{k} {a.text}\n" for k, a in zip(keys, answers, strict=True)))
        subprocess.run([postmap, "-c", str(config_dir), f"hash:{source}"], check=True,
                       capture_output=True, timeout=600)
        keys_text = "".join(f"{k}\n" for k in keys)
        socketmap: list[float] = []
        native: list[float] = []
        ceiling: list[float] = []
        with serving(lookup) as (host, port), constant_server() as (c_host, c_port):
            table = f"socketmap:inet:{host}:{port}:{map_name}"
            constant = f"socketmap:inet:{c_host}:{c_port}:{map_name}"
            for _ in range(repeats):
                socketmap.append(query_all(postmap, config_dir, table, keys_text, len(keys)))
                native.append(query_all(postmap, config_dir, f"hash:{source}", keys_text,
                                        len(keys)))
                ceiling.append(query_all(postmap, config_dir, constant, keys_text, len(keys)))
        return socketmap, native, ceiling


@contextmanager
def constant_server() -> Iterator[tuple[str, int]]:
    """A blocking socketmap server doing no work: every request gets ``OK may``.

    It bounds what any server written in Python can reach with this client:
    what is left is the loopback round trip and the two processes waking up.
    It assumes keys hold no comma, which the benchmark's keys never do.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    reply = b"6:OK may,"

    def run() -> None:
        while True:
            try:
                conn, _peer = listener.accept()
            except OSError:
                return
            with conn:
                # As asyncio does for its servers: no Nagle delay on small replies.
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                pending = b""
                while chunk := conn.recv(65536):
                    pending += chunk
                    complete = pending.count(b",")
                    if complete:
                        conn.sendall(reply * complete)
                        pending = pending[pending.rfind(b",") + 1:]

    thread = threading.Thread(target=run, name="socketmap-ceiling", daemon=True)
    thread.start()
    try:
        host, port = listener.getsockname()[:2]
        yield str(host), int(port)
    finally:
        listener.close()
        thread.join(10)

