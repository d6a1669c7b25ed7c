"""Numbers pinned by hand: each calibration method's range, SiLU-aware clipping, bias correction and weight
rounding, and the statistics the gates read, each against a value computed here from its definition, apart
from the implementation. A small numeric bug (an index off by a few bins, a dropped term, a flipped sign)
fails here in a second, not only minutes later in the benchmark's history comparison."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from quant.calibration.activations import TensorStats
from quant.calibration.ranges import Entropy, MinMax, Percentile, clip_silu_inputs, compute_ranges, kl_threshold_bin

# ---------------------------------------------------------------------------------------------- range methods


def _stats(hist, lo: float, hi: float) -> TensorStats:
    s = TensorStats(lo, hi)
    s.hist = np.asarray(hist, dtype=np.int64)
    return s


def test_minmax_is_the_observed_range():
    assert MinMax().range(_stats([1, 2, 3], -1.25, 3.5)) == (-1.25, 3.5)


def _percentile_edge(hist, percentile: float, amax: float) -> float:
    """The upper edge of the first bin at which the running share of |x| reaches the percentile, by a plain loop."""
    total, running = sum(hist), 0
    for k, count in enumerate(hist):
        running += count
        if running / total >= percentile / 100:
            return amax * (k + 1) / len(hist)
    return amax


def test_percentile_clips_at_the_upper_edge_of_the_bin_where_the_share_is_reached():
    hist = np.zeros(2048, dtype=np.int64)
    hist[:1000] = 10  # 10,000 values spread over the first 1000 bins ...
    hist[1500] = 1  # ... and one outlier
    s = _stats(hist, -2.0, 4.0)  # amax 4: one bin is 4/2048 wide
    # 99.99 % of 10,001 values is 9,999.9: reached at the 1000th bin (index 999), whose upper edge is 4 * 1000 / 2048
    expected = _percentile_edge(hist, 99.99, 4.0)
    assert expected == 4.0 * 1000 / 2048
    assert Percentile(99.99).range(s) == (-expected, expected)
    assert Percentile(99.0).range(s) == (-_percentile_edge(hist, 99.0, 4.0), _percentile_edge(hist, 99.0, 4.0))
    assert Percentile(100.0).range(s)[1] == 4.0 * 1501 / 2048  # the whole histogram: the outlier's bin


def test_percentile_keeps_a_one_sided_range_one_sided():
    hist = np.zeros(64, dtype=np.int64)
    hist[:10] = 1
    assert Percentile(50.0).range(_stats(hist, 0.5, 6.4)) == (0.5, 0.5)  # 5 of 10 values: bin 4's edge, 6.4 * 5/64


def _kl(hist: np.ndarray, i: int, q: int) -> float:
    """KL(P || Q) for keeping the first ``i`` bins, from its definition: P = the first i bins with everything
    beyond added to the last of them; Q = the first i bins merged into q groups (bin j into group j * q // i),
    each group's sum spread evenly over its nonzero bins; both normalized; terms where P is 0 count nothing."""
    p = [float(x) for x in hist[:i]]
    p[-1] += float(sum(hist[i:]))
    group = [j * q // i for j in range(i)]
    sums, nonzero = [0.0] * q, [0] * q
    for j in range(i):
        sums[group[j]] += float(hist[j])
        nonzero[group[j]] += hist[j] > 0
    qq = [sums[group[j]] / max(nonzero[group[j]], 1) if hist[j] > 0 else 0.0 for j in range(i)]
    ps, qs = sum(p), sum(qq)
    return sum(pj / ps * math.log((pj / ps) / max(qj / qs, 1e-10)) for pj, qj in zip(p, qq) if pj > 0)


def test_entropy_threshold_is_the_brute_force_least_kl():
    rng = np.random.default_rng(7)
    hist = np.zeros(256, dtype=np.int64)
    hist[:120] = np.round(5000 * np.exp(-np.arange(120) / 25.0)).astype(np.int64)  # a smooth decay ...
    hist[200] = 3  # ... and a sparse tail
    hist[:120] += rng.integers(0, 3, 120)
    best = min(range(32, 257), key=lambda i: (_kl(hist, i, 32), i))
    assert kl_threshold_bin(hist, 32, stride=1) == best
    assert 32 <= best < 200  # the tail is clipped
    t = 2.56 * best / 256  # amax 2.56: the threshold is best / 256 of it, cut to the observed range on each side
    assert Entropy(num_bins=256, num_quantized_bins=32, stride=1).range(_stats(hist, -2.56, 1.5)) == (-t, min(1.5, t))
    assert Entropy(num_bins=256, num_quantized_bins=32, stride=1).range(_stats(hist, -0.5, 2.56)) == (-0.5, t)


def test_ranges_hold_zero_and_skip_tensors_never_seen():
    stats = {"pos": TensorStats(0.5, 2.0), "neg": TensorStats(-3.0, -1.0), "unseen": TensorStats()}
    assert compute_ranges(stats, MinMax()) == {"pos": (0.0, 2.0), "neg": (-3.0, 0.0)}


def test_silu_aware_range_of_a_pre_activation():
    # SiLU maps x < -8 to about 0: the pre-activation's range is cut there below, and above at the SiLU output's
    # upper clip (SiLU(x) ~ x for large x); an output range below zero leaves the upper end at 0
    ranges = {"x": (-40.0, 30.0), "y": (-0.28, 12.0), "a": (-5.0, 9.0), "b": (-0.3, -0.1)}
    out = clip_silu_inputs(ranges, {"x": "y", "a": "b"})
    assert out["x"] == (-8.0, 12.0) and out["a"] == (-5.0, 0.0)
    assert clip_silu_inputs(ranges, {"x": "y"}, floor=-4.0)["x"] == (-4.0, 12.0)


# --------------------------------------------------------------------------------- bias correction (one conv)


def _conv_model(path, w: np.ndarray, b: np.ndarray) -> None:
    """A one-convolution ONNX model: x (1, C_in, 6, 6) -> Conv(w, b, 3x3, pads 1) -> y."""
    cout, cin = w.shape[:2]
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[1, 1, 1, 1], kernel_shape=[3, 3])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cout, 6, 6])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def _inits(path) -> dict:
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


