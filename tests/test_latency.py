"""quant.measure.latency: the order-statistic median interval, the paired/interleaved protocol (fake clock and
real CPU time) and the run-to-run ratio comparison."""

from __future__ import annotations

import contextlib
import json
import math
import random
import statistics
import time

import pytest

from quant.measure.latency import Paired, median_ci, paired, ratio_of_ratios


# ---------------------------------------------------------------- median_ci

def _coverage(j: int, n: int) -> float:
    """P(j <= B <= n-j), B ~ Binomial(n, 1/2), computed here independently of the module."""
    return sum(math.comb(n, k) for k in range(j, n - j + 1)) / 2**n


def test_median_ci_order_statistics_n20():
    # n = 20: j = 6 covers 1 - 2 P(B <= 5) = 0.9586 >= 0.95; j = 7 only 0.8847 -> (x_(6), x_(15))
    assert _coverage(6, 20) >= 0.95 > _coverage(7, 20)
    assert median_ci(range(1, 21)) == (6, 15)
    # n = 15 (paired's default rounds): j = 4 (0.965) -> (x_(4), x_(12))
    assert _coverage(4, 15) >= 0.95 > _coverage(5, 15)
    assert median_ci([10 * v for v in range(1, 16)]) == (40, 120)
    # a lower confidence narrows it: n = 20 at 80 % -> j = 8 (0.8847 >= 0.8 > 0.7368)
    assert _coverage(7, 20) >= 0.80 > _coverage(8, 20)
    assert median_ci(range(1, 21), confidence=0.80) == (7, 14)


def test_median_ci_small_n_is_min_max():
    assert _coverage(1, 5) < 0.95 <= _coverage(1, 6)
    assert median_ci([3.0, 1.0, 5.0, 2.0, 4.0]) == (1.0, 5.0)
    assert median_ci([7.0]) == (7.0, 7.0)
    assert median_ci([1.0, 9.0, 2.0, 8.0, 3.0, 7.0]) == (1.0, 9.0)  # n = 6: j = 1 is exactly reachable
    with pytest.raises(ValueError):
        median_ci([])


def test_median_ci_contains_median_and_ignores_order():
    rng = random.Random(1)
    for n in (1, 2, 5, 6, 7, 15, 20, 33, 100):
        xs = [rng.lognormvariate(0, 0.3) for _ in range(n)]
        lo, hi = median_ci(xs)
        assert lo <= statistics.median(xs) <= hi
        shuffled = xs[:]
        rng.shuffle(shuffled)
        assert median_ci(shuffled) == (lo, hi)
        assert median_ci(sorted(xs, reverse=True)) == (lo, hi)


# ---------------------------------------------------------------- paired, fake clock

class FakeMachine:
    """A clock that model calls advance: `cost` per timed call, 100 per warm-up call (so a timed warm-up
    would show), and a log of every call and clock read, with whether a fake lock was held."""

    def __init__(self, warmup: int):
        self.t = 0.0
        self.log: list[tuple[str, bool]] = []
        self.done = {"base": 0, "var": 0}
        self.warmup = warmup
        self.locked = False
        self.lock_events: list[str] = []

    def clock(self) -> float:
        self.log.append(("clock", self.locked))
        return self.t

    def model(self, name: str, cost: float):
        def fn(x):
            assert x == "img"
            self.log.append((name, self.locked))
            self.t += 100.0 if self.done[name] < self.warmup else cost
            self.done[name] += 1
        return fn

    def lock(self):
        self.lock_events.append("factory")

        @contextlib.contextmanager
        def held():
            self.lock_events.append("enter")
            self.locked = True
            try:
                yield
            finally:
                self.locked = False
                self.lock_events.append("exit")
        return held()

    def order(self, calls: int) -> list[str]:
        """Which model's block came first, per round (timed calls only)."""
        timed = [name for name, _ in self.log if name != "clock"][2 * self.warmup:]
        return timed[:: 2 * calls]


def _fake_run(seed=0, rounds=15, calls=3, warmup=3, lock=True):
    m = FakeMachine(warmup)
    r = paired(m.model("var", 1.25), m.model("base", 1.0), "img", rounds=rounds, calls=calls, warmup=warmup,
               seed=seed, lock=m.lock if lock else None, clock=m.clock)
    return m, r


