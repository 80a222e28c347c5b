"""Prometheus metrics for the socketmap server and discovery (``prometheus_client``).

:class:`Metrics` owns its own :class:`~prometheus_client.CollectorRegistry` (never
the process-global one, so embedding the library never mixes its metrics with the
application's, and two servers in one process do not collide).  It counts:

- socketmap queries by reply status and Postfix policy level, by wrapping the
  lookup (:meth:`Metrics.instrument`), so the server's answer path is unchanged;
- connections open, accepted and evicted, and reloads by result, read from a
  bound :class:`~tlspolicy.servers.SocketmapServer` at scrape time;
- discovery's cache lookups, policy fetches (by outcome and TLS-RPT result type),
  fetch latency and single-flight waits, as the
  :class:`~tlspolicy.discovery.DiscoveryObserver` passed to ``Discovery``.

:func:`start_metrics_server` exposes the registry over HTTP; like the socketmap
listener, a non-loopback address is refused unless allowed explicitly.

Needs the ``tlspolicy[daemon]`` extra.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Final

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector

from ..discovery.models import DiscoveryObserver
from ..errors import TlsPolicyError
from ..policies.mtasts import FetchOutcome
from ..postfix.answers import RULE_NAME_VALUES, RULE_NAMES
from .metric_definitions import (
    FETCH_SECONDS_BUCKETS,
    METRIC_DEFINITIONS,
    POSTFIX_LEVELS,
    TEMP_CAUSES,
)
from .socketmap import (
    ListenError,
    Lookup,
    LookupFactory,
    SocketmapReply,
    SocketmapServer,
    format_address,
    is_loopback_address,
)

__all__ = [
    "Metrics",
    "MetricsServer",
    "reply_level",
    "start_metrics_server",
]

log = logging.getLogger(__name__)

_BY_NAME: Final = {d.name: d for d in METRIC_DEFINITIONS}


def reply_level(reply: SocketmapReply) -> str:
    """The ``level`` label of a reply: the Postfix level of an OK answer, else ``""``."""
    if reply.status.value != "OK":
        return ""
    word = reply.text.split(" ", 1)[0]
    return word if word in POSTFIX_LEVELS else "other"


def _counter_base(name: str) -> str:
    # prometheus_client appends _total itself.
    return name.removesuffix("_total")


class _ServerCollector(Collector):
    """Reads the bound server's connection and reload counts at scrape time."""

    def __init__(self) -> None:
        self.server: SocketmapServer | None = None

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        server = self.server
        if server is None:
            return
        d = _BY_NAME
        name = "tlspolicy_socketmap_connections_open"
        yield GaugeMetricFamily(name, d[name].help, value=server.active_connections)
        name = "tlspolicy_socketmap_connections_accepted_total"
        yield CounterMetricFamily(_counter_base(name), d[name].help,
                                  value=server.accepted_connections)
        name = "tlspolicy_socketmap_connections_evicted_total"
        yield CounterMetricFamily(_counter_base(name), d[name].help,
                                  value=server.evicted_connections)
        name = "tlspolicy_socketmap_reloads_total"
        reloads = CounterMetricFamily(_counter_base(name), d[name].help, labels=["result"])
        for result, count in dict(server.reload_results).items():
            reloads.add_metric([result], count)
        yield reloads


