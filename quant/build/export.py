"""The float artifacts everything else starts from: the ONNX export of the weights (the baseline), the
weights themselves, and another variant's artifact taken as it is (the same model on another runtime
setting: the CUDA provider, OpenVINO's BF16 hint)."""

from __future__ import annotations

import shutil
from pathlib import Path

from quant.build.context import BuildContext

OPSET = 13  # PPQ 0.6.6 parses ONNX opsets 10-13 only, and every other variant is built from this export


def onnx_fp32(variant, ctx: BuildContext, out_dir: Path) -> tuple[Path, dict]:
    """The weights exported to ONNX by Ultralytics' own exporter (its metadata rides along) at ``ctx.imgsz``."""
    from quant.model.weights import export_onnx

    out = out_dir / "model.onnx"
    export_onnx(ctx.weights, out, ctx.imgsz, opset=OPSET)
    return out, {}


def weights(variant, ctx: BuildContext, out_dir: Path) -> tuple[Path, dict]:
    """The Ultralytics .pt itself, cached like any artifact: the row reports this exact file."""
    out = out_dir / "model.pt"
    shutil.copyfile(ctx.weights, out)
    return out, {}


def source_as_is(variant, ctx: BuildContext, out_dir: Path) -> tuple[Path, dict]:
    """The source variant's artifact (a file or an IR folder), copied: only how it runs differs. Keeps the
    source's INT8 convolution counts, where its manifest has them."""
    src = ctx.artifact(variant.source)
    out = out_dir / src.name
    (shutil.copytree if src.is_dir() else shutil.copyfile)(src, out)
    info = ctx.manifest(variant.source).info
    return out, {k: info[k] for k in ("convs", "int8_convs") if k in info}
