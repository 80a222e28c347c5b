"""What the daemon's Prometheus metrics are: names, types, labels and meanings, and the
fixed label values.  :mod:`tlspolicy.servers.metrics` counts with them; import them from here.

No extra is needed to read this module: the documentation's metrics table is built
from :data:`METRIC_DEFINITIONS`, and a dashboard test checks its queries against it.
"""

from __future__ import annotations

from typing import Final

import attrs

from ..postfix.answers import OWN_LEVEL_RULE, RULE_NAMES, STS_TESTING_RULE
from .socketmap import RELOAD_RESULTS

__all__ = [
    "FETCH_SECONDS_BUCKETS",
    "METRIC_DEFINITIONS",
    "POSTFIX_LEVELS",
    "TEMP_CAUSES",
    "MetricDefinition",
]

#: Postfix's TLS security levels (postconf(5), ``smtp_tls_security_level``): the
#: ``level`` label of an OK answer is its first word when it is one of these,
#: ``other`` otherwise, so a lookup can never create unbounded label values.
POSTFIX_LEVELS: Final = frozenset(
    {"none", "may", "encrypt", "dane", "dane-only", "fingerprint", "verify", "secure"})

#: Causes of TEMP answers (the ``cause`` label): the server's own, then the lookup's.
TEMP_CAUSES: Final = ("deadline", "cancellation", "store", "internal")

#: Histogram buckets of the policy fetch latency, in seconds: loopback fetches
#: take milliseconds, the default HTTPS timeout is 10 s.
FETCH_SECONDS_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                                30.0)


@attrs.frozen(slots=True)
class MetricDefinition:
    """One exported metric: its name as scraped, type, labels and meaning."""

    name: str
    kind: str
    labels: tuple[str, ...]
    help: str


#: Every metric :class:`Metrics` exports (the documentation's table is built from this).
METRIC_DEFINITIONS: Final = (
    MetricDefinition(
        "tlspolicy_socketmap_queries_total", "counter", ("status", "level"),
        "Socketmap lookups answered, by reply status (OK, NOTFOUND, TEMP, TIMEOUT, PERM) "
        "and, for OK, the Postfix policy level of the answer (empty otherwise)"),
    MetricDefinition(
        "tlspolicy_socketmap_temp_replies_total", "counter", ("cause",),
        "TEMP answers (Postfix defers) by cause: deadline (no answer within the answer "
        "deadline, or no MTA-STS state by it where one was needed), cancellation (the "
        "lookup was cancelled under the server), store (neither the MX lookup nor the "
        "MTA-STS cache could be read), internal (the lookup failed)"),
    MetricDefinition(
        "tlspolicy_socketmap_discovered_answers_total", "counter", ("rule_name",),
        "Answers with discovery (serve --discovery) by the rule that gave them "
        "(SEMANTICS 11): " + "; ".join(
            f"{RULE_NAMES[letter]} ({letter}: {what})" for letter, what in (
                ("a", "secure, MTA-STS enforce behind an unsigned MX RRset"),
                ("b", "dane-only or dane, every host with TLSA records or unknown"),
                ("c", "dane or dane-only, some hosts with TLSA records"),
                ("d", "secure from an MTA-STS enforce policy"),
                ("e", "the operator's mapping"))) +
        f"; {STS_TESTING_RULE} (e with a testing-mode policy's attributes); "
        f"{OWN_LEVEL_RULE} (drop-in NOTFOUND: Postfix's own level stands); other"),
    MetricDefinition(
        "tlspolicy_socketmap_connections_open", "gauge", (),
        "Socketmap client connections open now"),
    MetricDefinition(
        "tlspolicy_socketmap_connections_accepted_total", "counter", (),
        "Socketmap client connections accepted since start"),
    MetricDefinition(
        "tlspolicy_socketmap_connections_evicted_total", "counter", (),
        "Socketmap connections closed to make room for a new one (connection limits)"),
    MetricDefinition(
        "tlspolicy_socketmap_reloads_total", "counter", ("result",),
        "Configuration reloads (SIGHUP) by result: " + ", ".join(RELOAD_RESULTS)),
    MetricDefinition(
        "tlspolicy_discovery_cache_lookups_total", "counter", ("result",),
        "MTA-STS states asked of the discovery cache: hit (fresh), stale (a held policy "
        "served while it is refreshed), miss (nothing usable held)"),
    MetricDefinition(
        "tlspolicy_discovery_policy_fetches_total", "counter", ("outcome", "tlsrpt_type"),
        "MTA-STS policy fetches by outcome (ok, fetch-error, invalid, webpki-invalid) and "
        "TLS-RPT result type (empty for ok)"),
    MetricDefinition(
        "tlspolicy_discovery_policy_fetch_seconds", "histogram", (),
        "Duration of the HTTPS request of MTA-STS policy fetches"),
    MetricDefinition(
        "tlspolicy_discovery_single_flight_waits_total", "counter", ("scope",),
        "Lookups that waited for a fetch started by someone else: process (another task), "
        "store (another process holding the store's lock)"),
    MetricDefinition(
        "tlspolicy_discovery_resolver_trusted", "gauge", (),
        "1 while the discovery resolver validates DNSSEC (its probe name came back with AD "
        "set), 0 while DANE inputs are unknown"),
    MetricDefinition(
        "tlspolicy_socketmap_unattributed_nexthops_total", "counter", ("reason",),
        "Next-hop keys ([host]:port) no route names, answered with the host's own policy, "
        "each key once per loaded policy, by reason: no-route, route-loss-accepted (a route "
        "source could not be read and its loss was accepted), ip-literal (an IP-literal "
        "recipient)"),
    MetricDefinition(
        "tlspolicy_discovery_dns_lookups_suppressed_total", "counter", (),
        "DNS lookups not sent because the same name and type failed moments ago "
        "(SERVFAIL, timeout) and is in its backoff; the failure was the answer"),
)
