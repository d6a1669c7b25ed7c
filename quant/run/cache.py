"""On-disk artifact cache: a variant's artifact lives under a key of everything it was built from,
its builders' source code included (:mod:`quant.run.codehash`).

Layout: ``<cache>/artifacts/<variant>/<key[:16]>/`` holds the artifact and ``manifest.json`` (the
key's inputs, and each file's size and SHA-256); ``<cache>/locks/`` the per-key lock files;
``<cache>/results/`` cached evaluations (:class:`ResultCache`). Guarantees:

- **Atomic**: a build happens in a hidden temp folder renamed into place only when complete; an
  interrupted or failed build never leaves a half-written entry. Temp folders of a killed build are
  removed by the next run (:meth:`ArtifactCache.sweep`).
- **Once**: a lock per key (``flock``): a second process that needs the same key waits, then takes
  the first one's result.
- **Intact**: a lookup checks every file's size, and its hash when its mtime changed (or always,
  with ``verify=True``). A damaged entry is moved aside to ``<cache>/damaged/``, reported in one
  line, and rebuilt.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Callable

from quant.util.errors import QuantError
from quant.util.fsutil import atomic_dir, file_sha256  # noqa: F401  (file_sha256 re-exported)

LIBRARIES = ("quant-bench", "ultralytics", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxslim",
             "openvino", "nncf", "ppq", "tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt-libs",
             "tensorrt-cu12-libs", "tensorrt-cu13-libs", "tensorrt-cu12-bindings", "tensorrt-cu13-bindings")


def library_versions() -> dict[str, str]:
    out = {}
    for lib in LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            pass
    return out


def artifact_size(path: str | os.PathLike) -> int:
    """Bytes of a file, or of every file in a folder artifact (e.g. an OpenVINO IR folder)."""
    p = Path(path)
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size


def cache_key(inputs: dict) -> str:
    """SHA-256 of the canonical JSON of the inputs (order-independent)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def check_writable_dir(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a directory this process can write to (created if missing); QuantError otherwise."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise QuantError(f"{what} '{p}' is a file, not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise QuantError(f"{what} '{p}' is not writable ({e.strerror or e})") from None
    return p


@contextmanager
def file_lock(path: Path):
    """Exclusive ``flock`` on ``path`` (created if missing), held for the block; waits for other holders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _try_lock(path: Path) -> int | None:
    """A held non-blocking lock's fd, or None when another process holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except OSError:
        os.close(fd)
        return None


def _files_record(folder: Path) -> dict[str, list]:
    """{relative path: [size, sha256, mtime_ns]} of every file in a build folder."""
    out = {}
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "manifest.json"):
        st = f.stat()
        out[f.relative_to(folder).as_posix()] = [st.st_size, file_sha256(f), st.st_mtime_ns]
    return out


def damage(folder: Path, files: dict[str, list], verify: bool) -> str | None:
    """What is wrong with a cached folder against its recorded files, or None when intact."""
    for rel, (size, sha, mtime_ns) in files.items():
        f = folder / rel
        if not f.is_file():
            return f"{rel} is missing"
        st = f.stat()
        if st.st_size != size:
            return f"{rel} has {st.st_size} bytes, the manifest says {size}"
        if (verify or st.st_mtime_ns != mtime_ns) and file_sha256(f) != sha:
            return f"{rel} does not match its recorded SHA-256"
    return None


@dataclass(frozen=True)
class Manifest:
    """What one cache entry records (``manifest.json``): the variant, its key and the key's inputs, the artifact
    inside the entry, why it was built and how long that took, every file's size and hash, and ``info``: what
    the builders recorded (float nodes, INT8 convolution counts, the searched recipe, the engine, reports)."""

    variant: str
    key: str
    artifact: str  # relative to the entry's folder
    inputs: dict
    built_because: str  # why it was built ("new key", what changed); "cached" when this run found it
    build_seconds: float
    info: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)  # {relative path: [size, sha256, mtime_ns]}
    cached: bool = False  # taken from the cache by this run (not recorded on disk)

    @classmethod
    def from_dict(cls, d: dict) -> "Manifest":
        return cls(**{k: d[k] for k in ("variant", "key", "artifact", "inputs", "built_because", "build_seconds")},
                   info=d.get("info") or {}, files=d.get("files") or {})

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("cached")
        return d

    @property
    def float_nodes(self) -> list[str] | None:
        return self.info.get("float_nodes")

    @property
    def reports(self) -> list[str]:
        """Files of the entry that the benchmark report copies next to its table."""
        return self.info.get("reports") or []

    @property
    def int8_share(self) -> str | None:
        """"INT8 convolutions/convolutions", where the build counted them."""
        convs = self.info.get("convs")
        return f"{self.info.get('int8_convs')}/{convs}" if convs else None


def _differences(old: dict, new: dict) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


