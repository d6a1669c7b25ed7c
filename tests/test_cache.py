"""The artifact cache: keys, atomic publishing, integrity, locking, bad states."""

import errno
import json
import multiprocessing as mp
import os
import time

import pytest

from quant.run.cache import ArtifactCache, ResultCache, cache_key, check_writable_dir, file_lock, library_versions
from quant.util.errors import QuantError


def test_key_is_canonical_and_sensitive():
    a = {"variant": {"name": "x", "settings": {"a": 1, "b": 2}}, "imgsz": 320}
    b = {"imgsz": 320, "variant": {"settings": {"b": 2, "a": 1}, "name": "x"}}
    assert cache_key(a) == cache_key(b)
    assert cache_key(a) != cache_key({**a, "imgsz": 640})
    assert "onnxruntime" in library_versions() and "ultralytics" in library_versions()


def test_build_once_then_cached(tmp_path):
    cache = ArtifactCache(tmp_path)
    calls = []

    def build(tmp):
        calls.append(tmp)
        (tmp / "m.onnx").write_bytes(b"model")
        return tmp / "m.onnx", {"note": 1}

    p1, m1 = cache.get_or_build("v", "k" * 64, {"i": 1}, build)
    p2, m2 = cache.get_or_build("v", "k" * 64, {"i": 1}, build)
    assert (m1.cached, m2.cached) == (False, True) and len(calls) == 1
    assert p1 == p2 and p1.read_bytes() == b"model" and m2.info["note"] == 1 and m2.inputs == {"i": 1}


def test_failed_build_leaves_nothing(tmp_path):
    cache = ArtifactCache(tmp_path)

    def build(tmp):
        (tmp / "m.onnx").write_bytes(b"half")
        raise RuntimeError("exporter crashed")

    with pytest.raises(RuntimeError):
        cache.get_or_build("v", "a" * 64, {}, build)
    assert cache.lookup("v", "a" * 64) is None
    assert not list((tmp_path / "artifacts" / "v").iterdir())  # no temp folder, no partial artifact


# ---- integrity, locking, bad states (quant/run/cache.py) --------------------------------------------


def _writer(content: bytes = b"model-bytes" * 100):
    def build(tmp):
        (tmp / "m.onnx").write_bytes(content)
        return tmp / "m.onnx", {}
    return build


def test_manifest_records_size_and_hash(tmp_path):
    cache = ArtifactCache(tmp_path)
    path, m = cache.get_or_build("v", "b" * 64, {"i": 1}, _writer())
    size, sha, _ = m.files["m.onnx"]
    assert size == path.stat().st_size and len(sha) == 64
    assert json.loads((path.parent / "manifest.json").read_text())["files"] == m.files


def test_truncated_artifact_is_moved_aside_and_rebuilt_with_one_line(tmp_path):
    cache = ArtifactCache(tmp_path)
    path, _ = cache.get_or_build("v", "c" * 64, {}, _writer())
    path.write_bytes(path.read_bytes()[:50])  # truncated, manifest intact
    calls = []
    path2, m2 = cache.get_or_build("v", "c" * 64, {}, lambda tmp: calls.append(1) or _writer()(tmp))
    cached = m2.cached
    assert not cached and calls == [1] and path2.read_bytes() == b"model-bytes" * 100
    assert len(cache.notices) == 1 and "\n" not in cache.notices[0]
    assert "v entry" in cache.notices[0] and "damaged" in cache.notices[0] and "moved aside" in cache.notices[0]
    assert "m.onnx has 50 bytes, the manifest says 1100" in cache.notices[0]  # found by size, without hashing
    assert len(list((tmp_path / "damaged").iterdir())) == 1


def test_same_size_corruption_is_found_by_hash(tmp_path):
    cache = ArtifactCache(tmp_path)
    path, _ = cache.get_or_build("v", "d" * 64, {}, _writer())
    st = path.stat()
    path.write_bytes(b"X" * st.st_size)  # same size, new mtime -> hashed
    assert cache.lookup("v", "d" * 64) is None and "SHA-256" in cache.notices[-1]
    path, _ = cache.get_or_build("v", "d" * 64, {}, _writer())
    st = path.stat()
    path.write_bytes(b"Y" * st.st_size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime restored: only --verify-cache notices
    assert cache.lookup("v", "d" * 64) is not None
    assert ArtifactCache(tmp_path, verify=True).lookup("v", "d" * 64) is None


def test_deleted_artifact_is_rebuilt(tmp_path):
    cache = ArtifactCache(tmp_path)
    path, _ = cache.get_or_build("v", "e" * 64, {}, _writer())
    path.unlink()
    assert cache.lookup("v", "e" * 64) is None
    cached = cache.get_or_build("v", "e" * 64, {}, _writer())[1].cached
    assert cached is False


def test_failed_publish_leaves_no_entry(tmp_path, monkeypatch):
    cache = ArtifactCache(tmp_path)

    def broken_rename(src, dst):
        raise OSError(errno.EXDEV, "cross-device link")

    monkeypatch.setattr(os, "rename", broken_rename)
    with pytest.raises(OSError):
        cache.get_or_build("v", "f" * 64, {}, _writer())
    monkeypatch.undo()
    assert cache.lookup("v", "f" * 64) is None and not cache.folder("v", "f" * 64).exists()
    assert not [p for p in (tmp_path / "artifacts" / "v").iterdir() if p.is_dir()]


def test_full_disk_while_building_is_one_line_and_leaves_nothing(tmp_path):
    cache = ArtifactCache(tmp_path)

    def build(tmp):
        (tmp / "m.onnx").write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(QuantError, match="No space left on device") as e:
        cache.get_or_build("v", "g" * 64, {}, build)
    assert "\n" not in str(e.value) and "nothing was kept" in str(e.value)
    assert not [p for p in (tmp_path / "artifacts" / "v").iterdir() if p.is_dir()]


def test_cache_path_that_is_a_file_or_not_writable(tmp_path, monkeypatch):
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(QuantError, match="is a file, not a directory"):
        check_writable_dir(f, "cache directory")
    import tempfile

    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)  # root ignores mode bits: simulate a read-only folder
    with pytest.raises(QuantError, match="cache directory .* is not writable \\(Permission denied\\)") as e:
        check_writable_dir(tmp_path / "ro", "cache directory")
    assert "\n" not in str(e.value)


