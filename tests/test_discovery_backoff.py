"""Failure is cheap (issue 25): a failed DNS lookup is remembered per (name, type) for a
bounded backoff, so an outage costs one query per name per backoff period, not one per
answer, and changes no answer; failure warnings are rate-limited into counts.

The outage is a real DNS server on loopback answering every query SERVFAIL (the
relay of ``discovery_support`` in its ``servfail`` mode); time moves only when a test
moves the injected clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from discovery_support import DnsRelay
from test_discovery import Clock, enforce, seed
from tlspolicy import Resolver, loads_toml
from tlspolicy.discovery import Discovery, DiscoveryConfig, DiscoveryObserver, DnsClient
from tlspolicy.discovery.backoff import FailureBackoff, FailureLog
from tlspolicy.discovery.dns import DnsStatus
from tlspolicy.discovery.models import DiscoveryError
from tlspolicy.errors import StoreError
from tlspolicy.formats.settings import DISCOVERY_KEYS, check_discovery_table
from tlspolicy.postfix.lookup import PolicyLookup
from tlspolicy.servers.discovered import DiscoveryLookup
from tlspolicy.servers.socketmap import SocketmapReply
from tlspolicy.stores import SqliteStore

pytestmark = pytest.mark.timeout(120)

CONFIG = '[global]\ntls = "ifavailable"\nuse_mta_sts = true\nuse_dane = true\n'
DOMAIN = "outage.test"
VERSION = (3, 7, 11)


# --------------------------------------------------------------- the pure parts


def test_backoff_doubles_up_to_the_maximum_and_a_success_forgets() -> None:
    backoff: FailureBackoff[str, str] = FailureBackoff(1.0, 60.0)
    now = 1000.0
    waits = []
    for _ in range(9):
        assert backoff.held("k", now) is None  # the wait ran out: ask again
        waits.append(backoff.failed("k", "failed", now))
        assert backoff.held("k", now) == "failed"
        assert backoff.held("k", now + waits[-1] - 0.001) == "failed"
        now += waits[-1]
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert backoff.suppressed == 18
    backoff.succeeded("k")
    assert backoff.held("k", now) is None
    assert backoff.failed("k", "failed", now) == 1.0  # starts over after a success


def test_backoff_starts_over_long_after_the_last_failure_and_stays_bounded() -> None:
    backoff: FailureBackoff[int, str] = FailureBackoff(1.0, 8.0, max_entries=100)
    assert backoff.failed(0, "x", 0.0) == 1.0
    assert backoff.failed(0, "x", 1.0) == 2.0
    assert backoff.failed(0, "x", 3.0 + 8.0) == 1.0  # more than the maximum after its end
    for key in range(1, 500):
        backoff.failed(key, "x", 20.0)
    assert len(backoff) <= 100
    assert backoff.held(499, 20.5) == "x"  # the newest are kept
    backoff.forget(lambda key: key == 499)
    assert backoff.held(499, 20.5) is None
    with pytest.raises(ValueError, match="initial <= maximum"):
        FailureBackoff(5.0, 1.0)


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def lines() -> Iterator[tuple[logging.Logger, _Lines]]:
    logger = logging.getLogger("tlspolicy.test.backoff")
    handler = _Lines()
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield logger, handler
    finally:
        logger.removeHandler(handler)


def test_failure_log_one_line_per_name_per_window_then_a_summary(
        lines: tuple[logging.Logger, _Lines]) -> None:
    logger, handler = lines
    failures = FailureLog(logger, interval=60.0, lines=3)
    now = 0.0
    for _ in range(10):  # the same name within its window: one line
        failures.warn("a.example", now, now + 30, "failed %s", "a.example")
    assert handler.lines == ["failed a.example"]
    for name in ("b", "c", "d", "e"):  # a cap of three lines per interval
        failures.warn(name, now, now + 30, "failed %s", name)
    assert handler.lines == ["failed a.example", "failed b", "failed c"]
    failures.count_suppressed(now, 7)
    assert failures.tick(59.0) is None
    summary = failures.tick(60.0)
    assert summary is not None and len(handler.lines) == 4
    assert "11 failure warnings not logged (9 repeats" in summary
    assert "2 over 3 lines" in summary and "7 DNS lookups not sent" in summary
    assert failures.tick(200.0) is None  # nothing held back: no line
    failures.warn("a.example", 200.0, 230.0, "failed %s", "a.example")  # a new window
    assert handler.lines[-1] == "failed a.example"


def test_backoff_settings_in_the_config_and_the_discovery_table() -> None:
    config = DiscoveryConfig(dns_backoff_initial=0.5, dns_backoff_max=30)
    assert (config.dns_backoff_initial, config.dns_backoff_max) == (0.5, 30)
    assert DiscoveryConfig().dns_backoff_initial == 1.0
    assert DiscoveryConfig().dns_backoff_max == 60.0
    with pytest.raises(DiscoveryError, match=r"dns_backoff_max .* below dns_backoff_initial"):
        DiscoveryConfig(dns_backoff_initial=10, dns_backoff_max=5)
    with pytest.raises(DiscoveryError, match="dns_backoff_initial must be a positive"):
        DiscoveryConfig(dns_backoff_initial=0)


@pytest.mark.parametrize("name", ["dns_timeout", "https_timeout", "first_wait",
                                  "no_policy_ttl", "refresh_interval", "backoff_initial",
                                  "backoff_max", "lock_ttl", "probe_backoff_initial",
                                  "probe_backoff_max", "probe_interval",
                                  "dns_backoff_initial", "dns_backoff_max"])
def test_a_discovery_time_is_at_most_ten_years(name: str) -> None:
    """A retry or a next check is the clock plus such a time, and must be one the store
    can hold: past the year 9999, every state written with it would be refused when read
    back, and the domain fetched again at each lookup."""
    ten_years = 10 * 365 * 86400
    top = {"dns_backoff_max": ten_years}  # not below dns_backoff_initial
    assert getattr(DiscoveryConfig(**{**top, name: ten_years}), name) == ten_years
    for bad in (ten_years + 1, 1e300, float("inf"), float("nan")):
        with pytest.raises(DiscoveryError, match=f"{name} must be a positive number of "
                                                 "seconds, at most 315,360,000"):
            DiscoveryConfig(**{**top, name: bad})
    # The [discovery] table of a file says so with its file and key, before any start.
    if name not in DISCOVERY_KEYS:
        return  # set through the API only
    for bad in (5e8, 1e18, 0, float("inf"), float("nan")):
        [error] = check_discovery_table({name: bad}, "x.toml")
        assert "x.toml" in str(error) and name in str(error)
        assert "at most 315,360,000 (ten years)" in str(error)
    assert check_discovery_table({name: ten_years}, "x.toml") == []
    assert check_discovery_table({"dns_backoff_initial": 2, "dns_backoff_max": 30.5},
                                 "x.toml") == []
    assert check_discovery_table({"dns_backoff_max": "1m"}, "x.toml")


# ------------------------------------------- a resolver answering SERVFAIL, for real


@pytest.fixture
def servfail() -> Iterator[DnsRelay]:
    relay = DnsRelay(0)
    relay.set_mode("servfail")
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()


class _Counting(DiscoveryObserver):
    def __init__(self) -> None:
        self.suppressed = 0

    def dns_lookup_suppressed(self) -> None:
        self.suppressed += 1


class _NoBackoff(FailureBackoff[Any, Any]):
    """Every failed lookup is sent again (the behaviour before the backoff)."""

    def held(self, key: Any, now: float) -> Any:
        return None


def _discovery(relay: DnsRelay, store: SqliteStore, clock: Clock,
               observer: DiscoveryObserver | None = None) -> Discovery:
    config = DiscoveryConfig(resolver="127.0.0.1", resolver_port=relay.port,
                             probe_name="test.", resolv_conf=None, dns_timeout=1.0,
                             https_port=9, first_wait=1.0)
    return Discovery(config, store=store, clock=clock, observer=observer)


async def _ask(lookup: DiscoveryLookup, key: str) -> str:
    reply = lookup("default", key)
    if not isinstance(reply, SocketmapReply):
        reply = await reply
    return f"{reply.status.value} {reply.text}".strip()


async def _outage(relay: DnsRelay, tmp: Path, *, backoff: bool, steps: list[float],
                  per_step: int) -> tuple[list[str], list[int], int]:
    """Answers for DOMAIN (an enforce policy cached, its check due) with the resolver
    answering SERVFAIL: ``per_step`` answers at each clock step; returns the answers,
    the MX queries the resolver had seen after each step, and the lookups suppressed."""
    clock = Clock()
    store = SqliteStore(tmp / f"cache-{backoff}.sqlite3")
    await seed(store, DOMAIN, enforce(DOMAIN), fetched_at=clock.now - 100,
               policy_id="id1", next_check=clock.now - 1)
    observer = _Counting()
    discovery = _discovery(relay, store, clock, observer)
    if not backoff:
        discovery.dns.backoff = _NoBackoff()
    answers: list[str] = []
    mx_seen: list[int] = []
    before = relay.asked(DOMAIN, "MX")
    async with discovery:
        assert discovery.dnssec is False  # the probe got SERVFAIL too
        lookup = DiscoveryLookup(PolicyLookup(Resolver(loads_toml(CONFIG)),
                                              postfix_version=VERSION),
                                 discovery, postfix_version=VERSION)
        for step in steps:
            clock.now += step
            for _ in range(per_step):
                answers.append(await _ask(lookup, DOMAIN))
            mx_seen.append(relay.asked(DOMAIN, "MX") - before)
    await store.close()
    return answers, mx_seen, observer.suppressed


def test_cached_answers_during_an_outage_cost_one_query_per_backoff_period(
        servfail: DnsRelay, tmp_path: Path) -> None:
    """50 answers at each moment: the MX query goes out once per backoff period
    (1 s, then 2 s, then 4 s), the TXT query once; the cached enforce policy is the
    answer throughout, the same answers as without the backoff."""
    steps = [0.0, 0.5, 0.5, 1.0, 0.9, 1.1, 3.9, 0.1]
    #             t=0  0.5  1.0  2.0  2.9  4.0  7.9  8.0
    with_backoff, mx_seen, suppressed = asyncio.run(
        _outage(servfail, tmp_path, backoff=True, steps=steps, per_step=50))
    assert mx_seen == [1, 1, 2, 2, 2, 3, 3, 4]
    assert servfail.asked(f"_mta-sts.{DOMAIN}", "TXT") == 1
    assert suppressed == 50 * len(steps) - 4
    assert set(with_backoff) == {f"OK secure match=.{DOMAIN} servername=hostname"}, \
        set(with_backoff)
    without, mx_without, _ = asyncio.run(
        _outage(servfail, tmp_path, backoff=False, steps=steps, per_step=50))
    assert mx_without[-1] == 50 * len(steps)  # one query per answer
    assert without == with_backoff


def test_dns_client_forget_and_success_end_the_backoff(servfail: DnsRelay) -> None:
    async def main() -> list[int]:
        clock = Clock()
        client = DnsClient("127.0.0.1", servfail.port, timeout=1.0, clock=clock)
        sent = []
        for _ in range(3):
            answer = await client.query("a.outage.test", "MX")
            assert answer.status is DnsStatus.FAILED and "SERVFAIL" in answer.detail
            sent.append(servfail.asked("a.outage.test", "MX"))
        client.forget("outage.test")
        await client.query("a.outage.test", "MX")
        sent.append(servfail.asked("a.outage.test", "MX"))
        await client.query("a.outage.test", "MX")
        sent.append(servfail.asked("a.outage.test", "MX"))
        client.forget()
        await client.query("a.outage.test", "MX")
        sent.append(servfail.asked("a.outage.test", "MX"))
        assert client.backoff.suppressed == 3
        assert client.cached("a.outage.test", "MX") is None  # never cached as an answer
        return sent

    assert asyncio.run(main()) == [1, 1, 1, 2, 2, 3]


def test_outage_warnings_one_per_domain_then_counted(
        servfail: DnsRelay, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Many domains failing at once: at most 100 warning lines a minute, each domain
    once per backoff window; the rest are counted in one summary line a minute."""
    async def main() -> None:
        clock = Clock()
        store = SqliteStore(tmp_path / "cache.sqlite3")
        for n in range(120):
            name = f"d{n}.{DOMAIN}"
            await seed(store, name, enforce(name), fetched_at=clock.now - 100,
                       policy_id="id1", next_check=clock.now - 1)
        async with _discovery(servfail, store, clock) as discovery:
            for n in range(120):
                # A policy in force is answered at once, its refresh runs meanwhile.
                await discovery.sts_state(f"d{n}.{DOMAIN}")
            await asyncio.gather(*discovery._refreshing.values())
            clock.now += 61
            await discovery.sts_state(f"d0.{DOMAIN}")  # the next minute: the summary
        await store.close()

    with caplog.at_level(logging.WARNING, logger="tlspolicy.discovery"):
        asyncio.run(main())
    failures = [r.getMessage() for r in caplog.records if r.getMessage().startswith("MTA-STS")]
    summaries = [r.getMessage() for r in caplog.records
                 if "failure warnings not logged" in r.getMessage()]
    assert len(failures) == 100, len(failures)
    assert len(summaries) == 1 and "20 over 100 lines" in summaries[0], summaries


