"""A socketmap server over a tiny text table, for the signal tests only.

Run as ``python socketmap_test_app.py TABLE``.  TABLE holds lines
``map key value``; a line ``!fail`` makes loading raise, to test a failed
reload.  The process prints ``LISTENING host port`` once bound, reloads the
table on SIGHUP and exits on SIGTERM.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from tlspolicy.errors import ConfigError
from tlspolicy.servers.running import run_forever
from tlspolicy.servers.socketmap import Lookup, SocketmapReply, SocketmapServer


def load(path: Path) -> Lookup:
    """Read the table; raise ConfigError for a ``!fail`` line."""
    table: dict[tuple[str, str], str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip() == "!fail":
            raise ConfigError(f"{path}:{number}: table marked as broken")
        if line.strip():
            name, key, value = line.split(maxsplit=2)
            table[(name, key)] = value

    def lookup(name: str, key: str) -> SocketmapReply:
        value = table.get((name, key))
        return SocketmapReply.ok(value) if value is not None else SocketmapReply.notfound()

    return lookup


def main() -> None:
    """Entry point."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(message)s")
    path = Path(sys.argv[1])

    def ready(server: SocketmapServer) -> None:
        host, port = server.address
        print(f"LISTENING {host} {port}", flush=True)

    run_forever(lambda: load(path), host="127.0.0.1", port=0, ready=ready)
    print("STOPPED", flush=True)


if __name__ == "__main__":
    main()
