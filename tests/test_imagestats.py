"""Per-image matching statistics: the validator's mAP recomputed exactly, and the paired interval of a Δ."""

from pathlib import Path

import numpy as np
import pytest

from quant.measure.imagestats import ImageStats, delta_interval
from quant.report.tables import interval_lines, table
from quant.measure.row import Row

EMBEDDED = Path(__file__).resolve().parents[1] / "quant" / "embedded" / "yolov8n-shapes.pt"


def _random_images(rng, images=12, classes=7, preds=40, labels=6) -> list[dict]:
    """Validator-like statistics: each label is matched by at most one prediction of its class (so recall
    never passes 1), at fewer IoU thresholds the stricter they are."""
    out = []
    for _ in range(images):
        n, target = int(rng.integers(0, preds)), rng.integers(0, classes, int(rng.integers(0, labels)))
        pred_cls, free = rng.integers(0, classes, n), list(target)
        hit = np.zeros(n, bool)
        for i in range(n):
            if pred_cls[i] in free and rng.random() < 0.5:
                free.remove(pred_cls[i])
                hit[i] = True
        out.append({"tp": hit[:, None] & (rng.random((n, 10)) < np.linspace(0.95, 0.3, 10)),
                    "conf": rng.random(n).astype(np.float32), "pred_cls": pred_cls.astype(np.float32),
                    "target_cls": target.astype(np.float32)})
    return out


def _ultralytics_map(per_image: list[dict]) -> float:
    from ultralytics.utils.metrics import ap_per_class

    cat = {k: np.concatenate([s[k] for s in per_image]) for k in ("tp", "conf", "pred_cls", "target_cls")}
    ap = ap_per_class(cat["tp"], cat["conf"], cat["pred_cls"], cat["target_cls"])[5]
    return float(ap.mean()) if len(ap) else 0.0


@pytest.mark.parametrize("seed", range(5))
def test_map_equals_ultralytics_ap_per_class(seed):
    per_image = _random_images(np.random.default_rng(seed))
    assert ImageStats.from_images(per_image).map50_95() == pytest.approx(_ultralytics_map(per_image), abs=1e-12)


def test_a_weight_of_zero_is_the_image_left_out_and_equal_weights_change_nothing():
    per_image = _random_images(np.random.default_rng(7))
    s = ImageStats.from_images(per_image)
    w = np.ones(s.images)
    w[[2, 5]] = 0
    rest = ImageStats.from_images([p for i, p in enumerate(per_image) if i not in (2, 5)])
    assert s.map50_95(w) == pytest.approx(rest.map50_95(), abs=1e-12)
    assert s.map50_95(np.full(s.images, 3.0)) == pytest.approx(s.map50_95(), abs=1e-12)


def test_interval_of_a_model_against_itself_is_zero_and_a_real_loss_excludes_zero():
    rng = np.random.default_rng(3)
    per_image = _random_images(rng, images=30)
    s = ImageStats.from_images(per_image)
    assert delta_interval(s, s) == (0.0, 0.0)
    worse = [dict(p, tp=np.zeros_like(p["tp"])) if i % 2 else p for i, p in enumerate(per_image)]  # half the images lost
    lo, hi = delta_interval(ImageStats.from_images(worse), s)
    assert lo < hi < 0
    assert delta_interval(ImageStats.from_images(worse), s) == (lo, hi)  # seeded
    slightly = [dict(p, conf=p["conf"] * rng.uniform(0.9, 1.1, len(p["conf"])).astype(np.float32)) for p in per_image]
    lo2, hi2 = delta_interval(ImageStats.from_images(slightly), s)  # a reshuffle of confidences: no clear loss
    assert lo2 < 0 < hi2 or lo2 == hi2 == 0
    with pytest.raises(ValueError, match="same images"):
        delta_interval(ImageStats.from_images(per_image[:5]), s)


