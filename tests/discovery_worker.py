"""A discovery process for the fleet tests: run as a script, prints one JSON line.

``python discovery_worker.py CONFIG_JSON`` with keys: redis (URL), mirror (SQLite
path), dns_port, https_port, ca_file, domains (list), mx (bool: also ask per MX).
Prints {"fetches": n, "enforce": n, "none": n, "states": {state: n}}.

Each domain's first fetch is awaited to its end (bounded by the fetch's own timeouts and
the lock's expiry), not ``first_wait``: these processes ask for hundreds of uncached
domains at once, and on a loaded machine a first fetch can outlast any fixed wait, after
which the answer is "pending" (correct, but not what the fleet tests count).  ``states``
says what the processes found, so that a shortfall names its cause.
"""

from __future__ import annotations

import asyncio
import json
import sys

#: An upper bound on one domain's first fetch, only there so that nothing waits forever
#: (the tests bound the whole process far below it anyway).
FETCH_BOUND = 120.0


async def main(options: dict[str, object]) -> dict[str, int]:
    from tlspolicy import StsMode
    from tlspolicy.discovery import Discovery, DiscoveryConfig, redis_cache

    config = DiscoveryConfig(resolver="127.0.0.1", resolver_port=int(options["dns_port"]),
                             probe_name="test.", https_port=int(options["https_port"]),
                             ca_file=str(options["ca_file"]), resolv_conf=None,
                             https_timeout=5.0, first_wait=10.0)
    store = await redis_cache(str(options["redis"]), str(options["mirror"]), timeout=1.0)
    domains = [str(d) for d in options["domains"]]  # type: ignore[attr-defined]
    limit = asyncio.Semaphore(64)
    counts = {"enforce": 0, "none": 0}
    states: dict[str, int] = {}
    async with Discovery(config, store=store) as discovery:
        async def one(domain: str) -> None:
            async with limit:
                # The shared fetch (this process's or the other's, through the store's
                # lock), however long it takes; then the answer an MTA would get.
                state = await discovery.sts_state(domain, wait=FETCH_BOUND)
                states[state.state] = states.get(state.state, 0) + 1
                destination = await discovery.destination(domain)
            policy = destination.mta_sts
            if policy is not None and policy.mode is StsMode.ENFORCE:
                counts["enforce"] += 1
            else:
                counts["none"] += 1

        await asyncio.gather(*(one(d) for d in domains))
        fetches = sum(discovery.fetches.values())
    await store.close()
    return {"fetches": fetches, **counts, "states": states}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))), flush=True)
