"""Memory per policy (issue 25): a bounded in-memory LRU of MTA-STS states in front of
the store (the store keeps everything; an evicted state is read back from it, never
fetched again for that), equal policies and strings held once, one HTTPS client for
every fetch.  Semantics only: no byte counts, no timings (benchmarks/memory.py has the
figures).
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import pytest

from discovery_support import DnsLab, HttpsLab
from test_discovery import Clock, Env, at, enforce, run, seed
from tlspolicy.discovery import Discovery, DiscoveryConfig, StsState
from tlspolicy.discovery.memory import Sharing, StateMemory
from tlspolicy.discovery.models import DiscoveryError
from tlspolicy.discovery.stscache import POLICY_NAMESPACE, stored_schedule
from tlspolicy.discovery.stscache import decode_state as _decode
from tlspolicy.discovery.stscache import encode_state as _encode
from tlspolicy.formats.settings import check_discovery_table
from tlspolicy.policies.mtasts import CachedMtaStsPolicy, FetchOutcome, parse_policy
from tlspolicy.stores import (
    NOT_READ,
    SqliteStore,
    StoreEntry,
    StoreError,
    acquire_get,
    dumps_json,
    get_now,
    loads_json,
)

pytestmark = pytest.mark.timeout(120)


def _state(name: str) -> Any:
    return StsState(name, "none", None, FetchOutcome.OK, "", None, 0.0, 0, None)


def test_state_memory_is_a_bounded_lru() -> None:
    memory = StateMemory(3)
    for name in "abcd":
        memory.remember(name, _state(name))
    assert list(memory) == ["b", "c", "d"] and memory.evicted == 1
    memory.touch("b")  # used: evicted last
    memory.remember("e", _state("e"))
    assert list(memory) == ["d", "b", "e"]
    memory.remember("d", _state("d"))  # held again: most recent, nothing evicted
    assert list(memory) == ["b", "e", "d"] and memory.evicted == 2
    memory.remember("f", _state("f"), limit=1)
    assert list(memory) == ["f"]
    del memory["f"]  # a plain mapping otherwise (a reload may drop states by rule)
    assert not memory


def test_equal_policies_and_strings_are_held_once() -> None:
    share = Sharing()
    text = "version: STSv1\nmode: enforce\nmx: mx1.provider.example\nmx: *.provider.example\n" \
        "max_age: 604800\n"
    one, two = parse_policy(text), parse_policy(text)
    assert one is not two and one.mx[0] is not two.mx[0]
    assert share.policy(one) is share.policy(two) is one
    other = parse_policy(text.replace("604800", "86400"))
    shared = share.policy(other)
    assert shared == other and shared.mx[0] is one.mx[0]  # the patterns are shared
    assert share.text("ab" + "c") is share.text("a" + "bc")


def test_a_decoded_state_shares_its_parts_and_is_equal_to_the_plain_one() -> None:
    share = Sharing()
    now = time.time()
    states = []
    for name in ("a.example", "b.example"):
        policy = parse_policy(enforce("provider.example"))
        cached = CachedMtaStsPolicy(policy, datetime.fromtimestamp(now, UTC), "20260101")
        state = StsState(name, "policy", cached, FetchOutcome.OK, "fetched", "20260101",
                         now + 60, 0, None)
        data = dumps_json(_encode(state))
        plain, shared = _decode(name, data), _decode(name, data, share)
        assert plain == shared == state
        states.append(shared)
    a, b = states
    assert a.cached is not None and b.cached is not None
    assert a.cached.policy is b.cached.policy
    assert a.txt_id is a.cached.policy_id is b.cached.policy_id
    assert a.state is b.state and a.detail is b.detail


class _CountingStore(SqliteStore):
    """A SQLite store counting reads of the MTA-STS namespace."""

    reads: list[str]

    async def get(self, namespace: str, key: str) -> StoreEntry | None:
        self.reads.append(key)
        return await super().get(namespace, key)

    async def acquire_get(self, name: str, owner: str, ttl: float, namespace: str,
                          key: str) -> tuple[bool, StoreEntry | None]:
        # A refresh reads the entry with its lock taken, in one transaction.
        self.reads.append(key)
        return await super().acquire_get(name, owner, ttl, namespace, key)


async def _seeded(tmp: Path, clock: Clock, names: list[str]) -> _CountingStore:
    store = _CountingStore(tmp / "cache.sqlite3")
    store.reads = []
    for name in names:
        await seed(store, name, enforce(name), fetched_at=clock.now - 100, policy_id="id1",
                   next_check=clock.now + 3600)
    return store


def _offline(store: SqliteStore, clock: Clock, size: int) -> Discovery:
    # No resolver is asked: every state here is fresh (no DNS, no fetch).
    config = DiscoveryConfig(resolver="127.0.0.1", resolver_port=9, resolv_conf=None,
                             memory_cache_size=size)
    return Discovery(config, store=store, clock=clock)


def test_evicted_states_are_read_back_from_the_store(tmp_path: Path) -> None:
    names = [f"d{n}.example" for n in range(6)]

    async def main() -> None:
        clock = Clock()
        store = await _seeded(tmp_path, clock, names)
        d = _offline(store, clock, 3)
        try:
            first = {n: await d.sts_state(n) for n in names}
            assert list(d._memory) == names[3:]  # the three most recent held
            assert store.reads == names
            assert d.sts_held(names[5]) is first[names[5]]  # held: no read
            assert await d.sts_state(names[4]) is first[names[4]]
            assert store.reads == names
            again = await d.sts_state(names[0])  # evicted: read back, not fetched
            assert store.reads == [*names, names[0]]
            assert again == first[names[0]] and again.state == "policy"
            assert d.fetches == {}
            # names[3] was the least recently used (names[5] and [4] were used since).
            assert list(d._memory) == [names[5], names[4], names[0]]
            assert d.sts_held(names[3]) is None and d.sts_cached(names[3]) is None
        finally:
            await d.close()
            await store.close()

    run(main)


def test_an_evicted_state_is_read_back_at_once_when_the_store_can(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # sts_stored: the answer path's read of a state not held, without awaiting, when the
    # store reads it at once (a SQLite file on this thread); a state due for a check
    # without a policy in force, none stored, or a corrupt entry is left to the awaited
    # sts_state, which reports.
    names = [f"d{n}.example" for n in range(4)]

    async def main() -> None:
        clock = Clock()
        store = await _seeded(tmp_path, clock, names)
        await seed(store, "due.example", enforce("due.example"), fetched_at=clock.now - 100,
                   policy_id="id1", next_check=clock.now - 1)
        await store.set("mta-sts", "corrupt.example", b"{not json", expires_at=None)
        d = _offline(store, clock, 2)
        try:
            await d.sts_state(names[0])  # the store's file is open: reads run here now
            held = d.sts_stored(names[1])
            assert held is not None and held.state == "policy"
            assert held == await d.sts_state(names[1])
            assert list(d._memory) == [names[0], names[1]]
            assert d.sts_cached(names[1]) is held
            # Due, its policy in force: the answer now, the check in the background.
            due = d.sts_stored("due.example")
            assert due is not None and due.cached is not None
            assert "due.example" in d._refreshing
            # Due without a policy in force: left to the awaited sts_state.
            none = StsState("none.example", "none", None, FetchOutcome.OK, "", None,
                            clock.now - 1, 0, None)
            await store.set("mta-sts", "none.example", dumps_json(_encode(none)),
                            expires_at=None)
            assert d.sts_stored("none.example") is None
            assert "none.example" not in d._refreshing
            assert d.sts_stored("absent.example") is None
            with caplog.at_level("WARNING", logger="tlspolicy.discovery"):
                assert d.sts_stored("corrupt.example") is None
                assert not caplog.records
            # Not read at once: a private in-memory database is read by its worker only.
            memory_store = SqliteStore(":memory:")
            other = _offline(memory_store, clock, 2)
            await seed(memory_store, names[2], enforce(names[2]),
                       fetched_at=clock.now - 100, policy_id="id1",
                       next_check=clock.now + 3600)
            assert other.sts_stored(names[2]) is None
            assert (await other.sts_state(names[2])).state == "policy"
            await other.close()
            await memory_store.close()
        finally:
            await d.close()
            await store.close()

    run(main)


def test_a_proactive_refresh_of_an_evicted_fresh_state_does_not_churn_memory(
        tmp_path: Path) -> None:
    names = [f"d{n}.example" for n in range(4)]

    async def main() -> None:
        clock = Clock()
        store = await _seeded(tmp_path, clock, names)
        d = _offline(store, clock, 2)
        try:
            for name in names:
                await d.sts_state(name)
            held = list(d._memory)
            assert held == names[2:]
            # Not held: its stored schedule says not due, so no refresh starts (no lock
            # taken, nothing decoded) and nothing it read is held.
            assert d.refresh_if_due(names[0]) is False
            assert not d._refreshing and list(d._memory) == held
            assert store.reads.count(names[0]) == 1
            clock.now += 3600 - 30  # due within the minute ahead: a refresh starts
            assert d.refresh_if_due(names[0], ahead=60) is True
            await asyncio.gather(*d._refreshing.values())
            assert list(d._memory) == held  # nothing due yet: left in the store only
            clock.now += 30  # due: its refresh checks it (the DNS lookup fails), held now
            assert d.refresh_if_due(names[0]) is True
            await asyncio.gather(*d._refreshing.values())
            assert names[0] in d._memory
            assert d.fetches == {}
        finally:
            await d.close()
            await store.close()

    run(main)


def test_a_proactive_refresh_of_an_evicted_state_follows_its_stored_schedule(
        tmp_path: Path) -> None:
    """Due, failed (its retry is not brought forward), absent, corrupt, or in a store
    that cannot be read at once: a refresh starts exactly where one would find work."""

    async def main() -> None:
        clock = Clock()
        store = await _seeded(tmp_path, clock, [])
        now = clock.now
        await seed(store, "due.example", enforce("due.example"), fetched_at=now - 100,
                   policy_id="id1", next_check=now + 30)
        await seed(store, "fresh.example", enforce("fresh.example"), fetched_at=now - 100,
                   policy_id="id1", next_check=now + 90)
        cached = CachedMtaStsPolicy(parse_policy(enforce("failed.example")), at(now - 100),
                                    "id1")
        failed = StsState("failed.example", "policy", cached, FetchOutcome.FETCH_ERROR,
                          "SERVFAIL", "id1", now + 30, 1, now + 30)
        await store.set(POLICY_NAMESPACE, "failed.example", dumps_json(_encode(failed)),
                        expires_at=now + 86400)
        await store.set(POLICY_NAMESPACE, "corrupt.example", b"{not json",
                        expires_at=now + 86400)
        d = _offline(store, clock, 5)
        d.dns.timeout = 0.01
        try:
            assert d.refresh_if_due("due.example", ahead=60) is True
            assert d.refresh_if_due("fresh.example", ahead=60) is False
            assert d.refresh_if_due("failed.example", ahead=60) is False  # retry: not early
            assert d.refresh_if_due("absent.example", ahead=60) is True
            assert d.refresh_if_due("corrupt.example", ahead=60) is True
            assert set(d._refreshing) == {"due.example", "absent.example", "corrupt.example"}
            await asyncio.gather(*d._refreshing.values())
        finally:
            await d.close()
            await store.close()
        held_elsewhere = SqliteStore(":memory:", clock=clock)
        try:  # not read at once: a refresh starts
            assert await _starts_a_refresh(held_elsewhere, clock, "fresh.example")
        finally:
            await held_elsewhere.close()

    run(main)


async def _starts_a_refresh(store: SqliteStore, clock: Clock, name: str) -> bool:
    """Whether a proactive refresh pass's ``refresh_if_due`` of ``name`` starts a refresh
    (let finish before the discovery closes)."""
    d = _offline(store, clock, 5)
    d.dns.timeout = 0.01
    try:
        started = d.refresh_if_due(name, ahead=60)
        await asyncio.gather(*d._refreshing.values())
        return started
    finally:
        await d.close()


def test_a_stored_schedule_is_read_without_decoding_the_policy() -> None:
    """Whatever is wrong with an entry, its schedule is ``None`` (a refresh then reads the
    entry and reports it), never an exception."""
    cached = CachedMtaStsPolicy(parse_policy(enforce("s.example")), at(1000.0), "id1")
    state = StsState("s.example", "policy", cached, FetchOutcome.OK, "ok", "id1", 5000.0, 0,
                     None)
    assert stored_schedule(dumps_json(_encode(state))) == (5000.0, None)
    failed = attrs.evolve(state, failures=2, retry_at=4000.5)
    assert stored_schedule(dumps_json(_encode(failed))) == (5000.0, 4000.5)
    for bad in (b"{", b"[]", b'{"v": 2}', b'{"v": 1}',
                b'{"v": 1, "next_check": "x", "retry_at": null}',
                b'{"v": 1, "next_check": 1, "retry_at": []}',
                b'{"v": 1, "next_check": 1' + b"0" * 400 + b', "retry_at": null}',  # overflow
                b'{"v": 1, "next_check": 1, "retry_at": null, "deep": ' + b"[" * 100_000):
        assert stored_schedule(bad) is None, bad[:60]


def test_a_field_of_the_wrong_type_or_value_is_a_corrupt_entry() -> None:
    """What this package never writes is damage: a time that is a string or a boolean or
    before the year 1 (shown by ``cache show`` as a date), a failure count that is
    negative (its retry would not back off), a float or a string, a state or text of
    the wrong type."""
    cached = CachedMtaStsPolicy(parse_policy(enforce("x.example")), at(1000.0), "id1")
    state = StsState("x.example", "policy", cached, FetchOutcome.OK, "ok", "id1", 5000.0, 2,
                     None)
    good = _encode(state)
    assert _decode("x.example", dumps_json(good)) == state
    for field, bad in (("next_check", "5000"), ("next_check", True), ("next_check", -1e11),
                       ("fetched_at", "1000"), ("retry_at", False), ("failures", -1000),
                       ("failures", 2.0), ("failures", "2"), ("failures", True),
                       ("failures", 2**31), ("state", "garbage"), ("state", ["policy"]),
                       ("detail", 5), ("policy_id", 1), ("txt_id", ["id1"])):
        with pytest.raises(StoreError, match=r"entry for x\.example is corrupt"):
            _decode("x.example", dumps_json({**good, field: bad}))
    # The first second of the year 1 and the last of 9999 are times.
    first = _decode("x.example", dumps_json({**good, "next_check": -62135596800.0}))
    assert first.next_check == -62135596800.0
    last = _decode("x.example", dumps_json({**good, "next_check": 253402300799}))
    assert last.next_check == 253402300799.0
    with pytest.raises(StoreError):
        _decode("x.example", dumps_json({**good, "next_check": -62135596801.0}))


def test_text_where_the_store_writes_a_blob_is_an_error_naming_the_file(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Another writer's text in an entry: not read at once, a StoreError naming the file
    when awaited, no lock taken with it; a listing passes over it with a warning naming
    the file and lists the entries around it; a proactive refresh then starts, reports it
    as a store error (no crash) and writes the entry anew."""
    path = tmp_path / "cache.sqlite3"

    async def main() -> None:
        clock = Clock()
        store = await _seeded(tmp_path, clock, ["s.example", "t.example", "u.example"])
        with sqlite3.connect(path) as raw:
            raw.execute("UPDATE entries SET value = 'text' WHERE key = 't.example'")
        raw.close()
        try:
            assert get_now(store, POLICY_NAMESPACE, "t.example") is NOT_READ
            with pytest.raises(StoreError, match=r"cache\.sqlite3.*not a blob"):
                await store.get(POLICY_NAMESPACE, "t.example")
            with pytest.raises(StoreError, match=r"cache\.sqlite3.*not a blob"):
                await acquire_get(store, "mta-sts.t.example", "me", 30, POLICY_NAMESPACE,
                                  "t.example")
            caplog.clear()
            listed = [entry.key async for entry in store.entries(POLICY_NAMESPACE)]
            assert listed == ["s.example", "u.example"]
            assert re.search(r"cache\.sqlite3: entry mta-sts/'t\.example' is not a blob",
                             caplog.text)
            assert await store.acquire("mta-sts.t.example", "other", 30)  # no lock was left
            await store.release("mta-sts.t.example", "other")
            caplog.clear()
            assert await _starts_a_refresh(store, clock, "t.example")
            assert "failed unexpectedly" not in caplog.text
            assert "not a blob" in caplog.text
            entry = await store.get(POLICY_NAMESPACE, "t.example")  # written anew: a blob
            assert entry is not None and _decode("t.example", entry.value).failures == 1
        finally:
            await store.close()

    run(main)