class Metrics(DiscoveryObserver):
    """The metrics of one server process, in a registry of their own (:attr:`registry`).

    Wrap the lookup factory with :meth:`instrument_factory` (or one lookup with
    :meth:`instrument`), :meth:`bind_server` the running server, and pass the
    instance as ``Discovery(observer=...)``.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        d = _BY_NAME
        self.queries = self._counter("tlspolicy_socketmap_queries_total")
        self.temp_replies = self._counter("tlspolicy_socketmap_temp_replies_total")
        for cause in TEMP_CAUSES:  # exported at 0 from the start: alerts see no gap
            self.temp_replies.labels(cause)
        self.discovered = self._counter("tlspolicy_socketmap_discovered_answers_total")
        self.cache_lookups = self._counter("tlspolicy_discovery_cache_lookups_total")
        self.fetches = self._counter("tlspolicy_discovery_policy_fetches_total")
        name = "tlspolicy_discovery_policy_fetch_seconds"
        self.fetch_seconds = Histogram(name, d[name].help, registry=self.registry,
                                       buckets=FETCH_SECONDS_BUCKETS)
        self.single_flight_waits = self._counter(
            "tlspolicy_discovery_single_flight_waits_total")
        name = "tlspolicy_discovery_resolver_trusted"
        self.resolver_trusted = Gauge(name, d[name].help, registry=self.registry)
        self.unattributed = self._counter("tlspolicy_socketmap_unattributed_nexthops_total")
        self.dns_suppressed = self._counter("tlspolicy_discovery_dns_lookups_suppressed_total")
        self._server = _ServerCollector()
        self.registry.register(self._server)

    def _counter(self, name: str) -> Counter:
        """The counter ``name`` of the metric table, with its labels, in :attr:`registry`."""
        spec = _BY_NAME[name]
        return Counter(_counter_base(name), spec.help, list(spec.labels),
                       registry=self.registry)

    # -- socketmap

    def bind_server(self, server: SocketmapServer) -> None:
        """Export ``server``'s connection and reload counts (the latest bound wins) and
        count the ``TEMP`` answers it gives itself."""
        self._server.server = server
        server.on_temp = self._server_temp

    def _server_temp(self, cause: str) -> None:
        # The server answered TEMP itself: past its deadline or after a cancellation no
        # reply came back through the instrumented lookup, so the query is counted here;
        # a lookup that raised was counted by the instrument already.
        if cause in ("deadline", "cancellation"):
            self.queries.labels("TEMP", "").inc()
        self.count_temp(cause)

    def count_temp(self, cause: str) -> None:
        """Count one ``TEMP`` answer by cause (:data:`TEMP_CAUSES`; any other: ``other``)."""
        self.temp_replies.labels(cause if cause in TEMP_CAUSES else "other").inc()

    def count_reply(self, reply: SocketmapReply) -> None:
        """Count one answered query."""
        self.queries.labels(reply.status.value, reply_level(reply)).inc()

    def count_rule(self, rule: str) -> None:
        """Count one answer with discovery by its rule name (a letter ``a`` to ``e`` is
        named as :data:`~tlspolicy.postfix.answers.RULE_NAMES` names it; anything else is
        ``other``, so the label set stays fixed)."""
        name = RULE_NAMES.get(rule, rule)
        self.discovered.labels(name if name in RULE_NAME_VALUES else "other").inc()

    def instrument(self, lookup: Lookup) -> Lookup:
        """``lookup`` counting every reply; errors are counted as the server answers them
        (a :class:`~tlspolicy.TlsPolicyError` as PERM, anything else as TEMP) and re-raised."""
        queries = self.queries

        def count(reply: object) -> None:
            if isinstance(reply, SocketmapReply):
                queries.labels(reply.status.value, reply_level(reply)).inc()

        def count_error(exc: Exception) -> None:
            queries.labels("PERM" if isinstance(exc, TlsPolicyError) else "TEMP", "").inc()

        def counted(map_name: str, key: str) -> SocketmapReply | Awaitable[SocketmapReply]:
            try:
                reply = lookup(map_name, key)
            except Exception as exc:
                count_error(exc)
                raise
            if isinstance(reply, SocketmapReply):
                count(reply)
                return reply
            return _counted_later(reply)

        async def _counted_later(pending: Awaitable[SocketmapReply]) -> SocketmapReply:
            # An awaitable answer (discovery) is counted when it is known.
            try:
                reply = await pending
            except Exception as exc:
                count_error(exc)
                raise
            count(reply)
            return reply

        counted.__wrapped__ = lookup  # type: ignore[attr-defined]  # what it counts
        return counted

    def instrument_factory(self, factory: LookupFactory) -> LookupFactory:
        """``factory`` whose every lookup (first load and reloads) is instrumented."""
        def build() -> Lookup:
            return self.instrument(factory())

        return build

    # -- discovery (DiscoveryObserver)

    def cache_lookup(self, result: str) -> None:
        """Count one MTA-STS cache lookup."""
        self.cache_lookups.labels(result).inc()

    def policy_fetch(self, outcome: FetchOutcome, seconds: float | None) -> None:
        """Count one policy fetch and observe its duration."""
        self.fetches.labels(outcome.value, outcome.tlsrpt_result_type or "").inc()
        if seconds is not None:
            self.fetch_seconds.observe(seconds)

    def single_flight_wait(self, scope: str) -> None:
        """Count one wait for somebody else's fetch."""
        self.single_flight_waits.labels(scope).inc()

    def resolver_trust(self, trusted: bool) -> None:
        """Set the resolver trust gauge."""
        self.resolver_trusted.set(1 if trusted else 0)

    # -- routes

    def count_unattributed(self, reason: str) -> None:
        """Count one next-hop key no route names, by reason."""
        known = ("no-route", "route-loss-accepted", "ip-literal")
        self.unattributed.labels(reason if reason in known else "other").inc()

    def dns_lookup_suppressed(self) -> None:
        """Count one DNS lookup held back by its failure backoff."""
        self.dns_suppressed.inc()


@attrs.define
class MetricsServer:
    """A running metrics endpoint; :meth:`stop` ends it."""

    host: str
    port: int
    _server: object
    _thread: threading.Thread

    @property
    def listen_address(self) -> str:
        """``host:port`` as an operator writes it."""
        return format_address(self.host, self.port)

    def stop(self) -> None:
        """Stop serving and close the socket."""
        shutdown: Callable[[], None] = self._server.shutdown  # type: ignore[attr-defined]
        shutdown()
        self._server.server_close()  # type: ignore[attr-defined]
        self._thread.join(5.0)


def start_metrics_server(metrics: Metrics, host: str, port: int, *,
                         allow_remote: bool = False) -> MetricsServer:
    """Serve ``metrics`` in the Prometheus text format at ``http://host:port/metrics``.

    The endpoint runs in a daemon thread.  ``host`` must be an IP address; one
    that is not loopback raises :class:`~tlspolicy.servers.ListenError` unless
    ``allow_remote`` (the endpoint has no authentication and tells anyone which
    domains fail).  Port 0 picks a free port (see :attr:`MetricsServer.port`).
    """
    wanted = format_address(host, port)
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        raise ListenError(f"cannot serve metrics on {wanted}: {host!r} is not an IP "
                          "address") from None
    if not is_loopback_address(host):
        if not allow_remote:
            raise ListenError(
                f"refusing to serve metrics on {wanted}: not a loopback address, and the "
                "endpoint has no authentication; use 127.0.0.1 or ::1, or allow it "
                "explicitly (--allow-remote)")
        log.warning("metrics: serving on the non-loopback address %s as allowed; restrict "
                    "who can reach it (firewall)", wanted)
    try:
        server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        raise ListenError(f"cannot serve metrics on {wanted}: {exc.strerror or exc}") from None
    bound = server.server_address
    log.info("metrics: serving on http://%s/metrics", format_address(host, int(bound[1])))
    return MetricsServer(host, int(bound[1]), server, thread)