def test_metrics_count_suppressed_lookups() -> None:
    pytest.importorskip("prometheus_client")
    from tlspolicy.servers.metrics import Metrics

    metrics = Metrics()
    metrics.dns_lookup_suppressed()
    metrics.dns_lookup_suppressed()
    assert metrics.registry.get_sample_value(
        "tlspolicy_discovery_dns_lookups_suppressed_total") == 2


# ------------------------------- a failure the domain's own state already holds back


def test_release_forgets_only_a_failure_whose_wait_ends_in_time(
        lines: tuple[logging.Logger, _Lines]) -> None:
    backoff: FailureBackoff[str, str] = FailureBackoff(1.0, 60.0)
    backoff.failed("k", "failed", 100.0)  # held until 101
    assert not backoff.release("k", 100.5)  # something else holds it back for less
    assert backoff.held("k", 100.9) == "failed"
    assert backoff.release("k", 101.0) and len(backoff) == 0
    assert backoff.held("k", 100.9) is None
    assert not backoff.release("k", 200.0)  # nothing remembered
    logger, handler = lines
    failures = FailureLog(logger)
    failures.warn("a", 0.0, 30.0, "failed %s", "a")
    assert not failures.release("a", 29.0)
    failures.warn("a", 1.0, 31.0, "failed %s", "a")  # within its window
    assert failures.release("a", 30.0)
    assert handler.lines == ["failed a"]


