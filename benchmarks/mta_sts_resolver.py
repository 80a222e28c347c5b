"""tlspolicy's socketmap server against postfix-mta-sts-resolver, measured from outside.

Both servers answer the same N keys, asked by Postfix's own ``postmap -q -`` over one
socketmap connection, in the same run:

- tlspolicy: ``tlspolicy serve socketmap`` with a static policy, one domain stanza per key
  (``tls = "required"``, ``tls_verify = "host"``, answered as ``verify``);
- postfix-mta-sts-resolver (PyPI ``postfix-mta-sts-resolver``, installed by this script into
  its own virtual environment in a temporary directory, never this project's) answering
  from its own SQLite cache, filled beforehand through its own cache class with an
  unexpired enforce policy per key (answered as ``secure match=...``).

Each server runs pinned (``os.sched_setaffinity``) to CPU 0 or CPU 1 while ``postmap`` runs
on CPU 0: the "same" and "different" layouts, since on small machines the ceiling moves
with placement.  Figures: answers per second of each side (median of the repeats, after a
warm-up run) and the ratio tlspolicy / postfix-mta-sts-resolver.

``--quick`` uses few keys and one repeat, and prints ``skipped: REASON`` (exit 0) when
postmap, pip or the network is not available.

``TLSPOLICY_BENCH_PEER=DIR`` names a virtual environment that already holds the peer (``pip
install 'postfix-mta-sts-resolver[sqlite]'``): this script and ``peer_discovery.py`` use it
instead of installing their own, and install their own when it cannot import the peer's
SQLite cache.  CI installs it once, beside its other installs.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _postmap

PACKAGE = "postfix-mta-sts-resolver"
REQUIREMENT = f"{PACKAGE}[sqlite]"  # its SQLite cache needs aiosqlite
START_TIMEOUT = 60.0

# Run inside the peer's own environment: its cache class writes its own schema.
_FILL = """
import asyncio, sys, time
from postfix_mta_sts_resolver.base_cache import CacheEntry
from postfix_mta_sts_resolver.sqlite_cache import SqliteCache

async def main():
    cache = SqliteCache(sys.argv[1], threads=1)
    await cache.setup()
    now = int(time.time())
    for line in sys.stdin:
        domain = line.strip()
        body = {"version": "STSv1", "mode": "enforce", "max_age": 604800,
                "mx": ["mx." + domain]}
        await cache.set(domain, CacheEntry(now, "bench1", body))
    await cache.teardown()

