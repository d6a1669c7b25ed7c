"""One module per backend. Each exposes:

- ``unavailable(variant) -> str | None``: why this variant cannot run here (None when it can);
- ``build(variant, ctx, out_dir) -> (artifact_path, info)``: make the artifact inside ``out_dir``
  (``ctx`` is a :class:`quant.suite.Suite`: weights, data, imgsz, other variants' artifacts);
- ``runner(variant, artifact, ctx) -> callable(np.ndarray) -> outputs``: the bare model call at
  batch 1, the thing latency is measured on.

Optional: ``key_extras(variant) -> dict`` (more cache-key inputs, e.g. the GPU an engine was
tuned on) and ``eval_args(variant, artifact) -> dict`` (device/half for the validator).
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
