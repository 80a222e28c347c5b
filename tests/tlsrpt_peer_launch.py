"""Run one of tlsrpt-reporter's programs with a shifted clock (run by the peer's own Python).

Usage: ``python tlsrpt_peer_launch.py collectd|fetcher|reportd [options...]``.

tlsrpt-reporter files every datagram under the UTC day it arrives and reports
"yesterday"; the differential test needs two chosen past days.  Its programs
read the time through one function of its ``utility`` module, so this launcher
replaces that function with one returning the real time plus the offset (in
seconds) written in the file that ``TLSRPT_PEER_CLOCK`` names, read at every
call: the test moves the clock of every peer process at once by rewriting that
file.  Nothing else of the peer is changed.
"""

from __future__ import annotations

import datetime
import os
import sys


def _shifted_now() -> datetime.datetime:
    with open(os.environ["TLSRPT_PEER_CLOCK"], encoding="ascii") as file:
        offset = float(file.read().strip() or "0")
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=offset)


def main() -> None:
    from tlsrpt_reporter import tlsrpt, utility

    utility.tlsrpt_utc_time_now = _shifted_now
    tlsrpt.tlsrpt_utc_time_now = _shifted_now  # type: ignore[attr-defined]
    entry = {"collectd": tlsrpt.tlsrpt_collectd_main, "fetcher": tlsrpt.tlsrpt_fetcher_main,
             "reportd": tlsrpt.tlsrpt_reportd_main}[sys.argv[1]]
    sys.argv = [f"tlsrpt-{sys.argv[1]}", *sys.argv[2:]]
    entry()


if __name__ == "__main__":
    main()
