"""Performance figures of tlspolicy, each against a baseline measured in the same run.

Run ``python benchmarks/run.py`` for the full figures (a few minutes) or
``python benchmarks/run.py --quick`` for small sizes and one repeat (CI runs
this to check the benchmarks work; it asserts no timings).  Every figure is a
median of several repeats, printed with its baseline and their ratio:

warm-resolve
    ``Resolver.resolve(domain, binding)`` for a pair already resolved, against
    the floor: six inline ``dict.get`` calls, the bare lookups a six-level
    scope chain needs (binding, its group, and the domain in the binding, in
    the group and at global level, then the global scope).
scale-warm-* / scale-cold-*
    The same with 100, 10,000 and 100,000 domain stanzas and 1,000 bindings,
    over many keys; cold is the first resolve of each key on a fresh
    resolver (the domain-name cache cleared too).  Baseline: the 100-stanza
    configuration.
regex-hit / regex-miss
    ``Resolver.effective`` (the domain-matching step the decision memo
    skips) for a domain matched by one of 1,000 regex stanzas, the match
    cached, against a domain matched by one of 1,000 exact stanzas; the miss
    runs the patterns with the match cache disabled.
compile
    ``Resolver(loads_toml(text))`` for a 100,000-domain file against
    ``tomllib.loads(text)`` of the same file.
memory
    Bytes allocated per domain stanza by a compiled configuration
    (tracemalloc), against the dictionaries ``tomllib`` builds from the file.
socketmap
    Answers per second ``postmap -q -`` gets from the socketmap server (the
    Postfix policy lookup over the resolver) against a native ``hash:``
    table holding the same answers.
socketmap-pinned-*
    The same measured from outside: the server in a process of its own and
    ``postmap -q -`` pinned with ``taskset``, on the same CPU and on different
    CPUs, against the do-nothing blocking server pinned alike; memoised keys
    and keys new to the memo; the server's CPU time per answer.
footprint
    The policy server's resident size and start time (script start to
    listening) with the largest configuration read from a file (parsed, a
    compiled-cache miss, a compiled-cache hit), against 100 stanzas.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import sys
import tomllib
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _configs
import _pinned
import _postmap
import _timing

from tlspolicy import Config, Resolver
from tlspolicy.formats.toml import loads_toml
from tlspolicy.names import normalise_domain
from tlspolicy.options import Tls
from tlspolicy.servers.socketmap import SocketmapReply

FIGURES: Final = (
    "warm-resolve",
    "scale-warm-small", "scale-warm-mid", "scale-warm-large",
    "scale-cold-small", "scale-cold-mid", "scale-cold-large",
    "regex-hit", "regex-miss",
    "compile",
    "memory",
    "socketmap",
    "socketmap-pinned-same", "socketmap-pinned-different",
    "footprint",
)

#: What ``--only`` chooses from: each runs the figures of the same name above.
GROUPS: Final = ("warm-resolve", "scale", "regex", "compile", "memory", "socketmap",
                 "socketmap-pinned", "footprint")


@attrs.frozen(slots=True)
class Settings:
    """Sizes and repeat counts of one run."""

    sizes: tuple[int, int, int]
    repeats: int
    sample_seconds: float
    cold_keys: int
    warm_keys: int
    regex_stanzas: int
    compile_stanzas: int
    memory_stanzas: int
    socketmap_keys: int
    socketmap_repeats: int


FULL: Final = Settings(sizes=(100, 10_000, 100_000), repeats=7, sample_seconds=0.2,
                       cold_keys=100, warm_keys=1000, regex_stanzas=1000,
                       compile_stanzas=100_000, memory_stanzas=10_000,
                       socketmap_keys=100_000, socketmap_repeats=3)
QUICK: Final = Settings(sizes=(100, 1000, 3000), repeats=1, sample_seconds=0.01,
                        cold_keys=50, warm_keys=200, regex_stanzas=100,
                        compile_stanzas=2000, memory_stanzas=1000,
                        socketmap_keys=2000, socketmap_repeats=1)


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.3f} us"


def report(name: str, candidate: str, baseline: str, ratio: float | None,
           target: str | None, met: bool | None, note: str = "") -> None:
    """Print one figure line in a fixed format."""
    verdict = "" if met is None else ("  MET" if met else "  NOT MET")
    ratio_text = "ratio n/a" if ratio is None else f"ratio {ratio:.2f}"
    target_text = f" (target {target})" if target else ""
    print(f"{name}: {candidate}; baseline {baseline}; {ratio_text}{target_text}{verdict}"
          + (f"  [{note}]" if note else ""), flush=True)


def compile_config(text: str) -> Config:
    """``loads_toml`` of generated text."""
    return loads_toml(text, "generated.toml")


# --------------------------------------------------------------------- warm resolve


def warm_resolve(settings: Settings) -> None:
    """warm-resolve: one memoised pair against six inline dict lookups."""
    resolver = Resolver(compile_config(_configs.scale_config(settings.sizes[0])))
    domain, binding = _configs.domain(0), _configs.binding(0)
    resolver.resolve(domain, binding)
    names = [_configs.domain(i) for i in range(settings.sizes[0])]
    bindings = {_configs.binding(j): j for j in range(_configs.N_BINDINGS)}
    namespace: dict[str, Any] = {
        "r": resolver, "d": domain, "b": binding,
        "s1": bindings, "s2": {b: f"g{j // 100}" for b, j in bindings.items()},
        "s3": dict.fromkeys(names[:1]), "s4": dict.fromkeys(names[:10]),
        "s5": dict.fromkeys(names), "s6": {"tls": "ifavailable"}, "o": "tls",
    }
    floor = "s1.get(b); s2.get(b); s3.get(d); s4.get(d); s5.get(d); s6.get(o)"
    pair = _timing.compare_statements("r.resolve(d, b)", floor, namespace,
                                      repeats=settings.repeats, target=settings.sample_seconds)
    report("warm-resolve", f"{_us(pair.candidate)}/resolve", f"{_us(pair.baseline)} "
           "(six inline dict.get)", pair.ratio, "<= 3", pair.ratio <= 3)


# -------------------------------------------------------------------------- scaling


def _cold_run(config: Config, n: int, settings: Settings, rng: random.Random,
              ) -> Callable[[], int]:
    resolver = Resolver(config)
    normalise_domain.cache_clear()
    # Domains from the first quarter have a stanza at global level, in one group and in
    # one binding whatever the size, so every size does the same work per key.  Fresh
    # string objects: a hash cached on a reused key would flatter the cold path.
    keys = [(_configs.domain(i) + "", _configs.binding(rng.randrange(_configs.N_BINDINGS)))
            for i in rng.sample(range(n // 4), min(n // 4, settings.cold_keys))]
    resolve = resolver.resolve

    def run() -> int:
        for domain, binding in keys:
            resolve(domain, binding)
        return len(keys)

    return run


def _warm_run(resolver: Resolver, keys: Sequence[tuple[str, str]]) -> Callable[[], int]:
    resolve = resolver.resolve

    def run() -> int:
        for domain, binding in keys:
            resolve(domain, binding)
        return len(keys)

    return run


def scaling(settings: Settings, configs: Sequence[Config]) -> None:
    """scale-*: warm and cold resolves per configuration size, against the smallest."""
    rng = random.Random(7052)
    labels = ("small", "mid", "large")
    cold: list[list[float]] = [[] for _ in configs]
    for _ in range(settings.repeats * 3):
        for i, (config, n) in enumerate(zip(configs, settings.sizes, strict=True)):
            cold[i].append(_timing.sample(_cold_run(config, n, settings, rng)))
    warm_runs = []
    for config, n in zip(configs, settings.sizes, strict=True):
        resolver = Resolver(config)
        keys = [(_configs.domain(rng.randrange(n)), _configs.binding(
            rng.randrange(_configs.N_BINDINGS))) for _ in range(settings.warm_keys)]
        run = _warm_run(resolver, keys)
        run()
        per_pass = _timing.sample(run) * len(keys)
        count = max(1, int(settings.sample_seconds / max(per_pass, 1e-9)))

        def repeated(run: Callable[[], int] = run, count: int = count) -> int:
            return sum(run() for _ in range(count))

        warm_runs.append(repeated)
    warm: list[list[float]] = [[] for _ in configs]
    for _ in range(settings.repeats):
        for i, run in enumerate(warm_runs):
            warm[i].append(_timing.sample(run))
    for kind, samples in (("warm", warm), ("cold", cold)):
        medians = [statistics.median(s) for s in samples]
        for label, n, median in zip(labels, settings.sizes, medians, strict=True):
            ratio = median / medians[0]
            last = label == "large"
            report(f"scale-{kind}-{label}", f"{_us(median)}/resolve at {n} stanzas",
                   f"{_us(medians[0])} at {settings.sizes[0]} stanzas", ratio,
                   "<= 1.2" if last else None, ratio <= 1.2 if last else None,
                   "1,000 bindings")


# ---------------------------------------------------------------------------- regex


def regex(settings: Settings) -> None:
    """regex-hit / regex-miss: domain matching with 1,000 regex stanzas."""
    n = settings.regex_stanzas
    target = n // 2
    regex_resolver = Resolver(compile_config(_configs.regex_config(n, regex=True)))
    exact_resolver = Resolver(compile_config(_configs.regex_config(n, regex=False)))
    miss_resolver = Resolver(compile_config(
        _configs.regex_config(n, regex=True, match_cache_size=0)))
    regex_domain, exact_domain = f"mx.r{target}.example", f"r{target}.example"
    for resolver, domain in ((regex_resolver, regex_domain), (exact_resolver, exact_domain),
                             (miss_resolver, regex_domain)):
        values, _sources = resolver.effective(domain)
        if values["tls"] is not Tls.REQUIRED:
            raise RuntimeError(f"{domain} was not matched by its stanza")
    namespace = {"rx": regex_resolver, "ex": exact_resolver, "mx": miss_resolver,
                 "rd": regex_domain, "ed": exact_domain}
    hit = _timing.compare_statements("rx.effective(rd)", "ex.effective(ed)", namespace,
                                     repeats=settings.repeats, target=settings.sample_seconds)
    report("regex-hit", f"{_us(hit.candidate)}/effective (regex, match cached)",
           f"{_us(hit.baseline)} (exact)", hit.ratio, "<= 1.5", hit.ratio <= 1.5,
           f"{n} regex stanzas vs {n} exact stanzas")
    miss = _timing.compare_statements("mx.effective(rd)", "ex.effective(ed)", namespace,
                                      repeats=settings.repeats, target=settings.sample_seconds)
    report("regex-miss", f"{_us(miss.candidate)}/effective (regex, match cache off)",
           f"{_us(miss.baseline)} (exact)", miss.ratio, None, None,
           f"every call runs up to {n} patterns")


# ------------------------------------------------------------------ compile, memory


def compile_figure(settings: Settings) -> None:
    """compile: loads_toml + Resolver against tomllib on the same text."""
    text = _configs.scale_config(settings.compile_stanzas)

    def ours() -> Callable[[], int]:
        normalise_domain.cache_clear()
        return lambda: (Resolver(compile_config(text)), 1)[1]

    def tomllib_only() -> Callable[[], int]:
        return lambda: (tomllib.loads(text), 1)[1]

    pair = _timing.compare_runs(ours, tomllib_only, repeats=max(1, settings.repeats // 2))
    report("compile", f"{pair.candidate:.3f} s (loads_toml + Resolver)",
           f"{pair.baseline:.3f} s (tomllib.loads)", pair.ratio, "<= 1.5", pair.ratio <= 1.5,
           f"{settings.compile_stanzas} domain stanzas, {len(text) // 1024} KiB of TOML")


def _allocated(build: Callable[[], object]) -> int:
    normalise_domain.cache_clear()
    gc.collect()
    tracemalloc.start()
    try:
        kept = build()
        gc.collect()
        size = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return size


def memory(settings: Settings) -> None:
    """memory: bytes per domain stanza kept by a compiled configuration."""
    n = settings.memory_stanzas
    text = _configs.scale_config(n)
    ours = _allocated(lambda: Resolver(compile_config(text)))
    theirs = _allocated(lambda: tomllib.loads(text))
    report("memory", f"{ours / n:.0f} bytes/stanza (Config + Resolver)",
           f"{theirs / n:.0f} bytes/stanza (tomllib's dicts)", ours / theirs, None, None,
           f"{n} domain stanzas, 1,000 bindings; tracemalloc after compile")


# ------------------------------------------------------------------------ socketmap


def _stand_in_lookup(resolver: Resolver) -> Callable[[str, str], SocketmapReply]:
    def lookup(map_name: str, key: str) -> SocketmapReply:
        decision = resolver.resolve(key, map_name)
        return SocketmapReply.ok(f"{decision.tls.value} {decision.verification}")

    return lookup


def socketmap(settings: Settings, config: Config, n_stanzas: int) -> None:
    """socketmap: postmap -q - against the socketmap server and against hash:."""
    postmap = _postmap.find_postmap()
    if postmap is None:
        print("socketmap: skipped: postmap not found (install Postfix, e.g. with "
              ".ci/install-postfix.sh)", flush=True)
        return
    resolver = Resolver(config)
    note = "lookup: tlspolicy.postfix.lookup.PolicyLookup"
    lookup: Callable[[str, str], SocketmapReply]
    try:
        from tlspolicy.postfix.lookup import PolicyLookup
        lookup = PolicyLookup(resolver)
    except ImportError:
        lookup = _stand_in_lookup(resolver)
        note = "lookup: stand-in (resolve + a Postfix-like answer); tlspolicy.postfix missing"
    keys = [_configs.domain(i % n_stanzas) if i < n_stanzas else f"x{i}.example"
            for i in range(settings.socketmap_keys)]
    socket_runs, hash_runs, ceiling_runs = _postmap.compare(
        postmap, lookup, _configs.binding(0), keys, settings.socketmap_repeats)
    n = len(keys)
    ours = n / statistics.median(socket_runs)
    native = n / statistics.median(hash_runs)
    ratio = ours / native
    report("socketmap", f"{ours:,.0f} answers/s (socketmap server)",
           f"{native:,.0f} answers/s (hash: table)", ratio, ">= 0.2", ratio >= 0.2,
           f"{n} keys through one postmap -q - process; {note}")
    floor = statistics.median(ceiling_runs)
    print(f"socketmap-ceiling: {n / floor:,.0f} answers/s from a blocking server answering a "
          f"constant with no work; ratio to hash: {n / floor / native:.2f} (the most any "
          "socketmap server gets from one postmap client on this machine)", flush=True)


def socketmap_pinned(settings: Settings, n_stanzas: int) -> None:
    """socketmap-pinned-*: pinned processes, measured from outside."""
    postmap = _postmap.find_postmap()
    why = "postmap not found (install Postfix)" if postmap is None else \
        _pinned.pinning_available()
    if postmap is None or why is not None:
        for name in ("socketmap-pinned-same", "socketmap-pinned-different"):
            print(f"{name}: skipped: {why}", flush=True)
        return
    layouts, _started = _pinned.measure(
        postmap, n_stanzas, settings.socketmap_keys, min(1000, n_stanzas),
        settings.socketmap_repeats, _configs.binding(0), _configs.domain)
    for layout, label in zip(layouts, ("same", "different"), strict=True):
        c = layout.constant
        for kind, sample, target in (
                ("memoised", layout.memoised, 0.8), ("distinct", layout.distinct, 0.3),
                ("memoised, uvloop", layout.memoised_uvloop, 0.8),
                ("distinct, uvloop", layout.distinct_uvloop, 0.3)):
            if sample is None:
                continue
            ratio = sample.rate / c.rate
            report(f"socketmap-pinned-{label}", f"{kind}: {sample.rate:,.0f} answers/s, server "
                   f"{_us(sample.cpu_per_answer)} CPU/answer",
                   f"do-nothing server {c.rate:,.0f} answers/s, {_us(c.cpu_per_answer)} "
                   "CPU/answer", ratio, f">= {target}", ratio >= target,
                   f"{layout.name}; {settings.socketmap_keys} keys, {n_stanzas} stanzas")
    if not _pinned.uvloop_available():
        print("socketmap-pinned: uvloop not installed (the uvloop extra): asyncio's loop only",
              flush=True)


def footprint(n_stanzas: int, repeats: int = 3) -> None:
    """footprint: resident size and start time of the policy server, three ways.

    Each way is started ``repeats`` times, the ways in turn (a fresh cache for each
    miss), and the start with the median time is reported, with the least CPU time a
    start of that way took to listen.
    """
    import tempfile

    samples: dict[str, list[tuple[_pinned.Started, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="tlspolicy-footprint-") as tmp:
        path = str(Path(tmp) / "generated.toml")
        Path(path).write_text(_configs.scale_config(n_stanzas))
        for round_no in range(repeats):
            cache = str(Path(tmp) / f"cache{round_no}")
            for label, args in (("small", ("100",)), ("parsed", (str(n_stanzas), path)),
                                ("cache miss", (str(n_stanzas), path, cache)),
                                ("cache hit", (str(n_stanzas), path, cache))):
                with _pinned.server(0, "policy", *args) as started:
                    # The CPU time it took to listen (it idles then): on a loaded machine
                    # the steadier figure, where the wall time counts the waits too.
                    cpu = _pinned.cpu_seconds(started.pid)
                    samples.setdefault(label, []).append((started, cpu))
    runs = {label: sorted(s, key=lambda x: x[0].start_seconds)[len(s) // 2][0]
            for label, s in samples.items()}
    least_cpu = {label: min(cpu for _started, cpu in s) for label, s in samples.items()}
    small = runs.pop("small")
    # Start targets: 0.5 s from the compiled cache, 2 s parsing the file (a miss parses).
    limits = {"parsed": 2.0, "cache miss": 2.0, "cache hit": 0.5}
    for label, started in runs.items():
        per_thousand = (started.rss_kib - small.rss_kib) / 1024 / (n_stanzas / 1000)
        limit = limits[label]
        report("footprint", f"{label}: {started.rss_kib / 1024:.1f} MB RSS, start "
               f"{started.start_seconds:.2f} s at {n_stanzas} stanzas",
               f"{small.rss_kib / 1024:.1f} MB, {small.start_seconds:.2f} s at 100 stanzas",
               started.start_seconds / small.start_seconds, f"<= 80 MB, <= {limit:g} s",
               started.rss_kib / 1024 <= 80 and started.start_seconds <= limit,
               f"{per_thousand:.2f} MB per 1,000 stanzas above the small server; "
               f"CPU to listen {least_cpu[label]:.2f} s ({least_cpu['small']:.2f} s at 100 "
               "stanzas, least of the starts); "
               "start = interpreter start to listening, ratio = start / small start")


# ----------------------------------------------------------------------------- main


def machine() -> str:
    """nproc, CPU model and Python version, for the record."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} CPUs, {model}, Python {platform.python_version()} "
            f"({platform.python_implementation()})")


