"""A discovery process for the fleet tests: run as a script, prints one JSON line.

``python discovery_worker.py CONFIG_JSON`` with keys: redis (URL), mirror (SQLite
path), dns_port, https_port, ca_file, domains (list), mx (bool: also ask per MX).
Prints {"fetches": n, "enforce": n, "none": n}.
"""

from __future__ import annotations

import asyncio
import json
import sys


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
    async with Discovery(config, store=store) as discovery:
        async def one(domain: str) -> None:
            async with limit:
                destination = await discovery.destination(domain)
            policy = destination.mta_sts
            if policy is not None and policy.mode is StsMode.ENFORCE:
                counts["enforce"] += 1
            else:
                counts["none"] += 1

        await asyncio.gather(*(one(d) for d in domains))
        fetches = sum(discovery.fetches.values())
    await store.close()
    return {"fetches": fetches, **counts}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))), flush=True)
