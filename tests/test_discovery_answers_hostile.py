"""Discovery answers under hostile or failing inputs (SEMANTICS 11 and the project's rule that
strangers' DNS, policy documents and socket clients never hang, starve or crash anything).

Real servers only: the signed zones through NSD + validating Unbound, the HTTPS policy lab, a
silent UDP socket on loopback as a resolver that never answers, and the socketmap server.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from discovery_support import DnsLab, HttpsLab, PolicyAnswer, free_port
from test_discovery import Env, enforce
from test_discovery_answers import CONFIG, _serve, answers, ask, lookup_for
from tlspolicy import Action, Resolver, loads_toml
from tlspolicy.servers.socketmap import SocketmapServer
from tlspolicy.stores.redis import RedisStore

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def env(dns_lab: DnsLab, https_lab: HttpsLab, tmp_path: Path) -> Env:
    https_lab.reset()
    return Env(dns_lab, https_lab, tmp_path)


def _silent_udp() -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


def _request(key: str, map_name: str = "default") -> bytes:
    data = f"{map_name} {key}".encode()
    return f"{len(data)}:".encode() + data + b","


async def _reply(reader: asyncio.StreamReader) -> str:
    size = int((await reader.readuntil(b":"))[:-1])
    return (await reader.readexactly(size + 1))[:-1].decode()


def test_one_lookup_running_out_of_time_never_cancels_another_connections_answer(
        env: Env) -> None:
    """Two connections ask for one domain while its DNS never answers: the first one's
    deadline passes while the second still waits on the same (shared) DNS query.  The
    second must still get its own answer, within its own deadline."""
    sock, port = _silent_udp()
    try:
        async def main() -> tuple[str, str]:
            discovery = env.discovery(resolver_port=port, dns_timeout=6.0, first_wait=0.2)
            lookup = lookup_for(discovery, deadline=1.0)
            try:
                async with SocketmapServer(lookup) as server:
                    first = await asyncio.open_connection(*server.address)
                    second = await asyncio.open_connection(*server.address)
                    first[1].write(_request("twomx.secure.test"))
                    await asyncio.sleep(0.5)
                    second[1].write(_request("twomx.secure.test"))
                    one = await asyncio.wait_for(_reply(first[0]), 5.0)
                    two = await asyncio.wait_for(_reply(second[0]), 5.0)
                    for _, writer in (first, second):
                        writer.close()
                    return one, two
            finally:
                await discovery.close()

        one, two = asyncio.run(main())
    finally:
        sock.close()
    # MX unknown, no cached policy: the configuration alone, never TEMP, for both; DANE
    # inputs are unknown, never insecure, so may becomes dane (SEMANTICS 10).
    assert (one, two) == ("OK dane", "OK dane")


def _answer(env: Env, key: str, config: str = CONFIG, **kwargs: Any) -> Any:
    async def main() -> Any:
        async with env.discovery() as discovery:
            return await lookup_for(discovery, config, **kwargs).answer("default", key)

    return asyncio.run(main())


def test_mx_hosts_beyond_the_judged_ones_never_get_a_weaker_answer(env: Env) -> None:
    """33 MX hosts, usable TLSA at the first 32 only, TLS required by the operator: the
    33rd host is not judged, and 'dane' would let Postfix use it without TLS."""
    config = CONFIG + '\n[[domain]]\nname = "manymx.secure.test"\ntls = "required"\n'
    got = answers(env, ["manymx.secure.test"], config=config)
    assert got == {"manymx.secure.test": "OK dane-only"}


def test_dane_hosts_an_enforce_policy_does_not_permit_are_never_used(env: Env) -> None:
    """MTA-STS still filters MX hosts under DANE (SEMANTICS 5): tlspolicy never uses a
    host with usable TLSA that the enforce policy in force does not permit.  'dane-only'
    would let Postfix deliver to it; with no other DANE host to protect, the policy's
    'secure' answer (MX hosts filtered from 3.10.5) is the never-weaker one."""
    resolver = Resolver(loads_toml(CONFIG))

    async def decide() -> Any:
        async with env.discovery() as discovery:
            destination = await discovery.destination("danestray.secure.test",
                                                      "mx.danestray.secure.test")
            return resolver.resolve("danestray.secure.test",
                                    mx_host="mx.danestray.secure.test",
                                    destination=destination)

    assert asyncio.run(decide()).plan is Action.FAIL
    got = answers(env, ["danestray.secure.test"], version=(3, 10, 5))
    assert got["danestray.secure.test"].startswith(
        "OK secure match=mx.elsewhere.test servername=hostname policy_type=sts")
    assert "mx_host_pattern=mx.elsewhere.test" in got["danestray.secure.test"]


def test_dane_hosts_partly_outside_an_enforce_policy_are_a_reported_loss(env: Env) -> None:
    """One DANE host permitted, one not: no Postfix level both verifies by DANE and skips
    the other host, so the answer stays dane-only (DANE first) and says what is lost."""
    answer = _answer(env, "danesplit.secure.test", version=(3, 10, 5))
    assert answer.policy.text() == "dane-only"
    loss = next(w for w in answer.warnings if w.code == "sts-mx-not-filtered")
    assert "mxb.danesplit.secure.test" in loss.message


def test_a_smart_host_outside_its_own_enforce_policy_is_not_used(env: Env) -> None:
    # The smart host is its own policy domain; a policy naming only other hosts rules it out.
    env.web.set("relay.secure.test", PolicyAnswer(enforce("relay.secure.test")))
    got = answers(env, ["[relay.secure.test]:587"])
    assert got["[relay.secure.test]:587"].startswith("OK secure match=.relay.secure.test")


def test_stop_and_client_close_while_answers_are_pending_log_nothing(
        env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """Clients that close while their answer is pending, and a server stopped while others
    wait: no exception logged, no task left pending or destroyed, DNS still never answering."""
    sock, port = _silent_udp()
    caplog.set_level(logging.WARNING)
    try:
        async def main() -> list[str]:
            discovery = env.discovery(resolver_port=port, dns_timeout=3.0, first_wait=2.0)
            discovery.dnssec = True
            lookup = lookup_for(discovery, deadline=5.0)
            async with SocketmapServer(lookup) as server:
                for n in range(5):  # closes at once, answer pending
                    reader, writer = await asyncio.open_connection(*server.address)
                    writer.write(_request(f"gone{n}.secure.test"))
                    await writer.drain()
                    writer.close()
                waiting = []
                for n in range(5):  # still waiting when the server stops
                    reader, writer = await asyncio.open_connection(*server.address)
                    writer.write(_request(f"wait{n}.secure.test") + _request("secure.test"))
                    waiting.append((reader, writer))
                await asyncio.sleep(0.5)
                assert server._pending
            got = [(await asyncio.wait_for(reader.read(), 5.0)).decode()
                   for reader, _ in waiting]
            for _, writer in waiting:
                writer.close()
            await discovery.close()
            current = asyncio.current_task()
            left = [t for t in asyncio.all_tasks() if t is not current]
            assert not left, left
            return got

        got = asyncio.run(main())
        gc.collect()
    finally:
        sock.close()
    assert got == [""] * 5  # closed unanswered: Postfix retries on another connection
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def _ask_sync(port: int, key: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(_request(key))
        data = b""
        while not data.endswith(b",") or b":" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    size, _, rest = data.partition(b":")
    return rest[: int(size)].decode()


def test_sighup_reload_keeps_discovery_and_applies_the_new_configuration(
        env: Env, tmp_path: Path) -> None:
    discovery = f"""
