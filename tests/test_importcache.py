"""Importing other daemons' MTA-STS caches into the discovery store.

The fixtures are written in exactly the formats those daemons write:
postfix-mta-sts-resolver 1.5.0's SQLite cache (its table, indexes and WAL mode,
``pol_body`` as its parser leaves it: ``mx`` first as a list, ``max_age`` a
number) and its Redis cache (one sorted set per domain, member = 16 random bytes
+ JSON ``[pol_id, pol_body]``, score = ts; a ``_metadata`` hash beside them), in
the real Redis server of the discovery tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import sqlite3
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from discovery_support import DnsLab, HttpsLab, PolicyAnswer, RedisServer
from strategies import examples
from tlspolicy import StsMode, cli
from tlspolicy.discovery import POLICY_NAMESPACE, Discovery, DiscoveryConfig, StsState
from tlspolicy.discovery._gob import GobError, read_gob
from tlspolicy.discovery.importcache import (
    CacheImportError,
    ImportedPolicy,
    import_policies,
    read_mta_sts_resolver_postgres,
    read_mta_sts_resolver_redis,
    read_mta_sts_resolver_sqlite,
    read_postfix_tlspol,
)
from tlspolicy.discovery.stscache import decode_state as _decode
from tlspolicy.discovery.stscache import encode_state as _encode
from tlspolicy.policies.mtasts import CachedMtaStsPolicy, FetchOutcome, parse_policy
from tlspolicy.stores import SqliteStore, dumps_json

pytestmark = pytest.mark.timeout(120)

NOW = time.time()


def pol_body(mode: str, mx: list[str], max_age: int, **extra: str) -> dict[str, Any]:
    """The dict postfix-mta-sts-resolver's parser makes: 'mx' first, then document order."""
    body: dict[str, Any] = {"mx": list(mx), "version": "STSv1", "mode": mode,
                            "max_age": max_age}
    body.update(extra)
    return body


# domain -> (ts, pol_id, pol_body)
ENTRIES: dict[str, tuple[int, str, Any]] = {
    "fresh.example": (int(NOW) - 3600, "20240101", pol_body("enforce", ["*.fresh.example",
                                                                         "mx.fresh.example"],
                                                             86400)),
    "testing.example": (int(NOW) - 60, "t1", pol_body("testing", ["mx.testing.example"],
                                                      604800, ext="v")),
    "old.example": (int(NOW) - 90000, "o1", pol_body("enforce", ["mx.old.example"], 86400)),
    "bad.example": (int(NOW), "b1", pol_body("enforce", [], 86400)),
    "keep.secure.test": (int(NOW) - 100, "k1", pol_body("enforce", ["*.keep.secure.test"],
                                                        86400)),
}


