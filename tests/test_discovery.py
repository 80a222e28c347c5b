"""Discovery against real servers: NSD + validating Unbound with signed zones, an HTTPS
policy server with a test CA, SQLite stores.  One test (or more) per rule of
SEMANTICS section 10; no network mocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import pytest

from discovery_support import TLSA_HEX, DnsLab, HttpsLab, PolicyAnswer, free_port
from tlspolicy import (
    Action,
    Destination,
    Resolver,
    StsMode,
    TlsaLookupStatus,
    TlsPolicyError,
    Verification,
    loads_toml,
)
from tlspolicy.discovery import (
    POLICY_NAMESPACE,
    Discovery,
    DiscoveryConfig,
    DiscoveryError,
    DnsClient,
    DnsStatus,
    StsState,
    describe,
    describe_cache,
)
from tlspolicy.discovery.dns import QUERIES_PER_SOCKET
from tlspolicy.discovery.https import PolicyFetch, fetch_policy, make_ssl_context
from tlspolicy.discovery.stscache import encode_state as _encode
from tlspolicy.policies.dane import DaneApplicability
from tlspolicy.policies.mtasts import CachedMtaStsPolicy, FetchOutcome, parse_policy
from tlspolicy.reuse import VerifiedAs
from tlspolicy.stores import SqliteStore, Store, dumps_json

pytestmark = pytest.mark.timeout(120)

CONFIG = loads_toml("""
[global]
tls = "ifavailable"
use_mta_sts = true
use_dane = true
""")


class Clock:
    """Starts at the real time; moves only when a test says so."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@attrs.define
class Env:
    dns: DnsLab
    web: HttpsLab
    tmp: Path
    clock: Clock = attrs.Factory(Clock)

    def config(self, **changes: Any) -> DiscoveryConfig:
        values: dict[str, Any] = {
            "resolver": "127.0.0.1", "resolver_port": self.dns.port, "probe_name": "test.",
            "https_port": self.web.port, "ca_file": str(self.web.ca_file), "https_timeout": 3.0,
            "first_wait": 5.0, "resolv_conf": None, "dns_timeout": 2.0,
        }
        values.update(changes)
        return DiscoveryConfig(**values)

    def store(self, name: str = "cache.sqlite3") -> SqliteStore:
        return SqliteStore(self.tmp / name, clock=self.clock)

    def discovery(self, store: Store | None = None, **changes: Any) -> Discovery:
        return Discovery(self.config(**changes), store=store or self.store(), clock=self.clock)


@pytest.fixture
def env(dns_lab: DnsLab, https_lab: HttpsLab, tmp_path: Path) -> Env:
    https_lab.reset()
    return Env(dns_lab, https_lab, tmp_path)


