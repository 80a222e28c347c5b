"""A socketmap server in a process of its own, for measurements taken from outside.

``python _server_process.py policy N [FILE [CACHE_DIR]]`` serves the Postfix
policy lookup over a generated configuration of ``N`` domain stanzas (or over
``FILE``, read as ``serve`` reads it, through the compiled cache in
``CACHE_DIR`` when given); ``python _server_process.py
constant`` serves the do-nothing blocking server of :mod:`_postmap`.  Either
prints ``PORT <port>`` once it listens and ``START <seconds> RSS <kB>`` (the
time from the start of this script to listening, and the resident size then),
and stops when its standard input closes.  ``policy`` runs asyncio's own event loop;
``policy-uvloop`` runs the loop ``serve`` runs (uvloop's when the ``uvloop`` extra is
installed).  The caller pins it with ``taskset``
and reads its CPU time from ``/proc/<pid>/stat``.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import asyncio  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))


def rss_kib() -> int:
    """The resident size of this process now (VmRSS), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wait_for_eof() -> None:
    """Block until the caller closes our standard input."""
    sys.stdin.read()


def constant() -> None:
    import _postmap

    with _postmap.constant_server() as (_host, port):
        print(f"PORT {port}", flush=True)
        print(f"START {time.perf_counter() - STARTED:.3f} RSS {rss_kib()}", flush=True)
        wait_for_eof()


def policy(stanzas: int, config_file: str | None, cache_dir: str | None,
           uvloop: bool = False) -> None:
    from tlspolicy import Resolver
    from tlspolicy.postfix.lookup import PolicyLookup
    from tlspolicy.servers.socketmap import SocketmapServer

    if config_file is None:
        import _configs

        from tlspolicy.formats.toml import loads_toml

        text = _configs.scale_config(stanzas)
        config = loads_toml(text, "generated.toml")
        del text
    elif cache_dir is None:
        from tlspolicy.formats.loader import load_config

        config = load_config(config_file)
    else:
        from tlspolicy.formats.compiled import load_config_cached

        config, _hit = load_config_cached(config_file, cache_dir=cache_dir)
    lookup = PolicyLookup(Resolver(config))
    del config

    async def main() -> None:
        server = SocketmapServer(lookup, host="127.0.0.1", port=0)
        await server.start()
        print(f"PORT {server.address[1]}", flush=True)
        print(f"START {time.perf_counter() - STARTED:.3f} RSS {rss_kib()}", flush=True)
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        threading.Thread(target=lambda: (wait_for_eof(), loop.call_soon_threadsafe(
            done.set_result, None)), daemon=True).start()
        await done
        await server.stop()

    if uvloop:
        from tlspolicy.servers.running import new_event_loop
        factory = new_event_loop
    else:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


if __name__ == "__main__":
    if sys.argv[1] == "constant":
        constant()
    else:
        # policy N [FILE [CACHE_DIR]]: generated text, or FILE read as serve reads it.
        extra = [*sys.argv[3:5], None, None]
        policy(int(sys.argv[2]), extra[0], extra[1], uvloop=sys.argv[1] == "policy-uvloop")
