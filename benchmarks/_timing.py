"""Timing helpers: medians of repeats, candidate and baseline interleaved.

Timings follow :mod:`timeit`'s conventions: the garbage collector is off
while a sample runs (so a collection triggered by earlier work does not land
in one side of a comparison) and each sample runs a statement many times.
Candidate and baseline samples alternate, so drift in the machine's speed
(frequency scaling, neighbours) affects both sides alike.
"""

from __future__ import annotations

import gc
import statistics
import time
import timeit
from collections.abc import Callable, Mapping
from typing import Any

import attrs


@attrs.frozen(slots=True)
class Pair:
    """Medians of a candidate and its baseline, in seconds per operation."""

    candidate: float
    baseline: float

    @property
    def ratio(self) -> float:
        """Candidate over baseline."""
        return self.candidate / self.baseline


def per_op(stmt: str, namespace: Mapping[str, Any], number: int) -> float:
    """Seconds per execution of ``stmt`` (timeit's loop, GC off)."""
    timer = timeit.Timer(stmt, globals=dict(namespace))
    return timer.timeit(number) / number


def calibrate(stmt: str, namespace: Mapping[str, Any], target: float) -> int:
    """A loop count for which ``stmt`` runs about ``target`` seconds."""
    number = 1
    while True:
        elapsed = per_op(stmt, namespace, number) * number
        if elapsed >= target / 10 or number >= 10_000_000:
            return max(1, int(number * target / max(elapsed, 1e-9)))
        number *= 10


def compare_statements(candidate: str, baseline: str, namespace: Mapping[str, Any], *,
                       repeats: int, target: float) -> Pair:
    """Median per-op time of two statements, samples interleaved."""
    n_candidate = calibrate(candidate, namespace, target)
    n_baseline = calibrate(baseline, namespace, target)
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeats):
        a.append(per_op(candidate, namespace, n_candidate))
        b.append(per_op(baseline, namespace, n_baseline))
    return Pair(statistics.median(a), statistics.median(b))


def sample(run: Callable[[], int]) -> float:
    """Seconds per operation of one call to ``run``, which returns its operation count."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        count = run()
        elapsed = time.perf_counter() - start
    finally:
        if enabled:
            gc.enable()
    return elapsed / count


def compare_runs(candidate: Callable[[], Callable[[], int]],
                 baseline: Callable[[], Callable[[], int]], *, repeats: int) -> Pair:
    """Median of interleaved samples; each factory prepares one untimed sample."""
    a: list[float] = []
    b: list[float] = []
    for _ in range(repeats):
        a.append(sample(candidate()))
        b.append(sample(baseline()))
    return Pair(statistics.median(a), statistics.median(b))
