"""Latency of the bare model call at batch 1.

Timing one model on its own (warm-up, then the median of many calls) is cheap, but its numbers drift
with whatever else the machine is doing while that model is being timed. So every variant is timed by
``paired``: against a baseline *in the same process, in alternating rounds*. On a shared 2-core machine
the model timed first came out 18-50 % slower than the very same graph timed later (frequency scaling,
caches, neighbouring jobs that come and go), so two separately measured medians mostly compare two
moments of the machine, not two models. ``paired`` cancels that drift: each round times ``calls`` calls of
each model back to back, in an order that a seeded coin flips per round (so neither model is
systematically first), and keeps the round's ratio variant/baseline. Slow drift scales both sides of a
round alike and divides out; the median of the per-round ratios is the estimate, and ``median_ci`` gives
its distribution-free 95 % interval. An optional machine-wide lock keeps two benchmark processes from
timing at the same time.

``ratio_of_ratios`` compares one variant's paired ratio between two runs (e.g. today against a
stored reference) with a seeded bootstrap interval.
"""

from __future__ import annotations

import contextlib
import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

AA_TOLERANCE = 0.02  # an A/A control's interval must come within 2 % of 1.00 ...
AA_MAX_SPREAD = 0.20  # ... and span less than 20 %


def ort_session_options(threads: int | None = None):
    """Options of every timed session: ``threads`` intra-op threads (None: ONNX Runtime's default, the
    physical cores) that do not spin-wait after a call. Paired timing keeps two sessions alive; spinning
    threads of the idle one stole the cores of the one being timed (measured on 2 cores: the same model
    against itself timed 0.67-1.79x per round with spinning, 0.96-1.01x without)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = int(threads)
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return so


@dataclass(frozen=True)
class Paired:
    """Result of ``paired``: the variant's time as a multiple of the baseline's, measured side by side."""

    ratio: float  # median over rounds of (variant round time / baseline round time)
    ci: tuple[float, float]  # order-statistic interval of that median (see median_ci)
    ratios: tuple[float, ...]  # the per-round ratios, in round order
    variant_ms: float  # median per-call time of the variant over all its timed calls, ms
    baseline_ms: float  # median per-call time of the baseline over all its timed calls, ms
    rounds: int
    calls: int  # timed calls of each model per round
    variant_times: tuple[float, ...] = ()  # every timed call of the variant, seconds (for pytest-benchmark)

    def contains(self, value: float = 1.0) -> bool:
        """Whether ``value`` lies in the interval (default 1.0: no detectable difference)."""
        return self.ci[0] <= value <= self.ci[1]

    def aa_noise(self) -> str | None:
        """Read as an A/A control (the baseline against a second session of itself): why latency verdicts
        cannot be trusted where it was measured, or None when it holds. Its interval must reach 1.00 within
        AA_TOLERANCE (two sessions of one graph differed by up to 1 % here, and a 15-round interval misses
        its true value about 1 time in 30) and be narrower than AA_MAX_SPREAD."""
        lo, hi = self.ci
        if lo > 1 + AA_TOLERANCE or hi < 1 - AA_TOLERANCE:
            return (f"A/A control {self.ratio:.3f}x, 95 % interval {lo:.3f}-{hi:.3f}, misses 1.00 by more than "
                    f"{100 * AA_TOLERANCE:.0f} %: timing was biased, latency cannot be judged")
        if hi / lo - 1 > AA_MAX_SPREAD:
            return (f"A/A control 95 % interval {lo:.3f}-{hi:.3f} spreads {100 * (hi / lo - 1):.0f} %: the machine "
                    "was too noisy to judge latency")
        return None

    def to_dict(self) -> dict:
        """JSON-ready form (tuples as lists)."""
        return {
            "ratio": self.ratio,
            "ci": list(self.ci),
            "ratios": list(self.ratios),
            "variant_ms": self.variant_ms,
            "baseline_ms": self.baseline_ms,
            "rounds": self.rounds,
            "calls": self.calls,
        }


def _binom_half_cdf(k: int, n: int) -> float:
    """P(B <= k) for B ~ Binomial(n, 1/2), exact."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


