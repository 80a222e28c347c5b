"""tlspolicy with discovery against postfix-mta-sts-resolver, both answering from the same
imported cache, with a working resolver and with one answering SERVFAIL (issue 25).

One SQLite cache of N enforce policies (``mx: mx.<domain>``, policy id ``bench1``, fetched
an hour ago, so older than the peer's default ``cache_grace`` of 60 s) is written through
postfix-mta-sts-resolver's own cache class (installed from PyPI into a virtual environment
in a temporary directory, or taken from ``TLSPOLICY_BENCH_PEER``, as ``mta_sts_resolver.py``
does) and imported into tlspolicy's
store with ``tlspolicy import-cache --from mta-sts-resolver-sqlite``.  Then, per resolver
mode and CPU layout, from fresh copies of both caches:

- tlspolicy in drop-in mode: ``tlspolicy serve socketmap --discovery`` with no policy file,
  the store above, and the loopback resolver below;
- postfix-mta-sts-resolver with its SQLite cache and its default ``cache_grace``, inside a
  private mount namespace (``unshare --mount``) whose ``/etc/resolv.conf`` names the
  loopback resolver (it reads only the system resolver, and resolv.conf carries no port,
  so the resolver listens on port 53 of a loopback address nothing else uses).

The resolver, a small DNS server in a process of its own, answers ``_mta-sts`` TXT with
the cached policy's id, MX with ``mx.<domain>`` and its A record (``working``), or
SERVFAIL to everything (``servfail``).  Every key is asked through Postfix's ``postmap -q
-``, one connection, the servers pinned to CPU 0 or CPU 1 and postmap to CPU 0 (the
resolver on CPU 1).  Figures per side: answers/s of the first pass (every policy due its
DNS check), the median of the later passes, DNS queries sent, the server's resident
size (VmRSS) at start and after all passes, and the server's CPU time (user and system,
all threads) per answer of the first pass, counted from its first answer until the
server is idle again (at least two seconds after its last answer, then until it uses less
than 5 % of a CPU over half a second) so that the checks it started are in it; the ratio
tlspolicy / postfix-mta-sts-resolver.  CPU time moves less than answers/s when other work
shares the machine; the wait also keeps one server's checks from running into the next
server's first pass on the same CPU.

``--later K`` sets the passes after the first (default 1; the figures in the performance
page were taken with 2), ``--mode working`` or ``--mode servfail`` measures one resolver
mode, ``--memory-cache-size N`` gives tlspolicy a file holding only ``[discovery]
memory_cache_size = N``, ``--layout same`` or ``different`` one CPU layout.  ``--sizes
2000,5000,20000`` measures with the first N keys of the largest cache for each N, and
``--plot FILE.svg`` draws answers/s and RSS against those sizes for both servers
(matplotlib, the ``bench`` extra; skipped with a line when it is missing); ``--json
FILE`` keeps every round's figures.  ``--quick`` uses a few hundred keys, and prints
``skipped: REASON`` (exit 0) where postmap, pip, the network, ``unshare`` or port 53
are not available.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _postmap
import mta_sts_resolver as peer
from _dns_loop import serve_until_stdin_closes

RESOLVER_ADDRESS = "127.0.0.77"
RESOLVER_PORT = 53  # resolv.conf names no port
POLICY_ID = "bench1"
FETCHED_AGO = 3600  # older than the peer's default cache_grace (60 s)
RESOLVER_CPU = 1
MODES = ("working", "servfail")

# Run inside the peer's own environment: its cache class writes its own schema.
_FILL = """
import asyncio, sys, time
from postfix_mta_sts_resolver.base_cache import CacheEntry
from postfix_mta_sts_resolver.sqlite_cache import SqliteCache

async def main():
    cache = SqliteCache(sys.argv[1], threads=1)
    await cache.setup()
    ts = int(time.time()) - int(sys.argv[2])
    for line in sys.stdin:
        domain = line.strip()
        body = {"version": "STSv1", "mode": "enforce", "max_age": 604800,
                "mx": ["mx." + domain]}
        await cache.set(domain, CacheEntry(ts, sys.argv[3], body))
    await cache.teardown()

