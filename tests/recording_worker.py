"""A separate recording process for the fleet test: records N results into Redis.

Usage: python recording_worker.py REDIS_URL DOMAIN N
"""

from __future__ import annotations

import sys

from tlspolicy.policies.tlsrpt import PolicyType, SessionResult
from tlspolicy.reporting import BufferedSink
from tlspolicy.stores.redis import RedisStore


def main() -> int:
    url, domain, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ok = SessionResult(PolicyType.NO_POLICY_FOUND, domain)
    bad = SessionResult(PolicyType.NO_POLICY_FOUND, domain,
                        result_type="starttls-not-supported", receiving_ip="127.0.0.1",
                        receiving_mx_hostname=f"mx.{domain}")
    with BufferedSink(lambda: RedisStore.connect(url, prefix="tlsrpt-test:"),
                      flush_interval=0.05) as sink:
        for n in range(count):
            sink.record(ok if n % 4 else bad)
            if n % 100 == 0:
                sink.flush()
    print(sink.flushed, sink.store_errors, sink.dropped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
