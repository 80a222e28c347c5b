"""A benchmark's loopback DNS server process: UDP and TCP on one bound address, each
question answered by the caller's function, until standard input closes.

One place for the socket loops that the NOTFOUND and peer benchmarks' resolvers share;
what they answer stays in each benchmark.
"""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Callable

Answer = Callable[[bytes], "bytes | None"]


def serve_until_stdin_closes(udp: socket.socket, tcp: socket.socket, answer: Answer,
                             answered: Callable[[], int], ready_line: str) -> None:
    """Serve ``udp`` and the listening ``tcp`` with ``answer`` (``None``: no reply) on
    daemon threads; print ``ready_line``, then on each stdin line ``count`` the value of
    ``answered()``; return when standard input closes."""

    def serve_udp() -> None:
        while True:
            wire, peer_address = udp.recvfrom(65535)
            reply = answer(wire)
            if reply is not None:
                udp.sendto(reply, peer_address)

    def serve_tcp_connection(conn: socket.socket) -> None:
        with conn:
            buffer = b""
            while chunk := conn.recv(65535):
                buffer += chunk
                while len(buffer) >= 2 and len(buffer) >= 2 + int.from_bytes(buffer[:2]):
                    size = int.from_bytes(buffer[:2])
                    reply = answer(buffer[2:2 + size])
                    buffer = buffer[2 + size:]
                    if reply is not None:
                        conn.sendall(len(reply).to_bytes(2) + reply)

    def serve_tcp() -> None:
        while True:
            conn, _ = tcp.accept()
            threading.Thread(target=serve_tcp_connection, args=(conn,), daemon=True).start()

    for target in (serve_udp, serve_tcp):
        threading.Thread(target=target, daemon=True).start()
    print(ready_line, flush=True)
    for line in sys.stdin:
        if line.strip() == "count":
            print(answered(), flush=True)
