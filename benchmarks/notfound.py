"""NOTFOUND answers in drop-in mode at 100 concurrent connections: answers/s and p99 latency.

In drop-in mode (``tlspolicy serve socketmap --discovery`` with no policy file) a domain
that publishes neither MTA-STS nor DANE is answered ``NOTFOUND``, so that Postfix's own
``smtp_tls_security_level`` stands.  Postfix then looks up the parent domains too
(``.example.net``, ``.net`` for ``mail.example.net``), so each such delivery costs one
lookup per label.  This benchmark asks exactly those keys: per domain the name and its
parent forms, over ``--connections`` (100) concurrent socketmap connections that each send
one request and wait for its answer, as Postfix's clients do.

- The loopback resolver (a small DNS server in a process of its own, pinned to CPU 1)
  answers every question with no records, authoritatively, with the zone's SOA (a
  negative answer cacheable for 300 s): no MTA-STS record, no MX, no address, nothing
  signed, so every domain is answered ``NOTFOUND``.  It counts queries.
- The server runs pinned to CPU 0, with a fresh store.  The client (asyncio, one task per
  connection) runs in a process of its own, on CPU 0 ("same CPU") or CPU 1 ("different
  CPUs").
- Per layout, the first pass asks every domain for the first time (its DNS questions go
  out); the later passes ask the same keys again (answered from what the first pass
  learnt).  Each pass reports answers/s, p50 and p99 latency (request written to answer
  read, per request), the answers that were ``TEMP`` (past the server's answer deadline)
  and the DNS queries sent.

``--quick`` runs 300 domains and one later pass; it prints ``skipped: REASON`` and exits
0 without ``taskset``-able CPUs or dnspython.  Run it from a checkout:
``python benchmarks/notfound.py``.  The event loop is uvloop's when the ``uvloop`` extra is
installed (the line ``loop:`` says which).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _dns_loop import serve_until_stdin_closes

ROOT = Path(__file__).resolve().parent.parent
SERVER_CPU = 0
RESOLVER_CPU = 1
LAYOUTS = (("same CPU", 0), ("different CPUs", 1))
START_TIMEOUT = 60.0


class Skip(Exception):
    """The benchmark cannot run here."""


# ------------------------------------------------------------------ the resolver


def _dns_server() -> None:
    """Answer every DNS question with no records (UDP and TCP, an ephemeral port) until
    standard input closes; prints ``PORT n``; a line ``count`` prints the queries so far."""
    import dns.flags
    import dns.message
    import dns.rrset

    lock = threading.Lock()
    answered = [0]

    def answer(wire: bytes) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        with lock:
            answered[0] += 1
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.AA
        # No data, with the zone's SOA so that the answer may be cached (RFC 2308).
        reply.authority.append(dns.rrset.from_text(
            "test.", 300, "IN", "SOA", "ns.test. hostmaster.test. 1 3600 600 86400 300"))
        return reply.to_wire()

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    port = udp.getsockname()[1]
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", port))
    tcp.listen()

    def count() -> int:
        with lock:
            return answered[0]

    serve_until_stdin_closes(udp, tcp, answer, count, f"PORT {port}")


def _pinned(command: Sequence[str], cpu: int, *, stdout: int = subprocess.PIPE,
            stdin: int | None = None) -> subprocess.Popen[str]:
    """Start ``command`` on one CPU: pinned before it runs, so every thread it starts is."""
    def pin() -> None:
        os.sched_setaffinity(0, {cpu})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen(list(command), preexec_fn=pin, text=True, stdout=stdout,
                            stdin=stdin, stderr=subprocess.DEVNULL, env=env)


@contextmanager
def _stopped_at_end(process: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    try:
        yield process
    finally:
        if process.stdin is not None:
            process.stdin.close()
        else:
            process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


class Resolver:
    """The DNS server process; ``count()`` reads how many queries it answered."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        assert process.stdout is not None
        line = process.stdout.readline().split()
        if len(line) != 2:
            raise Skip("the loopback DNS server did not start")
        self.port = int(line[1])

    def count(self) -> int:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())


# ------------------------------------------------------------------ the client


