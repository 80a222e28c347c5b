"""Recording TLS-RPT results from the drivers' real deliveries (SEMANTICS 12).

Every scenario runs through both drivers against a real aiosmtpd server; the
sink must receive exactly the result the scenario names, with the policy that
applied and the addresses of the connection.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from smtp_servers import DOMAIN, MX_HOST, CertSet, make_cert_set
from tlspolicy import MtaStsPolicy, StsMode
from tlspolicy.policies.tlsrpt import PolicyType, SessionResult
from tlspolicy.reporting import (
    RESULTS_NAMESPACE,
    BufferedSink,
    MemorySink,
    decode_results,
    period_start,
)
from tlspolicy.stores import SqliteStore, StoreUnavailableError
from tlsrpt_support import SCENARIOS, Scenario, run

pytestmark = [pytest.mark.network, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_cert_set(tmp_path_factory.mktemp("certs"))


@pytest.mark.parametrize("driver", ["smtplib", "aiosmtplib"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_each_attempt_records_its_result(certs: CertSet, scenario: Scenario,
                                         driver: str) -> None:
    sink = MemorySink()
    delivered = run(scenario, certs, sink, driver=driver)
    if scenario.expected is None:
        assert sink.results == []
        return
    [result] = sink.results
    policy_type, result_type = scenario.expected
    assert result.policy_type is PolicyType(policy_type)
    assert result.result_type == result_type
    assert result.policy_domain == DOMAIN
    assert result.count == 1
    if result_type is None:
        assert delivered or scenario.name == "no-starttls-ifavailable"
        assert result.receiving_mx_hostname is None  # details only for failures
    else:
        assert result.receiving_mx_hostname == MX_HOST
        assert result.failure_reason_code
        connected = scenario.name not in ("dnssec-bogus", "sts-mx-not-allowed")
        assert result.receiving_ip == ("127.0.0.1" if connected else None)
    if result.policy_type is PolicyType.STS:
        assert result.policy_strings == MtaStsPolicy(StsMode.ENFORCE, (
            "other.example" if scenario.name == "sts-mx-not-allowed" else MX_HOST,),
            86400).policy_strings()
        assert result.mx_hosts in ((MX_HOST,), ("other.example",))
    if result.policy_type is PolicyType.TLSA and result_type != "dnssec-invalid":
        assert len(result.policy_strings) == 1 and result.policy_strings[0].startswith("3 1 1 ")
        assert result.mx_hosts == (MX_HOST,)


class _FailingSink:
    def record(self, result: SessionResult) -> None:
        raise RuntimeError("sink broken")


def test_a_broken_sink_never_fails_a_delivery(certs: CertSet) -> None:
    ok = next(s for s in SCENARIOS if s.name == "ok-none")
    assert run(ok, certs, _FailingSink())  # type: ignore[arg-type]


def _result(n: int = 0) -> SessionResult:
    return SessionResult(PolicyType.NO_POLICY_FOUND, f"d{n}.example",
                         result_type="starttls-not-supported", receiving_ip="192.0.2.1")


def test_buffered_sink_flushes_counts_to_sqlite(tmp_path: object) -> None:
    path = f"{tmp_path}/results.sqlite3"
    now = 1_800_000_000.0
    with BufferedSink(lambda: SqliteStore(path), flush_interval=0.05, clock=lambda: now) as sink:
        for _ in range(5):
            sink.record(_result(1))
        sink.record(_result(2))
        sink.flush()
        assert sink.flushed == 6 and sink.pending == 0

    async def read() -> dict[str, int]:
        store = SqliteStore(path)
        totals: dict[str, int] = {}
        try:
            async for entry in store.entries(RESULTS_NAMESPACE, f"{period_start(now)}/"):
                for result, count in decode_results(entry.value):
                    totals[result.policy_domain] = totals.get(result.policy_domain, 0) + count
        finally:
            await store.close()
        return totals

    assert asyncio.run(read()) == {"d1.example": 5, "d2.example": 1}


class _DownStore(SqliteStore):
    """A real SQLite store whose writes fail as a store that is down does."""

    down = True

    async def set(self, namespace: str, key: str, value: bytes, *,
                  expires_at: float | None) -> None:
        if self.down:
            raise StoreUnavailableError("store down")
        await super().set(namespace, key, value, expires_at=expires_at)


def test_a_store_that_is_down_is_counted_and_results_kept(tmp_path: object) -> None:
    stores: list[_DownStore] = []

    def factory() -> _DownStore:
        stores.append(_DownStore(f"{tmp_path}/r.sqlite3"))
        return stores[-1]

    with BufferedSink(factory, flush_interval=0.05) as sink:
        started = time.monotonic()
        for _ in range(1000):
            sink.record(_result())
        assert time.monotonic() - started < 5  # never waits on the store
        sink.flush()
        assert sink.store_errors >= 1
        assert sink.pending == 1000 and sink.flushed == 0
        stores[0].down = False
        sink.flush()
        assert sink.flushed == 1000 and sink.pending == 0


def test_buffer_bound_drops_and_counts(tmp_path: object) -> None:
    sink = BufferedSink(lambda: SqliteStore(":memory:"), max_pending=2)
    for n in range(5):
        sink.record(_result(n))
    sink.record(_result(0))
    assert sink.recorded == 3 and sink.dropped == 3 and sink.pending == 3
