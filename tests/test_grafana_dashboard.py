"""The Grafana dashboard (contrib/grafana/tlspolicy.json) queries only metrics that exist.

A live daemon is started as an operator starts it (``serve socketmap --discovery
--metrics-listen``, against the signed DNS lab and the MTA-STS lab on loopback), asked
once through its socket, and its ``/metrics`` scraped: every metric name a panel's query
or a template variable uses must be one the daemon exposes. The dashboard's shape is
checked too, so that Grafana imports it: unique panel ids, every query on the dashboard's
data source variable, panels within the 24-column grid.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from discovery_support import free_port

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "contrib" / "grafana" / "tlspolicy.json"
DEADLINE = 30.0

PENDING: frozenset[str] = frozenset()
"""Metric names the dashboard uses that are added by pending work (none: the dashboard is
built on the metrics the daemon exposes today)."""

_METRIC = re.compile(r"\btlspolicy_[a-z_]+\b")
# The samples each metric type exposes, by suffix of the family's name.
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count",
                                                              "_created"),
             "gauge": ("",), "summary": ("", "_sum", "_count", "_created")}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text("utf-8"))
    return data


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def queries() -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and template variables."""
    data = dashboard()
    found = [t["expr"] for p in _panels(data["panels"]) for t in p.get("targets", [])]
    for variable in data["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            found.append(query["query"])
    return found


def used_metric_names() -> set[str]:
    return {name for expr in queries() for name in _METRIC.findall(expr)}


def test_dashboard_imports_cleanly() -> None:
    data = dashboard()
    panels = list(_panels(data["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel.get("description"), f"{panel['title']}: say what the panel shows"
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            # Every query is limited to the instances the variable selects.
            assert 'instance=~"$instance"' in target["expr"], target["expr"]
    names = [v["name"] for v in data["templating"]["list"]]
    assert names == ["datasource", "instance"]


def test_dashboard_covers_what_an_operator_watches() -> None:
    used = used_metric_names()
    for name in ("tlspolicy_socketmap_queries_total",            # answers by kind
                 "tlspolicy_socketmap_discovered_answers_total",  # ... and by rule
                 "tlspolicy_discovery_cache_lookups_total",       # cache hits
                 "tlspolicy_discovery_policy_fetches_total",      # fetch outcomes
                 "tlspolicy_discovery_policy_fetch_seconds_bucket",  # fetch latency
                 "tlspolicy_discovery_resolver_trusted"):         # resolver trust
        assert name in used, name


def _exposed(text: str) -> set[str]:
    """The sample names a scrape exposes, samples or not (a labelled counter nobody has
    incremented yet still has its HELP and TYPE lines)."""
    from prometheus_client.parser import text_string_to_metric_families

    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_every_metric_the_dashboard_queries_is_exposed_by_a_live_daemon(
        dns_lab: Any, https_lab: Any, tmp_path: Path) -> None:
    pytest.importorskip("prometheus_client")
    https_lab.reset()
    port, metrics_port = free_port(), free_port()
    conf = tmp_path / "postfix"
    conf.mkdir()
    (conf / "main.cf").write_text("compatibility_level = 3.6\n")
    (conf / "master.cf").write_text("smtp unix - - n - - smtp\n")
    out, err = tmp_path / "out", tmp_path / "err"
    command = [sys.executable, "-m", "tlspolicy", "serve", "socketmap", "--discovery",
               "--listen", f"127.0.0.1:{port}", "--metrics-listen", f"127.0.0.1:{metrics_port}",
               "--resolver", "127.0.0.1", "--resolver-port", str(dns_lab.port),
               "--probe-name", "test.", "--https-port", str(https_lab.port),
               "--ca-file", str(https_lab.ca_file), "--cache", str(tmp_path / "c.sqlite3"),
               "--postfix-version", "3.7.11", "--postfix-setting",
               "smtp_dns_support_level=dnssec", "--no-postfix-checks"]
    with out.open("wb") as o, err.open("wb") as e:
        process = subprocess.Popen(command, stdout=o, stderr=e)
    try:
        deadline = time.monotonic() + DEADLINE
        while "listening on" not in out.read_text():
            assert process.poll() is None, err.read_text()
            assert time.monotonic() < deadline, "the daemon did not start"
            time.sleep(0.1)
        import test_daemon_faults

        client = test_daemon_faults.Client(port)
        try:
            assert client.ask("ok.secure.test", "postfix").startswith(("OK ", "NOTFOUND"))
        finally:
            client.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                    timeout=10) as reply:
            exposed = _exposed(reply.read().decode())
    finally:
        process.terminate()
        process.wait(20)
    used = used_metric_names()
    assert used, "the dashboard queries no metric"
    missing = used - exposed - PENDING
    assert not missing, f"the dashboard queries metrics the daemon does not expose: {missing}"
    # A name listed as pending that the daemon now exposes must leave the list.
    assert not (PENDING & exposed), PENDING & exposed