def write_resolver_sqlite(path: Path, entries: dict[str, tuple[int, str, Any]]) -> None:
    """A cache file as postfix-mta-sts-resolver's sqlite backend creates and fills it."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("create table if not exists sts_policy_cache "
               "(domain text, ts integer, pol_id text, pol_body text)")
    db.execute("create unique index if not exists sts_policy_domain on sts_policy_cache (domain)")
    db.execute("create index if not exists sts_policy_domain_ts on sts_policy_cache "
               "(domain, ts)")
    for domain, (ts, pol_id, body) in entries.items():
        db.execute("insert into sts_policy_cache (domain, ts, pol_id, pol_body) "
                   "values (?, ?, ?, ?)", (domain, ts, pol_id, json.dumps(body)))
    db.commit()
    db.close()


def test_sqlite_cache_reads_every_row(tmp_path: Path) -> None:
    path = tmp_path / "mta-sts.db"
    write_resolver_sqlite(path, ENTRIES)
    found = list(read_mta_sts_resolver_sqlite(path))
    policies = {p.domain: p for p in found if isinstance(p, ImportedPolicy)}
    assert set(policies) == set(ENTRIES)
    fresh = policies["fresh.example"]
    assert fresh.fetched_at == ENTRIES["fresh.example"][0] and fresh.policy_id == "20240101"
    parsed = parse_policy(fresh.policy_text)
    assert parsed.mode is StsMode.ENFORCE and parsed.max_age == 86400
    assert [str(m) for m in parsed.mx] == ["*.fresh.example", "mx.fresh.example"]
    assert parse_policy(policies["testing.example"].policy_text).mode is StsMode.TESTING


def test_import_keeps_only_unexpired_valid_policies(tmp_path: Path) -> None:
    path = tmp_path / "mta-sts.db"
    write_resolver_sqlite(path, ENTRIES)
    store = SqliteStore(tmp_path / "discovery.sqlite3")

    async def main() -> tuple[Any, dict[str, StsState]]:
        try:
            report = await import_policies(store, read_mta_sts_resolver_sqlite(path), now=NOW)
            states = {}
            for domain in ENTRIES:
                entry = await store.get(POLICY_NAMESPACE, domain)
                if entry is not None:
                    states[domain] = _decode(domain, entry.value)
            return report, states
        finally:
            await store.close()

    report, states = asyncio.run(main())
    assert sorted(report.imported) == ["fresh.example", "keep.secure.test", "testing.example"]
    assert report.expired == ["old.example"]
    assert [d for d, _ in report.skipped] == ["bad.example"]
    assert set(states) == set(report.imported)
    fresh = states["fresh.example"]
    assert fresh.state == "policy" and fresh.cached is not None
    assert fresh.cached.policy_id == "20240101"
    assert fresh.cached.fetched_at.timestamp() == ENTRIES["fresh.example"][0]
    # Expiry counts from the old daemon's ts, never from the import.
    assert fresh.cached.expires_at.timestamp() == ENTRIES["fresh.example"][0] + 86400
    assert fresh.next_check <= NOW  # re-checked on first use


def test_import_never_replaces_a_newer_cached_policy(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "discovery.sqlite3")
    newer = CachedMtaStsPolicy(parse_policy(
        "version: STSv1\nmode: enforce\nmx: new.fresh.example\nmax_age: 86400\n"),
        datetime.fromtimestamp(NOW - 10, UTC),
        "newer")
    held = StsState("fresh.example", "policy", newer, FetchOutcome.OK, "fetched", "newer",
                    NOW + 3600, 0, None)
    old = ImportedPolicy("fresh.example", "version: STSv1\nmode: enforce\nmx: x.example\n"
                         "max_age: 86400\n", NOW - 3600, "older", "test")

    async def main() -> tuple[Any, StsState]:
        try:
            await store.set(POLICY_NAMESPACE, "fresh.example", dumps_json(_encode(held)),
                            expires_at=NOW + 86400)
            report = await import_policies(store, [old], now=NOW)
            entry = await store.get(POLICY_NAMESPACE, "fresh.example")
            assert entry is not None
            return report, _decode("fresh.example", entry.value)
        finally:
            await store.close()

    report, state = asyncio.run(main())
    assert report.kept == ["fresh.example"] and not report.imported
    assert state.cached is not None and state.cached.policy_id == "newer"


def test_not_a_resolver_cache_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CacheImportError, match="no such file"):
        read_mta_sts_resolver_sqlite(tmp_path / "missing.db")
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("create table t (x)").connection.close()
    with pytest.raises(CacheImportError, match="not a postfix-mta-sts-resolver cache"):
        read_mta_sts_resolver_sqlite(other)


def test_the_source_file_is_not_changed(tmp_path: Path) -> None:
    path = tmp_path / "mta-sts.db"
    write_resolver_sqlite(path, ENTRIES)
    before = path.read_bytes()
    list(read_mta_sts_resolver_sqlite(path))
    assert path.read_bytes() == before


# ---------------------------------------------------------------------------- Redis


def write_resolver_redis(url: str, entries: dict[str, tuple[int, str, Any]]) -> None:
    """Keys as postfix-mta-sts-resolver's redis backend writes them."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
        for domain, (ts, pol_id, body) in entries.items():
            packed = uuid.uuid4().bytes + json.dumps((pol_id, body)).encode("utf-8")
            pipe = client.pipeline(transaction=True)
            pipe.zadd(domain.encode("utf-8"), {packed: ts})
            pipe.zremrangebyrank(domain.encode("utf-8"), 0, -2)
            pipe.execute()
        client.hset("_metadata", "proactive_fetch_ts", str(NOW).encode())
        client.set("unrelated-string-key", b"x")
    finally:
        client.close()