def median_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval of the median from order statistics (binomial).

    With x_(1) <= ... <= x_(n) sorted and B ~ Binomial(n, 1/2) the count of values below the true median,
    the interval (x_(j), x_(n-j+1)) covers the median with probability P(j <= B <= n-j) = 1 - 2 P(B <= j-1).
    Returns the narrowest such symmetric pair (largest j) whose coverage is >= ``confidence``. Where even
    j = 1 falls short (n < 6 at 95 %), returns (min, max). Needs no assumption about the distribution
    and ignores the input order.
    """
    xs = sorted(float(v) for v in values)
    n = len(xs)
    if n == 0:
        raise ValueError("median_ci needs at least one value")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    best = 1
    for j in range(1, (n + 1) // 2 + 1):
        if 1 - 2 * _binom_half_cdf(j - 1, n) >= confidence:
            best = j
        else:
            break
    return xs[best - 1], xs[n - best]


def _timed_block(fn, x, calls: int, clock) -> list[float]:
    """``calls`` back-to-back calls of fn(x), each timed on ``clock``; returns the call times."""
    times = []
    for _ in range(calls):
        t0 = clock()
        fn(x)
        times.append(clock() - t0)
    return times


def paired(variant_fn, baseline_fn, x, rounds: int = 15, calls: int = 3, warmup: int = 3, seed: int = 0,
           lock: Callable[[], contextlib.AbstractContextManager] | None = None,
           clock: Callable[[], float] = time.perf_counter) -> Paired:
    """Time variant_fn(x) against baseline_fn(x) in the same process, in alternating rounds.

    Warm-up: ``warmup`` untimed calls of each (alternating baseline, variant). Then ``rounds`` rounds;
    each times ``calls`` calls of one model, then ``calls`` of the other, and ``random.Random(seed)``
    decides per round whether the baseline block or the variant block goes first. A model's round time is
    the median of its ``calls`` call times; the round's ratio is variant time / baseline time. The result's
    ``ratio`` is the median of the per-round ratios and ``ci`` its ``median_ci`` interval (95 %; with the
    default 15 rounds it is (r_(4), r_(12)) of the sorted ratios).

    ``lock``: optional context-manager *factory* (a callable returning a context manager, e.g. a file lock)
    entered once around the whole timed part, warm-up included, to serialise timing machine-wide across
    processes; None means no lock. ``clock``: a seconds clock (injectable for tests).
    """
    if rounds < 1 or calls < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 1, calls >= 1, warmup >= 0; got {rounds}, {calls}, {warmup}")
    with (lock() if lock is not None else contextlib.nullcontext()):
        for _ in range(warmup):
            baseline_fn(x)
            variant_fn(x)
        return interleaved(lambda n: _timed_block(baseline_fn, x, n, clock),
                           lambda n: _timed_block(variant_fn, x, n, clock), rounds, calls, warmup=0, seed=seed)


def ratio_of_ratios(new: Sequence[float], old: Sequence[float], confidence: float = 0.95,
                    resamples: int = 2000, seed: int = 0) -> tuple[float, tuple[float, float]]:
    """Compare one variant's paired ratio between two runs: median(new) / median(old), with an interval.

    ``new`` and ``old`` are the per-round ratios (``Paired.ratios``) of the two runs. The interval is a
    bootstrap percentile interval: the rounds of each run are resampled independently, with replacement,
    ``resamples`` times (``numpy.random.default_rng(seed)``, so the result is deterministic for a seed),
    and the (1-confidence)/2 and (1+confidence)/2 quantiles of the resampled ratio of medians are returned.
    """
    a = np.asarray(new, dtype=float)
    b = np.asarray(old, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError("ratio_of_ratios needs at least one round in each run")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    boot_a = np.median(a[rng.integers(0, a.size, size=(resamples, a.size))], axis=1)
    boot_b = np.median(b[rng.integers(0, b.size, size=(resamples, b.size))], axis=1)
    boot = boot_a / boot_b
    lo, hi = np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(np.median(a) / np.median(b)), (float(lo), float(hi))


def interleaved(time_ref: Callable[[int], Sequence[float]], time_new: Callable[[int], Sequence[float]],
                rounds: int = 15, calls: int = 2, warmup: int = 3, seed: int = 0) -> Paired:
    """Time two builds of one variant against each other, round by round: the A/B protocol.

    ``time_ref(n)`` and ``time_new(n)`` each make ``n`` calls of their model and return the seconds of each
    (timed where the model runs, e.g. in a worker process of its own checkout, so no messaging is timed).
    ``warmup`` untimed calls each, then ``rounds`` rounds; a seeded coin decides per round which side goes
    first; a round's ratio is new / ref of the medians of its ``calls`` call times. As :func:`paired`: the median
    of the per-round ratios with its :func:`median_ci` interval (``variant`` = new, ``baseline`` = ref)."""
    if rounds < 1 or calls < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 1, calls >= 1, warmup >= 0; got {rounds}, {calls}, {warmup}")
    rng = random.Random(seed)
    if warmup:
        time_ref(warmup)
        time_new(warmup)
    ratios, new_times, ref_times = [], [], []
    for _ in range(rounds):
        if rng.random() < 0.5:
            r, n = list(time_ref(calls)), list(time_new(calls))
        else:
            n, r = list(time_new(calls)), list(time_ref(calls))
        tr = statistics.median(r)
        if tr <= 0:
            raise ValueError("a baseline (reference) round took no measurable time on this clock; give it more work")
        ratios.append(statistics.median(n) / tr)
        new_times += n
        ref_times += r
    return Paired(ratio=statistics.median(ratios), ci=median_ci(ratios), ratios=tuple(ratios),
                  variant_ms=1000 * statistics.median(new_times), baseline_ms=1000 * statistics.median(ref_times),
                  rounds=rounds, calls=calls, variant_times=tuple(new_times))
