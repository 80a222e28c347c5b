"""Real servers on loopback for the discovery and store tests (session-scoped fixtures).

- ``redis_server``: Debian's ``redis-server`` on a free port, no persistence.
- ``dns_lab``: NSD serving zones signed here (fresh keys, ``ldns-signzone``) under
  ``test.``, and a validating Unbound in front of it with the parent's trust
  anchor, so AD bits, insecure delegations, bogus and expired signatures are real.
- ``https_lab``: an ``http.server`` + ``ssl`` server on 127.0.0.1 choosing a
  certificate per SNI name, serving MTA-STS policies whose answer (status, media
  type, body, delay, redirect) a test sets per host.

Each fixture skips with a reason when its binary is missing; every server is
stopped by PID at the end of the session, and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import attrs
import pytest

__all__ = ["RedisServer", "free_port"]

_START_TIMEOUT = 15.0


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (below 32768, as the notes advise)."""
    import random

    for _ in range(200):
        port = random.randint(20000, 32000)
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, \
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                tcp.bind(("127.0.0.1", port))
                udp.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port found")


def _binary(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.skip(f"{name} is not installed (Debian package; see .ci/install-discovery.sh)")


def _wait_tcp(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} at start")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {_START_TIMEOUT} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


# ----------------------------------------------------------------------- Redis


@attrs.define
class RedisServer:
    """A private redis-server: its URL, and stop/start to test outages."""

    binary: str
    port: int
    process: subprocess.Popen[bytes] | None = None
    maxmemory_policy: str = "noeviction"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--maxmemory-policy",
             self.maxmemory_policy],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_tcp(self.port, self.process, "redis-server")

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
            self.process = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server (noeviction) on a free loopback port for the whole session."""
    server = RedisServer(_binary("redis-server"), free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
