"""Label-free fidelity: a variant's detections scored against the FP32 model's own detections.

Users often have deployment images without labels, and against labels small INT8 losses drown in
the model's own errors. Here the FP32 model's detections (same letterbox, a confidence cut) become
the labels of a pseudo data set; Ultralytics' validator then scores any variant on it, so
"fidelity mAP50-95" = 1.0 means the variant reproduces FP32's boxes exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

from quant.data import list_images, write_data_yaml
from quant.fsutil import atomic_dir


def reference_key(baseline_key: str, images_digest: dict, imgsz: int, conf: float = 0.25) -> str:
    """Key of a pseudo data set: the FP32 baseline's artifact key, the images, the confidence cut and
    the code that makes and scores it."""
    from quant import codehash
    from quant.cache import cache_key

    return cache_key({"baseline": baseline_key, "images": images_digest, "conf": conf, "imgsz": imgsz,
                      "code": codehash.digests(["quant.fidelity", "quant.evaluate"])})


def reference_dataset(baseline: Path, key: str, images: list[Path], root: Path, names: dict[int, str], imgsz: int,
                      conf: float = 0.25) -> Path:
    """The pseudo data set of ``key`` (:func:`reference_key`) under ``root/fidelity``, made once."""
    return pseudo_dataset(baseline, images, Path(root) / "fidelity" / key[:16], names, imgsz, conf)


def pseudo_dataset(reference: str | os.PathLike, images, out: Path, names: dict[int, str], imgsz: int,
                   conf: float = 0.25, device: str = "cpu") -> Path:
    """Write ``out/data.yaml`` whose val labels are the reference model's detections (atomically)."""
    from quant.offline import ultralytics_yolo

    yaml_path = out / "data.yaml"
    if yaml_path.exists():
        return yaml_path
    with atomic_dir(out) as tmp:
        (tmp / "images").mkdir()
        (tmp / "labels").mkdir()
        model = ultralytics_yolo()(str(reference), task="detect")
        for i, src in enumerate(list_images(images) if not isinstance(images, list) else images):
            stem = f"{i:05d}{Path(src).suffix.lower()}"
            os.symlink(Path(src).resolve(), tmp / "images" / stem)
            r = model.predict(str(src), imgsz=imgsz, conf=conf, device=device, verbose=False)[0]
            lines = [f"{int(c)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}"
                     for c, (x, y, w, h) in zip(r.boxes.cls.tolist(), r.boxes.xywhn.tolist())]
            (tmp / "labels" / f"{i:05d}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
        write_data_yaml(tmp / "data.yaml", out, "images", names)
    return yaml_path