asyncio.run(main())
"""


# ------------------------------------------------------------------ the resolver


def _dns_server(address: str, port: int, mode: str) -> None:
    """Serve DNS on ``address:port`` (UDP and TCP) until standard input closes; a line
    ``count`` on standard input prints the queries answered so far."""
    import dns.flags
    import dns.message
    import dns.rcode
    import dns.rdatatype
    import dns.rrset

    lock = threading.Lock()
    answered = [0]

    def answer(wire: bytes) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        reply = dns.message.make_response(query)
        with lock:
            answered[0] += 1
        if mode == "servfail" or not query.question:
            reply.set_rcode(dns.rcode.SERVFAIL)
            return reply.to_wire()
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        rdtype = question.rdtype
        if name.startswith("_mta-sts.") and rdtype == dns.rdatatype.TXT:
            reply.answer.append(dns.rrset.from_text(
                question.name, 3600, "IN", "TXT", f'"v=STSv1; id={POLICY_ID};"'))
        elif rdtype == dns.rdatatype.MX and not name.startswith(("_", "mx.")):
            reply.answer.append(dns.rrset.from_text(question.name, 3600, "IN", "MX",
                                                    f"10 mx.{name}."))
        elif rdtype == dns.rdatatype.A and name.startswith("mx."):
            reply.answer.append(dns.rrset.from_text(question.name, 3600, "IN", "A",
                                                    "192.0.2.25"))
        reply.flags |= dns.flags.AA
        return reply.to_wire()

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((address, port))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((address, port))
    tcp.listen()

    def count() -> int:
        with lock:
            return answered[0]

    serve_until_stdin_closes(udp, tcp, answer, count, "ready")


class Resolver:
    """The DNS server process; ``count()`` reads how many queries it answered."""

    def __init__(self, mode: str) -> None:
        def pin() -> None:
            os.sched_setaffinity(0, {RESOLVER_CPU})
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--dns-server", mode], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, preexec_fn=pin)
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            self.stop()
            raise peer.Skip(f"cannot serve DNS on {RESOLVER_ADDRESS}:{RESOLVER_PORT}")

    def count(self) -> int:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("count\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


# ------------------------------------------------------------------ the servers


def rss_kib(pid: int) -> int:
    """VmRSS of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process and all its threads, in seconds: less moved
    by other load on the machine than answers per second are."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(pid: int, *, least: float = 2.0, most: float = 120.0) -> None:
    """Wait at least ``least`` seconds, then until the process has used less than 5 % of
    a CPU over half a second (at most ``most`` seconds in all): the checks a pass started
    run on after its last answer, and must neither run into the next server's pass on the
    same CPU nor be left out of this one's CPU time."""
    time.sleep(least)
    waited = least
    used = cpu_seconds(pid)
    while waited < most:
        time.sleep(0.5)
        waited += 0.5
        now = cpu_seconds(pid)
        if now - used < 0.025:
            return
        used = now
    print(f"note: pid {pid} still busy {most:.0f} s after its pass; its CPU time an answer "
          "includes that work", flush=True)


@contextmanager
def peer_server(bin_dir: Path, work: Path, db: Path, cpu: int
                ) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """postfix-mta-sts-resolver (default cache_grace) in a private mount namespace whose
    resolv.conf names the loopback resolver; yields its table and process."""
    port = peer._free_port()
    config = work / "peer-daemon.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "host": "127.0.0.1", "port": port,
        "cache": {"type": "sqlite", "options": {"filename": str(db)}},
        "default_zone": {"strict_testing": False, "timeout": 4},
    }))
    resolv = work / "resolv.conf"
    resolv.write_text(f"nameserver {RESOLVER_ADDRESS}\n")
    script = ('mount --bind "$1" /etc/resolv.conf && shift && exec "$@"')
    command = ["unshare", "--mount", "sh", "-c", script, "sh", str(resolv),
               str(bin_dir / "mta-sts-daemon"), "-c", str(config), "-v", "warn"]
    with peer._running(peer._pinned(command, cpu, stdout=subprocess.DEVNULL)) as proc:
        peer._wait_port(port, proc)
        yield f"socketmap:inet:127.0.0.1:{port}:postfix", proc


