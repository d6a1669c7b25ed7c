"""The artifact builder: each variant's artifact under a key of everything it was built from, built once
(:class:`quant.run.cache.ArtifactCache`) within a deadline, and the runner that times it.

:class:`Builder` is what every builder function receives as ``ctx`` (:class:`quant.build.context.BuildContext`):
the run's inputs, other variants' artifacts, the thread count and the deadline.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from quant.build.variant import Variant
from quant.registry import REGISTRY
from quant.run import codehash
from quant.run.cache import ArtifactCache, Manifest, cache_key, library_versions
from quant.run.inputs import RunInputs
from quant.util.errors import BuildError


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
class Builder:
    inputs: RunInputs
    cache: ArtifactCache
    variants: Mapping[str, Variant] = field(default_factory=lambda: REGISTRY)
    build_timeout: float | None = None  # seconds a build may take (None: no limit)
    threads: int | None = None  # threads of every timed model (ONNX Runtime, OpenVINO, torch); None: defaults
    require_engines: bool = False  # -m gpu: a TensorRT engine that cannot be built is a failure, not a CPU stand-in
    interrupted: str | None = None  # the variant being built when Ctrl-C arrived
    _manifests: dict[str, Manifest] = field(default_factory=dict, repr=False)
    _building: list = field(default_factory=list, repr=False)  # variants being built (outermost first)

    # ---- what builds see (quant.build.context.BuildContext) ------------------------------------
    @property
    def weights(self) -> Path:
        return self.inputs.weights

    @property
    def imgsz(self) -> int:
        return self.inputs.imgsz

    @property
    def names(self) -> dict[int, str]:
        return self.inputs.names

    @property
    def data_yaml(self) -> Path:
        return self.inputs.data.yaml

    @property
    def scratch(self) -> Path:
        return self.cache.root / "runs"

    def calibration_files(self) -> list[Path]:
        return self.inputs.calibration_files()

    def search_files(self, n: int) -> list[Path]:
        return self.inputs.search_files(n)

    def float_nodes(self, v: Variant, model) -> list[str]:
        """What stays float in ``v``: its own scope, plus the float set another variant chose (its
        ``float_set_from``, e.g. the set ``onnx-int8-auto`` searched, reused by OpenVINO)."""
        nodes = dict.fromkeys(v.float_scope.resolve(model) if v.float_scope else [])
        if v.float_set_from:
            nodes.update(dict.fromkeys(self.manifest(v.float_set_from).float_nodes or []))
        return list(nodes)

    # ---- build ------------------------------------------------------------------------------
    def key_inputs(self, v: Variant) -> dict:
        """Everything the artifact of ``v`` is built from: its settings, the weights, the size, the library
        versions, the code of its builders, the images it calibrates and searches on, its sources' keys."""
        inputs = {"variant": v.config(), "weights_sha256": self.inputs.weights_sha256, "imgsz": self.imgsz,
                  "versions": library_versions(), "code": codehash.variant_digests(v)}
        if v.calibrates:
            inputs["calibration"] = self.inputs.calibration_inputs(v)
        if v.source:
            inputs["source"] = self.manifest(v.source).key
        if v.float_set_from:
            inputs["float_set_from"] = self.manifest(v.float_set_from).key
        if v.search:
            inputs["search"] = self.inputs.digest(self.search_files(v.search.images))
        inputs.update(v.backend.key_extras(v))
        return inputs

    def manifest(self, name: str) -> Manifest:
        if name not in self._manifests:
            self.artifact(name)
        return self._manifests[name]

    def artifact(self, name: str) -> Path:
        """Build the variant (and what it is built from) or take it from the cache."""
        if name in self._manifests:
            m = self._manifests[name]
            return self.cache.folder(name, m.key) / m.artifact
        v = self.variants[name]
        inputs = self.key_inputs(v)
        outermost = not self._building  # nested builds (a source) run under the outer deadline
        self._building.append(name)
        try:
            with deadline(self.build_timeout if outermost else None, name):
                path, manifest = self.cache.get_or_build(name, cache_key(inputs), inputs, lambda tmp: self._run(v, tmp))
        except KeyboardInterrupt:
            self.interrupted = self.interrupted or name
            raise
        finally:
            self._building.pop()
        self._manifests[name] = manifest
        return path

    def _run(self, v: Variant, out_dir: Path) -> tuple[Path, dict]:
        """``v.build``, then each of ``v.then`` on the artifact so far; their records merged."""
        path, info = v.build(v, self, out_dir)
        for step in v.then:
            path, more = step(v, self, path)
            info = {**info, **more}
        return path, info

    def runner(self, name: str):
        """The timed call of the variant's artifact in its backend."""
        v = self.variants[name]
        return v.backend.runner(v, self.artifact(name), self)