def test_resamples_are_seeded_draws_shared_by_both_models_and_scored_once_per_model():
    rng = np.random.default_rng(11)
    per_image = _random_images(rng, images=20)
    b_images = [dict(p, conf=p["conf"][::-1].copy()) for p in per_image]
    a, b = ImageStats.from_images(per_image), ImageStats.from_images(b_images)
    draws = np.random.default_rng(5)

    def repeated(images, counts):  # a resample as Ultralytics would see it: each image as often as drawn
        return [p for p, k in zip(images, counts) for _ in range(int(k))]

    expected = [(_ultralytics_map(repeated(per_image, w)), _ultralytics_map(repeated(b_images, w))) for w in
                (draws.multinomial(20, np.full(20, 1 / 20)) for _ in range(30))]
    np.testing.assert_allclose(a.resampled(30, 5), [e[0] for e in expected], atol=1e-12)
    np.testing.assert_allclose(b.resampled(30, 5), [e[1] for e in expected], atol=1e-12)
    assert a.resampled(30, 5) is a.resampled(30, 5)  # the baseline is paired with every row: kept
    assert not np.array_equal(a.resampled(30, 5), a.resampled(30, 6))
    with pytest.raises(ValueError):
        a.resampled(30, 5)[0] = 1.0  # the kept values cannot be altered by a caller
    diffs = [x - y for x, y in expected]
    assert delta_interval(a, b, resamples=30, seed=5) == pytest.approx(np.quantile(diffs, [0.025, 0.975]), abs=1e-12)


def test_save_and_load_round_trip(tmp_path):
    s = ImageStats.from_images(_random_images(np.random.default_rng(1)))
    s.save(tmp_path / "x.npz")
    t = ImageStats.load(tmp_path / "x.npz")
    assert t.images == s.images and t.map50_95() == s.map50_95()
    assert ImageStats.load(tmp_path / "missing.npz") is None
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert ImageStats.load(tmp_path / "bad.npz") is None
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """The embedded default model (it detects shapes) on a few generated val images."""
    from quant.embedded import shapes
    from quant.run.suite import Suite

    data = shapes.generate(tmp_path_factory.mktemp("d") / "s", {"val": (6, 2000), "calib": (4, 3000)})
    return Suite.create(EMBEDDED, data, 320, tmp_path_factory.mktemp("cache"), calib_images=4)


def test_the_validators_own_map_is_recomputed_exactly_from_its_per_image_statistics(suite):
    for kind, evaluate in (("accuracy", suite.evaluations.accuracy), ("fidelity", suite.evaluations.fidelity)):
        for name in ("onnx-fp32", "onnx-int8-minmax"):
            acc = evaluate(name)
            stats = suite.evaluations.image_stats(kind, name)
            assert stats.images == 6 and len(stats.conf) > 0
            assert stats.map50_95() == pytest.approx(acc.map50_95, abs=1e-9), (kind, name)


def test_bench_rows_carry_the_interval_and_the_table_shows_it(suite):
    from quant.run.session import BenchSession
    from quant.gate.thresholds import Thresholds

    bench = BenchSession.create(suite, Thresholds({}, {}, {}, {}), embedded=False)
    assert bench.delta_interval("onnx-fp32") is None
    delta = 100 * (suite.evaluations.accuracy("onnx-int8-minmax").map50_95 - suite.evaluations.accuracy("onnx-fp32").map50_95)
    lo, hi = bench.delta_interval("onnx-int8-minmax")  # after the evaluation, as BenchSession.measure does
    assert lo <= hi and lo - 1 < delta < hi + 1
    rows = [Row("onnx-fp32", map50_95=50.0, delta_points=0.0), Row("onnx-int8-minmax", map50_95=47.0, delta_points=-3.0,
                                                                   delta_ci=[-8.04, 1.21])]
    assert "-3.00 [-8.0, +1.2]" in table(rows) and "Δ mAP50-95 [95 % CI]" in table(rows)
    assert interval_lines(rows) and not interval_lines(rows[:1])
