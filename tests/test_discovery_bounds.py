"""What discovery holds per domain stays bounded under load: background policy checks in
flight, the domains remembered as in use, failures remembered past their use, and DNS
answers nothing will ask for again.  Semantics only: no byte counts, no timings
(benchmarks/memory.py and benchmarks/peer_discovery.py have the figures).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import dns.flags
import dns.message
import dns.rdatatype
import dns.rrset
import pytest

from discovery_support import DnsLab, HttpsLab, UdpResponder
from test_discovery import Clock, Env, _settle, enforce, run, seed
from tlspolicy.discovery import Discovery, DiscoveryConfig
from tlspolicy.discovery.backoff import FailureBackoff, FailureLog
from tlspolicy.discovery.core import MAX_BACKGROUND_CHECKS
from tlspolicy.discovery.dns import DnsAnswer, DnsClient, DnsStatus
from tlspolicy.postfix.dropin import DROP_IN_CONFIG
from tlspolicy.postfix.lookup import PolicyLookup
from tlspolicy.resolver import Resolver
from tlspolicy.servers import app_discovery, discovered_refresh
from tlspolicy.servers.discovered import DiscoveryLookup
from tlspolicy.stores import SqliteStore

pytestmark = pytest.mark.timeout(120)

VERSION = (3, 7, 11)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """The port of a real UDP socket on loopback that reads queries and never answers:
    every check stays in flight until its DNS timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


async def _due_policies(tmp: Path, clock: Clock, names: list[str]) -> SqliteStore:
    store = SqliteStore(tmp / "cache.sqlite3", clock=clock)
    for name in names:
        # An enforce policy in force whose check is due: answered at once, checked behind.
        await seed(store, name, enforce(name), fetched_at=clock.now - 100, policy_id="id1",
                   next_check=clock.now - 1)
    return store


def _discovery(store: SqliteStore, clock: Clock, port: int) -> Discovery:
    config = DiscoveryConfig(resolver="127.0.0.1", resolver_port=port, resolv_conf=None,
                             dns_timeout=0.2, https_port=9)
    return Discovery(config, store=store, clock=clock)