def test_paired_fake_clock_exact():
    m, r = _fake_run()
    assert isinstance(r, Paired)
    assert r.ratio == 1.25 and r.ci == (1.25, 1.25) and r.contains(1.25) and not r.contains(1.0)
    assert r.ratios == (1.25,) * 15 and r.rounds == 15 and r.calls == 3
    assert r.variant_ms == 1250.0 and r.baseline_ms == 1000.0
    assert m.done == {"base": 3 + 15 * 3, "var": 3 + 15 * 3}
    d = r.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d == {"ratio": 1.25, "ci": [1.25, 1.25], "ratios": [1.25] * 15, "variant_ms": 1250.0,
                 "baseline_ms": 1000.0, "rounds": 15, "calls": 3}


def test_paired_order_random_per_round_and_seeded():
    orders = {}
    for seed in (0, 0, 1, 2):
        m, _ = _fake_run(seed=seed, rounds=20)
        order = m.order(calls=3)
        assert len(order) == 20 and set(order) == {"base", "var"}  # both orders occur across rounds
        # each round is two blocks of `calls` calls of one model
        timed = [name for name, _ in m.log if name != "clock"][6:]
        for k in range(0, len(timed), 3):
            assert len(set(timed[k:k + 3])) == 1
        assert orders.setdefault(seed, order) == order  # same seed, same order
    assert orders[0] != orders[1] and orders[1] != orders[2]


def test_paired_warmup_untimed_and_lock_once_around_everything():
    m, r = _fake_run(warmup=2, calls=2, rounds=6)
    # warm-up calls cost 100 each on the fake clock: had any been timed, the times would show it
    assert r.ratios == (1.25,) * 6 and r.variant_ms == 1250.0 and r.baseline_ms == 1000.0
    first_calls = [name for name, _ in m.log[:4]]
    assert sorted(first_calls) == ["base", "base", "var", "var"]  # warm-up: no clock reads in between
    assert m.lock_events == ["factory", "enter", "exit"]
    assert m.log and all(held for _, held in m.log)  # every call and every clock read under the lock
    # without a lock it runs the same, outside any lock
    m2, r2 = _fake_run(warmup=2, calls=2, rounds=6, lock=False)
    assert r2 == r and m2.lock_events == [] and not any(held for _, held in m2.log)


def test_paired_rejects_bad_arguments():
    m = FakeMachine(0)
    with pytest.raises(ValueError):
        paired(m.model("var", 1.0), m.model("base", 1.0), "img", rounds=0, clock=m.clock)
    with pytest.raises(ValueError):
        paired(m.model("var", 1.0), m.model("base", 1.0), "img", calls=0, clock=m.clock)


# ---------------------------------------------------------------- paired, real CPU time

def _spin(n: int) -> int:
    """Pure-Python, single-threaded CPU work proportional to n (no BLAS threads to fight over 2 cores)."""
    acc = 0
    for i in range(n):
        acc += i * i
    return acc


@pytest.fixture(scope="module")
def spin_n() -> int:
    """Loop count for about 1.5 ms per call on this machine (best of a few, so a busy moment doesn't shrink it)."""
    probe = 20_000
    best = math.inf
    for _ in range(7):
        t0 = time.perf_counter()
        _spin(probe)
        best = min(best, time.perf_counter() - t0)
    return max(2_000, int(probe * 1.5e-3 / best))


def _trials(variant, baseline, n, redo):
    """Ten paired measurements (seeds 0-9). A trial ``redo`` flags is measured once more with its seed and the
    second result kept: a virtual machine that stalls one side for a moment (steal time, measured at 1.8x for
    two of ten trials on a shared 2-core machine) does not repeat itself on the spot; a bias in the method does,
    and the seeded-clock tests below pin the method itself."""
    out = []
    for seed in range(10):
        r = paired(variant, baseline, n, seed=seed)
        out.append(paired(variant, baseline, n, seed=seed) if redo(r) else r)
    return out


def test_paired_catches_planted_25pct_slowdown(spin_n):
    slower = _trials(lambda n: _spin(round(1.25 * n)), _spin, spin_n, redo=lambda r: r.ratio <= 1.10)
    caught = sum(r.ratio > 1.10 for r in slower)
    assert caught >= 9, [round(r.ratio, 3) for r in slower]
    assert all(r.rounds == 15 and len(r.ratios) == 15 for r in slower)