def test_memory_cache_size_setting() -> None:
    assert DiscoveryConfig().memory_cache_size == 10_000
    assert DiscoveryConfig(memory_cache_size=5).memory_cache_size == 5
    for bad in (0, -1, 1.5, True, 10_000_001):
        with pytest.raises(DiscoveryError, match="memory_cache_size must be a whole number"):
            DiscoveryConfig(memory_cache_size=bad)
    assert check_discovery_table({"memory_cache_size": 50_000}, "x.toml") == []
    assert check_discovery_table({"memory_cache_size": "big"}, "x.toml")


@pytest.fixture
def env(dns_lab: DnsLab, https_lab: HttpsLab, tmp_path: Path) -> Env:
    https_lab.reset()
    return Env(dns_lab, https_lab, tmp_path)


def test_one_https_client_for_every_fetch(env: Env) -> None:
    async def main() -> tuple[int, bool]:
        async with env.discovery(memory_cache_size=1) as d:
            await d.destination("ok.secure.test")
            client = d._http
            assert client is not None
            await d.destination("enforce2.secure.test")
            assert d._http is client
            state = await d.refresh("ok.secure.test")
            assert state.state == "policy" and d._http is client
            # ok.secure.test was evicted by the others and is read back from the store.
            again = await d.sts_state("enforce2.secure.test")
            assert again.state == "policy"
            fetched = env.web.fetches("ok.secure.test")
        return fetched, client.is_closed

    fetched, closed = run(main)
    assert fetched == 2 and closed


