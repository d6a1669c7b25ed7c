"""Label-free fidelity: a variant's detections scored against the FP32 model's own detections.

Users often have deployment images without labels, and against labels small INT8 losses drown in
the model's own errors. Here the FP32 model's detections, as Ultralytics' validator sees them, above
a confidence cut become the labels of a pseudo data set; the validator then scores any variant on
it, so a variant that reproduces FP32's detections scores what FP32 scores against itself: mAP50 and
mAP50-95 0.995, the validator's ceiling (boxes are scored clipped to the image, as the labels are:
:func:`quant.measure.evaluate.clip_to_image`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from quant.model.data import list_images, write_data_yaml
from quant.util.fsutil import atomic_dir

# The imperceptible change of the images whose cost to the FP32 model itself is the fidelity floor
# (quant.measure.evaluate.flip_input_lowest_bit).
PERTURBATION = "every input pixel value's lowest bit flipped (a change of 1 in 255)"
CONF = 0.25  # the FP32 detections that become labels: confidence at least this


def reference_dataset(baseline: Path, key: str, images: list[Path], root: Path, names: dict[int, str], imgsz: int,
                      conf: float = CONF) -> Path:
    """The pseudo data set of ``key`` (its images, the FP32 model and the code that makes it) under
    ``root/fidelity``, made once."""
    return pseudo_dataset(baseline, images, Path(root) / "fidelity" / key[:16], names, imgsz, conf)


def pseudo_dataset(reference: str | os.PathLike, images, out: Path, names: dict[int, str], imgsz: int,
                   conf: float = CONF, device: str = "cpu") -> Path:
    """Write ``out/data.yaml`` whose val labels are the reference model's detections (atomically).

    The labels are the detections Ultralytics' validator itself scores for the reference (its image
    loading and letterbox, its multi-label NMS) with confidence >= ``conf``; scored the same way, the
    reference model reproduces every label: mAP50 and mAP50-95 at the validator's ceiling (0.995).
    Labels made by ``predict()`` instead differ from what the validator sees (another resize,
    one class per box), and the reference model itself then scored 0.90 against them on a 147-class
    model."""
    from quant.measure.evaluate import validate

    yaml_path = out / "data.yaml"
    if yaml_path.exists():
        return yaml_path
    files = list_images(images) if not isinstance(images, list) else images
    with atomic_dir(out) as tmp:
        (tmp / "images").mkdir()
        (tmp / "labels").mkdir()
        for i, src in enumerate(files):
            stem = f"{i:05d}"
            os.symlink(Path(src).resolve(), tmp / "images" / f"{stem}{Path(src).suffix.lower()}")
            (tmp / "labels" / f"{stem}.txt").write_text("")
        scan = write_data_yaml(tmp / "scan.yaml", tmp, "images", names)
        validate(reference, scan, imgsz, tmp, "scan", device=device, save_detections=True)
        for i in range(len(files)):
            found = tmp / "scan" / "labels" / f"{i:05d}.txt"
            rows = [r.split() for r in found.read_text().splitlines()] if found.exists() else []
            lines = [" ".join(r[:5]) for r in rows if float(r[5]) >= conf]
            (tmp / "labels" / f"{i:05d}.txt").write_text("".join(f"{line}\n" for line in lines))
        shutil.rmtree(tmp / "scan")
        for leftover in [scan, *tmp.glob("*.cache")]:  # the validator's label cache was of the empty labels
            leftover.unlink()
        write_data_yaml(tmp / "data.yaml", out, "images", names)
    return yaml_path
