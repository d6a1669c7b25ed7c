import pytest

from quant.cache import ArtifactCache, cache_key, library_versions


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

    p1, m1, cached1 = cache.get_or_build("v", "k" * 64, {"i": 1}, build)
    p2, m2, cached2 = cache.get_or_build("v", "k" * 64, {"i": 1}, build)
    assert (cached1, cached2) == (False, True) and len(calls) == 1
    assert p1 == p2 and p1.read_bytes() == b"model" and m2["note"] == 1 and m2["inputs"] == {"i": 1}


def test_failed_build_leaves_nothing(tmp_path):
    cache = ArtifactCache(tmp_path)

    def build(tmp):
        (tmp / "m.onnx").write_bytes(b"half")
        raise RuntimeError("exporter crashed")

    with pytest.raises(RuntimeError):
        cache.get_or_build("v", "a" * 64, {}, build)
    assert cache.lookup("v", "a" * 64) is None
    assert not list((tmp_path / "artifacts" / "v").iterdir())  # no temp folder, no partial artifact
