"""A benchmark session's inputs and the steps every variant goes through: build -> validate -> time.

Builds and evaluations are cached: an artifact under a key of everything it was built from, its
builders' source code included; an accuracy or fidelity result under the artifact's key, the
evaluation data's digest (images and labels), the evaluation code's digest and the Ultralytics
version. A warm run therefore only re-times latency (``revalidate=True`` forces evaluation).
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from quant import backends
from quant.run import codehash
from quant.search.settings import DEFAULTS as AUTO_DEFAULTS
from quant.run.cache import ArtifactCache, ResultCache, cache_key, library_versions
from quant.calibration.readers import letterbox, read_image
from quant.model.data import DataSpec, list_images
from quant.util.errors import BuildError, QuantError
from quant.measure.evaluate import Accuracy, validate
from quant.model.weights import check_imgsz, file_sha256, load_weights, model_stride
from quant.model.preflight import label_path
from quant.registry import BASELINE, REGISTRY, Variant


@contextlib.contextmanager
def deadline(seconds: float | None, name: str):
    """Raise BuildError in the main thread when the block runs longer than ``seconds`` (None: no limit).
    Python code is interrupted at once; a long native call (a kernel, a library's C loop) when it returns."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum, frame):
        raise BuildError(f"building {name} took longer than --build-timeout {seconds:g} s; nothing was kept")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Suite:
    weights: Path
    data: DataSpec
    imgsz: int
    cache: ArtifactCache
    calib_images: int = 64
    weights_sha256: str = ""
    fidelity_images: Path | None = None  # label-free fidelity on these images (default: the val images)
    revalidate: bool = False  # evaluate even when a cached result exists
    skip_images: frozenset = frozenset()  # unreadable images left out (--skip-bad-images)
    build_timeout: float | None = None  # seconds a build may take (None: no limit)
    threads: int | None = None  # threads of every timed model (ONNX Runtime, OpenVINO, torch); None: defaults
    require_engines: bool = False  # -m gpu: a TensorRT engine that cannot be built is a failure, not a CPU stand-in
    interrupted: str | None = None  # the variant being built when Ctrl-C arrived
    notes: list = field(default_factory=list)  # what the data checks found (shortfalls, skipped images)
    label_free: bool = False  # --images: no labels; accuracy is the fidelity against FP32's own detections
    _manifests: dict = field(default_factory=dict, repr=False)
    _digests: dict = field(default_factory=dict, repr=False)
    evaluations: dict = field(default_factory=dict, repr=False)  # (kind, variant) -> "cached" | "measured"
    _stats_files: dict = field(default_factory=dict, repr=False)  # (kind, variant) -> its per-image statistics
    _building: list = field(default_factory=list, repr=False)  # variants being built (outermost first)

    @classmethod
    def create(cls, weights, data_yaml, imgsz: int, cache_dir, calib_images: int = 64, verify_cache: bool = False,
               revalidate: bool = False) -> "Suite":
        model = load_weights(weights)  # fails early, one line, on bad weights
        imgsz = check_imgsz(imgsz, model_stride(model))
        data = DataSpec.from_yaml(data_yaml)
        if int(calib_images) < 1:
            raise QuantError(f"--calib-images must be at least 1, got {calib_images}")
        return cls(Path(weights).resolve(), data, imgsz, ArtifactCache(cache_dir, verify=verify_cache),
                   int(calib_images), file_sha256(weights), revalidate=revalidate)

    @property
    def results(self) -> ResultCache:
        return ResultCache(self.cache.root)

    # ---- what builds see (quant.build.context.BuildContext) ------------------------------------------
    @property
    def names(self) -> dict[int, str]:
        return self.data.names

    @property
    def data_yaml(self) -> Path:
        return self.data.yaml

    @property
    def scratch(self) -> Path:
        return self.cache.root / "runs"

    # ---- inputs -----------------------------------------------------------------------------
    def images(self, folder) -> list[Path]:
        """The images of a folder (or image list) the run may read: unreadable ones skipped if asked."""
        return [f for f in list_images(folder) if f not in self.skip_images]

    def calibration_files(self) -> list[Path]:
        return self.images(self.data.calib)[: self.calib_images]

    def calibration_inputs(self, v: Variant) -> dict:
        """The images a variant calibrates on, for its cache key. Ultralytics' own INT8 exports
        calibrate on the val split (their default), the suite's variants on the calibration split."""
        files = self.images(self.data.val) if v.calib_split == "val" else self.calibration_files()
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
        files = self.images(self.data.calib)
        rest = files[self.calib_images:]
        return (rest or files)[: int(n)]

    def float_nodes(self, v: Variant, model) -> list[str]:
        """What stays float in ``v``: its own scope, plus the float set another variant chose
        (setting ``float_set_from``, e.g. the set ``onnx-int8-auto`` searched, reused by OpenVINO)."""
        nodes = dict.fromkeys(v.float_scope.resolve(model) if v.float_scope else [])
        if v.setting("float_set_from"):
            nodes.update(dict.fromkeys(self.manifest(v.setting("float_set_from")).get("float_nodes") or []))
        return list(nodes)

    def sample_input(self) -> np.ndarray:
        """The first val image, letterboxed: what latency is measured on (batch 1)."""
        return letterbox(read_image(self.images(self.data.val)[0]), self.imgsz)

    # ---- build ------------------------------------------------------------------------------
    def key_inputs(self, v: Variant) -> dict:
        inputs = {"variant": v.config(), "weights_sha256": self.weights_sha256, "imgsz": self.imgsz,
                  "versions": library_versions(), "code": codehash.digests(backends.code_entries(v))}
        if v.calibrates:
            inputs["calibration"] = self.calibration_inputs(v)
        if v.source:
            inputs["source"] = self.manifest(v.source)["key"]
        if v.setting("float_set_from"):
            inputs["float_set_from"] = self.manifest(v.setting("float_set_from"))["key"]
        if v.search:
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
        outermost = not self._building  # nested builds (a source) run under the outer deadline
        self._building.append(name)
        try:
            with deadline(self.build_timeout if outermost else None, name):
                path, manifest, cached = self.cache.get_or_build(name, key, inputs,
                                                                 lambda tmp: backend.build(v, self, tmp))
        except KeyboardInterrupt:
            self.interrupted = self.interrupted or name
            raise
        finally:
            self._building.pop()
        self._manifests[name] = {**manifest, "cached": cached,
                                 "built_because": "cached" if cached else manifest.get("built_because")}
        return path

    # ---- measure ----------------------------------------------------------------------------
    def _evaluated(self, kind: str, name: str, data_yaml: Path, data_key: dict, run_name: str,
                   flip_lowest_bit: bool = False) -> Accuracy:
        """Ultralytics' validator on ``data_yaml``, or its cached result for the same artifact, data and code
        (``flip_lowest_bit``: :func:`quant.measure.evaluate.flip_input_lowest_bit`; ``data_key`` must say so)."""
        v, path = REGISTRY[name], self.artifact(name)
        backend = backends.get(v.backend)
        eval_args = getattr(backend, "eval_args", lambda v, p: {})(v, path)
        precision = getattr(backend, "inference_precision", lambda v: None)(v)
        code = codehash.digests(["quant.measure.evaluate", "quant.measure.imagestats", backend.__name__])  # imagestats: what is kept
        inputs = {"artifact": self.manifest(name)["key"], "data": data_key, "imgsz": self.imgsz, "eval_args": eval_args,
                  "inference_precision": precision, "code": code,
                  "ultralytics": library_versions().get("ultralytics")}
        key = cache_key(inputs)
        hit = None if self.revalidate else self.results.get(kind, key)
        self.evaluations[(kind, name)] = "cached" if hit is not None else "measured"
        self._stats_files[(kind, name)] = stats = self.results.arrays_path(kind, key)
        if hit is not None:
            return Accuracy(**hit)
        stats.parent.mkdir(parents=True, exist_ok=True)
        with getattr(backend, "eval_context", lambda v: contextlib.nullcontext())(v):  # e.g. OpenVINO's precision
            acc = validate(path, data_yaml, self.imgsz, self.cache.root / "runs", run_name, stats_out=stats,
                           flip_lowest_bit=flip_lowest_bit, **eval_args)
        self.results.put(kind, key, acc.to_dict(), inputs)
        return acc

    def image_stats(self, kind: str, name: str):
        """The per-image statistics of the variant's last ``kind`` evaluation ("accuracy" or "fidelity";
        :class:`quant.measure.imagestats.ImageStats`), None where none were kept."""
        from quant.measure.imagestats import ImageStats

        path = self._stats_files.get(("fidelity" if kind == "accuracy" and self.label_free else kind, name))
        return ImageStats.load(path) if path is not None else None

    def accuracy(self, name: str) -> Accuracy:
        """Against the val labels; in label-free mode against the FP32 model's own detections (= fidelity)."""
        if self.label_free:
            acc = self.fidelity(name)
            self.evaluations[("accuracy", name)] = self.evaluations[("fidelity", name)]
            return acc
        return self._evaluated("accuracy", name, self.eval_yaml(), self.val_digest(), name)

    def eval_yaml(self) -> Path:
        """The data YAML the validator scores on: the user's, or one listing only readable val images."""
        if not self.skip_images:
            return self.data.yaml
        from quant.model.data import write_data_yaml

        folder = self.cache.root / "data-lists" / self.val_digest()["sha256"][:16]
        folder.mkdir(parents=True, exist_ok=True)
        listing = folder / "val.txt"
        listing.write_text("".join(f"{f.resolve()}\n" for f in self.images(self.data.val)))
        return write_data_yaml(folder / "data.yaml", folder, listing.resolve(), self.data.names)

    def val_digest(self) -> dict:
        """Digest of the val split as the validator reads it: its images, their label files and the class names."""
        files = self.images(self.data.val)
        labels = [label_path(f) for f in files]
        d = self.digest(files + [p for p in labels if p.is_file()])
        return {**d, "names": self.data.names}

    def runner(self, name: str):
        v = REGISTRY[name]
        return backends.get(v.backend).runner(v, self.artifact(name), self)

    def fidelity_data(self) -> tuple[Path, str]:
        """The pseudo data set (the FP32 baseline's detections as labels, :mod:`quant.measure.fidelity`) and its key."""
        from quant.measure import fidelity

        images = self.images(self.fidelity_images or self.data.val)
        key = cache_key({"baseline": self.manifest(BASELINE)["key"], "images": self.digest(images), "conf": fidelity.CONF,
                         "imgsz": self.imgsz,
                         "code": codehash.digests(["quant.measure.fidelity", "quant.measure.evaluate"])})
        return fidelity.reference_dataset(self.artifact(BASELINE), key, images, self.cache.root, self.data.names,
                                          self.imgsz), key

    def fidelity(self, name: str) -> Accuracy:
        """The variant scored against FP32's own detections (label-free; FP32 itself scores the validator's ceiling)."""
        data, key = self.fidelity_data()
        return self._evaluated("fidelity", name, data, {"pseudo": key}, f"{name}-fidelity")

    def fidelity_floor(self) -> Accuracy:
        """The FP32 baseline against its own detections on the same images, every input pixel value's lowest bit
        flipped (:func:`quant.measure.evaluate.flip_input_lowest_bit`): what an imperceptible change of them costs it."""
        from quant.measure.fidelity import PERTURBATION

        data, key = self.fidelity_data()
        return self._evaluated("fidelity-floor", BASELINE, data, {"pseudo": key, "perturbed": PERTURBATION},
                               "fidelity-floor", flip_lowest_bit=True)
