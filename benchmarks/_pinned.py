"""Socketmap answers per second measured from outside, with every process pinned.

The server runs in a process of its own (:mod:`_server_process`) and so does
``postmap -q -``, each pinned with ``taskset`` to one CPU.  On a small
virtual machine the do-nothing ceiling moves by a large factor with CPU
placement, so every figure is taken in two layouts: server and client on the
same CPU, and on different CPUs.  Per layout, samples alternate between the
do-nothing blocking server (the ceiling), the policy server asked keys it has
memoised, and the policy server asked keys that are new to its memo.  The
server's CPU time per answer comes from its ``/proc/<pid>/stat``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import attrs

HERE = Path(__file__).resolve().parent
_TICK = os.sysconf("SC_CLK_TCK")


@attrs.frozen
class Started:
    """A server process: its pid, port, start time (s) and resident size then (KiB)."""

    pid: int
    port: int
    start_seconds: float
    rss_kib: int


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, all its threads (``/proc/<pid>/stat``)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def pinning_available() -> str | None:
    """Why pinned figures cannot be taken here, or ``None`` when they can."""
    if shutil.which("taskset") is None:
        return "taskset not found (util-linux)"
    if not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2:
        return "fewer than 2 CPUs available"
    return None


@contextmanager
def server(cpu: int, *args: str) -> Iterator[Started]:
    """Start :mod:`_server_process` pinned to ``cpu``; stop it on exit."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        ["taskset", "-c", str(cpu), sys.executable, str(HERE / "_server_process.py"), *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        port_line = proc.stdout.readline().split()
        start_line = proc.stdout.readline().split()
        if len(port_line) != 2 or len(start_line) != 4:
            raise RuntimeError(f"server {args} did not start (exit {proc.poll()})")
        yield Started(proc.pid, int(port_line[1]), float(start_line[1]), int(start_line[3]))
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@attrs.frozen
class Sample:
    """One ``postmap -q -`` run: answers per second and server CPU per answer (s)."""

    rate: float
    cpu_per_answer: float


def query(postmap: str, config_dir: Path, cpu: int, port: int, map_name: str, keys_text: str,
          expected: int, server_pid: int) -> Sample:
    """Time ``taskset -c CPU postmap -q -`` against a socketmap server on ``port``."""
    table = f"socketmap:inet:127.0.0.1:{port}:{map_name}"
    before = cpu_seconds(server_pid)
    start = time.perf_counter()
    done = subprocess.run(["taskset", "-c", str(cpu), postmap, "-c", str(config_dir), "-q", "-",
                           table], input=keys_text, capture_output=True, text=True,
                          timeout=900, check=False)
    elapsed = time.perf_counter() - start
    used = cpu_seconds(server_pid) - before
    lines = done.stdout.count("\n")
    if done.returncode != 0 or lines != expected:
        raise RuntimeError(f"postmap -q - {table} exited {done.returncode} with {lines} "
                           f"answers (expected {expected}): {done.stderr.strip()[:500]}")
    return Sample(expected / elapsed, used / expected)


LAYOUTS = (("same CPU", 0, 0), ("different CPUs", 0, 1))


@attrs.frozen
class Layout:
    """Median samples of one layout; the uvloop ones are ``None`` without uvloop."""

    name: str
    constant: Sample
    memoised: Sample
    distinct: Sample
    memoised_uvloop: Sample | None = None
    distinct_uvloop: Sample | None = None


def uvloop_available() -> bool:
    """Whether the ``uvloop`` extra is installed, so the server can run on it."""
    return importlib.util.find_spec("uvloop") is not None


def _median(samples: Sequence[Sample]) -> Sample:
    rates = sorted(s.rate for s in samples)
    cpus = sorted(s.cpu_per_answer for s in samples)
    return Sample(rates[len(rates) // 2], cpus[len(cpus) // 2])


def measure(postmap: str, stanzas: int, n_keys: int, memo_keys: int, repeats: int,
            map_name: str, domain: object) -> tuple[list[Layout], Started]:
    """Both layouts; returns their medians and the policy server's start figures.

    With uvloop installed, a second policy server runs on uvloop's loop and its
    samples alternate with the others, so both loops are measured in one run.
    """
    make = domain if callable(domain) else str
    distinct = "".join(f"{make(i % stanzas)}\n" for i in range(n_keys))
    memoised = "".join(f"{make(i % memo_keys)}\n" for i in range(n_keys))
    out: list[Layout] = []
    started: Started | None = None
    with_uvloop = uvloop_available()
    with tempfile.TemporaryDirectory(prefix="tlspolicy-pinned-") as tmp:
        config_dir = Path(tmp)
        (config_dir / "main.cf").write_text("compatibility_level = 3.6\n")
        for name, server_cpu, client_cpu in LAYOUTS:
            runs: dict[str, list[Sample]] = {}
            with ExitStack() as stack:
                ours = stack.enter_context(server(server_cpu, "policy", str(stanzas)))
                ceiling = stack.enter_context(server(server_cpu, "constant"))
                policies = {"": ours}
                if with_uvloop:
                    policies["_uvloop"] = stack.enter_context(
                        server(server_cpu, "policy-uvloop", str(stanzas)))
                started = started or ours
                for policy in policies.values():
                    # Fill the answer memo with the memoised keys first.
                    query(postmap, config_dir, client_cpu, policy.port, map_name, memoised,
                          n_keys, policy.pid)
                for _ in range(repeats):
                    runs.setdefault("constant", []).append(query(
                        postmap, config_dir, client_cpu, ceiling.port, map_name, memoised,
                        n_keys, ceiling.pid))
                    for suffix, policy in policies.items():
                        for kind, keys in (("memoised", memoised), ("distinct", distinct)):
                            runs.setdefault(kind + suffix, []).append(query(
                                postmap, config_dir, client_cpu, policy.port, map_name, keys,
                                n_keys, policy.pid))
            out.append(Layout(name, **{k: _median(v) for k, v in runs.items()}))
    assert started is not None
    return out, started
