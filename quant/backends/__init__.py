"""One module per backend. Each exposes:

- ``unavailable(variant) -> str | None``: why this variant cannot run here (None when it can);
- ``build(variant, ctx, out_dir) -> (artifact_path, info)``: make the artifact inside ``out_dir``
  (``ctx`` is a :class:`quant.run.suite.Suite`: weights, data, imgsz, other variants' artifacts);
- ``runner(variant, artifact, ctx) -> callable(np.ndarray) -> outputs``: the bare model call at
  batch 1, the thing latency is measured on.

Optional: ``builders(variant) -> list[str]``: modules (with a ``build`` of the same signature) that the
backend dispatches this variant to; with the backend module they are the code in its cache key
(:func:`code_entries`). ``key_extras(variant) -> dict`` (more cache-key inputs, e.g. the GPU an engine was
tuned on) and ``eval_args(variant, artifact) -> dict`` (device/half for the validator).

May import: quant.build, quant.calibration, quant.measure, quant.model, quant.util (the search only
through the builders that use it).
"""

from __future__ import annotations

import importlib
from types import ModuleType

_MODULES = {"pytorch": "quant.backends.pytorch", "onnxruntime": "quant.backends.onnxruntime",
            "openvino": "quant.backends.openvino", "ultralytics": "quant.backends.ultralytics",
            "tensorrt": "quant.backends.tensorrt", "ppq": "quant.backends.ppq"}


def get(name: str) -> ModuleType:
    try:
        return importlib.import_module(_MODULES[name])
    except KeyError:
        raise ValueError(f"unknown backend '{name}'") from None


def code_entries(variant) -> list[str]:
    """The modules whose import closure builds ``variant``: its backend module, and the builder modules
    the backend dispatches this variant to (``builders(variant)``). Their code digests go into the
    variant's cache key (:mod:`quant.run.codehash`)."""
    module = get(variant.backend)
    return [module.__name__, *getattr(module, "builders", lambda v: [])(variant)]