def _fake_quant(x, scale, zp, lo, hi):
    return (np.clip(np.round(x / scale) + zp, lo, hi) - zp) * scale


def test_bias_correction_adds_each_channels_mean_shift_by_the_textbook_formula(tmp_path):
    """Nagel et al.'s empirical correction: per output channel c, bias += sum over inputs i and kernel taps k of
    W[c,i,k] E[x_i] - Wq[c,i,k] E[q(x)_i] (E over the images and positions), here as an INT32 bias step."""
    from quant.build.qdq import QdqConfig, write_qdq
    from quant.calibration.biascorr import correct_biases

    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (3, 2, 3, 3)).astype(np.float32)
    b = np.array([0.1, -0.2, 0.05], np.float32)
    src, out = tmp_path / "conv.onnx", tmp_path / "conv-int8.onnx"
    _conv_model(src, w, b)
    feeds = [{"x": (rng.random((1, 2, 6, 6)) * 2.0 + 0.3).astype(np.float32)} for _ in range(3)]
    variant = SimpleNamespace(qdq=QdqConfig(activation_type="uint8", weight_type="int8", per_channel=True))
    write_qdq(src, out, variant, {"x": (0.0, 2.5), "y": (-4.0, 4.0)}, [])
    before = _inits(out)
    names = {k for k in before if k.startswith("b") and k.endswith("_quantized")}
    (bias_name,) = names
    (x_scale,) = [v for k, v in before.items() if k.startswith("x") and k.endswith("_scale")]
    (x_zp,) = [v for k, v in before.items() if k.startswith("x") and k.endswith("_zero_point")]
    w_int = next(v for k, v in before.items() if k.startswith("w") and k.endswith("_quantized"))
    w_scale = next(v for k, v in before.items() if k.startswith("w") and k.endswith("_scale"))
    b_scale = next(v for k, v in before.items() if k.startswith("b") and k.endswith("_scale"))
    assert correct_biases(src, out, feeds, ("pin",)) == 1
    xs = np.concatenate([f["x"] for f in feeds]).astype(np.float64)
    mean_x = xs.mean(axis=(0, 2, 3))
    mean_qx = _fake_quant(xs, float(x_scale), float(x_zp), 0, 255).mean(axis=(0, 2, 3))
    wq = w_int.astype(np.float64) * w_scale.astype(np.float64).reshape(-1, 1, 1, 1)
    shift = (w.astype(np.float64).sum(axis=(2, 3)) @ mean_x) - (wq.sum(axis=(2, 3)) @ mean_qx)
    expected = np.round(before[bias_name] + shift / b_scale.astype(np.float64)).astype(np.int32)
    assert np.array_equal(_inits(out)[bias_name], expected)
    assert not np.array_equal(expected, before[bias_name])  # the correction moved something


# ------------------------------------------------------------------------------- weight rounding (GPTQ / OBQ)


def _obq(w: np.ndarray, h: np.ndarray, scale: np.ndarray, qmax: int, damp: float = 0.01) -> np.ndarray:
    """Optimal Brain Quantization, one column at a time in order of decreasing input energy (H's diagonal), with
    the full inverse Hessian updated after each (Frantar & Alistarh 2022): quantize column i to the nearest grid
    point, push its error onto the columns left, w_F -= (w_i - q_i) / Hinv_ii * Hinv_iF, then drop column i from
    Hinv. GPTQ computes the same with a Cholesky factor and lazy block updates."""
    w, h = w.astype(np.float64).copy(), h.astype(np.float64).copy()
    order = np.argsort(-np.diag(h), kind="stable")
    w, h = w[:, order], h[np.ix_(order, order)]
    h[np.diag_indices_from(h)] += damp * np.mean(np.diag(h))
    hinv = np.linalg.inv(h)
    q = np.zeros_like(w)
    for i in range(w.shape[1]):
        q[:, i] = np.clip(np.round(w[:, i] / scale), -qmax, qmax)
        err = (w[:, i] - q[:, i] * scale) / hinv[i, i]
        w[:, i + 1:] -= np.outer(err, hinv[i, i + 1:])
        hinv = hinv - np.outer(hinv[:, i], hinv[i, :]) / hinv[i, i]
    return q[:, np.argsort(order)]


