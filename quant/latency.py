"""Latency of the bare model call at batch 1: warm-up, then the median of many rounds."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Latency:
    median_ms: float
    min_ms: float
    rounds: int


def measure(fn, x, rounds: int = 50, warmup: int = 5) -> Latency:
    """Used where pytest-benchmark is not timing (a baseline that was not selected, --benchmark-disable)."""
    for _ in range(warmup):
        fn(x)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return Latency(1000 * statistics.median(times), 1000 * min(times), rounds)
