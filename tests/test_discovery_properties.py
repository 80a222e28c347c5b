"""SEMANTICS section 6 invariants over decisions made from fetched data: generated policy
documents (and media types) served by the real HTTPS server, discovered through the real
validating resolver, then resolved under generated configurations."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from discovery_support import DnsLab, HttpsLab, PolicyAnswer, generated_shapes
from tlspolicy import (
    Action,
    Destination,
    Observation,
    Resolver,
    StsMode,
    Tls,
    TlsaLookupStatus,
    TlsaRecord,
    Verification,
    loads_toml,
)
from tlspolicy.discovery import Discovery, DiscoveryConfig
from tlspolicy.policies.mtasts import FetchOutcome, MtaStsPolicyError, parse_policy
from tlspolicy.stores import SqliteStore

pytestmark = pytest.mark.timeout(300)

DOMAIN = "fuzz.secure.test"
MX = f"mx.{DOMAIN}"
_RANK = {Verification.NO: 0, Verification.OPTIONAL: 1, Verification.CA: 2,
         Verification.HOST: 3, Verification.DANE: 4}

_mx_patterns = st.sampled_from([
    MX, f"*.{DOMAIN}", "*.secure.test", "mx.other.test", "*.fuzz.secure.test.",
    "MX.FUZZ.SECURE.TEST", "*.*.secure.test", "", "mx..x", "mx.fuzz.secure.test:25",
])
_lines = st.one_of(
    st.just("version: STSv1"), st.just("version: STSv2"),
    st.sampled_from(["enforce", "testing", "none", "Enforce", ""]).map(lambda m: f"mode: {m}"),
    _mx_patterns.map(lambda p: f"mx: {p}"),
    st.sampled_from(["0", "1", "86400", "31557600", "31557601", "-1", "1e3", ""]).map(
        lambda a: f"max_age: {a}"),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=30),
    st.from_regex(r"[a-z_]{1,10}: [ -~]{0,20}", fullmatch=True),
)


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))
    lines = draw(st.lists(_lines, max_size=10))
    if draw(st.booleans()):  # usually a complete head, so valid policies are common
        lines = ["version: STSv1", f"mode: {draw(st.sampled_from(['enforce', 'testing', 'none']))}",
                 f"mx: {draw(_mx_patterns)}", "max_age: 86400", *lines]
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    return ending.join(lines).encode("utf-8", "surrogatepass") + ending.encode()


_configs = st.builds(
    lambda tls, verify, fallback: loads_toml(
        f'[global]\ntls = "{tls}"\ntls_verify = "{verify}"\n'
        f"tls_ifavailable_fallback = {str(fallback).lower()}\nuse_mta_sts = true\n"
        "use_dane = true\n"),
    st.sampled_from(["no", "ifavailable", "required"]),
    st.sampled_from(["no", "optional", "ca", "host"]),
    st.booleans(),
)


def _discover(dns: DnsLab, web: HttpsLab, tmp: Path) -> Destination:
    async def main() -> Destination:
        config = DiscoveryConfig(resolver="127.0.0.1", resolver_port=dns.port,
                                 probe_name="test.", https_port=web.port,
                                 ca_file=str(web.ca_file), https_timeout=3.0, resolv_conf=None)
        async with Discovery(config, store=SqliteStore(":memory:")) as d:
            return await d.destination(DOMAIN, MX)
    return asyncio.run(main())


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=documents(), media=st.sampled_from(["text/plain", "TEXT/Plain; charset=utf-8",
                                               "text/html", "application/octet-stream"]),
       config=_configs)
def test_fetched_policies_obey_the_invariants(dns_lab: DnsLab, https_lab: HttpsLab,
                                              tmp_path_factory: pytest.TempPathFactory,
                                              body: bytes, media: str, config: object) -> None:
    https_lab.set(DOMAIN, PolicyAnswer(body, content_type=media))
    destination = _discover(dns_lab, https_lab, tmp_path_factory.mktemp("fuzz"))

    # Exactly what the pure parser says about the same bytes.
    try:
        expected = parse_policy(body)
    except MtaStsPolicyError:
        expected = None
    if not media.lower().startswith("text/plain") or expected is None:
        assert destination.mta_sts is None
        assert destination.mta_sts_fetch is FetchOutcome.INVALID
    else:
        # A max_age of 0 ends the policy's life at its fetch: it is never in force
        # (test_mtasts.py, test_max_age_zero_is_never_in_force), fetched just now or not.
        assert destination.mta_sts == (None if expected.max_age == 0 else expected)
        assert destination.mta_sts_fetch is FetchOutcome.OK

    resolver = Resolver(config)  # type: ignore[arg-type]
    alone = resolver.resolve(DOMAIN, mx_host=MX)
    decision = resolver.resolve(DOMAIN, mx_host=MX, destination=destination)
    # Destination policy only ever makes the decision stricter.
    assert decision.tls >= alone.tls
    assert _RANK[decision.verification] >= _RANK[alone.verification]
    assert not (decision.fallback and not alone.fallback)
    policy = destination.mta_sts
    if policy is not None and policy.mode is StsMode.ENFORCE:
        assert decision.tls is Tls.REQUIRED
        assert decision.plan is not Action.SKIP
        assert all(o.action is not Action.FALLBACK for o in decision.outcomes.values())
        if policy.permits_mx(MX):
            assert decision.outcome(Observation.NAME_MISMATCH).action is not Action.PROCEED
            assert decision.outcome(Observation.CHAIN_NOT_TRUSTED).action is not Action.PROCEED
        else:
            assert decision.plan is Action.FAIL


_SHAPES = generated_shapes()


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(domain=st.sampled_from(sorted(_SHAPES)), config=_configs)
def test_generated_dns_shapes_obey_the_invariants(dns_lab: DnsLab, https_lab: HttpsLab,
                                                  domain: str, config: object) -> None:
    """Generated MX and TLSA RRsets, signed and served by NSD, validated by Unbound: what
    discovery reports is exactly what the zone holds, and the decisions keep section 6."""
    shape = _SHAPES[domain]

    async def main() -> tuple[object, dict[str, Destination]]:
        settings_ = DiscoveryConfig(resolver="127.0.0.1", resolver_port=dns_lab.port,
                                    probe_name="test.", https_port=https_lab.port,
                                    ca_file=str(https_lab.ca_file), resolv_conf=None)
        async with Discovery(settings_, store=SqliteStore(":memory:")) as d:
            mx = await d.mx(domain)
            hosts = [h for _, h in shape["mx"] if h != "."]
            return mx, {h: await d.destination(domain, h) for h in hosts}

    mx, destinations = asyncio.run(main())
    if shape["mx"] == [(0, ".")]:
        assert mx.kind == "null"  # type: ignore[attr-defined]
        return
    expected_order = [h for _, h in sorted(shape["mx"], key=lambda p: (p[0], p[1]))]
    assert list(mx.hosts) == list(dict.fromkeys(expected_order))  # type: ignore[attr-defined]
    resolver = Resolver(config)  # type: ignore[arg-type]
    for host, destination in destinations.items():
        info = shape["hosts"][host]
        lookup = destination.tlsa
        assert lookup is not None and destination.mx_dnssec is True
        # Every record as published: one whose SHA-256/512 data has the wrong length too
        # (dnspython refuses it; it is read as opaque data, and is unusable).
        wanted = {TlsaRecord(u, s, m, bytes.fromhex(x)) for u, s, m, x in info["tlsa"]}
        if not info["address"]:
            assert lookup.status is TlsaLookupStatus.NODATA
        elif wanted:
            assert lookup.status is TlsaLookupStatus.RECORDS
            assert set(lookup.records) == wanted
        else:
            assert lookup.status is TlsaLookupStatus.NXDOMAIN
        alone = resolver.resolve(domain, mx_host=host)
        decision = resolver.resolve(domain, mx_host=host, destination=destination)
        assert decision.tls >= alone.tls
        assert _RANK[decision.verification] >= _RANK[alone.verification]
        if lookup.status is TlsaLookupStatus.RECORDS:
            # DANE with any secure TLSA answer: never SKIP or FALLBACK.
            assert decision.plan is not Action.SKIP
            assert decision.tls is Tls.REQUIRED
            assert all(o.action is not Action.FALLBACK for o in decision.outcomes.values())
            if lookup.usable_records:
                assert decision.verification is Verification.DANE


def test_every_generated_tlsa_record_of_the_wrong_length_is_read_and_unusable(
        dns_lab: DnsLab, https_lab: HttpsLab) -> None:
    """Every generated host holding a SHA-256/512 record of the wrong length (the property
    above samples some): its lookup has every record as published, that one unusable."""
    misshapen = {host: info for shape in _SHAPES.values()
                 for host, info in shape["hosts"].items()
                 if info["address"] and any({1: 32, 2: 64}.get(m) not in (None, len(x) // 2)
                                            for _, _, m, x in info["tlsa"])}
    assert len(misshapen) >= 5

    async def main() -> dict[str, Destination]:
        settings_ = DiscoveryConfig(resolver="127.0.0.1", resolver_port=dns_lab.port,
                                    probe_name="test.", https_port=https_lab.port,
                                    ca_file=str(https_lab.ca_file), resolv_conf=None)
        async with Discovery(settings_, store=SqliteStore(":memory:")) as d:
            return {h: await d.destination(h.split(".", 1)[1], h) for h in misshapen}

    for host, destination in asyncio.run(main()).items():
        lookup = destination.tlsa
        assert lookup is not None and lookup.status is TlsaLookupStatus.RECORDS, host
        assert set(lookup.records) == {TlsaRecord(u, s, m, bytes.fromhex(x))
                                       for u, s, m, x in misshapen[host]["tlsa"]}
        assert any(not r.is_usable for r in lookup.records)


def test_a_fetched_policy_with_max_age_zero_is_never_in_force(
        dns_lab: DnsLab, https_lab: HttpsLab, tmp_path_factory: pytest.TempPathFactory) -> None:
    # Not even for the lookup that fetched it: its life ends at its fetch (docs/choices.md).
    https_lab.set(DOMAIN, PolicyAnswer(b"version: STSv1\nmode: enforce\nmx: *.fuzz.secure.test\n"
                                       b"max_age: 0\n"))
    destination = _discover(dns_lab, https_lab, tmp_path_factory.mktemp("zero"))
    assert destination.mta_sts is None
    assert destination.mta_sts_fetch is FetchOutcome.OK