[discovery]
enabled = true
resolver = "127.0.0.1"
resolver_port = {env.dns.port}
probe_name = "test."
https_port = {env.web.port}
ca_file = "{env.web.ca_file}"
cache = "{tmp_path / 'cache.sqlite3'}"
postfix_version = "3.7.11"
"""
    served = _serve(env, tmp_path, config=CONFIG + discovery)
    try:
        assert _ask_sync(served.port, "twomx.secure.test") == "OK may"
        assert _ask_sync(served.port, "secure.test") == "OK dane-only"
        (tmp_path / "policy.toml").write_text(
            CONFIG + '\n[[domain]]\nname = "twomx.secure.test"\ntls = "required"\n'
            + discovery)
        served.process.send_signal(signal.SIGHUP)
        for _ in range(100):
            got = _ask_sync(served.port, "twomx.secure.test")
            if got != "OK may":
                break
            time.sleep(0.1)
        assert got == "OK encrypt"
        # Discovery is still open and answering after the reload.
        assert _ask_sync(served.port, "secure.test") == "OK dane-only"
        assert _ask_sync(served.port, "ok.secure.test") == \
            "OK secure match=.ok.secure.test servername=hostname"
    finally:
        served.process.terminate()
        _, err = served.process.communicate(timeout=30)
    assert served.process.returncode == 0, err
    assert "Traceback" not in err and "ERROR" not in err, err


def test_mta_sts_switched_off_is_never_fetched_nor_a_reason_for_temp(env: Env) -> None:
    """use_mta_sts = false: the domain's policy host is never contacted, and with DNS and the
    cache both down the answer is the operator's (an MX failure alone is never TEMP)."""
    config = CONFIG + '\n[[domain]]\nname = "ok.secure.test"\nuse_mta_sts = false\n'
    got = answers(env, ["ok.secure.test"], config=config)
    assert got == {"ok.secure.test": "OK may"}
    assert env.web.fetches("ok.secure.test") == 0
    sock, port = _silent_udp()
    dead = free_port()
    try:
        async def main() -> str:
            store = await RedisStore.connect(f"redis://127.0.0.1:{dead}/0", timeout=0.5,
                                             require_up=False, clock=env.clock)
            discovery = env.discovery(store=store, resolver_port=port, dns_timeout=0.5,
                                      first_wait=0.5)
            async with discovery:
                return (await ask(lookup_for(discovery, config), "ok.secure.test")).to_text()

        # DNS down: DANE inputs unknown, never insecure (SEMANTICS 10): may becomes dane.
        assert asyncio.run(main()) == "OK dane"
    finally:
        sock.close()


