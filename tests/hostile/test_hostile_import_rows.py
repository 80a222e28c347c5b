"""Finding: one hostile row of a postfix-mta-sts-resolver cache aborted the whole import.

``ts = 1e12``, ``ts = inf`` or a deeply nested ``pol_body`` raised
``ValueError``, ``OverflowError`` or ``RecursionError`` out of the import;
``ts = 1e10`` imported a policy expiring in 2286, past ``max_age`` from now;
a NULL domain was imported as the domain ``none``.  Each bad row is skipped
with a note, a future fetch time is taken as now, and the rest imports.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tlspolicy import cli
from tlspolicy.discovery.importcache import (
    ImportedPolicy,
    ImportReport,
    import_policies,
    read_mta_sts_resolver_sqlite,
)
from tlspolicy.discovery.stscache import POLICY_NAMESPACE
from tlspolicy.discovery.stscache import decode_state as _decode
from tlspolicy.stores import SqliteStore

NOW = time.time()
BODY = json.dumps({"mx": ["mx.good.example"], "version": "STSv1", "mode": "enforce",
                   "max_age": 86400})
DEEP = "[" * 100_000 + "]" * 100_000
YEAR = 31_557_600

ROWS: list[tuple[Any, Any, Any, Any]] = [
    ("good.example", int(NOW) - 60, "g1", BODY),
    ("huge-ts.example", 1e12, "h1", BODY),
    ("inf-ts.example", float("inf"), "i1", BODY),
    ("nan-ts.example", float("nan"), "n1", BODY),
    ("text-ts.example", "soon", "t1", BODY),
    ("future.example", 1e10, "f1", BODY),
    ("deep.example", int(NOW), "d1", DEEP),
    ("deep-object.example", int(NOW), "d2", '{"a":' * 5000 + "1" + "}" * 5000),
    (None, int(NOW), "null", BODY),
    ("late.example", int(NOW) - 30, "l1", BODY),
]


def _write(path: Path) -> None:
    db = sqlite3.connect(path)
    # No declared types: SQLite keeps whatever a broken writer stored, as it would.
    db.execute("create table sts_policy_cache (domain, ts, pol_id, pol_body)")
    db.executemany("insert into sts_policy_cache values (?, ?, ?, ?)", ROWS)
    db.commit()
    db.close()


def _import(tmp_path: Path) -> tuple[ImportReport, dict[str, Any]]:
    source = tmp_path / "mta-sts.db"
    _write(source)
    store = SqliteStore(tmp_path / "discovery.sqlite3")

    async def main() -> tuple[ImportReport, dict[str, Any]]:
        try:
            report = await import_policies(store, read_mta_sts_resolver_sqlite(source),
                                           now=NOW)
            states = {}
            for domain in ("good.example", "future.example", "huge-ts.example", "none",
                           "late.example"):
                entry = await store.get(POLICY_NAMESPACE, domain)
                if entry is not None:
                    states[domain] = _decode(domain, entry.value)
            return report, states
        finally:
            await store.close()

    return asyncio.run(main())


def test_bad_rows_are_skipped_and_the_rest_imports(tmp_path: Path) -> None:
    report, states = _import(tmp_path)
    assert sorted(report.imported) == ["future.example", "good.example", "huge-ts.example",
                                       "late.example"]
    skipped = dict(report.skipped)
    assert set(skipped) == {"inf-ts.example", "nan-ts.example", "text-ts.example",
                            "deep.example", "deep-object.example", "None"}
    assert "NULL" in skipped["None"]
    assert "nested deeper" in skipped["deep.example"]
    assert "none" not in states  # a NULL domain is no domain
    assert not report.expired and not report.kept


def test_a_future_fetch_time_is_capped_to_now(tmp_path: Path) -> None:
    report, states = _import(tmp_path)
    assert sorted(d for d, _why in report.capped) == ["future.example", "huge-ts.example"]
    for domain in ("future.example", "huge-ts.example"):
        cached = states[domain].cached
        assert cached.fetched_at.timestamp() == pytest.approx(NOW)
        assert cached.expires_at.timestamp() <= NOW + YEAR
    assert states["good.example"].cached.fetched_at.timestamp() == int(NOW) - 60


def test_import_policies_survives_items_made_in_python(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "discovery.sqlite3")
    text = "version: STSv1\r\nmode: enforce\r\nmx: mx.a.example\r\nmax_age: 86400\r\n"
    items = [ImportedPolicy("a.example", text, float("inf"), None, "test"),
             ImportedPolicy("b.example", text, 1e300, None, "test"),
             ImportedPolicy("c.example", text, -1.0, None, "test")]

    async def main() -> ImportReport:
        try:
            return await import_policies(store, items, now=NOW)
        finally:
            await store.close()

    report = asyncio.run(main())
    assert report.imported == ["b.example"] and [d for d, _ in report.capped] == ["b.example"]
    assert [d for d, _ in report.skipped] == ["a.example", "c.example"]


def test_the_command_counts_what_it_skipped(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "mta-sts.db"
    _write(source)
    code = cli.main(["import-cache", "--from", "mta-sts-resolver-sqlite", str(source),
                     "--cache", str(tmp_path / "c.sqlite3")])
    captured = capsys.readouterr()
    assert code == 0 and "Traceback" not in captured.err
    assert "skipped 6, capped the expiry of 2" in captured.out
    assert "  skipped  deep.example: unreadable entry: pol_body nested deeper" in captured.out


# ---------------------------------------------------------- names and ids

NAME_ROWS: list[tuple[Any, Any, Any, Any]] = [
    ("ok.example", int(NOW) - 60, "ok1", BODY),
    ("new\n  imported bank.example", int(NOW), "x1", BODY),
    ("nul\x00.example", int(NOW), "x2", BODY),
    ("esc\x1b[2J\x1b[31m.example", int(NOW), "x3", BODY),
    ("long-id.example", int(NOW), "a" * 100_000, BODY),
    ("crlf-id.example", int(NOW), "id\r\n1", BODY),
    ("nul-id.example", int(NOW), "id\x001", BODY),
    ("dash-id.example", int(NOW), "id-1", BODY),
    ("id32.example", int(NOW), "A" * 32, BODY),
    ("id33.example", int(NOW), "A" * 33, BODY),
    ("numeric-id.example", int(NOW), 20240101, BODY),
    ("localhost", int(NOW), "n1", BODY),
    ("com", int(NOW), "n2", BODY),
    ("12345", int(NOW), "n3", BODY),
    ("_metadata", int(NOW), "n4", BODY),
    ("_mta-sts.under.example", int(NOW), "n5", BODY),
    ("1.2.3.4", int(NOW), "n6", BODY),
    ("[192.0.2.1]", int(NOW), "n7", BODY),
    ("[ipv6:2001:db8::1]", int(NOW), "n8", BODY),
    ("host.123", int(NOW), "n9", BODY),
]


def _write_names(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("create table sts_policy_cache (domain, ts, pol_id, pol_body)")
    db.executemany("insert into sts_policy_cache values (?, ?, ?, ?)", NAME_ROWS)
    db.commit()
    db.close()


def _import_names(tmp_path: Path) -> ImportReport:
    source = tmp_path / "names.db"
    _write_names(source)
    store = SqliteStore(tmp_path / "discovery.sqlite3")

    async def main() -> ImportReport:
        try:
            return await import_policies(store, read_mta_sts_resolver_sqlite(source), now=NOW)
        finally:
            await store.close()

    return asyncio.run(main())


BAD_IDS = ("long-id.example", "crlf-id.example", "nul-id.example", "dash-id.example",
           "id33.example")


def test_only_rfc_8461_policy_ids_are_imported(tmp_path: Path) -> None:
    """An id is 1 to 32 letters and digits (RFC 8461 section 3.1): a 100,000-character
    id, or one with a line break or a NUL, is not imported; the policy is, without it
    (skipping it would lose its protection until a fetch), so the next check fetches it
    again."""
    report = _import_names(tmp_path)
    dropped = dict(report.id_dropped)
    for domain in BAD_IDS:
        assert "policy id" in dropped[domain], (domain, dropped.get(domain))
        assert len(dropped[domain]) < 300
    assert {"ok.example", "id32.example", "numeric-id.example", *BAD_IDS} <= set(
        report.imported)


def test_names_that_cannot_be_policy_domains_are_skipped(tmp_path: Path) -> None:
    """A single label, an IP literal, an all-numeric top-level label or a label with an
    underscore is no MTA-STS policy domain (mta-sts.<domain> must be a host name)."""
    report = _import_names(tmp_path)
    skipped = dict(report.skipped)
    # Each under its normalised name: 1.2.3.4 is the IP literal [1.2.3.4].
    for domain in ("localhost", "com", "12345", "_metadata", "_mta-sts.under.example",
                   "[1.2.3.4]", "[192.0.2.1]", "[ipv6:2001:db8::1]", "host.123"):
        assert domain in skipped, (domain, report)
        assert "policy domain" in skipped[domain], skipped[domain]
    assert sorted(report.imported) == sorted(
        ["id32.example", "numeric-id.example", "ok.example", *BAD_IDS])


# ------------------------------------------------------ what the command prints


def test_the_command_prints_no_control_character_from_the_source(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A source's name cannot add a line to the report, nor reach the terminal with
    NUL or an escape sequence: every control character is printed escaped."""
    source = tmp_path / "names.db"
    _write_names(source)
    code = cli.main(["import-cache", "--from", "mta-sts-resolver-sqlite", str(source),
                     "--cache", str(tmp_path / "c.sqlite3")])
    captured = capsys.readouterr()
    assert code == 0 and "Traceback" not in captured.err
    lines = captured.out.splitlines()
    assert not [line for line in lines if "bank.example" in line
                and not line.startswith("  skipped  new\\n")], lines
    assert all(c == "\n" or c.isprintable() for c in captured.out), repr(captured.out)
    assert "\\x00" in captured.out and "\\x1b[2J" in captured.out
    assert max(len(line) for line in lines) < 400
