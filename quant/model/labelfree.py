"""Label-free mode: a folder of unlabeled images (production frames, say) in place of a data YAML.

The images are split deterministically (by the SHA-256 of each file's name, so the split does not
depend on the folder's order or on the machine) into calibration images, search images for the
``*-int8-auto`` recipes, and validation images. Every variant is then scored against the FP32
model's own detections on the validation images (label-free fidelity), which becomes the accuracy
the table shows and the gates judge.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from quant.model.data import list_images
from quant.util.errors import QuantError

MIN_VAL = 16  # fewest validation images a label-free run scores on


def split_images(folder: str | os.PathLike, calib: int, search: int, min_val: int = MIN_VAL) -> dict[str, list[Path]]:
    """{"calib": ..., "search": ..., "val": ...}: disjoint, deterministic. Calibration gets ``calib``
    images; of the rest half (at least ``min_val``) are validation images, the others (at most
    ``search``) search images."""
    files = list_images(folder)  # missing, unreadable or empty: one line
    if len(files) < calib + min_val:
        raise QuantError(f"--image-dir '{folder}' has {len(files)} images; label-free mode needs at least "
                         f"{calib + min_val} ({calib} to calibrate with --calib-images, {min_val} to score on): "
                         "add images or lower --calib-images")
    order = sorted(files, key=lambda p: (hashlib.sha256(p.name.encode()).hexdigest(), p.name))
    rest = order[calib:]
    n_val = max(min_val, (len(rest) + 1) // 2)
    return {"calib": order[:calib], "search": rest[n_val:][:search], "val": rest[:n_val]}


def write_data(folder: str | os.PathLike, names: dict[int, str], calib: int, search: int, out_root: Path) -> Path:
    """A data YAML over the split (image lists; no labels), under ``out_root``; its path."""
    split = split_images(folder, calib, search)
    digest = hashlib.sha256("".join(f"{k}:{p}\n" for k, v in split.items() for p in v).encode()).hexdigest()
    out = Path(out_root) / f"images-{digest[:16]}"
    out.mkdir(parents=True, exist_ok=True)
    for name, files in (("calib", split["calib"] + split["search"]), ("val", split["val"])):
        (out / f"{name}.txt").write_text("".join(f"{f.resolve()}\n" for f in files))
    import yaml

    path = out / "data.yaml"
    spec = {"path": str(out), "train": "calib.txt", "calib": "calib.txt", "val": "val.txt",
            "names": {int(k): str(v) for k, v in names.items()}}
    path.write_text(f"# label-free split of {Path(folder).resolve()}\n" + yaml.safe_dump(spec, sort_keys=False))
    return path
