"""What every backend offers: the :class:`Backend` protocol, with a no-op default for each optional hook.

A backend is a runtime: it says whether a variant can run here, makes the batch-1 call that latency is
measured on, and sets up Ultralytics' validator to run the artifact the same way. It builds nothing: a
variant names its builder functions (:class:`quant.build.variant.Variant`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Protocol

import numpy as np


class Backend(Protocol):
    name: str

    def runner(self, variant, artifact: Path, ctx) -> Callable[[np.ndarray], object]:
        """The bare model call at batch 1 (what latency is measured on); ``run.runs_as`` may say how it runs, and
        ``run.executed`` what the runtime runs it as, read from the runtime: ``convs_int8`` and ``convs_float``
        (convolutions executed in INT8 and in a float type) and the runtime's own counts."""
        ...

    def unavailable(self, variant) -> str | None:
        """Why ``variant`` cannot run here (None when it can)."""
        return None

    def key_extras(self, variant) -> dict:
        """More inputs of the artifact's cache key (e.g. the GPU an engine was built for)."""
        return {}

    def eval_args(self, variant, artifact: Path) -> dict:
        """Keyword arguments for the validator (device, half)."""
        return {}

    def eval_context(self, variant):
        """A context the validator runs in (e.g. the precision the runtime is pinned to)."""
        return contextlib.nullcontext()

    def inference_precision(self, variant) -> str | None:
        """The precision hint the runtime is given, where it takes one (part of the evaluation's key)."""
        return None