def run(factory: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(factory())


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


async def _settle(d: Discovery) -> None:
    """Wait for background refreshes (bounded)."""
    for _ in range(200):
        if not d._refreshing:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("background refresh did not finish")


async def seed(store: Store, domain: str, policy: bytes, *, fetched_at: float, policy_id: str,
               next_check: float) -> None:
    cached = CachedMtaStsPolicy(parse_policy(policy), at(fetched_at), policy_id)
    state = StsState(domain, "policy", cached, FetchOutcome.OK, "seeded", policy_id, next_check,
                     0, None)
    await store.set(POLICY_NAMESPACE, domain, dumps_json(_encode(state)),
                    expires_at=cached.expires_at.timestamp())


def enforce(domain: str, max_age: int = 86400) -> bytes:
    return (f"version: STSv1\nmode: enforce\nmx: *.{domain}\nmax_age: {max_age}\n").encode()


# ------------------------------------------------------------- resolver trust


def test_probe_passes_on_the_validating_resolver(env: Env) -> None:
    async def main() -> None:
        async with env.discovery() as d:
            assert d.dnssec is True
            assert "validates" in d.dnssec_detail

    run(main)


def test_probe_without_ad_turns_dane_off(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """The unsigned zone answers without AD: DANE off, logged as an error."""
    async def main() -> Destination:
        async with env.discovery(probe_name="insecure.test.") as d:
            assert d.dnssec is False
            return await d.destination("secure.test", "mx.secure.test")

    with caplog.at_level(logging.ERROR, logger="tlspolicy.discovery"):
        destination = run(main)
    assert any("DANE off" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    assert destination.mx_dnssec is False
    assert destination.tlsa is not None and destination.tlsa.status is TlsaLookupStatus.INSECURE


def test_non_loopback_resolver_needs_explicit_trust(env: Env,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> bool:
        d = Discovery(env.config(resolver="192.0.2.1"), store=env.store(), clock=env.clock)
        try:
            return await d.start()
        finally:
            await d.close()

    with caplog.at_level(logging.ERROR, logger="tlspolicy.discovery"):
        assert run(main) is False
    assert any("not on loopback" in r.getMessage() for r in caplog.records)
    with pytest.raises(DiscoveryError):
        Discovery(env.config(resolver="resolver.example"), store=env.store())


def test_warns_when_resolver_is_not_postfixs(env: Env, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 192.0.2.53\n")

    async def main() -> None:
        async with env.discovery(resolv_conf=str(resolv)):
            pass

    with caplog.at_level(logging.WARNING, logger="tlspolicy.discovery"):
        run(main)
    assert any("not the one in" in r.getMessage() for r in caplog.records)


def test_ad_bit_statuses(env: Env) -> None:
    """AD = secure; NOERROR / NXDOMAIN without AD = insecure; SERVFAIL = failed."""
    async def main() -> None:
        client = DnsClient("127.0.0.1", env.dns.port, timeout=2.0)
        secure = await client.query("secure.test", "MX")
        assert (secure.status, secure.secure) == (DnsStatus.RECORDS, True)
        denial = await client.query("_25._tcp.nothere.secure.test", "TLSA")
        assert (denial.status, denial.secure) == (DnsStatus.NXDOMAIN, True)
        insecure = await client.query("mx.insecure.test", "A")
        assert (insecure.status, insecure.secure) == (DnsStatus.RECORDS, False)
        missing = await client.query("nothere.insecure.test", "A")
        assert (missing.status, missing.secure) == (DnsStatus.NXDOMAIN, False)
        failed = await client.query("mx.expired.test", "A")
        assert failed.status is DnsStatus.FAILED and failed.bogus

    run(main)


def test_a_loopback_resolver_is_asked_over_shared_sockets(env: Env) -> None:
    """Concurrent queries share UDP sockets (up to QUERIES_PER_SOCKET in flight on each);
    each gets the reply to its own question; once the burst is over one socket stays open."""
    async def main() -> None:
        client = DnsClient("127.0.0.1", env.dns.port, timeout=2.0)
        used: list[object] = []
        free = client._free_channel

        async def counted() -> Any:
            channel = await free()
            assert len(channel.waiting) < QUERIES_PER_SOCKET  # room for this query
            used.append(channel)
            return channel

        client._free_channel = counted  # type: ignore[method-assign]
        known = {"mx.secure.test": DnsStatus.RECORDS, "mx.insecure.test": DnsStatus.RECORDS,
                 "nothere.insecure.test": DnsStatus.NXDOMAIN,
                 "mx.expired.test": DnsStatus.FAILED}
        names = [*known, *(f"n{i}.nothere.insecure.test" for i in range(20))]
        answers = await asyncio.gather(*(client.query(n, "A") for n in names))
        for name, answer in zip(names, answers, strict=True):
            assert answer.name == name
            assert answer.status is known.get(name, DnsStatus.NXDOMAIN)
        # Shared: 24 queries in flight at once at most take two sockets (fewer when the
        # first replies land before the last queries start).
        assert len(names) > QUERIES_PER_SOCKET and 1 <= len({id(c) for c in used}) <= 2
        assert len(client._channels) == 1
        channel = client._channels[0]
        assert not channel.waiting
        client.forget()
        again = await client.query("mx.secure.test", "A")
        assert again.status is DnsStatus.RECORDS and client._channels == [channel]
        client.close()
        assert channel.closed

    run(main)


def test_a_reply_to_another_question_is_a_failed_lookup() -> None:
    """Over the shared socket, a reply with the query's id but another question fails
    the lookup (as a fresh socket per query did), and stray replies are ignored."""
    liar = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    liar.bind(("127.0.0.1", 0))
    liar.settimeout(5)

    def answer_another_question() -> None:
        import dns.message

        try:
            data, peer = liar.recvfrom(4096)
        except OSError:
            return
        query = dns.message.from_wire(data)
        other = dns.message.make_query("elsewhere.test", "A")
        other.id = query.id ^ 1
        liar.sendto(dns.message.make_response(other).to_wire(), peer)  # stray: ignored
        other.id = query.id
        liar.sendto(dns.message.make_response(other).to_wire(), peer)

    thread = threading.Thread(target=answer_another_question, daemon=True)
    thread.start()

    async def main() -> None:
        client = DnsClient("127.0.0.1", liar.getsockname()[1], timeout=2.0)
        answer = await client.query("secure.test", "A")
        assert answer.status is DnsStatus.FAILED and "BadResponse" in answer.detail
        client.close()

    try:
        run(main)
    finally:
        liar.close()


def test_timeout_and_malformed_answers_are_failed_lookups() -> None:
    """A resolver that never answers, and one that answers garbage: FAILED, no exception."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    garbage = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    garbage.bind(("127.0.0.1", 0))
    garbage.settimeout(5)

    def answer_garbage() -> None:
        for _ in range(4):
            try:
                data, peer = garbage.recvfrom(4096)
            except OSError:
                return
            # The query's id and a header claiming answers that are not there.
            garbage.sendto(data[:2] + b"\x81\x80\x00\x01\x00\x05\x00\x00\x00\x00\xff", peer)

    thread = threading.Thread(target=answer_garbage, daemon=True)
    thread.start()

    async def main() -> None:
        slow = DnsClient("127.0.0.1", silent.getsockname()[1], timeout=0.3)
        answer = await slow.query("secure.test", "MX")
        assert answer.status is DnsStatus.FAILED and "Timeout" in answer.detail
        bad = DnsClient("127.0.0.1", garbage.getsockname()[1], timeout=1.0)
        answer = await bad.query("secure.test", "MX")
        assert answer.status is DnsStatus.FAILED
        assert bad.cached("secure.test", "MX") is None  # failures are never cached

    try:
        run(main)
    finally:
        silent.close()
        garbage.close()


# ------------------------------------------------------------------------- MX


def test_mx_kinds(env: Env) -> None:
    async def main() -> None:
        async with env.discovery() as d:
            mx = await d.mx("secure.test")
            assert (mx.kind, mx.hosts, mx.secure) == ("mx", ("mx.secure.test",), True)
            two = await d.mx("twomx.secure.test")
            assert two.hosts == ("mxa.twomx.secure.test", "mxb.twomx.secure.test")
            implicit = await d.mx("implicit.secure.test")
            assert (implicit.kind, implicit.hosts) == ("implicit", ("implicit.secure.test",))
            assert (await d.mx("nullmx.secure.test")).kind == "null"
            assert (await d.mx("nothere.secure.test")).kind == "nxdomain"
            assert (await d.mx("expired.test")).kind == "failed"
            assert (await d.mx("insecure.test")).secure is False

    run(main)


def test_null_mx_and_nxdomain_mean_no_discovery(env: Env) -> None:
    async def main() -> tuple[Destination, Destination, Discovery]:
        async with env.discovery() as d:
            null = await d.destination("nullmx.secure.test", "mx.secure.test")
            nx = await d.destination("nothere.secure.test", "mx.secure.test")
            return null, nx, d

    null, nx, d = run(main)
    assert null == Destination() and nx == Destination()
    assert d.fetches == {}
    assert ("_mta-sts.nullmx.secure.test", "TXT") not in d.dns.sent


def test_implicit_mx_gets_dane(env: Env) -> None:
    async def main() -> Destination:
        async with env.discovery() as d:
            return await d.destination("implicit.secure.test", "implicit.secure.test")

    destination = run(main)
    assert destination.mx_dnssec is True
    assert destination.tlsa is not None and destination.tlsa.classify() is DaneApplicability.USABLE


def test_mx_security_is_the_ad_bit_and_host_must_be_listed(env: Env) -> None:
    async def main() -> tuple[Destination, Destination, Destination]:
        async with env.discovery() as d:
            return (await d.destination("secure.test", "mx.secure.test"),
                    await d.destination("insecure.test", "mx.insecure.test"),
                    await d.destination("secure.test", "mx.insecure.test"))

    secure, insecure, unlisted = run(main)
    assert secure.mx_dnssec is True
    assert insecure.mx_dnssec is False
    assert insecure.tlsa is not None and insecure.tlsa.status is TlsaLookupStatus.INSECURE
    assert unlisted.mx_dnssec is False
    assert unlisted.tlsa is not None and unlisted.tlsa.status is TlsaLookupStatus.INSECURE


# ----------------------------------------------------------------------- DANE


def _tlsa(env: Env, domain: str, host: str) -> Destination:
    async def main() -> Destination:
        async with env.discovery() as d:
            return await d.destination(domain, host)
    return run(main)  # type: ignore[no-any-return]


def test_dane_usable_records_drive_the_decision(env: Env) -> None:
    destination = _tlsa(env, "secure.test", "mx.secure.test")
    lookup = destination.tlsa
    assert lookup is not None and lookup.status is TlsaLookupStatus.RECORDS
    assert lookup.base_domain == "mx.secure.test"
    assert [r.to_text() for r in lookup.records] == [f"3 1 1 {TLSA_HEX.upper()}"]
    decision = Resolver(CONFIG).resolve("secure.test", mx_host="mx.secure.test",
                                        destination=destination)
    assert decision.verification is Verification.DANE
    assert decision.parameters.sni == "mx.secure.test"
    assert not decision.fallback


def test_dane_cname_target_first(env: Env) -> None:
    lookup = _tlsa(env, "cname.secure.test", "mxalias.cname.secure.test").tlsa
    assert lookup is not None and lookup.status is TlsaLookupStatus.RECORDS
    assert lookup.base_domain == "mxreal.cname.secure.test"
    decision = Resolver(CONFIG).resolve(
        "cname.secure.test", mx_host="mxalias.cname.secure.test",
        destination=_tlsa(env, "cname.secure.test", "mxalias.cname.secure.test"))
    assert decision.parameters.sni == "mxreal.cname.secure.test"  # SNI is the base domain
    # DANE-TA reference names: the base domain, then the CNAME target and the MX name.
    assert decision.reference_identities == ("mxreal.cname.secure.test",
                                             "mxalias.cname.secure.test")


def test_dane_cname_falls_back_to_the_original_name(env: Env) -> None:
    lookup = _tlsa(env, "cname2.secure.test", "mxalias.cname2.secure.test").tlsa
    assert lookup is not None and lookup.status is TlsaLookupStatus.RECORDS
    assert lookup.base_domain == "mxalias.cname2.secure.test"
    assert lookup.records[0].usage == 2
    assert lookup.detail is not None and "mxreal.cname2.secure.test" in lookup.detail


def test_dane_tlsa_name_behind_a_cname(env: Env) -> None:
    lookup = _tlsa(env, "tlsacname.secure.test", "mx.tlsacname.secure.test").tlsa
    assert lookup is not None and lookup.status is TlsaLookupStatus.RECORDS
    assert lookup.base_domain == "mx.tlsacname.secure.test"
    assert lookup.records[0].selector == 0


@pytest.mark.parametrize(("domain", "host", "status", "applicability"), [
    ("nodane.secure.test", "mx2.nodane.secure.test", TlsaLookupStatus.NXDOMAIN,
     DaneApplicability.NONE),
    ("unusable.secure.test", "mx.unusable.secure.test", TlsaLookupStatus.RECORDS,
     DaneApplicability.UNUSABLE_ONLY),
    ("mxinsecure.secure.test", "mx.insecure.test", TlsaLookupStatus.INSECURE,
     DaneApplicability.INSECURE),
    ("mxbogus.secure.test", "mx.bogus.test", TlsaLookupStatus.BOGUS, DaneApplicability.FAILED),
    ("bogus.test", "mx.bogus.test", TlsaLookupStatus.BOGUS, DaneApplicability.FAILED),
])
def test_dane_classification(env: Env, domain: str, host: str, status: TlsaLookupStatus,
                             applicability: DaneApplicability) -> None:
    destination = _tlsa(env, domain, host)
    assert destination.tlsa is not None
    assert destination.tlsa.status is status
    assert destination.tlsa.classify() is applicability
    decision = Resolver(CONFIG).resolve(domain, mx_host=host, destination=destination)
    if applicability is DaneApplicability.FAILED:
        assert decision.plan is Action.FAIL  # nothing in cleartext, host not used


def test_expired_signatures_fail_the_mx_lookup_and_the_host(env: Env) -> None:
    """A failed MX lookup leaves the MX's security unknown: DANE fails closed."""
    destination = _tlsa(env, "expired.test", "mx.expired.test")
    assert destination.mx_dnssec is False
    assert destination.tlsa is not None and destination.tlsa.status is TlsaLookupStatus.FAILED
    decision = Resolver(CONFIG).resolve("expired.test", mx_host="mx.expired.test",
                                        destination=destination)
    assert decision.plan is Action.FAIL


def test_smart_host_is_its_own_policy_domain(env: Env) -> None:
    async def main() -> tuple[Destination, Discovery]:
        async with env.discovery() as d:
            return await d.destination("[relay.secure.test]:587"), d

    destination, d = run(main)
    assert destination.tlsa is not None and destination.tlsa.status is TlsaLookupStatus.RECORDS
    assert ("_587._tcp.relay.secure.test", "TLSA") in d.dns.sent
    assert ("relay.secure.test", "MX") not in d.dns.sent
    assert env.web.fetches("relay.secure.test") == 1
    assert destination.mta_sts is not None


# ------------------------------------------------------------------- MTA-STS


def _sts(env: Env, domain: str, **changes: Any) -> tuple[Destination, StsState, Discovery]:
    async def main() -> tuple[Destination, StsState, Discovery]:
        async with env.discovery(**changes) as d:
            destination = await d.destination(domain, f"mx.{domain}")
            state = await d.cache_entry(domain)
            assert state is not None
            return destination, state, d
    return run(main)  # type: ignore[no-any-return]


def test_policy_fetched_and_applied(env: Env) -> None:
    destination, state, _ = _sts(env, "ok.secure.test")
    assert destination.mta_sts is not None and destination.mta_sts.mode is StsMode.ENFORCE
    assert destination.mta_sts_fetch is FetchOutcome.OK
    assert state.txt_id == "id1" and state.cached is not None
    decision = Resolver(CONFIG).resolve("ok.secure.test", mx_host="mx.ok.secure.test",
                                        destination=destination)
    assert decision.verification is Verification.HOST and not decision.fallback
    assert env.web.requests[-1] == ("mta-sts.ok.secure.test", "/.well-known/mta-sts.txt")


@pytest.mark.parametrize(("case", "outcome", "result_type"), [
    ("wrongname", FetchOutcome.WEBPKI_INVALID, "sts-webpki-invalid"),
    ("expiredcert", FetchOutcome.WEBPKI_INVALID, "sts-webpki-invalid"),
    ("untrusted", FetchOutcome.WEBPKI_INVALID, "sts-webpki-invalid"),
    ("redirect", FetchOutcome.FETCH_ERROR, "sts-policy-fetch-error"),
    ("notfound", FetchOutcome.FETCH_ERROR, "sts-policy-fetch-error"),
    ("noaddress", FetchOutcome.FETCH_ERROR, "sts-policy-fetch-error"),
    ("mediatype", FetchOutcome.INVALID, "sts-policy-invalid"),
    ("oversized", FetchOutcome.INVALID, "sts-policy-invalid"),
    ("invalid", FetchOutcome.INVALID, "sts-policy-invalid"),
])
def test_fetch_failures_carry_their_tlsrpt_type(env: Env, case: str, outcome: FetchOutcome,
                                                result_type: str) -> None:
    domain = f"{case}.secure.test"
    destination, state, _ = _sts(env, domain)
    assert destination.mta_sts is None
    assert destination.mta_sts_fetch is outcome
    assert outcome.tlsrpt_result_type == result_type
    assert state.state == "failed"  # a temporary error is never "no policy"
    decision = Resolver(CONFIG).resolve(domain, mx_host=f"mx.{domain}", destination=destination)
    assert [r.result_type for r in decision.reports] == [result_type]
    if case == "redirect":
        assert env.web.fetches("ok.secure.test") == 0  # the redirect was not followed


def test_media_type_compared_without_parameters_case_insensitively(env: Env) -> None:
    destination, _, _ = _sts(env, "mediaparams.secure.test")
    assert destination.mta_sts is not None


def test_slow_server_is_cut_off(env: Env) -> None:
    start = time.monotonic()
    destination, state, _ = _sts(env, "slow.secure.test", https_timeout=1.0)
    assert destination.mta_sts_fetch is FetchOutcome.FETCH_ERROR
    assert "within 1 s" in state.detail
    assert time.monotonic() - start < 30  # a hang guard, not a timing assertion


def test_one_deadline_bounds_a_fetch_over_every_address(env: Env) -> None:
    """``timeout`` bounds the whole fetch, not each address (four times ``timeout`` would
    outlast the single-flight lock, and another process would fetch the same policy): an
    address listed four times is tried once, and its trickled answer is cut at ``timeout``."""
    assert env.web.ca_file is not None

    async def main() -> PolicyFetch:
        return await fetch_policy("slow.secure.test", ["127.0.0.1"] * 4, port=env.web.port,
                                  context=make_ssl_context(str(env.web.ca_file)), timeout=1.0)

    fetched = run(main)
    assert fetched.outcome is FetchOutcome.FETCH_ERROR
    assert "within 1 s" in fetched.detail
    assert env.web.fetches("slow.secure.test") == 1


def test_an_address_that_hangs_leaves_time_for_the_next(env: Env) -> None:
    """The first address accepts and never speaks: the next, working one is still tried
    within the fetch's time (the first has its share, not all of it)."""
    assert env.web.ca_file is not None
    hung = socket.socket()
    try:
        hung.bind(("127.0.0.2", env.web.port))
        hung.listen(8)  # connections complete, nothing is ever read or sent

        async def main() -> PolicyFetch:
            return await fetch_policy("ok.secure.test", ["127.0.0.2", "127.0.0.1"],
                                      port=env.web.port, timeout=4.0,
                                      context=make_ssl_context(str(env.web.ca_file)))

        fetched = run(main)
    finally:
        hung.close()
    assert fetched.outcome is FetchOutcome.OK and fetched.address == "127.0.0.1"


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]


def _fetch_beside(env: Env, handler: Handler, domain: str, addresses: list[str],
                  timeout: float) -> PolicyFetch:
    """``fetch_policy`` of ``domain`` at ``addresses``, with a TLS server of the lab's
    certificates on 127.0.0.2 (the lab's port) answering with ``handler``."""
    assert env.web.ca_file is not None and env.web.context is not None
    context, ca_file = env.web.context, str(env.web.ca_file)

    async def main() -> PolicyFetch:
        server = await asyncio.start_server(handler, "127.0.0.2", env.web.port, ssl=context)
        try:
            return await fetch_policy(domain, addresses, port=env.web.port, timeout=timeout,
                                      context=make_ssl_context(ca_file))
        finally:
            server.close()
            await server.wait_closed()

    return run(main)  # type: ignore[no-any-return]


def test_an_address_that_sends_nothing_after_its_handshake_leaves_time_for_the_next(
        env: Env) -> None:
    """A TLS terminator that is up while what is behind it hangs: the handshake completes,
    no response ever comes.  The next address is started after the first has had its
    share of the time, and its answer is the fetch's."""
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            # The handshake is done by the server: then nothing, until EOF (a guard's time).
            await asyncio.wait_for(reader.read(), 10)
        writer.close()

    fetched = _fetch_beside(env, silent, "ok.secure.test", ["127.0.0.2", "127.0.0.1"], 4.0)
    assert fetched.outcome is FetchOutcome.OK and fetched.address == "127.0.0.1"


def test_a_quick_error_from_a_later_address_does_not_beat_a_working_earlier_one(
        env: Env) -> None:
    """The second address answers 404 at once, while the first is still working on its
    policy: the fetch decides as trying them one after another would, so the first's
    policy wins (a stale node must not cost the domain its policy)."""
    async def gone(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                     b"Connection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    fetched = _fetch_beside(env, gone, "coldslow.secure.test", ["127.0.0.1", "127.0.0.2"],
                            3.0)
    assert fetched.outcome is FetchOutcome.OK and fetched.address == "127.0.0.1", fetched
    # The first address has not finished at the deadline: it failed, and the second's
    # answer is the fetch's (not "no complete answer" at the first).
    fetched = _fetch_beside(env, gone, "slow.secure.test", ["127.0.0.1", "127.0.0.2"], 1.5)
    assert fetched.outcome is FetchOutcome.FETCH_ERROR and fetched.address == "127.0.0.2"
    assert "HTTP 404" in fetched.detail, fetched


def test_a_fetch_cancelled_twice_ends_every_attempt_first(env: Env) -> None:
    """However often the caller cancels, no attempt is left running when it resumes (a
    discovery closing its shared client next must not close it under one)."""
    assert env.web.ca_file is not None and env.web.context is not None
    context, ca_file = env.web.context, str(env.web.ca_file)

    async def main() -> list[asyncio.Task[Any]]:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader.read(), 10)
            writer.close()

        server = await asyncio.start_server(silent, "127.0.0.2", env.web.port, ssl=context)
        try:
            fetch = asyncio.ensure_future(fetch_policy(
                "slow.secure.test", ["127.0.0.1", "127.0.0.2"], port=env.web.port,
                timeout=4.0, context=make_ssl_context(ca_file)))
            await asyncio.sleep(2.5)  # both addresses under way
            fetch.cancel()
            await asyncio.sleep(0)
            fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fetch
            return [t for t in asyncio.all_tasks()  # the fetch's attempts still running
                    if getattr(t.get_coro(), "__qualname__", "").endswith(".attempt")]
        finally:
            server.close()
            await server.wait_closed()

    assert run(main) == []


@pytest.mark.parametrize("fault", [RuntimeError, asyncio.CancelledError])
def test_an_unexpected_error_at_one_address_fails_that_address_only(
        env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        fault: type[BaseException]) -> None:
    """A library's fault while fetching from one address (any exception, a cancellation
    of that attempt alone included) counts as that address failing: the other address's
    policy is still the answer."""
    from tlspolicy.discovery import https

    real = https._fetch_one

    async def faulty(host: str, address: str, **kwargs: Any) -> PolicyFetch:
        if address == "127.0.0.2":
            raise fault("a fault in a library")
        return await real(host, address, **kwargs)

    monkeypatch.setattr(https, "_fetch_one", faulty)
    assert env.web.ca_file is not None

    async def main() -> PolicyFetch:
        return await fetch_policy("ok.secure.test", ["127.0.0.2", "127.0.0.1"],
                                  port=env.web.port, timeout=4.0,
                                  context=make_ssl_context(str(env.web.ca_file)))

    with caplog.at_level(logging.ERROR, "tlspolicy.discovery"):
        fetched = run(main)
    assert fetched.outcome is FetchOutcome.OK and fetched.address == "127.0.0.1"
    assert ("failed unexpectedly" in caplog.text) is (fault is RuntimeError)


def test_a_slow_policy_host_with_several_addresses_is_still_fetched(env: Env) -> None:
    """Only connecting is shared out between addresses: a host that connects and then takes
    2 s of the fetch's 3 s to answer is fetched, though a second address is listed."""
    assert env.web.ca_file is not None

    async def main() -> PolicyFetch:
        return await fetch_policy("coldslow.secure.test", ["127.0.0.1", "127.0.0.2"],
                                  port=env.web.port, timeout=3.0,
                                  context=make_ssl_context(str(env.web.ca_file)))

    fetched = run(main)
    assert fetched.outcome is FetchOutcome.OK and fetched.address == "127.0.0.1"


def test_a_refresh_holds_its_lock_for_as_long_as_it_may_take() -> None:
    """The single-flight lock lasts ``lock_ttl``, or the longest refresh when that is longer:
    its TXT lookup and its address lookup (2.5 times ``dns_timeout`` each), its fetch, and
    the store's write."""
    assert DiscoveryConfig().refresh_lock_ttl == 30.0  # 5 * 3 + 10 + 5 (the store) = 30
    assert DiscoveryConfig(dns_timeout=4.0, https_timeout=20.0).refresh_lock_ttl == 45.0
    assert DiscoveryConfig(lock_ttl=90.0, https_timeout=20.0).refresh_lock_ttl == 90.0


@pytest.mark.parametrize(("domain", "expected"), [
    ("cnametxt.secure.test", "id1"),    # CNAME followed
    ("split.secure.test", "split1"),    # strings concatenated
    ("twotxt.secure.test", None),       # two v=STSv1 records: none
    ("badtxt.secure.test", None),       # invalid record: none
    ("othertxt.secure.test", None),     # no v=STSv1 record
    ("nodane.secure.test", None),       # no TXT at all
])
def test_txt_record_shapes(env: Env, domain: str, expected: str | None) -> None:
    async def main() -> StsState:
        async with env.discovery() as d:
            return await d.sts_state(domain)

    state = run(main)
    assert state.txt_id == expected
    if expected is None:
        assert state.state == "none" and state.cached is None
        assert env.web.fetches(domain) == 0
    else:
        assert state.cached is not None


def test_policy_host_address_comes_from_our_resolver(env: Env) -> None:
    """``*.secure.test`` exists only in the test zones: the fetch reached the loopback server,
    so the address came from the configured resolver, not the system's."""
    _sts(env, "enforce2.secure.test")
    assert env.web.fetches("enforce2.secure.test") == 1


def test_txt_requeried_when_its_ttl_runs_out(env: Env) -> None:
    """``_mta-sts.shortttl`` has TTL 2: re-queried after 2 s, not before; same id, no refetch."""
    async def main() -> tuple[int, int, int]:
        async with env.discovery() as d:
            await d.destination("shortttl.secure.test")
            key = ("_mta-sts.shortttl.secure.test", "TXT")
            first = d.dns.sent[key]
            env.clock.now += 1
            await d.destination("shortttl.secure.test")
            await _settle(d)
            before = d.dns.sent[key]
            env.clock.now += 2.5
            await d.destination("shortttl.secure.test")
            await _settle(d)
            return first, before, d.dns.sent[key]

    first, before, after = run(main)
    assert (first, before, after) == (1, 1, 2)
    assert env.web.fetches("shortttl.secure.test") == 1


def test_changed_id_triggers_a_refetch(env: Env) -> None:
    """The cache holds a policy under id1; DNS now says id2: refetch, new policy in force."""
    async def main() -> tuple[Destination, Destination, StsState | None]:
        store = env.store()
        now = env.clock.now
        await seed(store, "idchange.secure.test", enforce("idchange.secure.test"),
                   fetched_at=now - 60, policy_id="id1", next_check=now - 1)
        env.web.set("idchange.secure.test", PolicyAnswer(
            b"version: STSv1\nmode: testing\nmx: *.idchange.secure.test\nmax_age: 600\n"))
        async with env.discovery(store=store) as d:
            # The unexpired cached policy answers at once; the refetch runs behind it.
            first = await d.destination("idchange.secure.test", "mx.idchange.secure.test")
            await _settle(d)
            second = await d.destination("idchange.secure.test", "mx.idchange.secure.test")
            return first, second, await d.cache_entry("idchange.secure.test")

    first, second, state = run(main)
    assert first.mta_sts is not None and first.mta_sts.mode is StsMode.ENFORCE
    assert second.mta_sts is not None and second.mta_sts.mode is StsMode.TESTING
    assert state is not None and state.cached is not None and state.cached.policy_id == "id2"
    assert env.web.fetches("idchange.secure.test") == 1


def test_same_id_fresh_policy_is_not_refetched(env: Env) -> None:
    async def main() -> None:
        store = env.store()
        now = env.clock.now
        await seed(store, "refresh.secure.test", enforce("refresh.secure.test"),
                   fetched_at=now - 60, policy_id="id1", next_check=now - 1)
        async with env.discovery(store=store) as d:
            await d.destination("refresh.secure.test")
            await _settle(d)

    run(main)
    assert env.web.fetches("refresh.secure.test") == 0


def test_refresh_starts_before_max_age_runs_out(env: Env) -> None:
    """Same id, but past half of max_age: refetched while the old policy still applies."""
    async def main() -> tuple[Destination, StsState | None]:
        store = env.store()
        now = env.clock.now
        await seed(store, "refresh.secure.test", enforce("refresh.secure.test", 1000),
                   fetched_at=now - 600, policy_id="id1", next_check=now - 1)
        async with env.discovery(store=store) as d:
            first = await d.destination("refresh.secure.test", "mx.refresh.secure.test")
            await _settle(d)
            return first, await d.cache_entry("refresh.secure.test")

    first, state = run(main)
    assert first.mta_sts is not None
    assert env.web.fetches("refresh.secure.test") == 1
    assert state is not None and state.cached is not None
    assert state.cached.fetched_at.timestamp() == pytest.approx(env.clock.now)


@pytest.mark.parametrize("failure", ["http", "txt-gone", "dns-failed"])
def test_unexpired_policy_kept_on_any_failure(env: Env, failure: str) -> None:
    domain = {"http": "keep.secure.test", "txt-gone": "nodane.secure.test",
              "dns-failed": "expired.test"}[failure]
    env.web.set("keep.secure.test", PolicyAnswer(b"down", status=503))

    async def main() -> tuple[Destination, StsState | None]:
        store = env.store()
        now = env.clock.now
        await seed(store, domain, enforce(domain), fetched_at=now - 86000, policy_id="old",
                   next_check=now - 1)
        async with env.discovery(store=store) as d:
            await d.destination(domain)
            await _settle(d)
            second = await d.destination(domain)
            return second, await d.cache_entry(domain)

    destination, state = run(main)
    assert destination.mta_sts is not None and destination.mta_sts.mode is StsMode.ENFORCE
    assert state is not None and state.state == "policy"
    if failure != "txt-gone":
        assert destination.mta_sts_fetch is FetchOutcome.FETCH_ERROR


def test_expired_policy_no_longer_applies(env: Env) -> None:
    env.web.set("keep.secure.test", PolicyAnswer(b"down", status=503))

    async def main() -> Destination:
        store = env.store()
        now = env.clock.now
        await seed(store, "keep.secure.test", enforce("keep.secure.test", 100),
                   fetched_at=now - 50, policy_id="id1", next_check=now + 10)
        async with env.discovery(store=store) as d:
            env.clock.now += 60  # past max_age
            return await d.destination("keep.secure.test")

    destination = run(main)
    assert destination.mta_sts is None
    assert destination.mta_sts_fetch is FetchOutcome.FETCH_ERROR


def test_failed_domains_back_off(env: Env) -> None:
    env.web.set("backoff.secure.test", PolicyAnswer(b"down", status=500))

    async def main() -> list[int]:
        counts = []
        async with env.discovery(backoff_initial=60, backoff_max=1000) as d:
            for step in (0, 1, 59, 1, 60, 60, 1000):
                env.clock.now += step
                await d.destination("backoff.secure.test")
                await _settle(d)
                counts.append(env.web.fetches("backoff.secure.test"))
        return counts

    # Fetch, wait 60 s, fetch, wait 120 s (doubled), fetch, then capped at 1000 s.
    assert run(main) == [1, 1, 2, 2, 2, 3, 4]


def test_cold_cache_waits_a_bounded_time_then_answers(env: Env) -> None:
    """The server takes 2 s; first_wait 0.3 s: answered as no policy, fetch carries on."""
    async def main() -> tuple[StsState, Destination, Destination]:
        async with env.discovery(first_wait=0.3) as d:
            state = await d.sts_state("coldslow.secure.test")
            first = await d.destination("coldslow.secure.test")
            await _settle(d)
            return state, first, await d.destination("coldslow.secure.test")

    state, first, later = run(main)
    assert state.state == "pending"
    assert first.mta_sts is None and first.mta_sts_fetch is FetchOutcome.OK
    assert later.mta_sts is not None
    assert env.web.fetches("coldslow.secure.test") == 1


# ------------------------------------------------------------------------ TLS-RPT


def test_tlsrpt_record(env: Env) -> None:
    async def main() -> None:
        async with env.discovery() as d:
            one = await d.tlsrpt("secure.test")
            assert one.rua == ("mailto:tlsrpt@secure.test",)
            two = await d.tlsrpt("tworpt.secure.test")
            assert two.record is None and "2 v=TLSRPTv1" in two.detail
            none = await d.tlsrpt("ok.secure.test")
            assert none.record is None

    run(main)


# --------------------------------------------------------------------- caching


def test_dns_never_cached_past_its_ttl(env: Env) -> None:
    async def main() -> None:
        async with env.discovery(max_dns_ttl=10) as d:
            await d.mx("secure.test")
            await d.mx("secure.test")
            assert d.dns.sent[("secure.test", "MX")] == 1
            env.clock.now += 9.5
            await d.mx("secure.test")
            assert d.dns.sent[("secure.test", "MX")] == 1
            env.clock.now += 1  # past the (capped) TTL
            await d.mx("secure.test")
            assert d.dns.sent[("secure.test", "MX")] == 2
            answer = d.dns.cached("secure.test", "MX")
            assert answer is not None and answer.ttl <= 10

    run(main)


def test_no_policy_is_cached_briefly(env: Env) -> None:
    """"No policy" lasts at most no_policy_ttl (30 s) and never longer than the DNS denial
    it came from (whose TTL Unbound counts down).

    Asked of a resolver of its own: the session's Unbound may hold this denial (or a
    neighbour's, whose NSEC record answers for it) from an earlier test, with an unknown
    part of its 60 s left, and the steps below count on the whole of it."""
    async def main(port: int) -> list[int]:
        counts = []
        async with env.discovery(no_policy_ttl=30, resolver_port=port) as d:
            key = ("_mta-sts.nodane.secure.test", "TXT")
            for step in (0, 10, 21, 200):
                env.clock.now += step
                state = await d.sts_state("nodane.secure.test")
                assert state.state == "none"
                assert state.next_check <= env.clock.now + 30
                denial = d.dns._cache.get(key)
                assert denial is not None and state.next_check <= denial[0]
                counts.append(d.dns.sent[key])
        return counts

    with env.dns.private_resolver() as port:
        counts = run(lambda: main(port))
    assert counts[:2] == [1, 1]  # within 30 s and the TTL: nothing asked again
    assert counts[-1] == counts[-2] + 1  # long after: asked again


def test_temporary_errors_are_never_cached_as_no_policy(env: Env) -> None:
    async def main() -> tuple[StsState, bool]:
        async with env.discovery() as d:
            state = await d.sts_state("expired.test")
            return state, d.dns.cached("_mta-sts.expired.test", "TXT") is None

    state, uncached = run(main)
    assert state.state == "failed" and state.outcome is FetchOutcome.FETCH_ERROR
    assert uncached


def test_single_flight_in_one_process(env: Env) -> None:
    async def main() -> tuple[list[Destination], Discovery]:
        async with env.discovery() as d:
            results = await asyncio.gather(*(
                d.destination("single.secure.test", "mx.single.secure.test")
                for _ in range(300)))
            return list(results), d

    results, d = run(main)
    assert all(r == results[0] for r in results) and results[0].mta_sts is not None
    assert env.web.fetches("single.secure.test") == 1
    sent = {k: v for k, v in d.dns.sent.items() if "single" in k[0]}
    assert sent and all(v == 1 for v in sent.values()), sent


def test_single_flight_across_instances_sharing_a_store(env: Env) -> None:
    async def main() -> None:
        a = env.discovery(store=env.store("shared.sqlite3"))
        b = env.discovery(store=env.store("shared.sqlite3"))
        await a.start()
        await b.start()
        try:
            await asyncio.gather(*(x.destination("coldslow.secure.test")
                                   for x in (a, b) for _ in range(20)))
            await _settle(a)
            await _settle(b)
        finally:
            await a.close()
            await b.close()

    run(main)
    assert env.web.fetches("coldslow.secure.test") == 1


def test_a_second_instance_waits_for_a_fetch_outlasting_lock_ttl(env: Env) -> None:
    """A ``lock_ttl`` shorter than a refresh may take does not let a second instance
    fetch the same policy while the first is still fetching: the lock lasts the longest
    refresh (here 5 * 1 + 3 = 8 s against a ``lock_ttl`` of 1 s)."""
    async def main() -> tuple[StsState, StsState]:
        changes: dict[str, Any] = {"lock_ttl": 1.0, "dns_timeout": 1.0, "https_timeout": 3.0}
        a = env.discovery(store=env.store("overrun.sqlite3"), **changes)
        b = env.discovery(store=env.store("overrun.sqlite3"), **changes)
        async with a, b:
            first = asyncio.create_task(a.sts_state("slow.secure.test"))
            while not env.web.fetches("slow.secure.test"):
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.5)  # past lock_ttl, within the first fetch's 3 s
            second = await b.sts_state("slow.secure.test")
            return await first, second

    first, second = run(main)
    assert first.state == second.state == "failed"
    assert "within 3 s" in second.detail  # the first instance's result, read from the store
    assert env.web.fetches("slow.secure.test") == 1


def test_restart_refetches_nothing_unexpired(env: Env) -> None:
    async def once() -> Destination:
        async with env.discovery(store=env.store("restart.sqlite3")) as d:
            return await d.destination("restart.secure.test")

    first = run(once)
    second = run(once)
    assert first == second and second.mta_sts is not None
    assert env.web.fetches("restart.secure.test") == 1


def test_outage_keeps_cached_enforce_policies(env: Env) -> None:
    """DNS resolver and HTTPS answers gone: the cached enforce policy is still served and no
    Destination is weaker than before."""
    async def main() -> tuple[Destination, Destination]:
        async with env.discovery(store=env.store("outage.sqlite3"), dns_timeout=0.3) as d:
            before = await d.destination("outage.secure.test", "mx.outage.secure.test")
            env.dns.stop_unbound()
            env.web.set("outage.secure.test", PolicyAnswer(b"", status=503))
            try:
                env.clock.now += 86400 / 2 + 1  # due for refresh, not expired
                d.dns.forget()
                during = await d.destination("outage.secure.test", "mx.outage.secure.test")
                await _settle(d)
                during = await d.destination("outage.secure.test", "mx.outage.secure.test")
            finally:
                env.dns.start_unbound()
            return before, during

    before, during = run(main)
    assert before.mta_sts is not None and during.mta_sts == before.mta_sts
    decision_before = Resolver(CONFIG).resolve("outage.secure.test",
                                               mx_host="mx.outage.secure.test",
                                               destination=before)
    decision_during = Resolver(CONFIG).resolve("outage.secure.test",
                                               mx_host="mx.outage.secure.test",
                                               destination=during)
    assert decision_during.tls == decision_before.tls
    assert decision_during.verification == decision_before.verification


# ---------------------------------------------------------- errors and summaries


def test_bad_names_raise_only_library_errors(env: Env) -> None:
    async def main() -> None:
        async with env.discovery() as d:
            for bad in ("", "a..b", "x" * 300, "[relay.secure.test]:99999", "exa mple.com"):
                with pytest.raises(TlsPolicyError):
                    await d.destination(bad)

    run(main)


def test_describe_is_plain_data(env: Env) -> None:
    import json

    async def main() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with env.discovery() as d:
            summary = await describe(d, "ok.secure.test")
            return summary, await describe_cache(d)

    summary, cache = run(main)
    destinations = summary.pop("_destinations")
    assert set(destinations) == {"mx.ok.secure.test"}
    text = json.dumps(summary)
    assert summary["mx"]["dnssec"] is True
    assert summary["mta_sts"]["policy"]["mode"] == "enforce"
    assert summary["hosts"]["mx.ok.secure.test"]["mta_sts_mode"] == "enforce"
    assert "ok.secure.test" in text
    assert [c["domain"] for c in cache] == ["ok.secure.test"]


def test_purge_forgets_a_domain(env: Env) -> None:
    async def main() -> tuple[int, StsState | None]:
        async with env.discovery() as d:
            await d.destination("ok.secure.test")
            removed = await d.purge("ok.secure.test")
            await d.destination("ok.secure.test")
            return removed, await d.cache_entry("ok.secure.test")

    removed, state = run(main)
    assert removed == 1 and state is not None
    assert env.web.fetches("ok.secure.test") == 2


def test_free_port_is_in_the_unprivileged_range() -> None:
    assert 20000 <= free_port() <= 32000


def test_thousand_concurrent_requests_one_query_each_one_fetch(env: Env) -> None:
    """Counted in Unbound's own query log, where no cache of ours can hide a query.

    The claim is about counts, not speed: the 1000 callers wait for the one fetch however
    long it takes (``first_wait``), and no query or fetch may give up early.  With the
    usual bounds (5 s, 2 s, 3 s) a loaded machine, where one event loop wakes 1000 waiters
    after each step, could end the wait first: the answer was then "pending" (no policy),
    or a timed-out query made a failed answer."""
    domain = "fleet0.secure.test"
    names = [(domain, "MX"), (f"_mta-sts.{domain}", "TXT"), (f"mta-sts.{domain}", "A"),
             (f"mta-sts.{domain}", "AAAA"), (f"mx.{domain}", "A"), (f"mx.{domain}", "AAAA"),
             (f"_25._tcp.mx.{domain}", "TLSA")]
    before = {key: env.dns.queries(*key) for key in names}

    async def main() -> list[Destination]:
        async with env.discovery(first_wait=90.0, dns_timeout=20.0, https_timeout=20.0) as d:
            return list(await asyncio.gather(*(d.destination(domain, f"mx.{domain}")
                                               for _ in range(1000))))

    results = run(main)
    assert all(r == results[0] for r in results) and results[0].mta_sts is not None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # Unbound writes its log asynchronously
        counts = {key: env.dns.queries(*key) - before[key] for key in names}
        if all(counts.values()):
            break
        time.sleep(0.05)
    assert counts == dict.fromkeys(names, 1)
    assert env.web.fetches(domain) == 1


def test_discover_resolve_deliver_with_dane(env: Env) -> None:
    """The documented MTA loop: discover, resolve, deliver with the smtplib driver, to a real
    SMTP server whose key only the signed zone's TLSA record vouches for (DANE-EE)."""
    import smtplib

    from smtp_servers import Mode, server_context, smtp_server
    from tlspolicy.adapters.smtplib import starttls

    cert = env.dns.e2e_cert
    domain, mx = "e2e.secure.test", "mx.e2e.secure.test"

    async def discover() -> Destination:
        async with env.discovery() as d:
            return await d.destination(domain, mx)

    destination = run(discover)
    decision = Resolver(CONFIG).resolve(domain, mx_host=mx, destination=destination)
    assert decision.verification is Verification.DANE and decision.parameters.sni == mx
    with smtp_server(Mode.TLS, tls_context=server_context(cert.chain_path,
                                                          cert.key_path)) as server:
        result = starttls(decision, "127.0.0.1", server.port, timeout=10)
        result.smtp.sendmail("a@sender.test", ["b@e2e.secure.test"], b"Subject: hi\r\n\r\nhi\r\n")
        with contextlib.suppress(smtplib.SMTPException):
            result.smtp.quit()
        assert result.record.encrypted
        assert result.record.verified is VerifiedAs.DANE
        assert [m.tls for m in server.messages] == [True]


def _not_weaker(during: Any, before: Any) -> bool:
    if during.plan is Action.FAIL:
        return True  # the host is not used: nothing sent in a weaker way
    rank = {Verification.NO: 0, Verification.OPTIONAL: 1, Verification.CA: 2,
            Verification.HOST: 3, Verification.DANE: 4}
    return (during.tls >= before.tls and rank[during.verification] >= rank[before.verification]
            and (before.fallback or not during.fallback) and before.plan is not Action.FAIL)


def test_dns_and_https_stopped_nothing_gets_weaker(dns_lab: DnsLab, tmp_path: Path) -> None:
    """Both servers stopped (the resolver and the policy server), every cache of ours past
    its DNS TTLs: enforce policies still apply, and no decision is weaker than before."""
    web = HttpsLab(tmp_path / "web")
    web.start()
    env = Env(dns_lab, web, tmp_path)
    targets = [("ok.secure.test", "mx.ok.secure.test"), ("outage.secure.test",
                                                          "mx.outage.secure.test"),
               ("insecure.test", "mx.insecure.test"), ("secure.test", "mx.secure.test"),
               ("testing.secure.test", "mx.testing.secure.test"),
               ("nodane.secure.test", "mx2.nodane.secure.test")]

    async def main() -> tuple[list[Destination], list[Destination]]:
        async with env.discovery(store=env.store("outage2.sqlite3"), dns_timeout=0.3,
                                 https_timeout=0.5) as d:
            before = [await d.destination(dom, mx) for dom, mx in targets]
            web.stop()
            dns_lab.stop_unbound()
            try:
                env.clock.now += 86400 / 2 + 1  # every DNS answer and refresh timer run out
                d.dns.forget()
                during = [await d.destination(dom, mx) for dom, mx in targets]
                await _settle(d)
                during = [await d.destination(dom, mx) for dom, mx in targets]
            finally:
                dns_lab.start_unbound()
            return before, during

    before, during = run(main)
    resolver = Resolver(CONFIG)
    for (domain, mx), old, new in zip(targets, before, during, strict=True):
        if old.mta_sts is not None and old.mta_sts.mode is StsMode.ENFORCE:
            assert new.mta_sts == old.mta_sts, domain
        a = resolver.resolve(domain, mx_host=mx, destination=old)
        b = resolver.resolve(domain, mx_host=mx, destination=new)
        assert _not_weaker(b, a), (domain, a, b)
    assert sum(1 for d in before if d.mta_sts is not None) >= 3


def test_address_and_tlsa_answers_never_outlive_their_ttl(env: Env) -> None:
    """The derived TLSA lookup is reused only while every answer it came from is cached."""
    async def main() -> list[int]:
        counts = []
        async with env.discovery(max_dns_ttl=10) as d:
            key = ("_25._tcp.mx.secure.test", "TLSA")
            for step in (0, 9, 2):
                env.clock.now += step
                destination = await d.destination("secure.test", "mx.secure.test")
                assert destination.tlsa is not None
                assert destination.tlsa.status is TlsaLookupStatus.RECORDS
                counts.append(d.dns.sent[key] + d.dns.sent[("mx.secure.test", "A")])
        return counts

    assert run(main) == [2, 2, 4]


def test_refresh_fetches_now_and_purge_all_forgets_everything(env: Env) -> None:
    async def main() -> tuple[StsState, int, list[StsState]]:
        async with env.discovery() as d:
            await d.destination("ok.secure.test")
            await d.destination("enforce2.secure.test")
            state = await d.refresh("ok.secure.test")
            removed = await d.purge()
            return state, removed, await d.cache_entries()

    state, removed, left = run(main)
    assert state.state == "policy" and state.outcome is FetchOutcome.OK
    assert env.web.fetches("ok.secure.test") == 2  # refreshed although fresh
    assert removed == 2 and left == []


def test_oversized_answers_are_failed_lookups_not_no_policy(env: Env) -> None:
    """130 TXT records (over TCP after truncation): refused as malformed, so a failed lookup
    with its backoff, never "no policy"."""
    async def main() -> tuple[Any, StsState]:
        async with env.discovery() as d:
            answer = await d.dns.query("_mta-sts.manytxt.secure.test", "TXT")
            return answer, await d.sts_state("manytxt.secure.test")

    answer, state = run(main)
    assert answer.status is DnsStatus.FAILED and "over 128" in answer.detail
    assert state.state == "failed" and state.outcome is FetchOutcome.FETCH_ERROR