class _WritesFail(SqliteStore):
    """A store whose writes fail (reads and locks work)."""

    async def set(self, *args: Any, **kwargs: Any) -> None:
        raise StoreError("disk full")

    async def set_release(self, *args: Any, **kwargs: Any) -> None:
        raise StoreError("disk full")


def test_a_stored_failure_keeps_no_dns_backoff_entry_and_sends_no_more_queries(
        servfail: DnsRelay, tmp_path: Path) -> None:
    """The failed ``_mta-sts`` TXT lookup of a domain whose failed state is held and
    stored leaves neither a DNS backoff entry nor a warning window behind: the state's
    retry (60 s) holds the next lookup back, so the queries sent are those of before
    (one per domain per retry); with a store that cannot be written, the entry stays."""
    names = [f"d{n}.{DOMAIN}" for n in range(20)]

    async def main(path: Path, kind: type[SqliteStore]) -> tuple[Discovery, list[int]]:
        clock = Clock()
        seeded = SqliteStore(path)
        for name in names:
            await seed(seeded, name, enforce(name), fetched_at=clock.now - 100,
                       policy_id="id1", next_check=clock.now - 1)
        await seeded.close()
        store = kind(path)
        sent = []
        async with _discovery(servfail, store, clock) as discovery:
            for step in (0.0, 0.5, 1.5, 30.0, 28.5):  # t = 0, 0.5, 2, 32, 60.5
                clock.now += step
                for name in names:
                    state = await discovery.sts_state(name)
                    assert state.cached is not None  # the policy stays in force
                await asyncio.gather(*discovery._refreshing.values())
                sent.append(sum(servfail.asked(f"_mta-sts.{n}", "TXT") for n in names))
        await store.close()
        return discovery, sent

    discovery, sent = asyncio.run(main(tmp_path / "cache.sqlite3", SqliteStore))
    assert sent == [20, 20, 20, 20, 40]
    assert len(discovery.dns.backoff) == 0
    assert not discovery.failure_log._quiet
    before = sum(servfail.asked(f"_mta-sts.{n}", "TXT") for n in names)
    discovery, sent = asyncio.run(main(tmp_path / "unwritable.sqlite3", _WritesFail))
    assert [n - before for n in sent] == [20, 20, 20, 20, 40]
    assert len(discovery.dns.backoff) == 20  # nothing else holds the lookups back


def test_a_time_flag_of_serve_is_at_most_ten_years() -> None:
    from tlspolicy.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["serve", "socketmap", "--discovery", "--first-wait",
                              "315360000", "x.toml"])
    assert args.first_wait == 315360000.0
    for bad in ("315360001", "5e8", "0", "nan", "inf"):
        with pytest.raises(SystemExit):
            parser.parse_args(["serve", "socketmap", "--discovery", "--first-wait", bad,
                               "x.toml"])

