"""What a build may ask for: the narrow, typed context every builder and runner receives, and what a builder
needs installed (:func:`needs`).

:class:`quant.run.suite.Suite` is the one implementation; tests check that backends and builders touch
nothing else (``tests/test_code_health.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class BuildContext(Protocol):
    weights: Path  # the Ultralytics .pt being benchmarked
    imgsz: int  # square input size, a multiple of the model's stride
    threads: int | None  # intra-op threads of every timed model (None: the runtime's default)
    require_engines: bool  # a TensorRT engine that cannot be built is a failure, not a CPU stand-in (-m gpu)
    build_timeout: float | None  # seconds a build may take; a build running a worker process stops it then

    @property
    def names(self) -> dict[int, str]:
        """The class names (from the data YAML)."""

    @property
    def data_yaml(self) -> Path:
        """The user's data YAML (Ultralytics' own INT8 exports calibrate on its val split)."""

    @property
    def scratch(self) -> Path:
        """A folder for throwaway validator runs."""

    def artifact(self, name: str) -> Path:
        """Another variant's artifact (built or taken from the cache), e.g. the FP32 ONNX an INT8 model is made from."""

    def manifest(self, name: str) -> dict:
        """What another variant's build recorded (its float nodes, INT8 convolution counts, ...)."""

    def calibration_files(self) -> list[Path]:
        """The images calibration reads (the calibration split, bad images left out)."""

    def search_files(self, n: int) -> list[Path]:
        """Up to ``n`` images the automatic recipe scores candidates on (held out from calibration and val)."""

    def float_nodes(self, variant, model) -> list[str]:
        """The node names that stay float in ``variant`` (its scope, plus any float set it reuses)."""


def needs(*modules: str, extra: str):
    """Mark a builder as needing these Python modules, which ``pip install -e '.[extra]'`` installs; a variant
    that names it is skipped with that reason where one is missing (:func:`missing`)."""
    def mark(builder):
        builder.needs = (modules, extra)
        return builder
    return mark


def missing(builder) -> str | None:
    """Why ``builder`` cannot run here (a module it :func:`needs` is not installed), None when it can."""
    import importlib.util

    modules, extra = getattr(builder, "needs", ((), ""))
    for module in modules:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[{extra}]')"
    return None
