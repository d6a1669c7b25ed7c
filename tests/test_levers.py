"""Accuracy levers of the Q/DQ path: SiLU-aware pre-activation ranges and empirical bias correction."""

from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort

from quant.biascorr import correct_biases
from quant.calibration import activation_ranges, clip_silu_inputs, reader_for
from quant.graph import silu_inputs
from quant.qdq import write_qdq
from quant.variants import REGISTRY


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
    src = suite.artifact("onnx-fp32")
    v = replace(REGISTRY["onnx-int8-minmax"], settings=tuple({**dict(REGISTRY["onnx-int8-minmax"].settings),
                                                              "reduce_range": True}.items()))
    files = suite.calibration_files()
    feeds = list(reader_for(files, suite.imgsz))
    ranges = activation_ranges(src, files, suite.imgsz, "minmax")
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
        assert REGISTRY[name].setting("silu_ranges") and REGISTRY[name].setting("bias_correction") > 0
    for name in ("onnx-int8-minmax", "onnx-int8-percentile", "trt-int8-entropy"):
        assert not REGISTRY[name].setting("silu_ranges") and not REGISTRY[name].setting("bias_correction")