def test_sweep_removes_temp_folders_of_killed_builds_only(tmp_path):
    cache = ArtifactCache(tmp_path)
    dead = tmp_path / "artifacts" / "v" / ".aaaaaaaaaaaaaaaa-x1"
    live = tmp_path / "artifacts" / "v" / ".bbbbbbbbbbbbbbbb-x2"
    dead.mkdir(parents=True)
    live.mkdir(parents=True)
    with file_lock(cache.lock_path("v", "b" * 64)):  # a build of key b... is running
        pid = os.fork()
        if pid == 0:  # another process sweeps (flock is per open file: our own lock would not block us)
            os._exit(0 if cache.sweep() == [dead] else 1)
        _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0 and not dead.exists() and live.exists()


def _slow_build(root, key, counter, results):
    cache = ArtifactCache(root)

    def build(tmp):
        with open(counter, "a") as f:
            f.write("built\n")
        time.sleep(1.0)
        return _writer()(tmp)

    path, m = cache.get_or_build("v", key, {}, build)
    cached = m.cached
    results.put((str(path), cached))


def test_two_processes_build_the_same_key_once(tmp_path):
    ctx = mp.get_context("fork")
    results = ctx.Queue()
    counter = tmp_path / "count.txt"
    procs = [ctx.Process(target=_slow_build, args=(tmp_path / "c", "h" * 64, counter, results)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    got = sorted(results.get(timeout=5) for _ in procs)
    assert counter.read_text().count("built") == 1
    assert got[0][0] == got[1][0] and sorted(c for _, c in got) == [False, True]


def test_result_cache_roundtrip_and_key_check(tmp_path):
    rc = ResultCache(tmp_path)
    assert rc.get("accuracy", "k" * 64) is None
    rc.put("accuracy", "k" * 64, {"map50_95": 0.5}, {"why": 1})
    assert rc.get("accuracy", "k" * 64) == {"map50_95": 0.5}
    assert rc.get("accuracy", "k" * 24 + "z" * 40) is None  # same file prefix, other key
    assert not list(rc.path("accuracy", "k" * 64).parent.glob(".*tmp"))


def test_why_built_names_the_changed_modules(tmp_path):
    cache = ArtifactCache(tmp_path)
    base = {"imgsz": 96, "code": {"quant.calibration.ranges": "1", "quant.build.qdq": "2"}}
    cache.get_or_build("v", "1" * 64, base, _writer())
    assert cache.why_built("v", "2" * 64, {**base, "code": {"quant.calibration.ranges": "9", "quant.build.qdq": "2"}}) \
        == "code changed (quant.calibration.ranges)"
    assert cache.why_built("v", "3" * 64, {**base, "imgsz": 128}) == "inputs changed (imgsz)"
    assert cache.why_built("w", "4" * 64, base) == "new key"


def test_every_key_input_of_a_variant_changes_its_key(tiny_weights, tiny_data, tmp_path):
    """Each thing an INT8 artifact is built from is in its key, and changing it changes the key."""
    from dataclasses import replace

    from quant.run.suite import Suite
    from quant.registry import REGISTRY

    suite = Suite.create(tiny_weights, tiny_data, 96, tmp_path / "c", calib_images=4)
    v = REGISTRY["onnx-int8-minmax"]
    base = suite.builder.key_inputs(v)
    assert set(base) == {"variant", "weights_sha256", "imgsz", "versions", "code", "calibration", "source"}
    changed = {
        "variant": suite.builder.key_inputs(replace(v, qdq=replace(v.qdq, per_channel=False))),
        "calibration": Suite.create(tiny_weights, tiny_data, 96, tmp_path / "c", calib_images=3).builder.key_inputs(v),
        "imgsz": Suite.create(tiny_weights, tiny_data, 128, tmp_path / "c", calib_images=4).builder.key_inputs(v),
    }
    for field, inputs in changed.items():
        assert inputs[field] != base[field] and cache_key(inputs) != cache_key(base), field
    for field in ("weights_sha256", "versions", "code", "source"):  # the values the other inputs come from
        assert cache_key({**base, field: "something else"}) != cache_key(base), field
    assert "quant.build.qdq" in base["code"] and "quant.calibration.ranges" in base["code"]
    assert base["source"] == suite.builder.manifest("onnx-fp32").key