def test_serve_reads_the_new_discovery_keys() -> None:
    from tlspolicy.cli import build_parser
    from tlspolicy.cli._common import UsageError
    from tlspolicy.cli.serve_discovery import discovery_run

    args = build_parser().parse_args(["serve", "socketmap", "--discovery", "x.toml"])
    run_ = discovery_run(args, {"memory_cache_size": 500, "dns_backoff_initial": 2,
                                "dns_backoff_max": 30}, (3, 7, 11))
    config = run_.config
    assert (config.memory_cache_size, config.dns_backoff_initial,
            config.dns_backoff_max) == (500, 2.0, 30.0)
    assert discovery_run(args, {}, (3, 7, 11)).config.memory_cache_size == 10_000
    with pytest.raises((DiscoveryError, UsageError), match="dns_backoff_max"):
        discovery_run(args, {"dns_backoff_initial": 10, "dns_backoff_max": 5}, (3, 7, 11))


def test_a_finished_fetch_drops_the_answers_that_served_it(env: Env) -> None:
    """Once the policy is in, the ``_mta-sts`` TXT answer and the policy host's addresses
    are not held until their TTLs run out: the next check re-asks for them anyway."""
    async def main() -> list[bool]:
        async with env.discovery() as d:
            state = await d.sts_state("ok.secure.test")
            assert state.state == "policy"
            held = [d.dns.cached(name, rdtype) is not None for name, rdtype in (
                ("_mta-sts.ok.secure.test", "TXT"), ("mta-sts.ok.secure.test", "A"),
                ("mta-sts.ok.secure.test", "AAAA"))]
            again = await d.sts_state("ok.secure.test")
            assert again is state  # fresh: nothing asked again
            return held

    assert run(main) == [False, False, False]


