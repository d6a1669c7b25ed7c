"""A run's inputs: the weights, the data and its splits, the input size, which images each step reads, and
digests of them for cache keys. Made complete by :meth:`RunInputs.create`, which checks everything before any
work (one line per problem)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from quant.build.variant import Split
from quant.model.data import DataSpec, list_images
from quant.model.preflight import check_data, label_path
from quant.model.weights import check_imgsz, file_sha256, load_weights, model_stride
from quant.util.errors import QuantError


@dataclass(frozen=True)
class RunInputs:
    weights: Path
    weights_sha256: str
    data: DataSpec
    imgsz: int
    calib_images: int = 64
    skip_images: frozenset = frozenset()  # unreadable images left out (--skip-bad-images)
    notes: tuple[str, ...] = ()  # what the data checks found (shortfalls, skipped images)
    label_free: bool = False  # --image-dir: no labels; accuracy is the fidelity against FP32's own detections
    fidelity_images: Path | None = None  # label-free fidelity on these images (default: the val images)
    _digests: dict = field(default_factory=dict, repr=False, compare=False)  # memo of digest()

    @classmethod
    def create(cls, weights, data_yaml, imgsz: int, calib_images: int = 64, *, check_search_images: int | None = None,
               skip_bad: bool = False, label_free: bool = False, fidelity_images=None) -> "RunInputs":
        """Load and check the weights, the input size and the data YAML (QuantError, one line, on the first
        problem). With ``check_search_images`` (the search's image count) the data checks of
        :func:`quant.model.preflight.check_data` run too: every image a run reads opens, the splits are big
        enough (or the report says so), unreadable images are refused or, with ``skip_bad``, left out."""
        model = load_weights(weights)  # fails early, one line, on bad weights
        imgsz = check_imgsz(imgsz, model_stride(model))
        data = DataSpec.from_yaml(data_yaml)
        if int(calib_images) < 1:
            raise QuantError(f"--calib-images must be at least 1, got {calib_images}")
        skip, notes = frozenset(), ()
        if check_search_images is not None:
            checked = check_data(data, int(calib_images), check_search_images, skip_bad=skip_bad, label_free=label_free)
            skip, notes = frozenset(checked.bad_images), tuple(checked.notes)
        if fidelity_images is not None:
            list_images(fidelity_images)  # missing or empty: one line, now
        return cls(Path(weights).resolve(), file_sha256(weights), data, imgsz, int(calib_images), skip, notes,
                   label_free, Path(fidelity_images) if fidelity_images is not None else None)

    @property
    def names(self) -> dict[int, str]:
        """The class names (from the data YAML)."""
        return self.data.names

    def images(self, folder) -> list[Path]:
        """The images of a folder (or image list) the run may read: unreadable ones skipped if asked."""
        return [f for f in list_images(folder) if f not in self.skip_images]

    def calibration_files(self) -> list[Path]:
        return self.images(self.data.calib)[: self.calib_images]

    def calibration_inputs(self, variant) -> dict:
        """The images a variant calibrates on, for its cache key. Ultralytics' own INT8 exports calibrate on
        the val split (their default), the suite's variants on the calibration split."""
        files = self.images(self.data.val) if variant.calib_split == Split.VAL else self.calibration_files()
        return self.digest(files)

    def search_files(self, n: int) -> list[Path]:
        """Images the automatic INT8 search scores candidates on: the calibration split after the calibration
        images (held out from calibration, whose ranges fit their own images), and never val, which stays held
        out for the confirming measurement. Falls back to the whole split when it has no images beyond the
        calibration ones."""
        files = self.images(self.data.calib)
        rest = files[self.calib_images:]
        return (rest or files)[: int(n)]

    def fidelity_files(self) -> list[Path]:
        """The images label-free fidelity is scored on."""
        return self.images(self.fidelity_images or self.data.val)

    def digest(self, files: list[Path]) -> dict:
        key = tuple(map(str, files))
        if key not in self._digests:
            h = hashlib.sha256()
            for f in files:
                h.update(f.name.encode())
                h.update(f.read_bytes())
            self._digests[key] = h.hexdigest()
        return {"images": len(files), "sha256": self._digests[key]}

    def val_digest(self) -> dict:
        """Digest of the val split as the validator reads it: its images, their label files and the class names."""
        files = self.images(self.data.val)
        labels = [label_path(f) for f in files]
        d = self.digest(files + [p for p in labels if p.is_file()])
        return {**d, "names": self.data.names}

    def sample_input(self) -> np.ndarray:
        """The first val image, letterboxed: what latency is measured on (batch 1)."""
        from quant.calibration.readers import letterbox, read_image

        return letterbox(read_image(self.images(self.data.val)[0]), self.imgsz)