def test_redis_cache_imports_like_sqlite(redis_server: RedisServer, tmp_path: Path) -> None:
    write_resolver_redis(redis_server.url, ENTRIES)
    store = SqliteStore(tmp_path / "discovery.sqlite3")

    async def main() -> Any:
        try:
            return await import_policies(store, read_mta_sts_resolver_redis(redis_server.url),
                                         now=NOW)
        finally:
            await store.close()

    report = asyncio.run(main())
    assert sorted(report.imported) == ["fresh.example", "keep.secure.test", "testing.example"]
    assert report.expired == ["old.example"]
    assert [d for d, _ in report.skipped] == ["bad.example"]


# ----------------------------------------- end to end: trust survives the switch


def test_imported_policy_is_in_force_while_the_policy_host_is_down(
        dns_lab: DnsLab, https_lab: HttpsLab, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    https_lab.reset()
    https_lab.set("keep.secure.test", PolicyAnswer(b"", status=503))
    source = tmp_path / "mta-sts.db"
    write_resolver_sqlite(source, ENTRIES)
    cache = tmp_path / "discovery.sqlite3"
    code = cli.main(["import-cache", "--from", "mta-sts-resolver-sqlite", str(source),
                     "--cache", str(cache)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("imported 3 unexpired policies, kept 0 newer ones already cached, "
                          "passed over 1 expired, skipped 1\n")
    assert "  skipped  bad.example: " in out

    config = DiscoveryConfig(resolver="127.0.0.1", resolver_port=dns_lab.port,
                             probe_name="test.", https_port=https_lab.port,
                             ca_file=str(https_lab.ca_file), https_timeout=3.0,
                             resolv_conf=None, dns_timeout=2.0, cache_path=str(cache))

    async def main() -> tuple[Any, Any]:
        async with Discovery(config) as d:
            first = await d.destination("keep.secure.test", "mx.keep.secure.test")
            for _ in range(200):
                if not d._refreshing:
                    break
                await asyncio.sleep(0.02)
            after = await d.sts_state("keep.secure.test")
            return first, after

    first, after = asyncio.run(main())
    assert first.mta_sts is not None and first.mta_sts.mode is StsMode.ENFORCE
    # The refresh failed (503): the imported policy stays until it expires.
    assert after.state == "policy" and after.cached is not None
    assert after.cached.policy_id == "k1"
    assert after.outcome is FetchOutcome.FETCH_ERROR

    assert cli.main(["cache", "show", "keep.secure.test", "--cache", str(cache)]) == 0
    assert capsys.readouterr().out.startswith("keep.secure.test  enforce")


def test_import_cache_cli_errors_are_clean(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["import-cache", "--from", "mta-sts-resolver-sqlite",
                     str(tmp_path / "missing.db"), "--cache", str(tmp_path / "c.sqlite3")])
    err = capsys.readouterr().err
    assert code == 2 and "no such file" in err and "Traceback" not in err


# ------------------------------------------------------------------- postfix-tlspol

TLSPOL_CACHE = Path(__file__).parent / "data" / "postfix-tlspol" / "cache.db"
#: The moment gen_cache.go wrote the cache for.
TLSPOL_NOW = datetime(2026, 1, 1, tzinfo=UTC).timestamp()


def test_tlspol_cache_written_by_go_is_read() -> None:
    """cache.db was written by Go's own encoding/gob (gen_cache.go beside it)."""
    found = read_postfix_tlspol(TLSPOL_CACHE)
    policies = {p.domain: p for p in found if isinstance(p, ImportedPolicy)}
    # DANE-only, testing, no-policy and counter-only entries carry no MTA-STS policy.
    assert set(policies) == {"enforce.example", "long.example", "expired.example"}
    enforce = policies["enforce.example"]
    assert enforce.fetched_at == TLSPOL_NOW - 7200 and enforce.policy_id is None
    parsed = parse_policy(enforce.policy_text)
    assert parsed.mode is StsMode.ENFORCE and parsed.max_age == 604800
    assert [str(m) for m in parsed.mx] == ["mx1.enforce.example", "*.enforce.example"]
    # The branch is capped at 30 days, the policy's own max_age is a year.
    assert parse_policy(policies["long.example"].policy_text).max_age == 31557600
    assert policies["long.example"].fetched_at == TLSPOL_NOW - 7200


def test_tlspol_import_uses_the_policy_max_age(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "discovery.sqlite3", clock=lambda: TLSPOL_NOW)

    async def main() -> tuple[Any, dict[str, StsState]]:
        try:
            report = await import_policies(store, read_postfix_tlspol(TLSPOL_CACHE),
                                           now=TLSPOL_NOW)
            states = {}
            for domain in report.imported:
                entry = await store.get(POLICY_NAMESPACE, domain)
                assert entry is not None
                states[domain] = _decode(domain, entry.value)
            return report, states
        finally:
            await store.close()

    report, states = asyncio.run(main())
    assert sorted(report.imported) == ["enforce.example", "long.example"]
    assert report.expired == ["expired.example"] and not report.skipped
    long = states["long.example"].cached
    assert long is not None
    assert long.expires_at.timestamp() == TLSPOL_NOW - 7200 + 31557600


def test_tlspol_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Import "now": the fixture's policies are months old by the time this runs, so
    # only the year-long one can still be unexpired; the library test above pins time.
    code = cli.main(["import-cache", "--from", "postfix-tlspol", str(TLSPOL_CACHE),
                     "--cache", str(tmp_path / "c.sqlite3")])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("imported ")


@pytest.mark.parametrize("mangle", ["truncate", "flip", "not-gzip", "empty-gzip"])
def test_a_damaged_tlspol_cache_is_a_clear_error(tmp_path: Path, mangle: str) -> None:
    raw = gzip.decompress(TLSPOL_CACHE.read_bytes())
    if mangle == "truncate":
        data = gzip.compress(raw[: len(raw) // 2])
    elif mangle == "flip":
        data = gzip.compress(raw[:40] + bytes([raw[40] ^ 0xFF]) + raw[41:])
    elif mangle == "not-gzip":
        data = raw
    else:
        data = gzip.compress(b"")
    path = tmp_path / "cache.db"
    path.write_bytes(data)
    try:
        found = read_postfix_tlspol(path)
    except CacheImportError as exc:
        assert str(path) in str(exc)
    else:
        # A flipped byte inside a string still decodes: the entry is then refused later.
        assert mangle == "flip", found


@settings(max_examples=examples(ci=300, default=60), deadline=None)
@given(st.binary(max_size=600))
def test_gob_reader_never_crashes_on_garbage(data: bytes) -> None:
    with contextlib.suppress(GobError):
        read_gob(data)


@settings(max_examples=examples(ci=200, default=40), deadline=None)
@given(st.integers(min_value=0, max_value=len(gzip.decompress(TLSPOL_CACHE.read_bytes())) - 1),
       st.integers(min_value=0, max_value=255))
def test_gob_reader_survives_any_byte_changed(position: int, value: int) -> None:
    raw = bytearray(gzip.decompress(TLSPOL_CACHE.read_bytes()))
    raw[position] = value
    with contextlib.suppress(GobError):
        read_gob(bytes(raw))


def test_go_time_out_of_range_is_a_gob_error() -> None:
    from tlspolicy.discovery._gob import go_time

    with pytest.raises(GobError, match="out of range"):
        go_time(bytes([1]) + b"\x7f" * 8 + b"\x00" * 4 + b"\xff\xff")
    with pytest.raises(GobError, match="not a Go time"):
        go_time(b"\x01\x02")


# ---------------------------------------------------------------------- PostgreSQL


def _pg_bin() -> Path:
    import os

    roots = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not roots or not (roots[-1] / "postgres").exists():
        pytest.skip("PostgreSQL is not installed (Debian package postgresql; "
                    ".ci/install-postgres.sh)")
    if os.geteuid() != 0:
        pytest.skip("starting PostgreSQL as its own user needs root")
    import pwd

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres user (the postgresql package creates it)")
    return roots[-1]


@pytest.fixture(scope="module")
def postgres_dsn() -> Any:
    """A private PostgreSQL server on a free loopback port, run as the postgres user."""
    import shutil
    import signal
    import subprocess
    import tempfile

    from postfix_support import free_port

    bindir = _pg_bin()
    base = Path(tempfile.mkdtemp(prefix="tlspolicy-pg-"))
    base.chmod(0o755)
    data = base / "data"
    shutil.chown(base, "postgres", "postgres")
    # PostgreSQL refuses to run as root: both programs run as its own user.
    subprocess.run([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U",
                    "postgres", "--no-sync"], check=True, capture_output=True, timeout=120,
                   user="postgres", group="postgres", cwd=base)
    port = free_port()
    process = subprocess.Popen(
        [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(base),
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, user="postgres",
        group="postgres", cwd=base)
    dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(dsn, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
        yield dsn
    finally:
        process.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)


def write_resolver_postgres(dsn: str, entries: dict[str, tuple[int, str, Any]]) -> None:
    """Tables and rows as postfix-mta-sts-resolver's postgres backend creates them."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS sts_policy_cache, proactive_fetch_ts")
        conn.execute("CREATE TABLE IF NOT EXISTS proactive_fetch_ts "
                     "(id serial primary key, last_fetch_ts integer)")
        conn.execute("CREATE TABLE IF NOT EXISTS sts_policy_cache "
                     "(id serial primary key, domain text, ts integer, pol_id text, "
                     "pol_body jsonb)")
        conn.execute("CREATE UNIQUE INDEX IF NOT EXISTS sts_policy_domain ON "
                     "sts_policy_cache (domain)")
        conn.execute("CREATE INDEX IF NOT EXISTS sts_policy_domain_ts ON "
                     "sts_policy_cache (domain, ts)")
        for domain, (ts, pol_id, body) in entries.items():
            # Its jsonb codec is json.dumps: the parsed policy dict as a JSON object.
            conn.execute("INSERT INTO sts_policy_cache (domain, ts, pol_id, pol_body) "
                         "VALUES (%s, %s, %s, %s::jsonb)", (domain, ts, pol_id,
                                                            json.dumps(body)))
        conn.execute("INSERT INTO proactive_fetch_ts (last_fetch_ts, id) VALUES (%s, 1)",
                     (int(NOW),))


def test_postgres_cache_imports_like_sqlite(postgres_dsn: str, tmp_path: Path) -> None:
    write_resolver_postgres(postgres_dsn, ENTRIES)
    store = SqliteStore(tmp_path / "discovery.sqlite3")

    async def main() -> Any:
        try:
            return await import_policies(store, read_mta_sts_resolver_postgres(postgres_dsn),
                                         now=NOW)
        finally:
            await store.close()

    report = asyncio.run(main())
    assert sorted(report.imported) == ["fresh.example", "keep.secure.test", "testing.example"]
    assert report.expired == ["old.example"]
    assert [d for d, _ in report.skipped] == ["bad.example"]


def test_postgres_source_errors_hide_the_password(postgres_dsn: str) -> None:
    port = postgres_dsn.rsplit(":", 1)[1].split("/")[0]
    with pytest.raises(CacheImportError) as info:
        read_mta_sts_resolver_postgres(f"postgresql://postgres:s3cret@127.0.0.1:{port}/nodb")
    assert "s3cret" not in str(info.value) and "nodb" in str(info.value)
