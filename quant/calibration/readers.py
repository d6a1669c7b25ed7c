"""Calibration inputs: image files -> letterboxed tensors, fed to a model one at a time.

A reader letterboxes its images once and yields ``{input name: tensor}`` feeds, as ONNX Runtime and NNCF take
them; readers are shared per process (:func:`reader_for`), so every build and search trial letterboxes an
image list once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from quant.model.data import list_images
from quant.util.errors import QuantError


def letterbox(image_bgr: np.ndarray, imgsz: int, stride: int = 32) -> np.ndarray:
    """Exactly Ultralytics' inference preprocessing for a fixed-size model: BGR uint8 HWC -> RGB float32 NCHW."""
    from quant.util.offline import ultralytics_module

    im = ultralytics_module("data.augment").LetterBox((imgsz, imgsz), auto=False, stride=stride)(image=image_bgr)
    im = im[..., ::-1].transpose(2, 0, 1)  # BGR->RGB, HWC->CHW
    return (np.ascontiguousarray(im, dtype=np.float32) / 255.0)[None]


def read_image(path: str | os.PathLike) -> np.ndarray:
    import cv2

    im = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if im is None:
        raise QuantError(f"calibration image '{path}' cannot be read as an image")
    return im


class CalibrationReader:
    """Feeds letterboxed images to a model, one at a time: iterate it for ``{input name: tensor}`` feeds."""

    def __init__(self, images: str | os.PathLike | Iterable, imgsz: int, input_name: str = "images",
                 limit: int | None = None, stride: int = 32) -> None:
        files = list_images(images) if isinstance(images, (str, os.PathLike)) else [Path(p) for p in images]
        if not files:
            raise QuantError("calibration image list is empty")
        self.files = files[:limit] if limit else files
        self.imgsz, self.input_name, self.stride = imgsz, input_name, stride
        self._cache: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.files)

    def tensors(self) -> list[np.ndarray]:
        if self._cache is None:  # letterbox once; reused by every pass and method
            self._cache = [letterbox(read_image(f), self.imgsz, self.stride) for f in self.files]
        return self._cache

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return ({self.input_name: x} for x in self.tensors())


_READERS: dict[tuple, CalibrationReader] = {}


def reader_for(files, imgsz: int, input_name: str = "images") -> CalibrationReader:
    """One reader (images letterboxed once) per image list, size and input name, shared by every build."""
    key = (tuple(map(str, files)), int(imgsz), input_name)
    if key not in _READERS:
        _READERS[key] = CalibrationReader(list(files), imgsz, input_name)
    return _READERS[key]

