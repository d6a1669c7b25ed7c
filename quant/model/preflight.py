"""Checks a run's data before any work: one line per problem, found once, not once per variant.

- the val and calibration folders exist and hold images, and the val images have YOLO labels;
- every image the run will read (val, the calibration images, the search images) opens as an
  image: unreadable ones are named (the first five), or skipped and counted with ``skip_bad``;
- the calibration split covers ``--calib-images`` and the search images, or the shortfall is
  stated in the report header.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from quant.model.data import DataSpec, list_images
from quant.util.errors import QuantError

SHOWN = 5  # unreadable images named in the message


def label_path(image: Path) -> Path:
    """Where Ultralytics looks for an image's YOLO label file (``.../images/x.jpg`` -> ``.../labels/x.txt``)."""
    parts = list(Path(image).parts)
    if "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        parts[i] = "labels"
    return Path(*parts).with_suffix(".txt")


def unreadable(files) -> list[Path]:
    """Files that do not open as an image (header and structure checked, as Ultralytics' dataset check does)."""
    from PIL import Image

    bad = []
    for f in files:
        try:
            with Image.open(f) as im:
                im.verify()
        except Exception:  # noqa: BLE001  (PIL raises many types for broken files)
            bad.append(Path(f))
    return bad


@dataclass
class DataCheck:
    """What the run may read, after the checks: bad images to leave out, and notes for the report header."""

    bad_images: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def check_data(data: DataSpec, calib_images: int, search_images: int, skip_bad: bool = False,
               label_free: bool = False) -> DataCheck:
    val, calib = list_images(data.val), list_images(data.calib)  # missing or empty: one line
    if not label_free and not any(label_path(f).is_file() for f in val):
        raise QuantError(f"val images in '{data.val}' have no YOLO label files (looked for "
                         f"'{label_path(val[0])}' and the like; images/ -> labels/, one .txt per image)")
    used = val + calib[: calib_images + search_images]
    bad = unreadable(used)
    if bad and not skip_bad:
        names = ", ".join(str(p) for p in bad[:SHOWN]) + (f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else "")
        raise QuantError(f"{len(bad)} unreadable image(s): {names} (fix or remove them, or pass --skip-bad-images)")
    out = DataCheck(bad_images=bad)
    if bad:
        out.notes.append(f"skipped {len(bad)} unreadable image(s) (--skip-bad-images): "
                         + ", ".join(p.name for p in bad[:SHOWN]))
    good_calib = [f for f in calib if f not in set(bad)]
    if len(good_calib) < calib_images:
        out.notes.append(f"calibration split '{data.calib}' has {len(good_calib)} images, fewer than --calib-images "
                         f"{calib_images}: calibrating on {len(good_calib)}")
    rest = len(good_calib) - calib_images
    if rest < search_images:
        out.notes.append(f"the *-int8-auto search scores on {max(rest, 0) or len(good_calib)} images "
                         f"({'the calibration split after the calibration images' if rest > 0 else 'the calibration images themselves: the split has no others'}), "
                         f"fewer than --auto-images {search_images}")
    return out