class ArtifactCache:
    def __init__(self, root: str | os.PathLike, verify: bool = False) -> None:
        self.root = Path(root)
        self.verify = verify  # hash every file on lookup, not only those whose mtime changed
        self.notices: list[str] = []  # one line per damaged entry moved aside

    def folder(self, variant: str, key: str) -> Path:
        return self.root / "artifacts" / variant / key[:16]

    def lock_path(self, variant: str, key: str) -> Path:
        return self.root / "locks" / variant / f"{key[:16]}.lock"

    def lookup(self, variant: str, key: str) -> Manifest | None:
        """The manifest of a complete, intact cached build, or None (a damaged one is moved aside)."""
        folder = self.folder(variant, key)
        try:
            m = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError):
            return None
        if m.get("key") != key:
            return None
        try:
            manifest = Manifest.from_dict(m)
        except (KeyError, TypeError):
            manifest, problem = None, "its manifest is not of this version"
        else:
            problem = damage(folder, manifest.files, self.verify) if "files" in m else "it has no file record"
        if problem is None and not (folder / manifest.artifact).exists():
            problem = f"{manifest.artifact} is missing"
        if problem:
            self._move_aside(variant, folder, problem)
            return None
        return replace(manifest, cached=True, built_because="cached")

    def _move_aside(self, variant: str, folder: Path, problem: str) -> None:
        dest = self.root / "damaged" / f"{variant}-{folder.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(folder, dest)
            where = f"moved aside to {dest}"
        except OSError:
            shutil.rmtree(folder, ignore_errors=True)
            where = "removed"
        self.notices.append(f"cache: {variant} entry {folder.name} is damaged ({problem}); {where}, rebuilding")

    def why_built(self, variant: str, key: str, inputs: dict) -> str:
        """Why a key was not in the cache: new, or what changed against the closest earlier entry."""
        best: tuple[int, list[str]] | None = None
        for manifest in (self.root / "artifacts" / variant).glob("*/manifest.json"):
            try:
                old = json.loads(manifest.read_text()).get("inputs") or {}
            except (OSError, ValueError):
                continue
            diff = _differences(old, inputs)
            if diff and (best is None or len(diff) < best[0]):
                best = (len(diff), diff)
                if diff == ["code"]:
                    changed = _differences(old.get("code") or {}, inputs.get("code") or {})
                    return f"code changed ({', '.join(changed)})"
        return f"inputs changed ({', '.join(best[1])})" if best else "new key"

    def sweep(self) -> list[Path]:
        """Remove temp folders left by killed builds (their key's lock is free); return what went."""
        removed = []
        for tmp in self.root.glob("artifacts/*/.*-*"):
            if not tmp.is_dir():
                continue
            fd = _try_lock(self.lock_path(tmp.parent.name, tmp.name[1:].split("-", 1)[0]))
            if fd is None:
                continue  # a live build of that key
            try:
                shutil.rmtree(tmp, ignore_errors=True)
                removed.append(tmp)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
        return removed

    def get_or_build(self, variant: str, key: str, inputs: dict,
                     build: Callable[[Path], tuple[Path, dict]]) -> tuple[Path, Manifest]:
        """Return (artifact path, manifest; ``manifest.cached`` says whether it was found). ``build(tmp_dir)`` ->
        (artifact, info)."""
        found = self.lookup(variant, key)
        final = self.folder(variant, key)
        if found:
            return final / found.artifact, found
        why = self.why_built(variant, key, inputs)
        try:
            with file_lock(self.lock_path(variant, key)):
                found = self.lookup(variant, key)  # another process built it while we waited
                if found:
                    return final / found.artifact, found
                manifest = self._build(variant, key, inputs, build, final, why)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM):
                raise QuantError(f"cannot write {variant} to the cache '{self.root}': {e.strerror} "
                                 "(nothing was kept; free space or choose another --cache-dir)") from None
            raise
        return final / manifest.artifact, manifest

    def _build(self, variant: str, key: str, inputs: dict, build, final: Path, why: str) -> Manifest:
        final.parent.mkdir(parents=True, exist_ok=True)
        for stale in final.parent.glob(f".{final.name}-*"):  # left by a killed build of this key
            shutil.rmtree(stale, ignore_errors=True)
        with atomic_dir(final, replace=True) as tmp:  # under the key's lock: what is there is stale
            t0 = time.monotonic()
            artifact, info = build(tmp)
            manifest = Manifest(variant, key, Path(artifact).relative_to(tmp).as_posix(), inputs, why,
                                round(time.monotonic() - t0, 2), info, _files_record(tmp))
            (tmp / "manifest.json").write_text(json.dumps(manifest.to_dict(), indent=1, default=str))
        return manifest


class ResultCache:
    """Small JSON results (accuracy, fidelity) under a key: ``<cache>/results/<kind>/<key[:24]>.json``, with
    any arrays (the validator's per-image statistics) beside it as ``.npz``, written first."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root) / "results"

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key[:24]}.json"

    def arrays_path(self, kind: str, key: str) -> Path:
        """Where a result's arrays go (e.g. per-image statistics), beside its JSON; written before it."""
        return self.path(kind, key).with_suffix(".npz")

    def get(self, kind: str, key: str) -> dict | None:
        try:
            d = json.loads(self.path(kind, key).read_text())
        except (OSError, ValueError):
            return None
        return d.get("value") if d.get("key") == key else None

    def put(self, kind: str, key: str, value: dict, inputs: dict) -> None:
        p = self.path(kind, key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "inputs": inputs, "value": value}, indent=1, default=str))
        os.replace(tmp, p)
