"""Latency of a run: every variant timed against the baseline in the same process, in alternating rounds
(:func:`quant.measure.latency.paired`), its ratio the median of the per-round ratios with a 95 % interval.

An A/A control (the baseline against a second session of the same model) runs once per process; when its
interval misses 1.0 the machine was too noisy to trust a latency verdict (:meth:`Timing.noisy`), and the
latency gates say "inconclusive" instead of passing or failing. Timing holds a machine-wide lock, so
parallel workers (``-n 2``) build and validate side by side but never time at once.
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from quant.measure.latency import Paired, paired
from quant.registry import BASELINE
from quant.run.cache import file_lock


@dataclass
class Timing:
    runner: Callable[[str], Callable]  # a variant's name -> its timed call (quant.run.builder.Builder.runner)
    sample_input: Callable[[], np.ndarray]  # what every call is timed on (batch 1)
    rounds: int = 15  # paired rounds per variant
    calls: int = 2  # calls of each model per round
    warmup: int = 3
    lock: Path | None = None  # machine-wide lock file held while timing
    baseline: str = BASELINE
    runs_as: dict[str, dict | None] = field(default_factory=dict)  # precision and threads the runtime reports
    executed: dict[str, dict | None] = field(default_factory=dict)  # what the runtime runs (run.executed)
    engine_gpu_ms: dict[str, float] = field(default_factory=dict)  # TensorRT: median CUDA-event ms, timed calls
    time_split: dict[str, dict | None] = field(default_factory=dict)  # where the time goes (run.profile)
    _baseline_run: object = field(default=None, repr=False)
    _aa: Paired | None = field(default=None, repr=False)
    _aa_timing: dict | None = field(default=None, repr=False)

    def _held(self, log: list):
        """A context-manager factory: the machine-wide lock, and the span it was held for appended to ``log``."""
        @contextlib.contextmanager
        def held():
            with file_lock(self.lock) if self.lock else contextlib.nullcontext():
                t0 = time.time()
                try:
                    yield
                finally:
                    log.append({"start": t0, "end": time.time(), "pid": os.getpid()})
        return held

    def _paired(self, run, seed: int) -> tuple[Paired, dict]:
        if self._baseline_run is None:
            self._baseline_run = self.runner(self.baseline)
        gc.collect()  # sessions a build left behind must not compete for the cores while timing
        log: list = []
        p = paired(run, self._baseline_run, self.sample_input(), self.rounds, self.calls, self.warmup,
                   seed=seed, lock=self._held(log))
        return p, log[0]

    def aa_control(self) -> Paired:
        """The baseline against a second session of the same model: its interval should contain 1.0."""
        if self._aa is None:
            run = self.runner(self.baseline)
            self._aa, self._aa_timing = self._paired(run, seed=0)
            self._record(self.baseline, run)
        return self._aa

    def _record(self, name: str, run) -> None:
        """What the runtime says of the timed call ``run``: how it runs, what it executes, and (after its timing,
        so that it costs the timing nothing) where its time goes by precision (``run.profile``,
        :mod:`quant.measure.profile`)."""
        self.runs_as[name] = getattr(run, "runs_as", None)
        self.executed[name] = getattr(run, "executed", None)
        profile = getattr(run, "profile", None)
        self.time_split[name] = profile(self.sample_input()) if profile else None

    def noisy(self) -> str | None:
        """Why latency verdicts are inconclusive in this process (None when the A/A control holds:
        :meth:`quant.measure.latency.Paired.aa_noise`)."""
        return self.aa_control().aa_noise()

    def time(self, name: str) -> tuple[Paired, dict]:
        """The variant paired against the baseline (the baseline itself: the A/A control), and when the lock
        was held for it."""
        if name == self.baseline:
            return self.aa_control(), self._aa_timing
        run = self.runner(name)
        result = self._paired(run, seed=sum(map(ord, name)))
        self._record(name, run)
        if getattr(run, "gpu_ms", None):  # a TensorRT engine: CUDA-event time of the execution alone
            self.engine_gpu_ms[name] = statistics.median(run.gpu_ms[self.warmup:] or run.gpu_ms)  # no warm-up
        return result
