"""Accuracy levers of the Q/DQ path: SiLU-aware pre-activation ranges, weight rounding by output
reconstruction and empirical bias correction."""

from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort

from quant.calibration.biascorr import correct_biases
from quant.calibration.ranges import activation_ranges, clip_silu_inputs
from quant.calibration.readers import reader_for
from quant.model.graph import silu_inputs
from quant.build.qdq import write_qdq
from quant.calibration.rounding import _Conv, gptq, round_weights
from quant.registry import REGISTRY


def _with(name, **settings):
    v = REGISTRY[name]
    return replace(v, qdq=replace(v.qdq, **settings))


def test_silu_inputs_are_the_conv_outputs_feeding_sigmoid_and_mul(tiny_onnx):
    m = onnx.load(str(tiny_onnx))
    pairs = silu_inputs(m)
    producers = {o: n for n in m.graph.node for o in n.output}
    assert len(pairs) >= 50  # YOLOv8n: every Conv block ends in SiLU
    for x, y in pairs.items():
        assert producers[x].op_type == "Conv" and producers[y].op_type == "Mul" and x in producers[y].input


def test_silu_ranges_clip_the_negative_side_and_follow_the_output_clip():
    ranges = {"x": (-40.0, 30.0), "y": (-0.28, 12.0), "z": (-3.0, 5.0), "s": (-0.2, 6.0)}
    out = clip_silu_inputs(ranges, {"x": "y", "z": "s"})
    assert out["x"] == (-8.0, 12.0) and out["z"] == (-3.0, 5.0) and out["y"] == ranges["y"]


def _conv_outputs(path, feeds, names):
    m = onnx.load(str(path))
    m.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # exact fake quantization
    s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return [dict(zip(names, s.run(names, f))) for f in feeds]


def test_bias_correction_removes_the_mean_shift_of_int8_convs(suite, tmp_path):
    src = suite.builder.artifact("onnx-fp32")
    v = _with("onnx-int8-minmax", reduce_range=True, bias_correction=4)
    files = suite.inputs.calibration_files()
    feeds = list(reader_for(files, suite.inputs.imgsz))
    ranges = activation_ranges(src, files, suite.inputs.imgsz, "minmax")
    plain = write_qdq(src, tmp_path / "plain.onnx", v, ranges, [])
    fixed = write_qdq(src, tmp_path / "fixed.onnx", v, ranges, [], (feeds, ("t",)))
    convs = [n for n in onnx.load(str(src)).graph.node if n.op_type == "Conv"]
    outs = [n.output[0] for n in convs[:12]]  # the first layers: their inputs are the FP32 model's inputs
    ref, a, b = (_conv_outputs(p, feeds, outs) for p in (src, plain, fixed))

    def shift(q):  # mean over images and channels of |mean_q - mean_fp32| per channel
        return np.mean([np.abs(np.mean([r[o] - x[o] for r, x in zip(ref, q)], axis=0).mean(axis=(0, 2, 3))).mean()
                        for o in outs[:1]])

    assert shift(b) < 0.5 * shift(a)
    biases = [i for i in onnx.load(str(fixed)).graph.initializer if i.name.endswith("_quantized")]
    assert biases and correct_biases(src, tmp_path / "fixed.onnx", feeds, ("t",)) > 0


def test_auto_variants_use_the_levers_and_fixed_rows_stay_plain():
    for name in ("onnx-int8-auto", "trt-int8-auto"):
        v = REGISTRY[name]
        assert v.qdq.silu_ranges and v.qdq.weight_rounding > 0 and v.qdq.bias_correction > 0
    for name in ("onnx-int8-minmax", "onnx-int8-percentile", "trt-int8-entropy"):
        v = REGISTRY[name]
        assert not any((v.qdq.silu_ranges, v.qdq.weight_rounding, v.qdq.bias_correction))


def test_gptq_rounding_halves_the_output_error_of_round_to_nearest_on_the_same_grid():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 144)) @ (0.3 * rng.normal(size=(144, 144)) + np.eye(144))  # correlated inputs
    w = 0.1 * rng.normal(size=(32, 144))
    w[:, 7] = 0.0
    x[:, 9] = 0.0  # an input that is always zero
    scale = np.abs(w).max(axis=1) / 63
    q = gptq(w, x.T @ x, scale, 63)
    rtn = np.round(w / scale[:, None])
    err = lambda v: np.mean((x @ (w - v * scale[:, None]).T) ** 2)  # noqa: E731
    assert err(q) < 0.6 * err(rtn)
    assert np.array_equal(q, np.round(q)) and np.abs(q).max() <= 63
    assert np.array_equal(q, gptq(w, x.T @ x, scale, 63))  # deterministic