def main(argv: Sequence[str] | None = None) -> int:
    """Run every figure and print one line per figure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and one repeat: checks the benchmarks run")
    parser.add_argument("--only", action="append", choices=GROUPS, metavar="GROUP",
                        help=f"run only these figures (repeatable): {', '.join(GROUPS)}")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    chosen = set(args.only or GROUPS)
    print(f"machine: {machine()}")
    print(f"mode: {'quick (sizes too small for meaningful ratios)' if args.quick else 'full'}",
          flush=True)
    if "warm-resolve" in chosen:
        warm_resolve(settings)
    if chosen & {"scale", "socketmap"}:
        configs = [compile_config(_configs.scale_config(n)) for n in settings.sizes]
        if "scale" in chosen:
            scaling(settings, configs)
    if "regex" in chosen:
        regex(settings)
    if "compile" in chosen:
        compile_figure(settings)
    if "memory" in chosen:
        memory(settings)
    if "socketmap" in chosen:
        socketmap(settings, configs[-1], settings.sizes[-1])
    if "socketmap-pinned" in chosen:
        socketmap_pinned(settings, settings.sizes[-1])
    if "footprint" in chosen:
        why = _pinned.pinning_available()
        if why is None:
            footprint(settings.sizes[-1], min(3, settings.repeats))
        else:
            print(f"footprint: skipped: {why}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
