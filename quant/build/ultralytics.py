"""Peers: Ultralytics' own one-click exports, called exactly as a user would, on the same weights, data and
imgsz. They are the yardstick the suite's own variants are compared against.

Ultralytics' INT8 exports calibrate on the data YAML's ``val`` split by default (the split that is scored):
that is how a user gets them, so that is how they are measured.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from quant.build.context import BuildContext


@dataclass(frozen=True)
class ExportConfig:
    """The arguments of Ultralytics' ``export()`` that make the peer."""

    format: str  # "onnx" | "openvino"
    quantize: int | None = None  # 8: Ultralytics' INT8 export

    def kwargs(self) -> dict:
        return {"format": self.format, **({"quantize": self.quantize} if self.quantize else {})}


def export(variant, ctx: BuildContext, out_dir: Path) -> tuple[Path, dict]:
    """``YOLO(weights).export(...)`` as a user calls it; keeps only the exported model (the .onnx, or the
    _openvino_model folder)."""
    from quant.util.offline import ultralytics_yolo

    src = out_dir / "model.pt"
    shutil.copyfile(ctx.weights, src)  # Ultralytics writes its export next to the weights
    kwargs = variant.export.kwargs()
    if variant.export.quantize == 8:
        kwargs["data"] = str(ctx.data_yaml)
    produced = Path(ultralytics_yolo()(str(src), task="detect").export(imgsz=ctx.imgsz, device="cpu", **kwargs))
    src.unlink()
    for leftover in out_dir.iterdir():
        if leftover != produced:
            shutil.rmtree(leftover) if leftover.is_dir() else os.remove(leftover)
    return produced, {}