def test_a_query_waiting_for_room_gives_up_within_its_own_time() -> None:
    """The wait for a free slot counts in a query's time: behind a backlog of queries the
    resolver never answers, a query fails unsent when its time is up, rather than being
    sent (and waited for) after the whole backlog; the backlog drains within one query's
    time.  One slot, eight names asked at once of a resolver that never answers, each
    query 0.2 s on the socket and 0.5 s in all: the later ones are never sent."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        async def main() -> tuple[list[DnsAnswer], list[bool]]:
            client = DnsClient("127.0.0.1", silent.getsockname()[1], timeout=0.2,
                               max_in_flight=1)
            try:
                answers = await asyncio.gather(*(client.query(f"n{i}.test", "A")
                                                 for i in range(8)))
                # A query never sent is no failure of its name: not held back.
                return answers, [client._held((f"n{i}.test", "A")) is None
                                 for i in range(8)]
            finally:
                client.close()

        answers, free = asyncio.run(main())
        assert all(a.status.value == "failed" for a in answers)
        unsent = [i for i, a in enumerate(answers) if "not sent" in a.detail]
        assert unsent and all(free[i] and not answers[i].unanswered for i in unsent)
        assert all(answers[i].unanswered and not free[i]
                   for i in range(8) if i not in unsent)
        silent.setblocking(False)
        sent = 0
        while True:
            try:
                silent.recv(512)
            except BlockingIOError:
                break
            sent += 1
        assert sent <= 4, f"{sent} of 8 queries sent behind a backlog they could not outlast"
    finally:
        silent.close()


def test_the_resolver_probe_has_a_slot_of_its_own() -> None:
    """Behind a backlog of queries the resolver never answers, the trust probe is still
    asked and answered: failing it for want of a slot would turn DNSSEC and DANE off."""
    async def main() -> DnsAnswer:
        loop = asyncio.get_running_loop()

        def soa_only(data: bytes) -> bytes | None:
            query = dns.message.from_wire(data)
            if query.question[0].rdtype != dns.rdatatype.SOA:
                return None  # every other name: never answered
            reply = dns.message.make_response(query)
            reply.flags |= dns.flags.AD
            reply.answer.append(dns.rrset.from_text(
                query.question[0].name, 60, "IN", "SOA", "ns. host. 1 2 3 4 5"))
            return reply.to_wire()

        server, _ = await loop.create_datagram_endpoint(
            lambda: UdpResponder(soa_only), local_addr=("127.0.0.1", 0))
        client = DnsClient("127.0.0.1", server.get_extra_info("sockname")[1], timeout=0.2,
                           max_in_flight=2)
        try:
            backlog = [asyncio.ensure_future(client.query(f"dead{i}.test", "A"))
                       for i in range(20)]
            await asyncio.sleep(0.05)  # every slot taken, the rest waiting
            probed = await client.probe(".")
            await asyncio.gather(*backlog)
            return probed
        finally:
            client.close()
            server.close()

    probed = asyncio.run(asyncio.wait_for(main(), 30))
    assert probed.status is DnsStatus.RECORDS and probed.secure, probed.detail


def test_the_default_bound_matches_the_dns_clients_queries_in_flight(tmp_path: Path) -> None:
    assert MAX_BACKGROUND_CHECKS == 256
    config = DiscoveryConfig(resolver="127.0.0.1", resolver_port=9, resolv_conf=None)
    store = SqliteStore(tmp_path / "cache.sqlite3")
    assert Discovery(config, store=store).max_background_checks == MAX_BACKGROUND_CHECKS


def test_due_checks_of_policies_in_force_stay_within_the_bound(tmp_path: Path,
                                                              silent_port: int) -> None:
    names = [f"d{n}.example" for n in range(10)]

    async def main() -> None:
        clock = Clock()
        store = await _due_policies(tmp_path, clock, names)
        d = _discovery(store, clock, silent_port)
        d.max_background_checks = 3
        try:
            for name in names:
                state = await d.sts_state(name)
                # The answer is the policy in force whether or not its check started.
                assert state.state == "policy" and state.cached is not None
                assert len(d._refreshing) <= 3
            assert set(d._refreshing) == set(names[:3])
            assert d.checks_deferred == 7
            again = await d.sts_state(names[0])  # its check runs: joined, not deferred
            assert again.state == "policy" and d.checks_deferred == 7
            await _settle(d)  # the checks time out: the policies stay in force
            state = await d.sts_state(names[5])  # room again: the deferred check starts
            assert state.state == "policy" and names[5] in d._refreshing
            assert d.checks_deferred == 7
        finally:
            await d.close()
            await store.close()

    run(main)


def test_every_wait_for_room_ends_when_a_check_finishes(tmp_path: Path, silent_port: int) -> None:

    async def main() -> None:
        clock = Clock()
        store = await _due_policies(tmp_path, clock, ["w.example"])
        d = _discovery(store, clock, silent_port)
        d.max_background_checks = 1
        try:
            await d.sts_state("w.example")
            assert not d.background_room()
            waits = [asyncio.ensure_future(d.wait_background_room()) for _ in range(2)]
            await asyncio.wait_for(asyncio.gather(*waits), 30)  # the check times out
            assert d.background_room()
        finally:
            await d.close()
            await store.close()

    run(main)


def test_a_first_fetch_is_never_deferred(tmp_path: Path, silent_port: int) -> None:
    """Nothing in force: the lookup waits for the check, so the bound does not apply."""

    async def main() -> None:
        clock = Clock()
        store = SqliteStore(tmp_path / "cache.sqlite3", clock=clock)
        d = _discovery(store, clock, silent_port)
        d.max_background_checks = 0
        try:
            state = await d.sts_state("new.example", wait=0.01)
            assert state.state != "policy"
            assert "new.example" in d._refreshing and d.checks_deferred == 0
        finally:
            await d.close()
            await store.close()

    run(main)


def _refresh_pass(tmp_path: Path, silent_port: int, names: list[str], bound: int,
                  watch: Callable[[Discovery, DiscoveryLookup], None]) -> int:
    """One refresh pass over ``names`` in use, their policies due, with at most ``bound``
    checks in flight, calling ``watch`` at every turn of the loop meanwhile; how many
    refreshes the pass started."""

    async def main() -> int:
        clock = Clock()
        store = await _due_policies(tmp_path, clock, names)
        d = _discovery(store, clock, silent_port)
        d.max_background_checks = bound
        lookup = DiscoveryLookup(PolicyLookup(Resolver(DROP_IN_CONFIG), postfix_version=VERSION),
                                 d, postfix_version=VERSION, drop_in=True, own_level="may")
        lookup.in_use.update((name, clock.now) for name in names)

        async def watching() -> None:
            while True:
                watch(d, lookup)
                await asyncio.sleep(0)

        watcher = asyncio.get_running_loop().create_task(watching())
        try:
            started = await lookup.refresh_once(ahead=60)
            await _settle(d)
        finally:
            watcher.cancel()
            await d.close()
            await store.close()
        return started

    started: int = run(main)
    return started


def test_a_proactive_refresh_pass_keeps_within_the_bound(tmp_path: Path, silent_port: int) -> None:
    names = [f"r{n}.example" for n in range(8)]
    most = 0

    def watch(d: Discovery, lookup: DiscoveryLookup) -> None:
        nonlocal most
        most = max(most, len(d._refreshing))

    started = _refresh_pass(tmp_path, silent_port, names, 2, watch)
    assert started == len(names)  # every domain is refreshed, only never all at once
    assert 1 <= most <= 2


def test_a_refresh_pass_skips_a_domain_let_go_during_the_pass(
        tmp_path: Path, silent_port: int) -> None:
    """A pass copies only the names in use (not a (name, time) pair each, held for as long
    as the pass waits for room): a domain no longer in use when its turn comes is not
    refreshed."""
    names = [f"g{n}.example" for n in range(6)]
    checked: set[str] = set()

    def watch(d: Discovery, lookup: DiscoveryLookup) -> None:
        checked.update(d._refreshing)
        if d._refreshing:
            lookup.in_use.pop(names[-1], None)  # let go once the pass is under way

    started = _refresh_pass(tmp_path, silent_port, names, 1, watch)
    assert started == len(names) - 1
    assert names[-1] not in checked


def test_domains_in_use_are_kept_least_recently_used_first_with_shared_times(
        tmp_path: Path) -> None:
    clock = Clock()
    config = DiscoveryConfig(resolver="127.0.0.1", resolver_port=9, resolv_conf=None)
    d = Discovery(config, store=SqliteStore(tmp_path / "cache.sqlite3"), clock=clock)
    lookup = DiscoveryLookup(PolicyLookup(Resolver(DROP_IN_CONFIG), postfix_version=VERSION),
                             d, postfix_version=VERSION, drop_in=True, own_level="may",
                             max_in_use=2)
    lookup._use("a.example")
    lookup._use("b.example")
    lookup._use("a.example")  # used again: now the most recent
    assert list(lookup.in_use) == ["b.example", "a.example"]
    lookup._use("c.example")  # over max_in_use: the least recently used goes
    assert list(lookup.in_use) == ["a.example", "c.example"]
    assert lookup.in_use["a.example"] == clock.now
    assert lookup.in_use["a.example"] is lookup.in_use["c.example"]  # one time object
    clock.now += 5
    lookup._use("a.example")
    assert list(lookup.in_use) == ["c.example", "a.example"]
    assert lookup.in_use["a.example"] == clock.now
    assert lookup.with_policy(lookup.policy).in_use is lookup.in_use


def test_failures_long_past_their_wait_are_forgotten() -> None:
    backoff: FailureBackoff[str, str] = FailureBackoff(1.0, 8.0)
    backoff.failed("old", "x", 0.0)
    backoff.failed("old", "x", 1.0)  # at the end of its wait: the wait doubles
    assert backoff.until("old") == 3.0
    backoff.failed("recent", "y", 10.0)
    assert len(backoff) == 2  # "old" failed less than two maximum waits ago
    backoff.failed("new", "z", 20.0)
    assert len(backoff) == 2 and backoff.until("old") is None  # past it: as if never failed
    assert backoff.held("recent", 20.0) is None and backoff.held("new", 20.5) == "z"
    # The same waits as when it was remembered: a failure this long after starts afresh.
    assert backoff.failed("old", "x", 21.0) == 1.0
    assert backoff.failed("recent", "y", 21.0) == 1.0


def test_failure_warning_windows_that_ended_are_forgotten_each_interval() -> None:
    log = FailureLog(logging.getLogger("test.bounds"), interval=60.0)
    log.warn("a.example", 0.0, 10.0, "a failed")
    log.warn("b.example", 1.0, 200.0, "b failed")
    assert not log.warn("a.example", 5.0, 10.0, "a failed")  # within its window
    log.tick(61.0)  # the interval ends: a's window ended, b's runs
    assert list(log._quiet) == ["b.example"]
    assert log.warn("a.example", 62.0, 70.0, "a failed")  # a new window, as before
    assert not log.warn("b.example", 62.0, 200.0, "b failed")


@pytest.fixture
def env(dns_lab: DnsLab, https_lab: HttpsLab, tmp_path: Path) -> Env:
    https_lab.reset()
    return Env(dns_lab, https_lab, tmp_path)


def test_an_unchanged_policy_check_drops_its_txt_answer(env: Env) -> None:
    """The check finds the same id: the ``_mta-sts`` TXT answer is not held, because the
    state's next check is when that answer runs out; the policy is not fetched."""
    async def main() -> tuple[bool, float, float, int, int]:
        store = env.store()
        now = env.clock.now
        await seed(store, "refresh.secure.test", enforce("refresh.secure.test"),
                   fetched_at=now - 60, policy_id="id1", next_check=now - 1)
        async with env.discovery(store=store) as d:
            await d.sts_state("refresh.secure.test")
            await _settle(d)
            state = await d.sts_state("refresh.secure.test")
            key = ("_mta-sts.refresh.secure.test", "TXT")
            held = d.dns.cached(*key) is not None
            sent = d.dns.sent[key]
            again = await d.sts_state("refresh.secure.test")  # fresh: nothing asked
            return held, state.next_check, now, sent, d.dns.sent[key] + (again is state) - 1

    held, next_check, now, sent, after = run(main)
    assert not held and next_check > now
    assert sent == after == 1
    assert env.web.fetches("refresh.secure.test") == 0