def test_conv_patches_reproduce_the_convolution_at_the_sampled_positions():
    import torch

    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 8, 12, 14)).astype(np.float32)
    cases = ((1, 2, [1, 1, 1, 1], None), (8, 1, [1, 0, 1, 2], None), (2, 1, [0, 0, 0, 0], None),
             (1, 2, [0, 0, 1, 1], "SAME_UPPER"), (1, 2, [1, 1, 0, 0], "SAME_LOWER"), (1, 2, [0, 0, 0, 0], "VALID"))
    for groups, stride, pads, auto_pad in cases:  # with auto_pad, pads = what it resolves to for 12 x 14
        w = rng.normal(size=(8, 8 // groups, 3, 3)).astype(np.float32)
        attrs = {"auto_pad": auto_pad} if auto_pad else {"pads": pads}
        node = onnx.helper.make_node("Conv", ["x", "w"], ["y"], name="c", group=groups, strides=[stride, stride],
                                     **attrs)
        conv = _Conv(node, w)
        xp = torch.nn.functional.pad(torch.from_numpy(x), (pads[1], pads[3], pads[0], pads[2]))
        y = torch.nn.functional.conv2d(xp, torch.from_numpy(w), stride=stride, groups=groups)[0].numpy()
        p = conv.patches(x, np.random.default_rng(2))  # (groups, d, positions)
        positions = y.shape[1] * y.shape[2]  # patches() picked p.shape[2] of them with the same seed:
        pick = np.sort(np.random.default_rng(2).choice(positions, size=p.shape[2], replace=False))
        got = np.einsum("gcd,gdp->gcp", conv.w, p).reshape(8, -1)
        assert np.allclose(got, y.reshape(8, -1)[:, pick], atol=1e-4), (groups, stride, pads, auto_pad)


def _plain_and_rounded(src, suite, tmp_path, key):
    """``src`` as plain minmax Q/DQ INT8 and with weight rounding on the suite's calibration images."""
    files = suite.inputs.calibration_files()
    feeds = list(reader_for(files, suite.inputs.imgsz))
    ranges = activation_ranges(src, files, suite.inputs.imgsz, "minmax")
    plain = write_qdq(src, tmp_path / "plain.onnx", _with("onnx-int8-minmax"), ranges, [])
    rounded = write_qdq(src, tmp_path / "rounded.onnx", _with("onnx-int8-minmax", weight_rounding=4), ranges, [],
                        (feeds, key))
    return feeds, plain, rounded


def test_weight_rounding_lowers_the_first_convs_output_error_and_keeps_the_grid(suite, tmp_path):
    src = suite.builder.artifact("onnx-fp32")
    feeds, plain, rounded = _plain_and_rounded(src, suite, tmp_path, ("t",))
    first = next(n for n in onnx.load(str(src)).graph.node if n.op_type == "Conv").output[0]
    ref, a, b = (_conv_outputs(p, feeds, [first]) for p in (src, plain, rounded))
    mse = lambda q: np.mean([np.mean((r[first] - x[first]) ** 2) for r, x in zip(ref, q)])  # noqa: E731
    assert mse(b) < mse(a)

    def weights(path):
        return {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer
                if i.data_type == onnx.TensorProto.INT8 or i.name.endswith("_scale")}

    wa, wb = weights(plain), weights(rounded)
    assert wa.keys() == wb.keys()
    changed = [k for k in wa if not np.array_equal(wa[k], wb[k])]
    assert changed and all(not k.endswith("_scale") for k in changed)  # values move, scales stay
    assert all(np.abs(wb[k].astype(int) - wa[k].astype(int)).max() <= 3 for k in changed)  # near the nearest
    again = tmp_path / "again.onnx"
    again.write_bytes(plain.read_bytes())
    assert round_weights(src, again, feeds, ("t",)) > 0  # a fresh memo key: computed again, the same values
    assert all(np.array_equal(weights(again)[k], wb[k]) for k in wb)


def test_weight_rounding_covers_yolo11_depthwise_convs(suite, tmp_path):
    from quant.model.weights import export_onnx
    from quant.util.offline import ultralytics_yolo

    pt = tmp_path / "y11.pt"
    ultralytics_yolo()("yolo11n.yaml", task="detect").save(str(pt))
    src = export_onnx(pt, tmp_path / "y11.onnx", suite.inputs.imgsz)
    _, plain, rounded = _plain_and_rounded(src, suite, tmp_path, ("y11",))
    depthwise = [n for n in onnx.load(str(src)).graph.node if n.op_type == "Conv"
                 and next((a.i for a in n.attribute if a.name == "group"), 1) > 1]
    assert depthwise  # YOLO11's head has depthwise convs (their geometry: the patches test above)

    def int8_weights(path):
        return {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer
                if i.data_type == onnx.TensorProto.INT8}

    wa, wb = int8_weights(plain), int8_weights(rounded)
    names = [n.input[1] + "_quantized" for n in depthwise]  # quantize_static's name of a conv's INT8 weights
    assert all(k in wa for k in names)
    assert all(not np.array_equal(wa[k], wb[k]) for k in names)  # re-rounded too (7 of 7 here)