def test_a_kept_answer_does_not_keep_an_evicted_state_alive(env: Env) -> None:
    """An answer kept for reuse refers to the MTA-STS state it came from without keeping it
    alive: once the bounded memory lets the state go, it is freed at once (not when the
    answer's memo time runs out) and the answer with it, and the next answer is computed
    again from the store (and not kept: the state was not held)."""
    import gc
    import weakref

    from test_discovery_answers import ask, lookup_for

    async def main() -> tuple[str, str, bool, bool]:
        async with env.discovery(memory_cache_size=1) as d:
            lookup = lookup_for(d)
            first = await ask(lookup, "ok.secure.test")
            state = d.sts_held("ok.secure.test")
            assert state is not None and state.state == "policy"
            gone = weakref.ref(state)
            del state
            assert (await ask(lookup, "ok.secure.test")).text == first.text  # reused
            assert ("default", "ok.secure.test") in lookup._held
            await ask(lookup, "enforce2.secure.test")  # takes the one place in memory
            assert d.sts_held("ok.secure.test") is None
            gc.collect()
            # The state is freed, and the answer kept with it is dropped at once.
            freed = gone() is None and ("default", "ok.secure.test") not in lookup._held
            # Not the kept answer (its state is gone, and the store may hold a newer one):
            # computed again from the state read back from the store, without a fetch.
            again = await ask(lookup, "ok.secure.test")
            reread = d.sts_held("ok.secure.test") is not None
            fetches = env.web.fetches("ok.secure.test")
            # An answer from a state just read back is not kept; once the state is held,
            # the next one is.
            kept_then = ("default", "ok.secure.test") in lookup._held
            await ask(lookup, "ok.secure.test")
            kept_now = ("default", "ok.secure.test") in lookup._held
            return (first.text, again.text, freed, reread and fetches == 1,
                    (kept_then, kept_now))

    first, again, freed, reread_not_fetched, kept = run(main)
    assert first == again and first.startswith("secure")
    assert freed
    assert reread_not_fetched
    assert kept == (False, True)