def _client(port: int, connections: int, keys_file: str) -> None:
    """Ask every key of ``keys_file`` over ``connections`` connections, one request at a
    time each; print one JSON line: seconds, answers, latencies' p50 and p99, statuses."""
    keys = Path(keys_file).read_text().split()

    async def main() -> dict[str, object]:
        latencies: list[float] = []
        statuses: dict[str, int] = {}
        queue = iter(keys)

        async def one() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            clock = time.perf_counter
            for key in queue:
                request = f"postfix {key}".encode()
                start = clock()
                writer.write(b"%d:%s," % (len(request), request))
                head = await reader.readuntil(b":")
                body = await reader.readexactly(int(head[:-1]) + 1)
                latencies.append(clock() - start)
                status = body.split(b" ", 1)[0].rstrip(b",").decode()
                statuses[status] = statuses.get(status, 0) + 1
            writer.close()

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(connections)))
        elapsed = time.perf_counter() - start
        latencies.sort()
        return {"seconds": elapsed, "answers": len(latencies), "statuses": statuses,
                "p50": latencies[len(latencies) // 2],
                "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]}

    print(json.dumps(asyncio.run(main())), flush=True)


# ------------------------------------------------------------------ measuring


def _keys(n: int) -> list[str]:
    """Per domain, the keys Postfix asks for a NOTFOUND domain: the name, then its parents."""
    keys: list[str] = []
    for i in range(n):
        keys += [f"mail{i}.d{i}.notfound.test", f".d{i}.notfound.test", ".notfound.test",
                 ".test"]
    return keys


@contextmanager
def our_server(work: Path, resolver_port: int) -> Iterator[tuple[int, int]]:
    """``tlspolicy serve socketmap --discovery`` in drop-in mode; yields (port, pid)."""
    conf = work / "postfix-conf"
    conf.mkdir(exist_ok=True)
    (conf / "main.cf").write_text("compatibility_level = 3.6\n")
    (conf / "master.cf").write_text("smtp unix - - y - - smtp\n")
    cache = work / "store.sqlite3"
    cache.unlink(missing_ok=True)
    command = [sys.executable, "-m", "tlspolicy", "serve", "socketmap", "--discovery",
               "--listen", "127.0.0.1:0", "--postfix-config-dir", str(conf),
               "--postfix-version", "3.7.11", "--cache", str(cache),
               "--resolver", "127.0.0.1", "--resolver-port", str(resolver_port),
               "--https-port", "9", "-q"]
    with _stopped_at_end(_pinned(command, SERVER_CPU)) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"tlspolicy did not start: {line!r}")
        yield int(line.split()[-1].rsplit(":", 1)[1]), proc.pid


def _run_client(cpu: int, port: int, connections: int, keys_file: Path) -> dict[str, object]:
    proc = _pinned([sys.executable, __file__, "--client", str(port), str(connections),
                    str(keys_file)], cpu)
    out, _ = proc.communicate(timeout=1800)
    if proc.returncode != 0 or not out.strip():
        raise RuntimeError(f"client exited {proc.returncode}")
    result: dict[str, object] = json.loads(out)
    return result


def measure(n: int, later: int, connections: int) -> None:
    """Both layouts: the first pass and ``later`` repeated passes; one line per pass."""
    keys = _keys(n)
    with tempfile.TemporaryDirectory(prefix="tlspolicy-notfound-") as tmp:
        work = Path(tmp)
        keys_file = work / "keys"
        keys_file.write_text("\n".join(keys) + "\n")
        dns_proc = _pinned([sys.executable, __file__, "--dns-server"], RESOLVER_CPU,
                           stdin=subprocess.PIPE)
        with _stopped_at_end(dns_proc):
            resolver = Resolver(dns_proc)
            for layout, client_cpu in LAYOUTS:
                with our_server(work, resolver.port) as (port, _pid):
                    for pass_no in range(1 + later):
                        before = resolver.count()
                        result = _run_client(client_cpu, port, connections, keys_file)
                        queries = resolver.count() - before
                        answers = int(str(result["answers"]))
                        seconds = float(str(result["seconds"]))
                        statuses = result["statuses"]
                        assert isinstance(statuses, dict)
                        if answers != len(keys) or not set(statuses) <= {"NOTFOUND", "TEMP"}:
                            raise RuntimeError(f"expected {len(keys)} NOTFOUND answers, got "
                                               f"{statuses}")
                        # TEMP: an answer past the server's deadline (a slow first lookup).
                        temp = int(statuses.get("TEMP", 0))
                        print(f"notfound ({layout}, {'first' if pass_no == 0 else 'later'} "
                              f"pass): {answers / seconds:,.0f} answers/s, p50 "
                              f"{float(str(result['p50'])) * 1e3:.2f} ms, p99 "
                              f"{float(str(result['p99'])) * 1e3:.2f} ms; {temp} TEMP; {queries} "
                              f"DNS queries; {n} domains, {answers} keys (name and parents), "
                              f"{connections} connections", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, internally, its DNS server or client)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--dns-server"]:
        _dns_server()
        return 0
    if args[:1] == ["--client"]:
        _client(int(args[1]), int(args[2]), args[3])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="300 domains, one later pass")
    parser.add_argument("--domains", type=int, default=None, help="domains (default 5,000)")
    parser.add_argument("--later", type=int, default=None, help="repeated passes (default 2)")
    parser.add_argument("--connections", type=int, default=100)
    options = parser.parse_args(args)
    n = options.domains or (300 if options.quick else 5000)
    later = options.later if options.later is not None else (1 if options.quick else 2)
    try:
        if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
            raise Skip("fewer than 2 CPUs available")
        if importlib.util.find_spec("dns") is None:
            raise Skip("dnspython not installed (the discovery extra)")
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
        print(f"loop: {loop} (the server's event loop)", flush=True)
        measure(n, later, options.connections)
    except Skip as exc:
        print(f"skipped: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
