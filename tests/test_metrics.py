"""Prometheus metrics: a real socketmap server, a real discovery run against the lab's
DNS and HTTPS servers, and the real HTTP endpoint scraped by the test."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from discovery_support import DnsLab, HttpsLab
from tlspolicy import TlsPolicyError
from tlspolicy.discovery import Discovery, DiscoveryConfig
from tlspolicy.policies.mtasts import FetchOutcome
from tlspolicy.postfix.answers import RULE_NAME_VALUES, RULE_NAMES
from tlspolicy.postfix.netstring import encode_netstring
from tlspolicy.servers import ListenError, SocketmapReply, SocketmapServer
from tlspolicy.servers.metric_definitions import METRIC_DEFINITIONS
from tlspolicy.servers.metrics import Metrics, MetricsServer, reply_level, start_metrics_server
from tlspolicy.stores import SqliteStore

pytestmark = pytest.mark.timeout(120)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(endpoint: MetricsServer | str) -> Samples:
    """GET /metrics over HTTP and parse the exposition format."""
    where = endpoint if isinstance(endpoint, str) else endpoint.listen_address
    with urllib.request.urlopen(f"http://{where}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def metrics() -> Iterator[tuple[Metrics, MetricsServer]]:
    m = Metrics()
    endpoint = start_metrics_server(m, "127.0.0.1", 0)
    try:
        yield m, endpoint
    finally:
        endpoint.stop()


def _lookup(name: str, key: str) -> SocketmapReply:
    if key == "bad":
        raise TlsPolicyError("bad key")
    if key == "crash":
        raise RuntimeError("bug")
    if key == "missing":
        return SocketmapReply.notfound()
    if key == "odd":
        return SocketmapReply.ok("whatever x=y")
    return SocketmapReply.ok("secure match=mx.example servername=hostname")


def _ask(port: int, *keys: str) -> list[str]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        answers = []
        for key in keys:
            sock.sendall(encode_netstring(f"default {key}".encode()))
            data = b""
            while not data.endswith(b","):
                chunk = sock.recv(65536)
                assert chunk, "server closed the connection"
                data += chunk
            answers.append(data.partition(b":")[2][:-1].decode())
        return answers


def test_every_defined_metric_is_exported(metrics: tuple[Metrics, MetricsServer]) -> None:
    m, endpoint = metrics

    async def main() -> Samples:
        async with SocketmapServer(lambda n, k: SocketmapReply.notfound()) as server:
            m.bind_server(server)
            m.cache_lookup("hit")
            m.policy_fetch(FetchOutcome.OK, 0.01)
            m.single_flight_wait("process")
            m.count_reply(SocketmapReply.notfound())
            m.count_rule("b")
            m.count_rule("not-a-rule")  # a fixed label set: counted as "other"
            m.count_unattributed("no-route")
            return await asyncio.to_thread(scrape, endpoint)

    samples = asyncio.run(main())
    names = {name for name, _ in samples}
    rules = {dict(labels).get("rule_name") for name, labels in samples
             if name == "tlspolicy_socketmap_discovered_answers_total"}
    assert rules == {"dane-hosts", "other"}
    for definition in METRIC_DEFINITIONS:
        wanted = definition.name + ("_count" if definition.kind == "histogram" else "")
        assert wanted in names, definition.name


def test_queries_by_status_and_level(metrics: tuple[Metrics, MetricsServer]) -> None:
    m, endpoint = metrics

    async def main() -> Samples:
        async with SocketmapServer(m.instrument(_lookup)) as server:
            port = server.address[1]
            answers = await asyncio.to_thread(_ask, port, "a.example", "a.example", "missing",
                                              "bad", "crash", "odd")
            assert [a.split(" ")[0] for a in answers] == ["OK", "OK", "NOTFOUND", "PERM",
                                                          "TEMP", "OK"]
            return await asyncio.to_thread(scrape, endpoint)

    s = asyncio.run(main())
    q = "tlspolicy_socketmap_queries_total"
    assert value(s, q, status="OK", level="secure") == 2
    assert value(s, q, status="OK", level="other") == 1
    assert value(s, q, status="NOTFOUND", level="") == 1
    assert value(s, q, status="PERM", level="") == 1
    assert value(s, q, status="TEMP", level="") == 1


def test_rule_names_are_readable_and_fixed() -> None:
    m = Metrics()
    for rule in ("a", "b", "c", "d", "e", *RULE_NAME_VALUES, "z", "sts-enforce"):
        m.count_rule(rule)
    got = {labels["rule_name"]: sample for _n, labels, sample in (
        (s.name, s.labels, s.value) for f in m.registry.collect() for s in f.samples
        if s.name == "tlspolicy_socketmap_discovered_answers_total")}
    assert got == {**{name: 1.0 for name in RULE_NAME_VALUES}, "other": 1.0,
                   "sts-enforce-insecure-mx": 2.0, "dane-hosts": 2.0,
                   "dane-mixed-hosts": 2.0, "sts-enforce": 3.0, "configuration": 2.0}
    # One mapping, letter -> name, and every name is a word a reader understands.
    assert set(RULE_NAMES) == set("abcde")
    assert all(re.fullmatch(r"[a-z]+(-[a-z]+)*", name) for name in RULE_NAME_VALUES)
    definition = next(d for d in METRIC_DEFINITIONS
                      if d.name == "tlspolicy_socketmap_discovered_answers_total")
    assert definition.labels == ("rule_name",)
    assert all(name in definition.help for name in RULE_NAME_VALUES)


def test_temp_answers_by_cause(metrics: tuple[Metrics, MetricsServer]) -> None:
    """TEMP answers the server gives itself (answer deadline, a cancelled lookup, a lookup
    that fails) are counted by cause, and as TEMP queries."""
    m, endpoint = metrics

    async def slow() -> SocketmapReply:
        await asyncio.sleep(30)
        return SocketmapReply.ok("may")

    async def cancelled() -> SocketmapReply:
        raise asyncio.CancelledError

    async def fails() -> SocketmapReply:
        raise RuntimeError("bug")

    def lookup(name: str, key: str) -> Any:
        return {"slow": slow, "cancelled": cancelled, "fails": fails}[key]() \
            if key in ("slow", "cancelled", "fails") else _lookup(name, key)

    async def main() -> Samples:
        async with SocketmapServer(m.instrument(lookup), answer_timeout=0.3) as server:
            m.bind_server(server)
            port = server.address[1]
            answers = await asyncio.to_thread(_ask, port, "slow", "cancelled", "fails",
                                              "crash", "a.example")
            assert [a.split(" ")[0] for a in answers] == ["TEMP"] * 4 + ["OK"]
            assert server.temp_causes == {"deadline": 1, "cancellation": 1, "internal": 2}
            return await asyncio.to_thread(scrape, endpoint)

    s = asyncio.run(main())
    t = "tlspolicy_socketmap_temp_replies_total"
    assert value(s, t, cause="deadline") == 1
    assert value(s, t, cause="cancellation") == 1
    assert value(s, t, cause="internal") == 2
    assert value(s, t, cause="store") == 0 and (t, (("cause", "store"),)) in s
    # Every TEMP answer is a TEMP query, the ones no reply came back for included.
    assert value(s, "tlspolicy_socketmap_queries_total", status="TEMP", level="") == 4
    assert value(s, "tlspolicy_socketmap_queries_total", status="OK", level="secure") == 1


def test_reply_level_never_invents_labels() -> None:
    assert reply_level(SocketmapReply.ok("dane-only")) == "dane-only"
    assert reply_level(SocketmapReply.ok("x" * 500)) == "other"
    assert reply_level(SocketmapReply.temp("why")) == ""


def test_connections_evictions_and_reloads(metrics: tuple[Metrics, MetricsServer]) -> None:
    m, endpoint = metrics
    calls = {"n": 0}

    def factory() -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise TlsPolicyError("broken configuration")
        return m.instrument(_lookup)

    async def main() -> tuple[Samples, Samples]:
        server = SocketmapServer(factory(), max_connections=2, reload=factory)
        async with server:
            m.bind_server(server)
            port = server.address[1]
            socks = []
            for _ in range(3):
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                socks.append(sock)
                for _ in range(100):
                    await asyncio.sleep(0.01)
                    if server.accepted_connections == len(socks):
                        break
            assert await server.reload() is False
            assert await server.reload() is True
            during = await asyncio.to_thread(scrape, endpoint)
            for sock in socks:
                sock.close()
            for _ in range(200):
                await asyncio.sleep(0.01)
                if server.active_connections == 0:
                    break
            after = await asyncio.to_thread(scrape, endpoint)
            return during, after

    during, after = asyncio.run(main())
    assert value(during, "tlspolicy_socketmap_connections_open") == 2
    assert value(during, "tlspolicy_socketmap_connections_accepted_total") == 3
    assert value(during, "tlspolicy_socketmap_connections_evicted_total") == 1
    assert value(during, "tlspolicy_socketmap_reloads_total", result="ok") == 1
    assert value(during, "tlspolicy_socketmap_reloads_total", result="failed") == 1
    assert value(during, "tlspolicy_socketmap_reloads_total", result="timeout") == 0
    assert value(after, "tlspolicy_socketmap_connections_open") == 0


def test_registry_is_not_the_global_one() -> None:
    from prometheus_client import REGISTRY

    a, b = Metrics(), Metrics()
    assert a.registry is not REGISTRY and a.registry is not b.registry
    a.cache_lookup("hit")
    assert b.registry.get_sample_value("tlspolicy_discovery_cache_lookups_total",
                                       {"result": "hit"}) in (None, 0.0)


def test_metrics_endpoint_refuses_non_loopback_without_allow_remote() -> None:
    with pytest.raises(ListenError, match="not a loopback address"):
        start_metrics_server(Metrics(), "192.0.2.1", 0)
    with pytest.raises(ListenError, match="not an IP address"):
        start_metrics_server(Metrics(), "localhost", 0)


# ------------------------------------------------------ discovery feeds the counters


def _config(dns: DnsLab, web: HttpsLab) -> DiscoveryConfig:
    return DiscoveryConfig(resolver="127.0.0.1", resolver_port=dns.port, probe_name="test.",
                           https_port=web.port, ca_file=str(web.ca_file), https_timeout=3.0,
                           first_wait=5.0, resolv_conf=None, dns_timeout=2.0)


def test_a_real_discovery_run_moves_the_counters(
        dns_lab: DnsLab, https_lab: HttpsLab, tmp_path: Path,
        metrics: tuple[Metrics, MetricsServer]) -> None:
    https_lab.reset()
    m, endpoint = metrics
    config = _config(dns_lab, https_lab)

    async def main() -> Samples:
        async with Discovery(config, store=SqliteStore(tmp_path / "a.sqlite3"),
                             close_store=True, observer=m) as d:
            assert (await d.sts_state("ok.secure.test")).state == "policy"  # miss, fetch
            assert (await d.sts_state("ok.secure.test")).state == "policy"  # hit
            for case in ("wrongname", "invalid", "notfound", "noaddress"):
                await d.sts_state(f"{case}.secure.test")
            # 30 concurrent first lookups of one domain: one fetch, the others wait for it.
            await asyncio.gather(*(d.sts_state("single.secure.test") for _ in range(30)))
        # Two processes' worth of instances sharing one store: the second waits on the lock.
        shared = tmp_path / "shared.sqlite3"
        a = Discovery(config, store=SqliteStore(shared), close_store=True, observer=m)
        b = Discovery(config, store=SqliteStore(shared), close_store=True, observer=m)
        await a.start()
        await b.start()
        try:
            await asyncio.gather(a.sts_state("coldslow.secure.test"),
                                 b.sts_state("coldslow.secure.test"))
        finally:
            await a.close()
            await b.close()
        return await asyncio.to_thread(scrape, endpoint)

    s = asyncio.run(main())
    f = "tlspolicy_discovery_policy_fetches_total"
    assert value(s, f, outcome="ok", tlsrpt_type="") == 3  # ok, single, coldslow
    assert value(s, f, outcome="webpki-invalid", tlsrpt_type="sts-webpki-invalid") == 1
    assert value(s, f, outcome="invalid", tlsrpt_type="sts-policy-invalid") == 1
    assert value(s, f, outcome="fetch-error", tlsrpt_type="sts-policy-fetch-error") == 2
    # Every HTTPS request is timed; noaddress made none.
    assert value(s, "tlspolicy_discovery_policy_fetch_seconds_count") == 6
    assert value(s, "tlspolicy_discovery_policy_fetch_seconds_sum") > 0
    c = "tlspolicy_discovery_cache_lookups_total"
    assert value(s, c, result="hit") >= 1
    assert value(s, c, result="miss") >= 7
    w = "tlspolicy_discovery_single_flight_waits_total"
    assert value(s, w, scope="process") == 29
    assert value(s, w, scope="store") == 1
    assert https_lab.fetches("single.secure.test") == 1
    assert https_lab.fetches("coldslow.secure.test") == 1


# ------------------------------------------------------------- the command line

_SCRIPT = """
import sys
from tlspolicy.cli import main
raise SystemExit(main(sys.argv[1:]))
"""

CONFIG = """
[global]
tls = "required"
tls_verify = "host"
"""


def test_serve_socketmap_metrics_listen(tmp_path: Path) -> None:
    config = tmp_path / "policy.toml"
    config.write_text(CONFIG)
    process = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, "serve", "socketmap", "--listen", "127.0.0.1:0",
         "--metrics-listen", "127.0.0.1:0", "--postfix-version", "3.7.11",
         "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(lines) < 2:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
        assert len(lines) == 2, (lines, process.stderr.read() if process.stderr else "")
        metrics_at = lines[0].removeprefix("metrics on http://").removesuffix("/metrics")
        port = int(lines[1].rpartition(":")[2])
        answers = _ask(port, "example.com", "example.org")
        assert all(a.startswith("OK ") for a in answers)
        level = answers[0].split(" ")[1]
        s = scrape(metrics_at)
        assert value(s, "tlspolicy_socketmap_queries_total", status="OK", level=level) == 2
        assert value(s, "tlspolicy_socketmap_connections_accepted_total") == 1
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err


def test_serve_refuses_remote_metrics_without_allow_remote(tmp_path: Path) -> None:
    config = tmp_path / "policy.toml"
    config.write_text(CONFIG)
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, "serve", "socketmap", "--listen", "127.0.0.1:0",
         "--metrics-listen", "192.0.2.1:0", "--postfix-version", "3.7.11",
         "--config", str(config)],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "refusing to serve metrics" in result.stderr
    assert "Traceback" not in result.stderr


def test_docs_metrics_table_lists_every_metric() -> None:
    import importlib.util

    path = Path(__file__).parent.parent / "docs" / "hooks" / "tables.py"
    spec = importlib.util.spec_from_file_location("docs_hook_tables_metrics", path)
    assert spec is not None and spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    table = hook.metrics_table()
    for definition in METRIC_DEFINITIONS:
        assert f"| `{definition.name}` | {definition.kind} |" in table
    page = (path.parent.parent / "metrics.md").read_text()
    assert "<!-- generated: metrics -->" in page


def test_docs_rule_names_table_is_generated_from_the_mapping() -> None:
    import importlib.util

    path = Path(__file__).parent.parent / "docs" / "hooks" / "tables.py"
    spec = importlib.util.spec_from_file_location("docs_hook_tables_rule_names", path)
    assert spec is not None and spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    table = hook.rule_names_table()
    for letter, name in RULE_NAMES.items():
        assert f"| `{name}` | ({letter}) |" in table
    for name in RULE_NAME_VALUES:
        assert f"| `{name}` |" in table
    page = (path.parent.parent / "metrics.md").read_text()
    assert "<!-- generated: rule-names -->" in page