def test_a_domain_in_use_is_held_under_one_string(env: Env) -> None:
    """Each request brings its own copy of the name; the domains in use keep the one
    string discovery's state is kept under, not a copy per request."""
    from test_discovery_answers import ask, lookup_for

    async def main() -> tuple[bool, bool]:
        async with env.discovery() as d:
            lookup = lookup_for(d)
            for _ in range(2):
                key = "".join(["ok.secure", ".test"])  # a new string each time
                lookup._keys.clear()  # as when more keys came than its parsed keys hold
                await ask(lookup, key)
            state = d.sts_held("ok.secure.test")
            assert state is not None
            kept = next(name for name in lookup.in_use if name == "ok.secure.test")
            return kept is state.domain, kept is not key

    assert run(main) == (True, True)


def test_a_kept_answer_and_its_state_reference_share_one_key(env: Env) -> None:
    """The memo's key and the weak reference's are one tuple, not one each (some 60
    bytes an answer kept)."""
    from test_discovery_answers import ask, lookup_for

    async def main() -> bool:
        async with env.discovery() as d:
            lookup = lookup_for(d)
            await ask(lookup, "ok.secure.test")
            # The first answer's check may still be storing its state on a loaded machine.
            for _ in range(500):
                if d.sts_held("ok.secure.test") is not None:
                    break
                await asyncio.sleep(0.01)
            await ask(lookup, "ok.secure.test")  # kept once the state is held
            [(key, held)] = [(k, h) for k, h in lookup._held.items()
                             if k == ("default", "ok.secure.test")]
            return held.sts.memo_key is key

    assert run(main)