@contextmanager
def our_server(work: Path, cache: Path, cpu: int, memory_cache_size: int | None = None,
               source: Path | None = None) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``tlspolicy serve socketmap --discovery`` (drop-in mode: no file, or a file holding
    only ``[discovery] memory_cache_size``), from the source tree ``source`` when given
    (its ``src`` directory first on the module path); yields its table and process."""
    conf = work / "postfix-conf"
    conf.mkdir(exist_ok=True)
    (conf / "main.cf").write_text("compatibility_level = 3.6\n")
    (conf / "master.cf").write_text("smtp unix - - y - - smtp\n")
    prefix = [] if source is None else ["env", f"PYTHONPATH={source.resolve() / 'src'}"]
    command = [*prefix, sys.executable, "-m", "tlspolicy", "serve", "socketmap", "--discovery",
               "--listen", "127.0.0.1:0", "--postfix-config-dir", str(conf),
               "--postfix-version", "3.7.11", "--cache", str(cache),
               "--resolver", RESOLVER_ADDRESS, "--resolver-port", str(RESOLVER_PORT),
               "--https-port", "9", "-q"]
    if memory_cache_size is not None:
        settings = work / "discovery.toml"
        settings.write_text(f"[discovery]\nmemory_cache_size = {memory_cache_size}\n")
        command.append(str(settings))
    with peer._running(peer._pinned(command, cpu, stdout=subprocess.PIPE)) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"tlspolicy did not start: {line!r}")
        yield f"socketmap:inet:{line.split()[-1]}:postfix", proc


def _copy_sqlite(source: Path, target: Path) -> Path:
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")
    return target


# ------------------------------------------------------------------ measuring


def measure(bin_dir: Path, postmap: str, work: Path, keys: Sequence[str], later: int,
            layouts: Sequence[tuple[str, int]], modes: Sequence[str],
            memory_cache_size: int | None = None, sizes: Sequence[int] | None = None,
            compare: Path | None = None, peer_first: bool = False) -> list[dict[str, Any]]:
    """Every (size, mode, layout) round, printed as it ends; returns the figures.  With
    ``compare`` (another source tree, e.g. an earlier commit's), a third server,
    ``tlspolicy-compared``, runs from it in the same rounds."""
    config_dir = work / "postmap"
    config_dir.mkdir(exist_ok=True)
    (config_dir / "main.cf").write_text("compatibility_level = 3.6\n")
    os.sched_setaffinity(0, {0})  # postmap (a child) runs on CPU 0
    round_number = 0
    results: list[dict[str, Any]] = []
    for size in sizes or (len(keys),):
        asked = keys[:size]
        keys_text = "".join(f"{k}\n" for k in asked)
        for mode in modes:
            for layout, core in layouts:
                round_number += 1
                here = work / f"round-{round_number}"
                here.mkdir()
                peer_db = _copy_sqlite(work / "peer.db", here / "peer.db")
                our_db = _copy_sqlite(work / "tlspolicy.sqlite3", here / "tlspolicy.sqlite3")
                resolver = Resolver(mode)
                try:
                    with ExitStack() as stack:
                        ours, our_proc = stack.enter_context(
                            our_server(here, our_db, core, memory_cache_size))
                        theirs, peer_proc = stack.enter_context(
                            peer_server(bin_dir, here, peer_db, core))
                        tables = {"tlspolicy": ours, "peer": theirs}
                        procs = {"tlspolicy": our_proc, "peer": peer_proc}
                        if compare is not None:
                            other = here / "compared"
                            other.mkdir()
                            tables["tlspolicy-compared"], procs["tlspolicy-compared"] = \
                                stack.enter_context(our_server(
                                    other, _copy_sqlite(work / "tlspolicy.sqlite3",
                                                        other / "tlspolicy.sqlite3"),
                                    core, memory_cache_size, compare))
                        if peer_first:
                            tables = {"peer": tables.pop("peer"), **tables}
                        start = {side: rss_kib(proc.pid) for side, proc in procs.items()}
                        first: dict[str, float] = {}
                        queries: dict[str, int] = {}
                        runs: dict[str, list[float]] = {side: [] for side in tables}
                        cpu: dict[str, float] = {}
                        for side, table in tables.items():
                            before = resolver.count()
                            used = cpu_seconds(procs[side].pid)
                            first[side] = len(asked) / _postmap.query_all(
                                postmap, config_dir, table, keys_text, len(asked))
                            settle(procs[side].pid)
                            cpu[side] = (cpu_seconds(procs[side].pid) - used) / len(asked)
                            queries[side] = resolver.count() - before
                        answers = {side: _answer(postmap, config_dir, table, asked[0])
                                   for side, table in tables.items()}
                        for _ in range(later):
                            for side, table in tables.items():
                                before = resolver.count()
                                runs[side].append(len(asked) / _postmap.query_all(
                                    postmap, config_dir, table, keys_text, len(asked)))
                                queries[side] += resolver.count() - before
                        rss = {side: rss_kib(proc.pid) for side, proc in procs.items()}
                finally:
                    resolver.stop()
                if not all(a.startswith("secure match=") for a in answers.values()):
                    raise RuntimeError(f"unexpected answers {answers}")
                rate = {side: statistics.median(r) for side, r in runs.items()}
                results.append({"size": len(asked), "mode": mode, "layout": layout,
                                "order": list(tables),
                                "first": first, "later": rate, "queries": queries,
                                "rss_start_kib": start, "rss_kib": rss,
                                "first_cpu_ms_per_answer": {k: v * 1e3 for k, v in cpu.items()}})
                print(f"peer-discovery-{mode}-{layout}: first pass tlspolicy "
                      f"{first['tlspolicy']:,.0f} answers/s, {peer.PACKAGE} "
                      f"{first['peer']:,.0f}, ratio {first['tlspolicy'] / first['peer']:.2f}; "
                      f"later passes tlspolicy {rate['tlspolicy']:,.0f} answers/s, "
                      f"{peer.PACKAGE} {rate['peer']:,.0f}, ratio "
                      f"{rate['tlspolicy'] / rate['peer']:.2f}; DNS queries tlspolicy "
                      f"{queries['tlspolicy']:,}, {peer.PACKAGE} {queries['peer']:,}; RSS at "
                      f"start tlspolicy {start['tlspolicy'] / 1024:,.1f} MiB, {peer.PACKAGE} "
                      f"{start['peer'] / 1024:,.1f} MiB; RSS after all passes tlspolicy "
                      f"{rss['tlspolicy'] / 1024:,.1f} MiB, {peer.PACKAGE} "
                      f"{rss['peer'] / 1024:,.1f} MiB, ratio "
                      f"{rss['tlspolicy'] / rss['peer']:.2f}; server CPU per answer of the "
                      f"first pass tlspolicy {cpu['tlspolicy'] * 1e3:.2f} ms, {peer.PACKAGE} "
                      f"{cpu['peer'] * 1e3:.2f} ms (servers on CPU {core}, postmap "
                      f"on CPU 0, resolver on CPU {RESOLVER_CPU}, {len(asked):,} keys, "
                      f"{1 + later} passes, in turn: {', '.join(tables)})", flush=True)
                if compare is not None:
                    side = "tlspolicy-compared"
                    print(f"peer-discovery-{mode}-{layout}-compared: tlspolicy from {compare}: "
                          f"first pass {first[side]:,.0f} answers/s, "
                          f"{cpu[side] * 1e3:.2f} ms CPU an answer, later passes "
                          f"{rate[side]:,.0f} answers/s, DNS queries {queries[side]:,}, RSS "
                          f"at start {start[side] / 1024:,.1f} MiB, after all passes "
                          f"{rss[side] / 1024:,.1f} MiB (this tree: "
                          f"{rss['tlspolicy'] / 1024:,.1f} MiB)", flush=True)
    return results


def plot(results: Sequence[dict[str, Any]], path: Path) -> str:
    """Answers/s (later passes) and RSS after all passes against the policies answered
    for, per side and resolver mode, as an SVG at ``path`` (matplotlib, the ``bench``
    extra); returns what was done."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed (pip install 'tlspolicy[bench]')"
    layout = results[0]["layout"]
    shown = [r for r in results if r["layout"] == layout]
    figure, (rates, sizes) = plt.subplots(1, 2, figsize=(10, 4))
    names = {"tlspolicy": "tlspolicy", "peer": peer.PACKAGE}
    colours = {"tlspolicy": "tab:blue", "peer": "tab:orange"}  # one colour per server
    for mode in sorted({r["mode"] for r in shown}, reverse=True):
        rows = sorted((r for r in shown if r["mode"] == mode), key=lambda r: r["size"])
        x = [r["size"] for r in rows]
        style = "-o" if mode == "working" else "--s"  # one line style per resolver mode
        for side in ("tlspolicy", "peer"):
            label = f"{names[side]}, {mode} resolver"
            rates.plot(x, [r["later"][side] for r in rows], style, color=colours[side],
                       label=label)
            sizes.plot(x, [r["rss_kib"][side] / 1024 for r in rows], style,
                       color=colours[side], label=label)
    rates.set(xlabel="cached policies answered for", ylabel="answers/s (later passes)",
              title="Answers per second")
    sizes.set(xlabel="cached policies answered for", ylabel="RSS after all passes (MiB)",
              title="Resident memory")
    for axes in (rates, sizes):
        axes.set_ylim(bottom=0)
        axes.grid(True, alpha=0.3)
    rates.legend(fontsize="small")
    figure.suptitle(f"Drop-in discovery against {peer.PACKAGE}, one postmap -q - "
                    f"connection, servers {layout} CPU as postmap", fontsize="medium")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fixed hash salt and no date: the same figures give the same file.
    figure.savefig(path, format="svg", metadata={"Date": None})
    plt.close(figure)
    return f"plot: {path}"


def _answer(postmap: str, config_dir: Path, table: str, key: str) -> str:
    done = subprocess.run([postmap, "-c", str(config_dir), "-q", key, table],
                          capture_output=True, text=True, timeout=60, check=False)
    return done.stdout.strip()


def _preflight(postmap: str | None) -> None:
    if postmap is None:
        raise peer.Skip("postmap is not installed")
    if shutil.which("unshare") is None:
        raise peer.Skip("unshare (util-linux) is not installed")
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True,
                           timeout=30, check=False)
    if probe.returncode != 0:
        raise peer.Skip(f"cannot make a private mount namespace: {probe.stderr.strip()}")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((RESOLVER_ADDRESS, RESOLVER_PORT))
    except OSError as exc:
        raise peer.Skip(f"cannot listen on {RESOLVER_ADDRESS}:{RESOLVER_PORT}: {exc}") from None
    if len(os.sched_getaffinity(0)) < 2 or not {0, 1} <= os.sched_getaffinity(0):
        raise peer.Skip("CPUs 0 and 1 are not both available")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true",
                        help="few keys; skip (exit 0) where a tool is missing")
    parser.add_argument("--keys", type=int, default=None, help="keys asked (default 20000)")
    parser.add_argument("--later", type=int, default=None,
                        help="timed passes after the first (default 1)")
    parser.add_argument("--mode", action="append", choices=MODES,
                        help="resolver mode to measure (repeatable; default both)")
    parser.add_argument("--memory-cache-size", type=int, default=None, metavar="N",
                        help="tlspolicy's [discovery] memory_cache_size (default: its own)")
    parser.add_argument("--layout", action="append", choices=("same", "different"),
                        help="CPU layout to measure (repeatable; default both)")
    parser.add_argument("--sizes", default=None, metavar="N,N,...",
                        help="also measure with the first N keys only, for each N (the "
                        "plot's points; default: all keys)")
    parser.add_argument("--plot", type=Path, default=None, metavar="SVG",
                        help="write answers/s and RSS against the policies answered for")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="write every round's figures as JSON")
    parser.add_argument("--compare-src", type=Path, default=None, metavar="TREE",
                        help="also run tlspolicy from this source tree (its src/ on the "
                        "module path, e.g. an earlier commit's checkout) in the same rounds")
    parser.add_argument("--peer-first", action="store_true",
                        help="run postfix-mta-sts-resolver's passes before tlspolicy's "
                        "(default: tlspolicy, the peer, the compared tree)")
    parser.add_argument("--dns-server", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.dns_server:
        _dns_server(RESOLVER_ADDRESS, RESOLVER_PORT, args.dns_server)
        return 0
    sizes = sorted(int(n) for n in args.sizes.split(",")) if args.sizes else None
    n_keys = max(sizes) if sizes else args.keys or (300 if args.quick else 20_000)
    later = args.later or 1
    postmap = _postmap.find_postmap()
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="tlspolicy-bench-peer-discovery-") as tmp:
        work = Path(tmp)
        try:
            _preflight(postmap)
            bin_dir = peer.install_peer(work)
        except peer.Skip as exc:
            if args.quick:
                print(f"skipped: {exc}")
                return 0
            raise SystemExit(f"error: {exc}") from None
        assert postmap is not None
        keys = [f"d{i}.bench-peer.test" for i in range(n_keys)]
        subprocess.run([str(bin_dir / "python"), "-c", _FILL, str(work / "peer.db"),
                        str(FETCHED_AGO), POLICY_ID],
                       input="".join(f"{k}\n" for k in keys), text=True, check=True,
                       timeout=3600)
        started = time.perf_counter()
        imported = subprocess.run(
            [sys.executable, "-m", "tlspolicy", "import-cache", "--from",
             "mta-sts-resolver-sqlite", str(work / "peer.db"), "--cache",
             str(work / "tlspolicy.sqlite3")], capture_output=True, text=True, timeout=3600,
            check=False)
        if imported.returncode != 0:
            raise SystemExit(f"error: import-cache failed: {imported.stderr.strip()}")
        print(f"import: {n_keys:,} policies imported from the {peer.PACKAGE} cache in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        layouts = [(name, cpu) for name, cpu in (("same", 0), ("different", 1))
                   if not args.layout or name in args.layout]
        results = measure(bin_dir, postmap, work, keys, later, layouts, args.mode or MODES,
                          args.memory_cache_size, sizes, args.compare_src, args.peer_first)
        if args.json is not None:
            args.json.write_text(json.dumps(results, indent=1) + "\n")
        if args.plot is not None:
            print(plot(results, args.plot))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
