"""TLS-RPT reporting (RFC 8460, SEMANTICS section 12): an I/O layer around the pure
builder in :mod:`tlspolicy.policies.tlsrpt`.

- :mod:`.recording`: the sink API (``record(result)``) the drivers call, and a
  buffered sink writing counts to a :mod:`tlspolicy.stores` store;
- :mod:`.models`: the settings, built reports and their per-``rua`` delivery state;
- :mod:`.reports`: closing a period into one report per policy domain, once,
  even with several nodes (the store's lock), and delivering it to every
  ``rua`` with retries for up to 24 hours, each report delivered once;
- :mod:`.delivery`: what delivery needs, behind two small interfaces (DNS lookups,
  and a sender: HTTPS POST or a DKIM-signed mail through the library's smtplib
  driver).
"""

from __future__ import annotations

from .delivery import DiscoveryLookups, NoLookups, ReportLookups, ReportSender, Sender
from .models import (
    MEDIA_TYPE,
    REPORTS_NAMESPACE,
    Delivery,
    ReportingConfig,
    ReportingError,
    StoredReport,
)
from .recording import (
    DAY,
    RESULTS_NAMESPACE,
    BufferedSink,
    MemorySink,
    ResultSink,
    decode_results,
    encode_results,
    period_start,
)
from .reports import Reporter, period_results

__all__ = [
    "DAY",
    "MEDIA_TYPE",
    "REPORTS_NAMESPACE",
    "RESULTS_NAMESPACE",
    "BufferedSink",
    "Delivery",
    "DiscoveryLookups",
    "MemorySink",
    "NoLookups",
    "ReportLookups",
    "ReportSender",
    "Reporter",
    "ReportingConfig",
    "ReportingError",
    "ResultSink",
    "Sender",
    "StoredReport",
    "decode_results",
    "encode_results",
    "period_results",
    "period_start",
]
