"""A benchmark session's inputs and the steps every variant goes through: build -> validate -> time."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from quant import backends
from quant.autoselect import DEFAULTS as AUTO_DEFAULTS
from quant.cache import ArtifactCache, cache_key, library_versions
from quant.calibration import CalibrationReader, collect_stats, compute_ranges, letterbox, make_method, read_image
from quant.data import DataSpec, list_images
from quant.errors import QuantError
from quant.evaluate import Accuracy, validate
from quant.model import check_imgsz, file_sha256, load_weights, model_stride
from quant.variants import BASELINE, REGISTRY, Variant


@dataclass
class Suite:
    weights: Path
    data: DataSpec
    imgsz: int
    cache: ArtifactCache
    calib_images: int = 64
    weights_sha256: str = ""
    fidelity_images: Path | None = None  # label-free fidelity on these images (default: the val images)
    _manifests: dict = field(default_factory=dict, repr=False)
    _reader: CalibrationReader | None = field(default=None, repr=False)
    _digests: dict = field(default_factory=dict, repr=False)
    _stats: dict = field(default_factory=dict, repr=False)

    @classmethod
    def create(cls, weights, data_yaml, imgsz: int, cache_dir, calib_images: int = 64) -> "Suite":
        model = load_weights(weights)  # fails early, one line, on bad weights
        imgsz = check_imgsz(imgsz, model_stride(model))
        data = DataSpec.from_yaml(data_yaml)
        if int(calib_images) < 1:
            raise QuantError(f"--calib-images must be at least 1, got {calib_images}")
        return cls(Path(weights).resolve(), data, imgsz, ArtifactCache(cache_dir), int(calib_images),
                   file_sha256(weights))

    # ---- inputs -----------------------------------------------------------------------------
    def calibration_files(self) -> list[Path]:
        return list_images(self.data.calib)[: self.calib_images]

    def calibration_reader(self, input_name: str = "images") -> CalibrationReader:
        if self._reader is None or self._reader.input_name != input_name:
            self._reader = CalibrationReader(self.calibration_files(), self.imgsz, input_name)
        return self._reader

    def calibration_inputs(self, v: Variant) -> dict:
        """The images a variant calibrates on, for its cache key. Ultralytics' own INT8 exports
        calibrate on the val split (their default), the suite's variants on the calibration split."""
        files = list_images(self.data.val) if v.calibration == "ultralytics-val" else self.calibration_files()
        return self.digest(files)

    def digest(self, files: list[Path]) -> dict:
        key = tuple(map(str, files))
        if key not in self._digests:
            h = hashlib.sha256()
            for f in files:
                h.update(f.name.encode())
                h.update(f.read_bytes())
            self._digests[key] = h.hexdigest()
        return {"images": len(files), "sha256": self._digests[key]}

    def search_files(self, n: int) -> list[Path]:
        """Images the automatic INT8 search scores candidates on: the calibration split after the
        calibration images (held out from calibration, whose ranges fit their own images), and never
        val, which stays held out for the confirming measurement. Falls back to the whole split when
        it has no images beyond the calibration ones."""
        files = list_images(self.data.calib)
        rest = files[self.calib_images:]
        return (rest or files)[: int(n)]

    def activation_ranges(self, src: Path, method: str) -> dict[str, tuple[float, float]]:
        """Per-tensor ranges of ``src``'s activations on the calibration images by ``method``; the
        statistics are collected once per model and shared by every method and search trial."""
        import onnx

        m = make_method(method)
        bins = getattr(m, "num_bins", 0) if m.needs_histogram else 0
        have = self._stats.get(str(src))
        if have is None or (bins and have[0] != bins):
            reader = self.calibration_reader(onnx.load(str(src)).graph.input[0].name)
            have = self._stats[str(src)] = (bins, collect_stats(src, reader, bins))
        return compute_ranges(have[1], m)

    def float_nodes(self, v: Variant, model) -> list[str]:
        """What stays float in ``v``: its own scope, plus the float set another variant chose
        (setting ``float_set_from``, e.g. the set ``onnx-int8-auto`` searched, reused by OpenVINO)."""
        nodes = dict.fromkeys(v.float_scope.resolve(model) if v.float_scope else [])
        if v.setting("float_set_from"):
            nodes.update(dict.fromkeys(self.manifest(v.setting("float_set_from")).get("float_nodes") or []))
        return list(nodes)

    def sample_input(self) -> np.ndarray:
        """The first val image, letterboxed: what latency is measured on (batch 1)."""
        return letterbox(read_image(list_images(self.data.val)[0]), self.imgsz)

    # ---- build ------------------------------------------------------------------------------
    def key_inputs(self, v: Variant) -> dict:
        inputs = {"variant": v.config(), "weights_sha256": self.weights_sha256, "imgsz": self.imgsz,
                  "versions": library_versions()}
        if v.calibration:
            inputs["calibration"] = self.calibration_inputs(v)
        if v.source:
            inputs["source"] = self.manifest(v.source)["key"]
        if v.setting("float_set_from"):
            inputs["float_set_from"] = self.manifest(v.setting("float_set_from"))["key"]
        if v.calibration == "auto":
            inputs["search"] = self.digest(self.search_files(v.setting("auto_images", AUTO_DEFAULTS["auto_images"])))
        extras = getattr(backends.get(v.backend), "key_extras", None)
        if extras:
            inputs.update(extras(v))
        return inputs

    def manifest(self, name: str) -> dict:
        if name not in self._manifests:
            self.artifact(name)
        return self._manifests[name]

    def artifact(self, name: str) -> Path:
        """Build the variant (and what it is built from) or take it from the cache."""
        v = REGISTRY[name]
        if name in self._manifests:
            m = self._manifests[name]
            return self.cache.folder(name, m["key"]) / m["artifact"]
        backend = backends.get(v.backend)
        inputs = self.key_inputs(v)
        key = cache_key(inputs)
        path, manifest, cached = self.cache.get_or_build(name, key, inputs, lambda tmp: backend.build(v, self, tmp))
        self._manifests[name] = {**manifest, "cached": cached}
        return path

    # ---- measure ----------------------------------------------------------------------------
    def accuracy(self, name: str) -> Accuracy:
        v, path = REGISTRY[name], self.artifact(name)
        eval_args = getattr(backends.get(v.backend), "eval_args", lambda v, p: {})(v, path)
        return validate(path, self.data.yaml, self.imgsz, self.cache.root / "runs", name, **eval_args)

    def runner(self, name: str):
        v = REGISTRY[name]
        return backends.get(v.backend).runner(v, self.artifact(name), self)

    def fidelity_data(self, conf: float = 0.25) -> Path:
        """Pseudo data set: the FP32 baseline's detections (conf >= ``conf``) as labels; cached."""
        from quant.fidelity import pseudo_dataset

        images = self.fidelity_images or self.data.val
        h = hashlib.sha256(f"{self.manifest(BASELINE)['key']}|{Path(images).resolve()}|{conf}".encode()).hexdigest()
        return pseudo_dataset(self.artifact(BASELINE), images, self.cache.root / "fidelity" / h[:16],
                              self.data.names, self.imgsz, conf)

    def fidelity(self, name: str) -> Accuracy:
        """The variant scored against FP32's own detections (label-free; 1.0 = identical boxes)."""
        v, path = REGISTRY[name], self.artifact(name)
        eval_args = getattr(backends.get(v.backend), "eval_args", lambda v, p: {})(v, path)
        return validate(path, self.fidelity_data(), self.imgsz, self.cache.root / "runs", f"{name}-fidelity",
                        **eval_args)