def test_a_remembered_failure_is_the_answer_that_failed() -> None:
    """The backoff keeps a failure compactly (its reason shared between names) and gives
    back an answer equal to the one that failed; a shape it cannot make again is kept
    as it is."""
    client = DnsClient("127.0.0.1", 9)
    shapes = [
        client._failed("_mta-sts.a.example", "TXT", "TXT _mta-sts.a.example: SERVFAIL"),
        client._failed("b.example", "MX", "MX b.example: SERVFAIL (DNSSEC validation failed)",
                       bogus=True),
        client._failed("c.example", "TLSA", "TLSA c.example: Timeout: timed out",
                       unanswered=True),
        client._failed("d.example", "MX", "cannot query 'd.example': bad name"),
    ]
    kept = []
    for number, answer in enumerate(shapes):
        answer = attrs.evolve(answer, expires_at=1000.0 + number)
        key = (answer.name, answer.rdtype)
        kept.append(client._remembered(key, answer))
        client.backoff.failed(key, kept[-1], time.time())
        assert client._held(key) == answer
    assert kept[3] == attrs.evolve(shapes[3], expires_at=1003.0)  # kept as it is
    other = client._remembered(("_mta-sts.z.example", "TXT"), client._failed(
        "_mta-sts.z.example", "TXT", "TXT _mta-sts.z.example: SERVFAIL"))
    assert not isinstance(kept[0], DnsAnswer) and not isinstance(other, DnsAnswer)
    assert kept[0].reason is other.reason  # one string for every name


