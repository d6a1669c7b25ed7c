"""The measured cost model: ONNX Runtime's kernel profile mapped back to the model's convolutions."""

import numpy as np
import onnx
from onnx import TensorProto, helper

from quant.search.layertime import conv_times, int8_savings, kernel_times


def _two_convs():
    def conv(name):
        return helper.make_node("Conv", ["x", "w"], [name + "_output_0"], name=name)

    graph = helper.make_graph([conv("/m.2/Conv"), conv("/m.22/Conv")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("/m.2/Conv_output_0", TensorProto.FLOAT, None)])
    return helper.make_model(graph)


def test_fused_kernel_names_map_to_their_convolution_by_longest_prefix():
    times = {"/m.2/Conv_token_5": 10.0,  # a QLinearConv fused from Q/DQ + Conv
             "/m.22/Conv_output_0_nchwc": 20.0,  # an FP32 conv in the blocked layout, named by its output
             "/m.22/Conv_output_0_nchwc_reorder": 1.0,  # its layout change belongs to it too
             "/m.2/Sigmoid": 3.0, "/m.2/Conv2_token_9": 4.0}  # not theirs: no "_" right after the name
    assert conv_times(_two_convs(), times) == {"/m.2/Conv": 10.0, "/m.22/Conv": 21.0}


def test_every_convolution_of_a_yolo_is_timed_in_fp32_and_in_int8(suite):
    fp32, q = suite.builder.artifact("onnx-fp32"), suite.builder.artifact("onnx-int8-minmax")
    model = onnx.load(str(fp32))
    convs = {n.name for n in model.graph.node if n.op_type == "Conv"}
    feed = {model.graph.input[0].name: np.random.default_rng(0).random((1, 3, 96, 96), np.float32)}
    assert set(conv_times(model, kernel_times(q, feed, threads=1, runs=2))) == convs
    saved = int8_savings(fp32, q, feed, threads=1, runs=2)
    assert set(saved) == convs and all(np.isfinite(v) for v in saved.values())


def test_a_profile_that_names_kernels_otherwise_falls_back_to_counting(suite, monkeypatch):
    from quant.search import layertime

    fp32 = suite.builder.artifact("onnx-fp32")
    monkeypatch.setattr(layertime, "kernel_times", lambda *a, **k: {"fused_node_17": 5.0})
    assert int8_savings(fp32, fp32, {}) is None
