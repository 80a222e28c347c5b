"""Finding: stored TLS-RPT rows were trusted by ``report build``.

The result store may be a fleet's shared Redis.  A count of 10**30 was
reported as is, a count of -1000 cancelled real results and dropped the
policy silently, rows for one domain stored under another domain's key were
filed in that domain's report, and a key ``weird/../key`` named a report
"weird".  Rows and keys are checked as they are read; a bad entry is skipped
and logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from tlspolicy.policies.tlsrpt import PolicyType, SessionResult
from tlspolicy.reporting import (
    DAY,
    RESULTS_NAMESPACE,
    BufferedSink,
    Reporter,
    ReportingConfig,
    encode_results,
    period_start,
)
from tlspolicy.reporting.reports import REPORTS_NAMESPACE, period_results
from tlspolicy.stores import SqliteStore, StoreError

START = period_start(1_800_000_000)
CONFIG = ReportingConfig(organization_name="tlspolicy test sender",
                         contact_info="mailto:postmaster@sender.test",
                         submitter="sender.test", mail_from="tlsrpt@sender.test")


def _row(domain: str, count: int | Any) -> bytes:
    data = json.loads(encode_results([(SessionResult(PolicyType.NO_POLICY_FOUND, domain), 1)]))
    data["results"][0][-1] = count
    return json.dumps(data).encode()


ENTRIES: dict[str, bytes] = {
    f"{START}/good.example/node-a/0": _row("good.example", 5),
    f"{START}/good.example/node-b/1": _row("good.example", -1000),
    f"{START}/huge.example/node-a/2": _row("huge.example", 10**30),
    f"{START}/huge.example/node-b/3": _row("huge.example", 7),
    f"{START}/float.example/node-a/4": _row("float.example", 2.5),
    f"{START}/text.example/node-a/5": _row("text.example", "9"),
    f"{START}/victim.example/node-a/6": _row("attacker.example", 3),
    f"{START}/victim.example/node-b/7": _row("victim.example", 2),
    f"{START}/weird/../key": _row("weird", 4),
    f"{START}/Upper.Example/node-a/8": _row("upper.example", 1),
    f"{START}/x.example/node/extra/9": _row("x.example", 1),
    f"{START + 1}/good.example/node-a/10": _row("good.example", 1),
}


def _build(tmp_path: Path) -> tuple[dict[str, list[SessionResult]], list[Any]]:
    async def main() -> tuple[dict[str, list[SessionResult]], list[Any]]:
        store = SqliteStore(tmp_path / "results.sqlite3")
        try:
            for key, value in ENTRIES.items():
                await store.set(RESULTS_NAMESPACE, key, value, expires_at=None)
            found = await period_results(store, START)
            reporter = Reporter(store, CONFIG, clock=lambda: START + DAY + CONFIG.grace + 1)
            made = await reporter.build(START)
            return found, made
        finally:
            await store.close()

    return asyncio.run(main())


def test_bad_rows_and_keys_are_skipped_and_logged(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "tlspolicy.reporting"):
        found, made = _build(tmp_path)
    counts = {d: [r.count for r in results] for d, results in found.items()}
    # The negative row no longer cancels good.example's five; 10**30 is not reported.
    assert counts == {"good.example": [5], "huge.example": [7], "victim.example": [2]}
    assert sorted(r.domain for r in made) == ["good.example", "huge.example", "victim.example"]
    for report in made:
        for policy in report.report["policies"]:
            assert policy["policy"]["policy-domain"] == report.domain
    logged = caplog.text
    assert "the count -1000," in logged and f"the count {str(10**30)[:30]}..." in logged
    assert "they are for attacker.example, not victim.example" in logged
    assert "weird/../key" in logged and "not a key a sink writes" in logged


def test_a_node_name_that_breaks_keys_is_refused(tmp_path: Path) -> None:
    for node in ("..", "a/b", "", "two words"):
        with pytest.raises(StoreError):
            BufferedSink(lambda: SqliteStore(tmp_path / "s.sqlite3"), node=node or ".")


def test_a_stored_report_under_another_key_is_not_sent(tmp_path: Path) -> None:
    async def main() -> list[Any]:
        store = SqliteStore(tmp_path / "results.sqlite3")
        try:
            await store.set(RESULTS_NAMESPACE, f"{START}/good.example/n/0",
                            _row("good.example", 1), expires_at=None)
            reporter = Reporter(store, CONFIG, clock=lambda: START + DAY + CONFIG.grace + 1)
            (made,) = await reporter.build(START)
            # Copied under another domain's key by someone with access to the store.
            await store.set(REPORTS_NAMESPACE, f"{START}/other.example", made.to_bytes(),
                            expires_at=None)
            return [r.key for r in await reporter.stored(START)]
        finally:
            await store.close()

    assert asyncio.run(main()) == [f"{START}/good.example"]
