"""Data sets: a YOLO data YAML, its splits, and image folders."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from quant.util.errors import QuantError

IMAGE_SUFFIXES = {".bmp", ".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp"}


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Sorted image files in a folder (recursive); QuantError if missing, unreadable or empty."""
    p = Path(folder)
    if not p.exists():
        raise QuantError(f"image folder '{p}' not found")
    if p.is_file():  # a .txt list of image paths, as Ultralytics allows
        try:
            lines = [ln.strip() for ln in p.read_text().splitlines() if ln.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise QuantError(f"image list '{p}' is unreadable ({e})") from None
        files = [(p.parent / ln).resolve() for ln in lines]
    else:
        try:
            files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        except OSError as e:
            raise QuantError(f"image folder '{p}' is unreadable ({e})") from None
    if not files:
        raise QuantError(f"image folder '{p}' has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def write_data_yaml(path: Path, root: Path, split: str | os.PathLike, names: dict[int, str]) -> Path:
    """A YOLO data YAML whose train and val are both ``split`` (a folder or an image-list file). Written by
    a YAML emitter: class names such as ``-``, ``+``, ``a: b`` or an empty name must survive quoted."""
    import yaml

    spec = {"path": str(Path(root).resolve()), "train": str(split), "val": str(split),
            "names": {int(k): str(v) for k, v in names.items()}}
    Path(path).write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    return Path(path)


@dataclass(frozen=True)
class DataSpec:
    """What the suite needs from a data YAML: where val and calibration images are, and class names."""

    yaml: Path
    val: Path
    calib: Path  # the 'calib' split if the YAML has one, else 'train' (never val: no test-set leak)
    names: dict[int, str]

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> "DataSpec":
        import yaml

        p = Path(path)
        if not p.is_file():
            raise QuantError(f"data YAML '{p}' not found")
        try:
            d = yaml.safe_load(p.read_text())
        except (yaml.YAMLError, OSError, UnicodeDecodeError) as e:
            raise QuantError(f"data YAML '{p}' is not valid YAML ({type(e).__name__})") from None
        if not isinstance(d, dict) or "val" not in d or "names" not in d:
            raise QuantError(f"data YAML '{p}' needs 'val' and 'names' keys")
        root = Path(d.get("path") or p.parent)
        if not root.is_absolute():
            root = (p.parent / root).resolve()

        def split(key: str) -> Path:
            v = d[key]
            if isinstance(v, list):
                v = v[0]
            return (root / v) if not Path(v).is_absolute() else Path(v)

        names = d["names"]
        if isinstance(names, list):
            names = dict(enumerate(names))
        calib_key = "calib" if "calib" in d else "train" if "train" in d else None
        if calib_key is None:
            raise QuantError(f"data YAML '{p}' has neither a 'calib' nor a 'train' split for calibration")
        return cls(yaml=p.resolve(), val=split("val"), calib=split(calib_key), names={int(k): str(v) for k, v in names.items()})