asyncio.run(main())
"""


class Skip(Exception):
    """The comparison cannot run here (no postmap, no pip or network)."""


PEER_ENV = "TLSPOLICY_BENCH_PEER"


def _has_peer(env: Path) -> bool:
    """Whether ``env``'s Python imports the peer's SQLite cache (and so aiosqlite)."""
    try:
        done = subprocess.run([str(env / "bin" / "python"), "-c",
                               "import postfix_mta_sts_resolver.sqlite_cache"],
                              capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and (env / "bin" / "mta-sts-daemon").exists()


def install_peer(root: Path) -> Path:
    """A virtual environment with the peer installed; its bin directory.

    The one ``TLSPOLICY_BENCH_PEER`` names if it holds the peer, else a new one under
    ``root``: installing takes from half a minute to two, which a test run pays once.
    """
    given = os.environ.get(PEER_ENV)
    if given and _has_peer(Path(given)):
        return Path(given) / "bin"
    env = root / "peer-venv"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True,
                       capture_output=True, timeout=300)
        subprocess.run([str(env / "bin" / "pip"), "install", "-q", REQUIREMENT], check=True,
                       capture_output=True, text=True, timeout=600)
    except subprocess.CalledProcessError as exc:
        raise Skip(f"cannot install {PACKAGE}: {(exc.stderr or '').strip()[-300:]}") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Skip(f"cannot install {PACKAGE}: {exc}") from None
    return env / "bin"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pinned(command: Sequence[str], cpu: int, *, stdout: int) -> subprocess.Popen[str]:
    """Start ``command`` on one CPU: pinned before it runs, so every thread it starts is."""
    def pin() -> None:
        os.sched_setaffinity(0, {cpu})
    return subprocess.Popen(list(command), preexec_fn=pin, text=True, stdout=stdout,
                            stderr=subprocess.DEVNULL)


def _wait_port(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {START_TIMEOUT} s")


@contextmanager
def _running(process: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextmanager
def peer_server(bin_dir: Path, work: Path, cpu: int) -> Iterator[str]:
    """postfix-mta-sts-resolver on loopback; yields its socketmap table."""
    port = _free_port()
    config = work / "mta-sts-daemon.yml"
    # JSON is YAML.  A long cache_grace: every answer comes from the cache, none is fetched.
    # reuse_port stays at its default (true): 1.5.1 cannot listen on TCP without it.
    config.write_text(json.dumps({
        "host": "127.0.0.1", "port": port, "cache_grace": 30 * 86400,
        "cache": {"type": "sqlite", "options": {"filename": str(work / "peer.db")}},
        "default_zone": {"strict_testing": False, "timeout": 4},
    }))
    with _running(_pinned([str(bin_dir / "mta-sts-daemon"), "-c", str(config), "-v", "warn"],
                          cpu, stdout=subprocess.DEVNULL)) as proc:
        _wait_port(port, proc)
        yield f"socketmap:inet:127.0.0.1:{port}:postfix"


@contextmanager
def our_server(policy: Path, cpu: int) -> Iterator[str]:
    """``tlspolicy serve socketmap`` on loopback; yields its socketmap table."""
    command = [sys.executable, "-m", "tlspolicy", "serve", "socketmap", "--listen",
               "127.0.0.1:0", "--no-postfix-checks", "--no-file-checks", "--postfix-version",
               "3.10.0", "-q", str(policy)]
    with _running(_pinned(command, cpu, stdout=subprocess.PIPE)) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"tlspolicy did not start: {line!r}")
        yield f"socketmap:inet:{line.split()[-1]}:default"


def _first_answer(postmap: str, config_dir: Path, table: str, key: str) -> str:
    done = subprocess.run([postmap, "-c", str(config_dir), "-q", key, table],
                          capture_output=True, text=True, timeout=60, check=False)
    return done.stdout.strip()


def measure(bin_dir: Path, postmap: str, work: Path, keys: Sequence[str], repeats: int,
            layouts: Sequence[tuple[str, int]]) -> None:
    config_dir = work / "postmap"
    config_dir.mkdir()
    (config_dir / "main.cf").write_text("compatibility_level = 3.6\n")
    keys_text = "".join(f"{k}\n" for k in keys)
    policy = work / "policy.toml"
    policy.write_text("".join(f'[[domain]]\nname = "{k}"\ntls = "required"\n'
                              'tls_verify = "host"\n' for k in keys))
    os.sched_setaffinity(0, {0})  # postmap (a child) runs on CPU 0
    for layout, cpu in layouts:
        with our_server(policy, cpu) as ours, peer_server(bin_dir, work, cpu) as theirs:
            answers = (_first_answer(postmap, config_dir, ours, keys[0]),
                       _first_answer(postmap, config_dir, theirs, keys[0]))
            if not answers[0].startswith("verify") or not answers[1].startswith("secure"):
                raise RuntimeError(f"unexpected answers {answers}")
            runs: dict[str, list[float]] = {"tlspolicy": [], "peer": []}
            for table in (ours, theirs):  # warm-up: both sides' caches and memos
                _postmap.query_all(postmap, config_dir, table, keys_text, len(keys))
            for _ in range(repeats):
                runs["tlspolicy"].append(_postmap.query_all(postmap, config_dir, ours,
                                                            keys_text, len(keys)))
                runs["peer"].append(_postmap.query_all(postmap, config_dir, theirs,
                                                       keys_text, len(keys)))
        ours_rate = len(keys) / statistics.median(runs["tlspolicy"])
        peer_rate = len(keys) / statistics.median(runs["peer"])
        print(f"{layout}: tlspolicy {ours_rate:,.0f} answers/s, {PACKAGE} "
              f"{peer_rate:,.0f} answers/s, ratio {ours_rate / peer_rate:.2f} "
              f"(servers on CPU {cpu}, postmap on CPU 0, {len(keys)} keys)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true",
                        help="few keys, one repeat; skip (exit 0) without pip or network")
    parser.add_argument("--keys", type=int, default=None, help="keys asked (default 20000)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (default 3)")
    args = parser.parse_args(argv)
    n_keys = args.keys or (300 if args.quick else 20_000)
    repeats = args.repeats or (1 if args.quick else 3)
    postmap = _postmap.find_postmap()
    cpus = sorted(os.sched_getaffinity(0))
    layouts = [("same", 0), ("different", 1)] if len(cpus) >= 2 and cpus[:2] == [0, 1] \
        else [("same", cpus[0])]
    with tempfile.TemporaryDirectory(prefix="tlspolicy-bench-peer-") as tmp:
        work = Path(tmp)
        try:
            if postmap is None:
                raise Skip("postmap is not installed")
            bin_dir = install_peer(work)
        except Skip as exc:
            if args.quick:
                print(f"skipped: {exc}")
                return 0
            raise SystemExit(f"error: {exc}") from None
        keys = [f"d{i}.bench-peer.test" for i in range(n_keys)]
        subprocess.run([str(bin_dir / "python"), "-c", _FILL, str(work / "peer.db")],
                       input="".join(f"{k}\n" for k in keys), text=True, check=True,
                       timeout=3600)
        measure(bin_dir, postmap, work, keys, repeats, layouts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
