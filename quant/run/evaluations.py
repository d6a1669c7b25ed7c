"""Evaluations of a run's artifacts, cached: accuracy against the val labels (label-free: against the FP32
model's own detections), label-free fidelity, and the fidelity floor.

A result is kept under the artifact's key, the evaluation data's digest (images and labels), the evaluation
code's digest and the Ultralytics version, with the validator's per-image statistics beside it; a warm run
therefore only re-times latency (``revalidate=True`` evaluates anyway).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from quant.measure import fidelity
from quant.measure.evaluate import Accuracy, validate
from quant.measure.imagestats import ImageStats
from quant.registry import BASELINE
from quant.run import codehash
from quant.run.builder import Builder
from quant.run.cache import ResultCache, cache_key, library_versions


@dataclass
class Evaluations:
    builder: Builder
    revalidate: bool = False  # evaluate even when a cached result exists
    status: dict = field(default_factory=dict)  # (kind, variant) -> "cached" | "measured"
    _stats_files: dict = field(default_factory=dict, repr=False)  # (kind, variant) -> its per-image statistics

    @property
    def results(self) -> ResultCache:
        return ResultCache(self.builder.cache.root)

    def _evaluated(self, kind: str, name: str, data_yaml: Path, data_key: dict, run_name: str,
                   flip_lowest_bit: bool = False) -> Accuracy:
        """Ultralytics' validator on ``data_yaml``, or its cached result for the same artifact, data and code
        (``flip_lowest_bit``: :func:`quant.measure.evaluate.flip_input_lowest_bit`; ``data_key`` must say so)."""
        b = self.builder
        v, path = b.variants[name], b.artifact(name)
        eval_args = v.backend.eval_args(v, path)
        code = codehash.digests(["quant.measure.evaluate", "quant.measure.imagestats", type(v.backend).__module__])
        inputs = {"artifact": b.manifest(name).key, "data": data_key, "imgsz": b.imgsz, "eval_args": eval_args,
                  "inference_precision": v.backend.inference_precision(v), "code": code,
                  "ultralytics": library_versions().get("ultralytics")}
        key = cache_key(inputs)
        hit = None if self.revalidate else self.results.get(kind, key)
        self.status[(kind, name)] = "cached" if hit is not None else "measured"
        self._stats_files[(kind, name)] = stats = self.results.arrays_path(kind, key)
        if hit is not None:
            return Accuracy(**hit)
        stats.parent.mkdir(parents=True, exist_ok=True)
        with v.backend.eval_context(v):  # e.g. OpenVINO's pinned precision
            acc = validate(path, data_yaml, b.imgsz, b.scratch, run_name, stats_out=stats,
                           flip_lowest_bit=flip_lowest_bit, **eval_args)
        self.results.put(kind, key, acc.to_dict(), inputs)
        return acc

    def image_stats(self, kind: str, name: str) -> ImageStats | None:
        """The per-image statistics of the variant's last ``kind`` evaluation ("accuracy" or "fidelity";
        :class:`quant.measure.imagestats.ImageStats`), None where none were kept."""
        label_free = self.builder.inputs.label_free
        path = self._stats_files.get(("fidelity" if kind == "accuracy" and label_free else kind, name))
        return ImageStats.load(path) if path is not None else None

    def accuracy(self, name: str) -> Accuracy:
        """Against the val labels; in label-free mode against the FP32 model's own detections (= fidelity)."""
        if self.builder.inputs.label_free:
            acc = self.fidelity(name)
            self.status[("accuracy", name)] = self.status[("fidelity", name)]
            return acc
        return self._evaluated("accuracy", name, self.eval_yaml(), self.builder.inputs.val_digest(), name)

    def eval_yaml(self) -> Path:
        """The data YAML the validator scores on: the user's, or one listing only readable val images."""
        inputs = self.builder.inputs
        if not inputs.skip_images:
            return inputs.data.yaml
        from quant.model.data import write_data_yaml

        folder = self.builder.cache.root / "data-lists" / inputs.val_digest()["sha256"][:16]
        folder.mkdir(parents=True, exist_ok=True)
        listing = folder / "val.txt"
        listing.write_text("".join(f"{f.resolve()}\n" for f in inputs.images(inputs.data.val)))
        return write_data_yaml(folder / "data.yaml", folder, listing.resolve(), inputs.names)

    def fidelity_data(self) -> tuple[Path, str]:
        """The pseudo data set (the FP32 baseline's detections as labels, :mod:`quant.measure.fidelity`) and its
        key: the baseline's artifact, the images, the confidence cut and the code that makes and scores it."""
        b = self.builder
        images = b.inputs.fidelity_files()
        key = cache_key({"baseline": b.manifest(BASELINE).key, "images": b.inputs.digest(images),
                         "conf": fidelity.CONF, "imgsz": b.imgsz,
                         "code": codehash.digests(["quant.measure.fidelity", "quant.measure.evaluate"])})
        return fidelity.reference_dataset(b.artifact(BASELINE), key, images, b.cache.root, b.names, b.imgsz), key

    def fidelity(self, name: str) -> Accuracy:
        """The variant scored against FP32's own detections (label-free; FP32 itself scores the validator's ceiling)."""
        data, key = self.fidelity_data()
        return self._evaluated("fidelity", name, data, {"pseudo": key}, f"{name}-fidelity")

    def fidelity_floor(self) -> Accuracy:
        """The FP32 baseline against its own detections on the same images, every input pixel value's lowest bit
        flipped (:func:`quant.measure.evaluate.flip_input_lowest_bit`): what an imperceptible change of them costs it."""
        data, key = self.fidelity_data()
        return self._evaluated("fidelity-floor", BASELINE, data, {"pseudo": key, "perturbed": fidelity.PERTURBATION},
                               "fidelity-floor", flip_lowest_bit=True)
