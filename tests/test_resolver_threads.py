"""One resolver shared by many threads, as an MTA embeds it: every public call.

An MTA resolves from many delivery threads at once on one :class:`Resolver`, and
the decisions it memoises are shared by every thread that asks for the same key.
Several parts are made lazily (a decision's explanation at its first read, a value
set's first decision, contributions, the bounded caches, which put new keys without
their lock), so each test here makes threads switch as often as the interpreter lets
them, runs a few thousand calls on one shared resolver (small caches, so keys are
evicted and made again), and has each thread compare every answer, field by field,
with what a resolver of its own gives.  Failures are collected and raised in the
test's own thread.
"""

from __future__ import annotations

import copy
import itertools
import pickle
import sys
import threading
from collections.abc import Callable
from typing import Any, Final

from tlspolicy import (
    Config,
    Decision,
    Destination,
    MtaStsPolicy,
    Options,
    Resolver,
    StsMode,
    Tls,
    TlsaLookup,
    TlsaLookupStatus,
    TlsaRecord,
    Verification,
    loads_toml,
)
from tlspolicy import decision as decision_module
from tlspolicy.decision import PolicyReport, Requirements, Source, TlsParameters
from tlspolicy.options import TlsEngine, TlsVerify, TlsVersion
from tlspolicy.outcomes import Reason
from tlspolicy.policies.mtasts import FetchOutcome

THREADS: Final = 4

CONFIG: Final = r'''
match_cache_size = 8
[global]
tls = "ifavailable"
tls_verify = "optional"
use_mta_sts = true
use_dane = true
[[domain]]
name = "partner.example"
tls = "required"
tls_verify = "host"
[[domain]]
name = "/\\.bank\\.example$/"
tls = "required"
tls_verify = "ca"
[[domain]]
name = "/^mx/"
tls_ciphers = "MX"
[[domain]]
name = "192.0.2.1"
tls = "no"
[[domain]]
name = "[IPv6:2001:db8::1]"
tls_ciphers = "HIGH"
[[domain]]
name = "bücher.de"
tls_ciphers = "IDN"
[[binding]]
name = "plain"
tls = "no"
[[binding.domain]]
name = "/partner/"
tls = "ifavailable"
[[binding_group]]
name = "bulk"
tls_verify = "no"
[[binding_group.domain]]
name = "/example$/"
tls_protocols = "TLSv1.2:TLSv1.3"
[[binding_group.binding]]
name = "bulk-1"
[[binding_group.binding]]
name = "bulk-2"
tls_ifavailable_fallback = false
[[binding_group.binding.domain]]
name = "partner.example"
tls_ciphers = "ECDHE"
'''

FLOORS: Final = r'''
[[floor]]
name = "partner.example"
tls = "required"
tls_verify = "host"
[[floor]]
name = "/bank/"
tls = "required"
tls_verify = "ca"
tls_ifavailable_fallback = false
[[floor]]
name = "/^h1/"
tls_protocols = "TLSv1.3"
[[floor]]
name = "192.0.2.1"
tls = "ifavailable"
'''

DOMAINS: Final = (
    "partner.example", "Partner.Example.", "a.bank.example", "B.bank.example.",
    "mx.example", "x.example", "192.0.2.1", "[192.0.2.1]", "[IPv6:2001:db8::1]",
    "2001:db8::1", "[198.51.100.7]", "bücher.de", "xn--bcher-kva.de", "other.test",
    *(f"h{i}.example" for i in range(24)),
)
BINDINGS: Final = (None, "default", "plain", "bulk-1", "bulk-2")
MX_HOSTS: Final = (None, "mx1.partner.example", "MX2.Example.")

