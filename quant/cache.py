"""On-disk artifact cache: a variant's artifact lives under a key of everything it was built from.

Layout: ``<cache>/artifacts/<variant>/<key[:16]>/`` with the artifact and ``manifest.json``.
A build happens in a hidden temp folder that is renamed into place only when complete, so an
interrupted or failed build never leaves a half-written artifact behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Callable

LIBRARIES = ("quant-bench", "ultralytics", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxslim",
             "openvino", "nncf", "ppq", "tensorrt")


def library_versions() -> dict[str, str]:
    out = {}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            pass
    return out


@contextmanager
def atomic_dir(out: str | os.PathLike):
    """Yield a temp folder beside ``out``, renamed to ``out`` when the block succeeds: readers see a
    complete tree or nothing. If another process finished ``out`` first, theirs is kept."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, out)
        except OSError:
            if not out.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def artifact_size(path: str | os.PathLike) -> int:
    """Bytes of a file, or of every file in a folder artifact (e.g. an OpenVINO IR folder)."""
    p = Path(path)
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size


def cache_key(inputs: dict) -> str:
    """SHA-256 of the canonical JSON of the inputs (order-independent)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


class ArtifactCache:
    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def folder(self, variant: str, key: str) -> Path:
        return self.root / "artifacts" / variant / key[:16]

    def lookup(self, variant: str, key: str) -> dict | None:
        """The manifest of a complete cached build, or None."""
        manifest = self.folder(variant, key) / "manifest.json"
        if manifest.is_file():
            m = json.loads(manifest.read_text())
            if m.get("key") == key and (manifest.parent / m["artifact"]).exists():
                return m
        return None

    def get_or_build(self, variant: str, key: str, inputs: dict,
                     build: Callable[[Path], tuple[Path, dict]]) -> tuple[Path, dict, bool]:
        """Return (artifact path, manifest, was_cached). ``build(tmp_dir)`` -> (artifact, extra info)."""
        found = self.lookup(variant, key)
        final = self.folder(variant, key)
        if found:
            return final / found["artifact"], found, True
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
        try:
            artifact, info = build(tmp)
            artifact = Path(artifact)
            manifest = {"variant": variant, "key": key, "artifact": artifact.relative_to(tmp).as_posix(),
                        "inputs": inputs, **info}
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
            if final.exists():  # a stale or incomplete folder under the same key
                shutil.rmtree(final)
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final / manifest["artifact"], manifest, False
