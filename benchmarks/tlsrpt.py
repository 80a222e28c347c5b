"""TLS-RPT figures: recording cost per delivery attempt, and aggregating a million results.

Run ``python benchmarks/tlsrpt.py`` (full) or ``--quick`` (small sizes; checks the
script works).  Figures:

record
    What a driver does per attempt when given a sink: ``record_attempt`` (the
    result type, the policy that applied, then ``BufferedSink.record``: a dict
    count under a lock, no I/O), against the warm ``Resolver.resolve(domain,
    mx_host=..., destination=...)`` it follows, interleaved in the same run.
    Target: at most 2x.
record-sink
    ``BufferedSink.record(result)`` alone, against the same warm resolve.
aggregate
    1,000,000 recorded results (1,000 policy domains, a mix of successes and
    every failure type from 50 receiving IPs): recording them, flushing to a
    SQLite store, then reading the period back and building every report (seconds).
aggregate-memory
    The same traced: peak Python heap (tracemalloc) and the process's peak RSS.
aggregate-pure
    ``build_report`` over 1,000,000 individual ``SessionResult`` objects of one
    domain (an MTA that keeps its own results): seconds and peak heap.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from _timing import compare_statements  # noqa: E402

from tlspolicy import (  # noqa: E402
    Destination,
    MtaStsPolicy,
    PlaintextReason,
    Resolver,
    StsMode,
    loads_toml,
)
from tlspolicy.adapters import Progress, record_attempt  # noqa: E402
from tlspolicy.policies.tlsrpt import PolicyType, SessionResult, build_report  # noqa: E402
from tlspolicy.reporting import DAY, BufferedSink, period_results  # noqa: E402
from tlspolicy.stores import SqliteStore  # noqa: E402

CONFIG = '[global]\ntls = "ifavailable"\nuse_mta_sts = true\nuse_dane = true\n'
FAILURES = ("starttls-not-supported", "certificate-expired", "certificate-not-trusted",
            "certificate-host-mismatch", "validation-failure", "tlsa-invalid")


def _record_figures(repeats: int, target: float) -> None:
    resolver = Resolver(loads_toml(CONFIG))
    destination = Destination(mta_sts=MtaStsPolicy(StsMode.ENFORCE, ("mx.example.net",), 86400))
    decision = resolver.resolve("example.net", mx_host="mx.example.net", destination=destination)
    progress = Progress(decision, "mx.example.net", 25)
    progress.addresses(("192.0.2.25", 25), ("198.51.100.1", 40000))
    progress.proceed()
    record = progress.record(progress.plaintext(PlaintextReason.NOT_ATTEMPTED))
    sink = BufferedSink(lambda: SqliteStore(":memory:"))  # not started: no flusher thread
    namespace = {"record_attempt": record_attempt, "sink": sink, "decision": decision,
                 "destination": destination, "record": record, "resolver": resolver,
                 "result": SessionResult(PolicyType.NO_POLICY_FOUND, "example.net")}
    warm = "resolver.resolve('example.net', mx_host='mx.example.net', destination=destination)"
    pair = compare_statements("record_attempt(sink, decision, destination, record)", warm,
                              namespace, repeats=repeats, target=target)
    print(f"record: record_attempt {pair.candidate * 1e6:.2f} us per attempt; baseline warm "
          f"resolve() {pair.baseline * 1e6:.2f} us; ratio {pair.ratio:.2f}x (target <= 2x)")
    pair = compare_statements("sink.record(result)", warm, namespace, repeats=repeats,
                              target=target)
    print(f"record-sink: BufferedSink.record {pair.candidate * 1e6:.2f} us; baseline warm "
          f"resolve() {pair.baseline * 1e6:.2f} us; ratio {pair.ratio:.2f}x")


def _results(n: int, domains: int) -> list[SessionResult]:
    made = []
    for i in range(n):
        domain = f"d{i % domains}.example"
        if i % 5:
            made.append(SessionResult(PolicyType.NO_POLICY_FOUND, domain))
        else:
            made.append(SessionResult(
                PolicyType.NO_POLICY_FOUND, domain, result_type=FAILURES[i % len(FAILURES)],
                receiving_mx_hostname=f"mx.{domain}", receiving_ip=f"192.0.2.{i % 50}",
                failure_reason_code="TLS negotiation failed"))
    return made


async def _aggregate(tmp: Path, n: int, domains: int, *, trace: bool) -> None:
    """One pass timed without tracemalloc (it slows allocation tenfold), one traced."""
    results = _results(n, domains)
    start = 1_800_000_000 // DAY * DAY
    if trace:
        tracemalloc.start()
    began = time.perf_counter()
    store = SqliteStore(tmp / f"agg-{trace}.sqlite3")
    sink = BufferedSink(lambda: store, clock=lambda: start + 60, max_pending=10 * n)
    for result in results:
        sink.record(result)
    recorded = time.perf_counter()
    await sink._flush(store)
    flushed = time.perf_counter()
    by_domain = await period_results(store, start)
    reports = [build_report(organization_name="bench", contact_info="mailto:x@bench.example",
                            report_id=f"r{k}", start=datetime.fromtimestamp(start, UTC),
                            end=datetime.fromtimestamp(start + DAY, UTC), results=rs)
               for k, rs in enumerate(by_domain.values())]
    done = time.perf_counter()
    await store.close()
    total = sum(b["summary"]["total-successful-session-count"]
                + b["summary"]["total-failure-session-count"]
                for r in reports for b in r["policies"])
    assert total == n, (total, n)
    if trace:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"aggregate-memory: peak Python heap {peak / 2**20:.1f} MB while recording, "
              f"flushing and reporting {n:,} results (tracemalloc, the input list excluded); "
              f"peak RSS {rss:.0f} MB (process, inputs included)")
        return
    print(f"aggregate: {n:,} results, {len(reports)} domains: record {recorded - began:.2f} s, "
          f"flush to SQLite {flushed - recorded:.2f} s, read + build reports "
          f"{done - flushed:.2f} s; total {done - began:.2f} s")


def _aggregate_pure(n: int) -> None:
    results = _results(n, 1)

    def build() -> dict[str, object]:
        return build_report(organization_name="bench", contact_info="mailto:x@bench.example",
                            report_id="r", start=datetime(2026, 1, 1, tzinfo=UTC),
                            end=datetime(2026, 1, 2, tzinfo=UTC), results=results)

    began = time.perf_counter()
    report = build()
    elapsed = time.perf_counter() - began
    tracemalloc.start()
    build()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    [block] = report["policies"]  # type: ignore[misc]
    assert sum(block["summary"].values()) == n
    print(f"aggregate-pure: build_report over {n:,} SessionResult objects {elapsed:.2f} s "
          f"(untraced), peak heap {peak / 2**20:.1f} MB beyond the inputs (traced run)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    args = parser.parse_args()
    _record_figures(1 if args.quick else 7, 0.05 if args.quick else 0.3)
    n = 20_000 if args.quick else 1_000_000
    with tempfile.TemporaryDirectory() as name:
        asyncio.run(_aggregate(Path(name), n, 1000, trace=False))
        asyncio.run(_aggregate(Path(name), n, 1000, trace=True))
    _aggregate_pure(n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