def test_a_refresh_pass_never_brings_a_failures_retry_forward(tmp_path: Path,
                                                              silent_port: int) -> None:
    """A failed check backs off (60 s at first): the proactive refresh, which looks a
    minute ahead for policies, waits for the retry instead of checking again at once."""
    async def main() -> tuple[bool, bool, bool]:
        clock = Clock()
        store = await _due_policies(tmp_path, clock, ["f.example"])
        d = _discovery(store, clock, silent_port)
        try:
            await d.sts_state("f.example")
            await _settle(d)  # the check times out: the policy stays, its retry waits
            state = d._memory.get("f.example")
            assert state is not None and state.retry_at is not None
            assert state.retry_at == state.next_check == clock.now + 60
            early = d.refresh_if_due("f.example", ahead=60)
            clock.now = state.retry_at - 1
            still_early = d.refresh_if_due("f.example", ahead=60)
            clock.now = state.retry_at
            due = d.refresh_if_due("f.example", ahead=60)
            await _settle(d)
        finally:
            await d.close()
            await store.close()
        return early, still_early, due

    assert run(main) == (False, False, True)


def test_a_refresh_pass_pauses_after_each_batch_started_and_yields_while_reading(
        tmp_path: Path, silent_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """64 domains due, then 200 not due and not held (each costs a store read on the
    loop's thread): one pause after the 64th start, not one after every later domain
    that starts nothing, and a turn of the loop every 64 domains looked at."""
    due = [f"due{n}.example" for n in range(64)]
    fresh = [f"fresh{n}.example" for n in range(200)]
    delays: list[float] = []

    async def recording_sleep(delay: float) -> None:
        delays.append(delay)
        await asyncio.sleep(delay)

    monkeypatch.setattr(discovered_refresh, "asyncio",
                        types.SimpleNamespace(sleep=recording_sleep))

    async def main() -> int:
        clock = Clock()
        store = await _due_policies(tmp_path, clock, due)
        for name in fresh:
            await seed(store, name, enforce(name), fetched_at=clock.now - 100,
                       policy_id="id1", next_check=clock.now + 3600)
        d = _discovery(store, clock, silent_port)  # holds nothing: all read from the store
        lookup = DiscoveryLookup(PolicyLookup(Resolver(DROP_IN_CONFIG), postfix_version=VERSION),
                                 d, postfix_version=VERSION, drop_in=True, own_level="may")
        lookup.in_use.update((name, clock.now) for name in due + fresh)
        try:
            return await lookup.refresh_once(ahead=60, batch=64)
        finally:
            await d.close()
            await store.close()

    assert run(main) == 64
    assert delays.count(0.05) == 1
    assert delays.count(0) == 3  # after 128, 192 and 256 domains looked at


def test_the_servers_refresh_pass_starts_checks_of_due_states_only(
        tmp_path: Path, silent_port: int) -> None:
    """A state due in 30 s is left to the next pass (a refresh started now would find
    nothing due); a due one is checked."""

    async def main() -> tuple[int, int, set[str]]:
        clock = Clock()
        store = await _due_policies(tmp_path, clock, ["due.example"])
        await seed(store, "soon.example", enforce("soon.example"), fetched_at=clock.now - 100,
                   policy_id="id1", next_check=clock.now + 30)
        d = _discovery(store, clock, silent_port)
        lookup = DiscoveryLookup(PolicyLookup(Resolver(DROP_IN_CONFIG), postfix_version=VERSION),
                                 d, postfix_version=VERSION, drop_in=True, own_level="may")
        lookup.in_use.update((name, clock.now) for name in ("soon.example", "due.example"))
        try:
            started = await lookup.refresh_once()
            checking = set(d._refreshing)
            await _settle(d)
            clock.now += 30
            return started, await lookup.refresh_once(), checking
        finally:
            await d.close()
            await store.close()

    first, second, checking = run(main)
    assert (first, checking) == (1, {"due.example"})
    assert second == 1  # soon.example, due now (due.example waits out its failure's retry)


def test_the_server_runs_the_refresh_pass_for_due_states_each_minute(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's refresh loop: one pass a minute, of due states only (no ``ahead``: a
    refresh started before its state is due checks nothing), and a failed pass does not
    end the loop."""
    calls: list[dict[str, float]] = []
    waits: list[float] = []

    class Lookup:
        async def refresh_once(self, **kwargs: float) -> int:
            calls.append(kwargs)
            if len(calls) == 1:
                raise RuntimeError("one bad pass")
            return 0

    async def sleep(delay: float) -> None:
        waits.append(delay)
        if len(waits) > 2:
            raise asyncio.CancelledError

    monkeypatch.setattr(app_discovery, "asyncio", types.SimpleNamespace(sleep=sleep))
    server = types.SimpleNamespace(current=Lookup())

    async def main() -> None:
        with pytest.raises(asyncio.CancelledError):
            await app_discovery.DiscoveryRun._refresh(server)  # type: ignore[arg-type]

    run(main)
    assert waits == [60.0, 60.0, 60.0]
    assert len(calls) == 2
    assert all(kwargs.get("ahead", 0.0) == 0.0 for kwargs in calls)
