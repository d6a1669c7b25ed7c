"""YOLO weights: validation, content hash, PyTorch -> ONNX export with Ultralytics metadata kept."""

from __future__ import annotations

import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

from quant.util.errors import QuantError
from quant.util.fsutil import file_sha256  # noqa: F401  (re-exported)
from quant.util.offline import ultralytics_yolo


def check_imgsz(imgsz: int, stride: int = 32) -> int:
    """imgsz must be a positive multiple of the model's largest stride (32 for YOLOv8/YOLO11)."""
    try:
        value = int(imgsz)
    except (TypeError, ValueError):
        raise QuantError(f"imgsz {imgsz!r} is not an integer") from None
    if value != imgsz or value <= 0 or value % stride:
        raise QuantError(f"imgsz {imgsz!r} must be a positive multiple of {stride} (e.g. 320, 640)")
    return value


@lru_cache(maxsize=8)
def _load(path: str, mtime: float):
    return ultralytics_yolo()(path, task="detect")


def load_weights(path: str | os.PathLike):
    """Load an Ultralytics detection checkpoint (.pt); one-line QuantError if it is not one."""
    p = Path(path)
    if not p.is_file():
        raise QuantError(f"weights '{p}' not found")
    if p.suffix != ".pt":
        raise QuantError(f"weights '{p}' must be an Ultralytics .pt checkpoint")
    try:
        model = _load(str(p.resolve()), p.stat().st_mtime)
    except Exception as e:  # noqa: BLE001  (torch/pickle raise many types)
        raise QuantError(f"weights '{p}' is not an Ultralytics YOLO checkpoint ({type(e).__name__}: {e})") from None
    task = getattr(model, "task", None)
    if task != "detect" or not hasattr(model.model, "names"):
        raise QuantError(f"weights '{p}' is a '{task}' model; the suite benchmarks detection models")
    return model


def model_stride(model) -> int:
    return int(max(model.model.stride)) if hasattr(model.model, "stride") else 32


def export_onnx(weights: str | os.PathLike, out: str | os.PathLike, imgsz: int, opset: int = 13) -> Path:
    """Export with Ultralytics' own exporter (so its metadata rides along) to ``out``, atomically.

    Ultralytics writes next to the weights, so the export happens on a private copy in a temp dir.
    """
    model = load_weights(weights)
    check_imgsz(imgsz, model_stride(model))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".export-") as tmp:
        src = Path(tmp) / "model.pt"
        shutil.copyfile(weights, src)
        produced = ultralytics_yolo()(str(src), task="detect").export(
            format="onnx", imgsz=imgsz, opset=opset, simplify=True, dynamic=False, batch=1, device="cpu")
        os.replace(produced, out)
    return out


def onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    """Ultralytics' metadata as the ONNX export stores it (string values, parsed by Ultralytics on load)."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
