"""RegexMatchCache: bounded, least-recently-used eviction, lock-free reads, threads."""

from __future__ import annotations

import threading

import pytest

from tlspolicy import Config, Resolver
from tlspolicy.formats.toml import loads_toml
from tlspolicy.resolver import RegexMatchCache


def test_evicts_least_recently_used() -> None:
    cache = RegexMatchCache(3)
    for key in "abc":
        cache.put(key, key.upper())
    assert cache.get("a") == "A"  # a is now the most recent
    cache.put("d", "D")  # evicts b, the least recently used
    assert cache.get("b") is None
    assert [cache.get(k) for k in "acd"] == ["A", "C", "D"]
    assert len(cache) == 3


def test_recency_survives_many_reads_between_writes() -> None:
    cache = RegexMatchCache(2)
    cache.put("old", 1)
    cache.put("hot", 2)
    for _ in range(10_000):  # far more reads than the read buffer holds
        assert cache.get("hot") == 2
    cache.put("new", 3)
    assert cache.get("hot") == 2
    assert cache.get("old") is None


def test_size_zero_disables_and_none_is_never_stored() -> None:
    off = RegexMatchCache(0)
    off.put("k", 1)
    assert off.get("k") is None and len(off) == 0
    on = RegexMatchCache(4)
    on.put("k", None)
    assert len(on) == 0


@pytest.mark.parametrize("size", [-1, 1.5, True, "8"])
def test_bad_sizes_are_refused(size: object) -> None:
    with pytest.raises(ValueError, match="cache size"):
        RegexMatchCache(size)  # type: ignore[arg-type]


def test_statistics_count_hits_and_misses() -> None:
    cache = RegexMatchCache(8)
    assert cache.get("x") is None
    cache.put("x", 1)
    for _ in range(5):
        cache.get("x")
    assert (cache.hits, cache.misses) == (5, 1)
    cache.clear()
    assert len(cache) == 0 and cache.get("x") is None


def test_bounded_under_concurrent_readers_and_writers() -> None:
    cache = RegexMatchCache(64)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work(offset: int) -> None:
        try:
            barrier.wait(timeout=10)
            for i in range(5000):
                key = (offset + i) % 200
                value = cache.get(key)
                if value is None:
                    cache.put(key, key * 2)
                elif value != key * 2:
                    raise AssertionError(f"{key} -> {value}")
        except BaseException as exc:  # reported in the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n * 37,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert len(cache) <= 64


def test_resolver_uses_the_configured_match_cache_size() -> None:
    config = loads_toml('match_cache_size = 2\n[[domain]]\nname = "/x/"\ntls = "required"\n')
    resolver = Resolver(config, decision_cache_size=0)
    assert resolver.regex_cache.size == 2
    for name in ("a.x.example", "b.x.example", "c.x.example"):
        assert resolver.resolve(name).tls.value == "required"
    assert len(resolver.regex_cache) == 2
    assert Resolver(Config()).regex_cache.size == 16384


def test_memoised_and_fresh_decisions_are_equal() -> None:
    config = loads_toml('[global]\ntls = "ifavailable"\n[[domain]]\nname = "/^mx\\\\./"\n'
                        'tls = "required"\n[[binding]]\nname = "b1"\n')
    memo = Resolver(config)
    fresh = Resolver(config, decision_cache_size=0)
    for _ in range(3):
        for domain in ("mx.example.com", "example.com", "MX.Example.com."):
            for binding in (None, "b1"):
                assert memo.resolve(domain, binding) == fresh.resolve(domain, binding)
                assert memo.resolve(domain, binding, mx_host="mx.example.net") == \
                    fresh.resolve(domain, binding, mx_host="mx.example.net")