USABLE: Final = TlsaRecord.parse("3 1 1 " + "ab" * 32)
UNUSABLE: Final = TlsaRecord.parse("1 1 1 " + "ef" * 32)
ENFORCE: Final = MtaStsPolicy(StsMode.ENFORCE, ("*.partner.example", "*.example"), 86400)
TESTING: Final = MtaStsPolicy(StsMode.TESTING, ("mx9.elsewhere.test",), 86400)
OVERRIDES: Final = (
    None, Options(), Options(tls=Tls.REQUIRED), Options(tls=Tls.NO),
    Options(tls_verify=TlsVerify.HOST, tls_ciphers="OVERRIDE"),
    Options(tls_ifavailable_fallback=False),
)
DESTINATIONS: Final = (
    None,
    Destination(mta_sts=ENFORCE),
    Destination(mta_sts=TESTING, mta_sts_fetch=FetchOutcome.FETCH_ERROR),
    Destination(tlsa=TlsaLookup(TlsaLookupStatus.RECORDS, (USABLE,))),
    Destination(tlsa=TlsaLookup(TlsaLookupStatus.RECORDS, (UNUSABLE,)), mta_sts=ENFORCE),
    Destination(tlsa=TlsaLookup(TlsaLookupStatus.INSECURE), mx_dnssec=True),
    Destination(tlsa=TlsaLookup(TlsaLookupStatus.FAILED)),
    Destination(requiretls=True),
    Destination(tls_required_no=True),
    Destination(tls_broken=True),
)