def test_memory_per_distinct_domain_is_bounded(env: Env, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    """Every next hop Postfix asks about leaves MTA-STS state and DNS answers in memory; a
    daemon that has answered for millions of distinct domains must not hold them all (the
    store keeps the policies).  The bounds are lowered here so that 60 domains exceed them."""
    from tlspolicy.discovery import core, dns

    monkeypatch.setattr(core, "MAX_STATES_IN_MEMORY", 20, raising=False)
    monkeypatch.setattr(dns, "MAX_CACHED_ANSWERS", 40, raising=False)
    domains = [f"{n}.fleet.secure.test" for n in range(60)]

    async def main() -> tuple[int, int, list[str]]:
        async with env.discovery() as discovery:
            lookup = lookup_for(discovery, memo_ttl=0)
            for domain in domains:
                await ask(lookup, domain)
            await asyncio.sleep(0.5)
            sizes = len(discovery._memory), len(discovery.dns._cache)
            fetched = sum(env.web.fetches(d) for d in domains[:3])
            # Evicted from memory, still answered from the store (not fetched again).
            again = [(await ask(lookup, d)).to_text() for d in domains[:3]]
            assert sum(env.web.fetches(d) for d in domains[:3]) == fetched
            return (*sizes, again)

    states, answers_cached, again = asyncio.run(main())
    assert states <= 20 and answers_cached <= 40
    # The lab serves these domains the ok.secure.test policy.
    assert again == ["OK secure match=.ok.secure.test servername=hostname"] * 3