@pytest.mark.parametrize("columns", [5, 70])  # within one of GPTQ's blocks of 64 columns, and across two
def test_weight_rounding_is_optimal_brain_quantization_in_input_energy_order(columns):
    from quant.calibration.rounding import gptq

    rng = np.random.default_rng(columns)
    x = rng.normal(size=(500, columns)) @ (0.5 * rng.normal(size=(columns, columns)) + np.eye(columns))
    w = rng.normal(0, 0.2, (4, columns))
    scale = np.abs(w).max(axis=1) / 127
    assert np.array_equal(gptq(w, x.T @ x, scale, 127), _obq(w, x.T @ x, scale, 127))


# ---------------------------------------------------------------------------------- the statistics gates read


def test_ratio_of_ratios_is_the_median_of_new_over_the_median_of_old():
    from quant.measure.latency import ratio_of_ratios

    point, (lo, hi) = ratio_of_ratios([0.9, 1.2, 1.0, 1.1, 1.05], [0.8, 0.85, 0.7, 0.9, 1.0])
    assert point == pytest.approx(1.05 / 0.85)  # medians 1.05 and 0.85
    assert lo <= point <= hi
    same = ratio_of_ratios([2.0] * 7, [1.0] * 7)
    assert same == (2.0, (2.0, 2.0))  # every resample draws the same values


def test_median_interval_of_nine_rounds_is_the_second_and_eighth():
    from quant.measure.latency import median_ci

    # n = 9: P(2 <= B <= 7) = 1 - 2 * (1 + 9) / 512 = 0.961 >= 0.95, and P(3 <= B <= 6) = 0.820 is not: j = 2
    assert median_ci([9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0, 5.0]) == (2.0, 8.0)


def test_map50_95_of_a_detection_right_at_half_the_thresholds():
    """One label and one prediction that is a true positive at IoU 0.50-0.70 only: AP is the validator's ceiling
    for a single perfect detection (0.995) at 5 thresholds and 0 at the other 5, so mAP50-95 = 0.995 / 2."""
    from quant.measure.imagestats import ImageStats

    tp = np.array([[True] * 5 + [False] * 5])
    s = ImageStats.from_images([{"tp": tp, "conf": [0.9], "pred_cls": [0], "target_cls": [0]}])
    assert s.map50_95() == pytest.approx(0.995 / 2, abs=1e-12)
    two = ImageStats.from_images([{"tp": tp, "conf": [0.9], "pred_cls": [0], "target_cls": [0]},
                                  {"tp": np.ones((1, 10), bool), "conf": [0.8], "pred_cls": [1], "target_cls": [1]}])
    assert two.map50_95() == pytest.approx((0.995 / 2 + 0.995) / 2, abs=1e-12)  # the mean over the two classes
    assert two.map50_95(np.array([0.0, 1.0])) == pytest.approx(0.995, abs=1e-12)  # the first image left out


def test_a_class_share_is_its_ap_change_over_the_number_of_classes():
    from quant.measure.classloss import class_shares
    from quant.measure.imagestats import ImageStats

    hit, miss = np.ones((1, 10), bool), np.zeros((1, 10), bool)
    labels = [{"tp": hit, "conf": [0.9], "pred_cls": [c], "target_cls": [c]} for c in range(4)]
    old = ImageStats.from_images(labels)
    new = ImageStats.from_images([*labels[:3], {"tp": miss, "conf": [0.9], "pred_cls": [3], "target_cls": [3]}])
    (share,) = class_shares(new, old, ["a", "b", "c", "d"])
    assert share == {"class": "d", "labels": 1, "points": round(100 * (0.0 - 0.995) / 4, 3)}  # -24.875


def test_the_fidelity_floor_loss_is_the_baselines_drop_on_perturbed_images():
    from quant.measure.row import Row

    assert Row("onnx-fp32", fidelity_map50_95=99.5, fidelity_floor=95.86).floor_loss_points == pytest.approx(3.64)
    assert Row("onnx-fp32", fidelity_map50_95=99.5).floor_loss_points is None


def test_a_label_free_split_of_101_images():
    """101 images, 10 to calibrate, at most 30 to search: of the 91 left, half rounded up (46) are val, then 30
    search images of the 45 after them."""
    import tempfile
    from pathlib import Path

    from PIL import Image

    from quant.model.labelfree import split_images

    with tempfile.TemporaryDirectory() as tmp:
        for i in range(101):
            Image.new("RGB", (8, 8)).save(Path(tmp) / f"{i:03d}.png")
        split = split_images(tmp, calib=10, search=30)
        assert [len(split[k]) for k in ("calib", "search", "val")] == [10, 30, 46]
        split = split_images(tmp, calib=70, search=30, min_val=16)
        assert [len(split[k]) for k in ("calib", "search", "val")] == [70, 15, 16]  # 31 left: val 16, search 15