@pytest.fixture(scope="module")
def identical_trials(spin_n):
    return _trials(lambda n: _spin(n), _spin, spin_n,  # same work, a distinct function object
                   redo=lambda r: r.ratio > 1.10 or r.aa_noise() is not None)


def test_paired_identical_models_do_not_fire(identical_trials):
    """No trial of two identical functions reads a 10 % slowdown that a run would trust: a trial the A/A
    control flags (its interval misses 1.00 or spreads too wide) is one the product reports as a noisy machine,
    not as a regression (a shared 2-core machine read 1.14x once in three full runs even after a re-measure);
    the next test bounds how often that may happen."""
    fired = [r for r in identical_trials if r.ratio > 1.10 and r.aa_noise() is None]
    assert not fired, [(round(r.ratio, 3), round(r.ci[0], 3), round(r.ci[1], 3)) for r in identical_trials]


def test_paired_identical_models_pass_the_aa_check(identical_trials):
    """What a benchmark run asks of two sessions of one model (the A/A control, Paired.aa_noise): the 95 %
    interval comes within 2 % of 1.00 and spans less than 20 %. Whether it holds 1.00 exactly is the
    method's coverage, tested on a seeded clock below: on real cores two identical functions differ by a
    few tenths of a percent (where their code and data lie in memory), and 15-round intervals can be
    narrower than that (a clean CI machine held 1.00 exactly in only 6/10 trials, e.g. 0.992-0.9997)."""
    held = sum(r.aa_noise() is None for r in identical_trials)
    assert held >= 8, " ".join(f"{r.ci[0]:.3f}-{r.ci[1]:.3f}" for r in identical_trials)


class NoisyMachine:
    """A seeded clock: each call costs ``cost`` times the machine's state times log-normal noise; the state
    drifts as a random walk (a CPU's frequency and cache state), shared by both models."""

    def __init__(self, seed: int, sigma: float = 0.05, drift: float = 0.02):
        self.rng = random.Random(seed)
        self.t, self.state = 0.0, 1.0
        self.sigma, self.drift = sigma, drift

    def clock(self) -> float:
        return self.t

    def model(self, cost: float):
        def fn(x):
            self.state *= math.exp(self.rng.gauss(0.0, self.drift))
            self.t += cost * self.state * self.rng.lognormvariate(0.0, self.sigma)
        return fn


def _covered(slowdown: float, trials: int = 400) -> int:
    hits = 0
    for seed in range(trials):
        m = NoisyMachine(seed)
        r = paired(m.model(slowdown), m.model(1.0), "img", seed=seed, clock=m.clock)
        hits += r.contains(1.0)
    return hits


def test_paired_interval_coverage_on_a_seeded_clock():
    """The interval is a 95 % one: two identical models (noise and drift, independent rounds) have 1.00
    inside it in about 96.5 % of trials (15 rounds: (r_(4), r_(12)) covers 1 - 2 P(B <= 3) = 0.965), and a
    planted 8 % slowdown (within this noise: 5 % per call, 2 % drift per call) is outside it in most."""
    assert _covered(1.0) >= 0.93 * 400
    assert _covered(1.08) <= 0.10 * 400


# ---------------------------------------------------------------- ratio_of_ratios

def _ratios(seed: int, n: int = 15) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(1.0, 0.05) for _ in range(n)]


def test_ratio_of_ratios_identical_runs():
    old = _ratios(3)
    point, (lo, hi) = ratio_of_ratios(old, list(old))
    assert point == 1.0 and lo <= 1.0 <= hi and lo < hi


def test_ratio_of_ratios_planted_25pct():
    old = _ratios(4)
    new = [1.25 * v for v in old]
    point, (lo, hi) = ratio_of_ratios(new, old)
    assert point == pytest.approx(1.25) and 1.10 < lo <= point <= hi
    # a different run length on one side is fine
    _, (lo2, _) = ratio_of_ratios([1.25 * v for v in _ratios(5, 11)], old)
    assert lo2 > 1.10


def test_ratio_of_ratios_seeded():
    old, new = _ratios(6), _ratios(7)
    assert ratio_of_ratios(new, old, seed=3) == ratio_of_ratios(new, old, seed=3)
    assert ratio_of_ratios(new, old, seed=3)[1] != ratio_of_ratios(new, old, seed=4)[1]
    with pytest.raises(ValueError):
        ratio_of_ratios([], old)
