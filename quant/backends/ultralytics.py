"""Peers: Ultralytics' own one-click exports, called exactly as a user would, on the same weights,
data and imgsz. They are the yardstick the suite's own variants are compared against.

The settings of a peer variant are the ``export()`` keyword arguments. Ultralytics' INT8 exports
calibrate on the data YAML's ``val`` split by default (the split that is scored): that is how a
user gets them, so that is how they are measured.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from quant.backends import onnxruntime as ort_backend
from quant.backends import openvino as ov_backend
from quant.build.context import BuildContext


def unavailable(variant=None) -> str | None:
    fmt = variant.setting("format") if variant is not None else "onnx"
    if fmt == "openvino":
        return ov_backend.unavailable(variant)
    return ort_backend.unavailable(variant)


def build(variant, ctx: BuildContext, out_dir: Path):
    from quant.util.offline import ultralytics_yolo

    src = out_dir / "model.pt"
    shutil.copyfile(ctx.weights, src)  # Ultralytics writes its export next to the weights
    kwargs = dict(variant.settings)
    if kwargs.get("quantize") == 8:
        kwargs["data"] = str(ctx.data_yaml)
    produced = Path(ultralytics_yolo()(str(src), task="detect").export(imgsz=ctx.imgsz, device="cpu", **kwargs))
    src.unlink()
    for leftover in out_dir.iterdir():  # keep only the exported model (the .onnx, or the _openvino_model folder)
        if leftover != produced:
            shutil.rmtree(leftover) if leftover.is_dir() else os.remove(leftover)
    return produced, {}


def runner(variant, artifact: Path, ctx: BuildContext):
    return (ov_backend if Path(artifact).is_dir() else ort_backend).runner(variant, artifact, ctx)