def test_a_damaged_entry_is_a_store_error_never_a_crash(tmp_path: Path) -> None:
    """A number too large for a float, or nesting too deep for the parser (a damaged or
    foreign entry): decoding raises StoreError, and a lookup answers as for any corrupt
    entry."""
    cached = CachedMtaStsPolicy(parse_policy(enforce("x.example")), at(1000.0), "id1")
    state = StsState("x.example", "policy", cached, FetchOutcome.OK, "ok", "id1", 5000.0, 0,
                     None)
    good = dumps_json(_encode(state))
    assert b'"next_check":5000.0' in good
    overflow = good.replace(b'"next_check":5000.0', b'"next_check":1' + b"0" * 400)
    deep = b"[" * 100_000 + b"]" * 100_000
    # A time never reached would leave the entry unchecked for as long as it is kept.
    never = [good.replace(b'"next_check":5000.0', b'"next_check":' + text)
             for text in (b"NaN", b"Infinity", b"1e400", b"1e300")]
    for damaged in (overflow, deep, *never):
        with pytest.raises(StoreError, match=r"entry for x\.example is corrupt"):
            _decode("x.example", damaged)
        assert stored_schedule(damaged) is None
    with pytest.raises(StoreError, match="nested too deeply"):
        loads_json(deep)
    # A fetch time whose expiry is past the last date a datetime holds: the schedule
    # reads (a refresh is started as its next check says), the state is corrupt.
    late = good.replace(b'"fetched_at":1000.0', b'"fetched_at":253402300790.0')
    assert late != good and stored_schedule(late) == (5000.0, None)
    with pytest.raises(StoreError, match=r"entry for x\.example is corrupt"):
        _decode("x.example", late)

    async def main() -> None:
        clock = Clock()
        store = _CountingStore(tmp_path / "cache.sqlite3")
        store.reads = []
        for name, value in (("o.example", overflow), ("n.example", deep)):
            await store.set(POLICY_NAMESPACE, name, value, expires_at=clock.now + 86400)
        d = _offline(store, clock, 5)
        d.dns.timeout = 0.01
        try:
            for name in ("o.example", "n.example"):
                assert d.sts_stored(name) is None
                answer = await d.sts_state(name, wait=0.5)
                assert answer.cached is None and name in store.reads
            await asyncio.gather(*d._refreshing.values())
        finally:
            await d.close()
            await store.close()

    run(main)
