
import cv2
import numpy as np
import pytest

from quant.calibration.activations import TensorStats, collect_stats
from quant.calibration.ranges import (Entropy, MinMax, Percentile, _kl_at, activation_ranges, compute_ranges,
                                     kl_threshold_bin)
from quant.calibration.readers import CalibrationReader, letterbox
from quant.model.data import list_images
from quant.util.errors import QuantError


def test_letterbox_matches_ultralytics_predictor(tiny_onnx, tiny_data):
    """Our calibration tensor is exactly what Ultralytics feeds the model at predict time."""
    from quant.util.offline import ultralytics_yolo

    images = [cv2.imread(str(p)) for p in list_images(tiny_data.parent / "val" / "images")]
    im0 = next((im for im in images if im.shape[0] != im.shape[1]), None)
    assert im0 is not None, "the test needs a non-square image: that is where letterboxing pads"
    model = ultralytics_yolo()(str(tiny_onnx), task="detect")
    model.predict(im0, imgsz=96, verbose=False)
    theirs = model.predictor.preprocess([im0]).cpu().numpy()
    ours = letterbox(im0, 96)
    assert ours.shape == theirs.shape == (1, 3, 96, 96)
    np.testing.assert_array_equal(ours, theirs)


def test_letterbox_pads_non_square_images():
    im = np.full((50, 100, 3), 255, np.uint8)
    x = letterbox(im, 64)
    assert x.shape == (1, 3, 64, 64)
    assert np.isclose(x[0, :, 0, 32], 114 / 255).all()  # grey padding on top
    assert np.isclose(x[0, :, 32, 32], 1.0).all()  # image in the middle


def test_reader_feeds(tiny_data):
    r = CalibrationReader(tiny_data.parent / "calib" / "images", 96, "images", limit=3)
    assert len(r) == 3
    feeds = list(r)
    assert len(feeds) == 3 and all(f["images"].shape == (1, 3, 96, 96) for f in feeds)
    np.testing.assert_array_equal(next(iter(r))["images"], feeds[0]["images"])  # again from the first


def test_reader_errors(tmp_path):
    with pytest.raises(QuantError, match="has no images"):
        CalibrationReader(tmp_path, 64)
    with pytest.raises(QuantError, match="not found"):
        CalibrationReader(tmp_path / "missing", 64)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(QuantError, match="cannot be read"):
        CalibrationReader(tmp_path, 64).tensors()


def _stats(x: np.ndarray, bins: int = 2048) -> TensorStats:
    s = TensorStats(float(x.min()), float(x.max()))
    s.hist, _ = np.histogram(np.abs(x), bins=bins, range=(0, s.amax))
    return s


def test_methods_compute_their_own_ranges():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, 200_000), [40.0, -35.0]])  # gaussian plus two outliers
    s = _stats(x)
    assert MinMax().range(s) == (s.lo, s.hi)
    lo_p, hi_p = Percentile(99.99).range(s)
    lo_e, hi_e = Entropy().range(s)
    # |N(0,1)| 99.99th percentile is 3.89; one histogram bin is 40/2048 wide
    assert hi_p == pytest.approx(3.89, abs=0.1) and lo_p == -hi_p
    assert 2.0 < hi_e < 20.0  # clips the outliers, keeps the bulk
    assert len({hi_p, hi_e, s.hi}) == 3


def test_one_sided_tensors_stay_one_sided():
    x = np.abs(np.random.default_rng(1).normal(0, 1, 10_000))
    lo, hi = Percentile(99.0).range(_stats(x))
    assert lo == pytest.approx(x.min()) and 0 < hi < x.max()


def test_kl_threshold_keeps_everything_for_a_uniform_histogram():
    assert kl_threshold_bin(np.ones(512), 128) == 512


def test_kl_threshold_clips_a_long_sparse_tail():
    hist = np.zeros(2048)
    hist[:400] = np.round(1e6 * np.exp(-((np.arange(400) / 80.0) ** 2)))  # a smooth bulk ...
    hist[2000] = 1  # ... and one far outlier: resolution on the bulk beats covering the outlier
    assert 128 <= kl_threshold_bin(hist, 128) < 1000


def test_coarse_to_fine_search_matches_the_exhaustive_one():
    rng = np.random.default_rng(3)
    for scale in (0.5, 1.0, 3.0):
        x = np.concatenate([rng.laplace(0, scale, 50_000), rng.normal(0, 30 * scale, 20)])
        hist, _ = np.histogram(np.abs(x), bins=2048)
        h = hist.astype(float)
        tail = np.concatenate([np.cumsum(h[::-1])[::-1], [0.0]])
        coarse, exhaustive = kl_threshold_bin(hist, 128, stride=8), kl_threshold_bin(hist, 128, stride=1)
        assert _kl_at(h, tail, exhaustive, 128) <= _kl_at(h, tail, coarse, 128) <= 1.1 * _kl_at(h, tail, exhaustive, 128)


def test_ranges_always_contain_zero():
    s = TensorStats(0.5, 2.0)
    assert compute_ranges({"t": s}, MinMax())["t"] == (0.0, 2.0)


def test_each_method_gives_distinct_ranges_on_a_model(tiny_onnx, tiny_data):
    reader = CalibrationReader(tiny_data.parent / "calib" / "images", 96, "images")
    stats = collect_stats(tiny_onnx, reader, histogram_bins=2048)
    assert stats["images"].lo >= 0 and stats["images"].hi <= 1
    ranges = {m.name: compute_ranges(stats, m) for m in (MinMax(), Entropy(), Percentile(99.9))}
    names = [n for n in ranges["minmax"] if stats[n].amax > 0]
    for a, b in (("minmax", "entropy"), ("minmax", "percentile"), ("entropy", "percentile")):
        differ = sum(ranges[a][n] != ranges[b][n] for n in names)
        assert differ > len(names) // 4, f"{a} and {b} give the same ranges for {len(names) - differ}/{len(names)}"
    assert activation_ranges(tiny_onnx, reader.files, 96, "minmax") == ranges["minmax"]  # what builders call
