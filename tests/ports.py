"""Loopback ports for the real servers the tests start, one slice per test process.

Under ``pytest -n N`` (pytest-xdist) every worker takes ports from its own slice of
20000-31999 (below the kernel's ephemeral range, which starts at 32768 on Linux, so an
outgoing connection never takes one between the check and the server's bind), and walks
its slice in order instead of drawing at random, so that it reuses a port only after the
whole slice and never hands two servers of one run the same port.  A port is handed out
only if it is free for TCP and UDP at that moment (other programs on the machine, e.g.
another test run, may hold some).
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import threading
from collections.abc import Iterator

FIRST, LAST = 20000, 31999


def _slice() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    index = int(worker) if worker.isdigit() else 0
    size = (LAST - FIRST + 1) // max(count, 1)
    start = FIRST + (index % max(count, 1)) * size
    return range(start, start + size)


def _candidates() -> Iterator[int]:
    ports = _slice()
    # Start somewhere in the slice: runs that follow each other soon (or run beside each
    # other on one machine) start apart.
    offset = random.randrange(len(ports))
    return itertools.cycle([*ports[offset:], *ports[:offset]])


_lock = threading.Lock()
_ports: Iterator[int] | None = None


def _is_free(port: int, host: str) -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind((host, port))
            udp.bind((host, port))
    except OSError:
        return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """The next port of this process's slice that is free for TCP and UDP on ``host``."""
    global _ports
    with _lock:
        if _ports is None:
            _ports = _candidates()
        for _ in range(len(_slice())):
            port = next(_ports)
            if _is_free(port, host):
                return port
    raise RuntimeError("no free port in this test process's slice")