def _run(body: Callable[[int, Callable[[], None]], None], threads: int = THREADS) -> None:
    """Run ``body(n, start)`` in ``threads`` threads switching as often as they can;
    ``start`` waits for every thread (call it once a thread's own setup is done).
    Raise the first failure in this thread."""
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def start() -> None:
        barrier.wait(timeout=30)

    def target(n: int) -> None:
        try:
            body(n, start)
        except BaseException as exc:  # reported in the test's own thread
            errors.append(exc)
            barrier.abort()

    workers = [threading.Thread(target=target, args=(n,)) for n in range(threads)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter lets them
    try:
        for t in workers:
            t.start()
        for t in workers:
            t.join(timeout=120)
    finally:
        sys.setswitchinterval(interval)
    assert not any(t.is_alive() for t in workers), "a thread did not finish"
    if errors:
        raise errors[0]


def _reads(d: Decision) -> list[Callable[[], object]]:
    """Every field of ``d`` and what a caller makes of it, each as a read of its own."""
    return [
        lambda: dict(d.explanation),
        lambda: sorted((k, str(v)) for k, v in d.explanation.items()),
        lambda: hash(d.explanation),
        lambda: dict(d.decided_by),
        lambda: hash(d.decided_by),
        lambda: (d.reports, d.notes, d.tlsa_records, d.mta_sts, d.dane),
        lambda: (d.domain, d.binding, d.binding_group, d.mx_host, d.plan, d.plan_status),
        lambda: (d.tls, d.verification, d.fallback, d.requiretls, d.reference_identities),
        lambda: dict(d.outcomes),
        lambda: hash(d.outcomes),
        lambda: (d.parameters, hash(d.parameters), d.parameters.to_dict()),
        lambda: dict(d.effective),
        lambda: hash(d.effective),
        lambda: hash(d),
        lambda: repr(d),
        lambda: d.to_dict(),
        lambda: d.required_security.to_dict(),
        lambda: pickle.loads(pickle.dumps(d)),
        lambda: copy.copy(d),
        lambda: copy.deepcopy(d),
        lambda: pickle.loads(pickle.dumps(d.explanation)),
        lambda: copy.deepcopy(d.explanation),
    ]


def _same(got: Decision, want: Decision, turn: int) -> None:
    """``got`` (shared) reads, field by field, as ``want`` (a thread's own) does.

    The reads start at a different field each turn, so that which lazy part a thread
    touches first varies between threads and turns."""
    got_reads, want_reads = _reads(got), _reads(want)
    start = turn % len(got_reads)
    for i in itertools.chain(range(start, len(got_reads)), range(start)):
        mine, theirs = got_reads[i](), want_reads[i]()
        if mine != theirs:
            raise AssertionError(f"read {i} of {got.domain!r} via {got.binding!r}: "
                                 f"{mine!r} != {theirs!r}")
    if got != want or want != got:
        raise AssertionError(f"{got!r} != {want!r}")


def _answer(call: Callable[..., Decision], *args: object, **kwargs: object
            ) -> tuple[str, Any]:
    """A call's decision, or its error (type and message), to compare either."""
    try:
        return "decision", call(*args, **kwargs)
    except Exception as exc:  # the same request must fail alike in every resolver
        return "error", (type(exc), str(exc))


def _compare(got: tuple[str, Any], want: tuple[str, Any], turn: int) -> None:
    if got[0] != want[0]:
        raise AssertionError(f"{got!r} != {want!r}")
    if got[0] == "decision":
        _same(got[1], want[1], turn)
    elif got != want:
        raise AssertionError(f"{got!r} != {want!r}")


def _config(extra: str = "") -> Config:
    return loads_toml(CONFIG + extra, "threads.toml")


# ------------------------------------------------------------------ resolve()


def test_resolves_by_binding_and_mx_host_on_one_resolver() -> None:
    # Plain names, regex and IP-literal stanzas, every binding and the implicit one,
    # with and without an MX host: a small memo, so keys are evicted and made again
    # (new decisions, with explanations not yet made) while other threads read theirs.
    config = _config()
    requests = list(itertools.product(DOMAINS, BINDINGS, MX_HOSTS))
    for _round in range(2):
        shared = Resolver(config, decision_cache_size=24)

        def body(n: int, start: Callable[[], None], shared: Resolver = shared) -> None:
            own = Resolver(config)
            start()
            for turn in range(200):
                domain, binding, mx = requests[(n * 101 + turn * 7) % len(requests)]
                _same(shared.resolve(domain, binding, mx_host=mx),
                      own.resolve(domain, binding, mx_host=mx), turn + n)

        _run(body)
        assert len(shared._decisions) <= 24
        assert len(shared.regex_cache) <= 8


def test_resolves_with_overrides_and_destinations_on_one_resolver() -> None:
    # Per-message overrides and destination inputs (MTA-STS, DANE, REQUIRETLS,
    # TLS-Required: No, remembered broken TLS), some of which fail without an MX host:
    # the same request fails alike, or decides alike, in every thread.
    config = _config()
    requests = list(itertools.product(DOMAINS[::3], ("bulk-2", None), MX_HOSTS, OVERRIDES,
                                      DESTINATIONS))
    for _round in range(2):
        shared = Resolver(config, decision_cache_size=32)

        def body(n: int, start: Callable[[], None], shared: Resolver = shared) -> None:
            own = Resolver(config)
            start()
            for turn in range(200):
                domain, binding, mx, over, dest = requests[
                    (n * 389 + turn * 13) % len(requests)]
                _compare(
                    _answer(shared.resolve, domain, binding, mx_host=mx, overrides=over,
                            destination=dest),
                    _answer(own.resolve, domain, binding, mx_host=mx, overrides=over,
                            destination=dest),
                    turn + n)

        _run(body)
        assert len(shared._decisions) <= 32


def test_floors_effective_values_and_decide_on_one_resolver() -> None:
    # Floors (exact and regex) over the regex stanzas, the regex match cache of eight
    # entries shared by both, no decision memo (every resolve is cold), and the other
    # public readers: effective(), effective_values(), floors_for() and decide().
    config = _config(FLOORS)
    names = [d.lower().rstrip(".") for d in DOMAINS if not d[0].isdigit()
             and d[0] != "[" and d.isascii()] + ["[192.0.2.1]", "[ipv6:2001:db8::1]"]
    requests = list(itertools.product(names, BINDINGS, (None, "mx1.partner.example")))
    shared = Resolver(config, decision_cache_size=0)

    def body(n: int, start: Callable[[], None]) -> None:
        own = Resolver(config)
        start()
        for turn in range(300):
            domain, binding, mx = requests[(n * 211 + turn * 11) % len(requests)]
            kind = (turn + n) % 4
            if kind == 0:
                _same(shared.resolve(domain, binding, mx_host=mx),
                      own.resolve(domain, binding, mx_host=mx), turn)
            elif kind == 1:
                got = shared.effective(domain, binding, overrides=OVERRIDES[turn % 3])
                want = own.effective(domain, binding, overrides=OVERRIDES[turn % 3])
                if got != want:
                    raise AssertionError(f"effective({domain!r}, {binding!r})")
            elif kind == 2:
                if (shared.effective_values(domain, binding)
                        != own.effective_values(domain, binding)):
                    raise AssertionError(f"effective_values({domain!r}, {binding!r})")
                floors = [f.name.text for f in shared.floors_for(domain)]
                if floors != [f.name.text for f in own.floors_for(domain)]:
                    raise AssertionError(f"floors_for({domain!r})")
            else:
                values, sources = own.effective(domain, binding)
                dest = DESTINATIONS[turn % len(DESTINATIONS)]
                _compare(
                    _answer(shared.decide, values, sources, domain, binding, mx_host=mx,
                            destination=dest),
                    _answer(own.decide, values, sources, domain, binding, mx_host=mx,
                            destination=dest),
                    turn)

    _run(body)
    assert len(shared.regex_cache) <= 8


# ------------------------------------------------------- shared decisions, read


def test_new_decisions_read_by_every_thread_at_once() -> None:
    # Decisions made but not yet read (explanation, hashes not made), then read by
    # every thread at once in the same order, each thread with another first read:
    # the first read of each lazy part races with the others'.  Then every field,
    # each thread from another start.  Fresh resolvers and decisions each round.
    config = _config(FLOORS)
    requests = list(itertools.product(DOMAINS, BINDINGS, MX_HOSTS[:2]))
    first_reads: tuple[Callable[[Decision], object], ...] = (
        lambda d: dict(d.explanation),
        lambda d: hash(d),
        lambda d: pickle.loads(pickle.dumps(d)),
        lambda d: d.explanation == d.explanation,
    )
    for turn in range(4):
        shared = Resolver(config)
        fresh = [shared.resolve(d, b, mx_host=mx) for d, b, mx in requests]

        def body(n: int, start: Callable[[], None], fresh: list[Decision] = fresh,
                 turn: int = turn) -> None:
            own = Resolver(config)
            wanted = [own.resolve(d, b, mx_host=mx) for d, b, mx in requests]
            read = first_reads[(n + turn) % len(first_reads)]
            start()
            for got, want in zip(fresh, wanted, strict=True):
                if read(got) != read(want):
                    raise AssertionError(f"first read of {got!r}")
            for i in range(n, len(fresh), 12):
                _same(fresh[i], wanted[i], n + i)

        _run(body)


# ------------------------------------------------------------- Decision.build


def test_decision_build_from_threads_with_cold_shapes() -> None:
    # Decision.build remembers the outcome tables per shape in a module-wide dict;
    # emptied first, so the threads fill it while they build.
    parameters = TlsParameters(None, None, None, None, None,
                               frozenset({TlsVersion.TLSv1_2, TlsVersion.TLSv1_3}),
                               "mx.example", TlsEngine.OPENSSL)
    requirements = [
        Requirements(tls, verification, fallback, ("mx.example",), failure, skip, requiretls)
        for tls, verification, fallback, failure, skip, requiretls in itertools.product(
            Tls, Verification, (False, True), (None, Reason.MX_NOT_PERMITTED),
            (False, True), (False, True))]

    def build(req: Requirements) -> Decision:
        return Decision.build(
            req, domain="example.com", binding="default", binding_group="default",
            mx_host="mx.example", parameters=parameters, effective={"tls": req.tls},
            explanation={"tls": Source("global")},
            decided_by={"tls": Source("requiretls")} if req.requiretls else None,
            reports=(PolicyReport("sts-policy-fetch-error", "x"),) if req.skip_tls else (),
            notes=("note",) if req.fallback else ())

    expected = [build(req) for req in requirements]
    for _round in range(2):
        decision_module._SHAPES.clear()

        def body(n: int, start: Callable[[], None]) -> None:
            start()
            for i in range(len(requirements)):
                k = (i * 7 + n * 31) % len(requirements)
                _same(build(requirements[k]), expected[k], i + n)

        _run(body)


# ------------------------------------------------------------------ chain_key()


def test_chain_keys_made_at_once_are_one_identity() -> None:
    # A stanza's contribution is made the first time a request meets it, and
    # chain_key() is made of the contributions' identities: threads meeting a stanza
    # for the first time at once must all get the one contribution, or a pair would
    # have several keys, and the identity of one a thread dropped could be taken by
    # another scope's (equal keys for pairs decided by other scopes).  Half the threads
    # resolve each pair first, which makes the contributions by a path of its own.
    stanzas = "".join(
        f'[[domain]]\nname = "s{i}.example"\ntls_ciphers = "G{i}"\n'
        f'[[binding_group.domain]]\nname = "s{i}.example"\ntls_ciphers = "B{i}"\n'
        for i in range(40))
    config = loads_toml('[global]\ntls = "ifavailable"\n[[binding_group]]\nname = "g"\n'
                        f'[[binding_group.binding]]\nname = "b"\n{stanzas}', "keys.toml")
    pairs = [(f"s{i}.example", binding) for i in range(40) for binding in (None, "b")]
    for _round in range(30):
        shared = Resolver(config)
        keys: list[list[tuple[int, ...]]] = [[] for _ in range(THREADS)]

        def body(n: int, start: Callable[[], None], shared: Resolver = shared,
                 keys: list[list[tuple[int, ...]]] = keys) -> None:
            start()
            for domain, binding in pairs:
                if n % 2:  # a cold resolve meets the stanzas too, by its own path
                    shared.resolve(domain, binding)
                keys[n].append(shared.chain_key(domain, binding))

        _run(body)
        own = Resolver(config)
        for i, (domain, binding) in enumerate(pairs):
            assert len({keys[n][i] for n in range(THREADS)}) == 1, (domain, binding)
        by_key: dict[tuple[int, ...], tuple[str, str | None]] = {}
        for (domain, binding), key in zip(pairs, keys[0], strict=True):
            other = by_key.setdefault(key, (domain, binding))
            assert own.effective(*other) == own.effective(domain, binding), (other, domain)


def test_small_memo_under_concurrent_cold_resolves() -> None:
    # The decision memo and the value-set cache put new keys without their lock (see the
    # design choices): threads resolving overlapping keys on a resolver whose memo holds
    # a quarter of them get what a resolver of their own gives, and the caches end
    # within their sizes.
    stanzas = "".join(f'[[domain]]\nname = "d{i}.example"\ntls = "{tls}"\n'
                      for i, tls in enumerate(["required", "ifavailable", "no"] * 20))
    config = loads_toml(f'[global]\ntls = "ifavailable"\n{stanzas}')
    shared = Resolver(config, decision_cache_size=32)
    names = [f"d{i}.example" for i in range(60)] + [f"x{i}.example" for i in range(60)]
    expected = {name: Resolver(config).resolve(name) for name in names}

    def body(n: int, start: Callable[[], None]) -> None:
        start()
        for i in range(3000):
            name = names[(n * 13 + i * 7) % len(names)]
            if shared.resolve(name) != expected[name]:
                raise AssertionError(name)

    _run(body)
    assert len(shared._decisions) <= 32
    assert len(shared._by_values) <= shared._by_values.size
