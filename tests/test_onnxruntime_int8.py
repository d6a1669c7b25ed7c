"""Structure and behaviour of the ONNX Runtime Q/DQ INT8 artifacts."""

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from quant.model.graph import decode_nodes, head_nodes
from quant.run.suite import Suite

from conftest import error_vs_spread


@pytest.fixture(scope="module")
def int8(suite):
    return onnx.load(str(suite.builder.artifact("onnx-int8-minmax")))


def _consumers(model):
    out = {}
    for n in model.graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def test_weights_per_channel_on_axis_0_symmetric_int8(int8):
    inits = {i.name: i for i in int8.graph.initializer}
    producers = {o: n for n in int8.graph.node for o in n.output}
    checked = 0
    for conv in (n for n in int8.graph.node if n.op_type == "Conv" and "dfl" not in n.name):
        dq = producers[conv.input[1]]
        assert dq.op_type == "DequantizeLinear", conv.name
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        scale, zp = numpy_helper.to_array(inits[dq.input[1]]), numpy_helper.to_array(inits[dq.input[2]])
        assert axis == 0 and scale.shape == (numpy_helper.to_array(inits[dq.input[0]]).shape[0],)
        assert zp.dtype == np.int8 and not zp.any()  # symmetric INT8 weights
        checked += 1
    assert checked == 57 + 6  # every learned conv of a YOLOv8n


def test_activations_are_uint8(int8):
    inits = {i.name: i for i in int8.graph.initializer}
    for q in (n for n in int8.graph.node if n.op_type == "QuantizeLinear"):
        assert numpy_helper.to_array(inits[q.input[2]]).dtype == np.uint8


def test_box_decode_has_no_qdq(int8, suite):
    fp32 = onnx.load(str(suite.builder.artifact("onnx-fp32")))
    decode = set(decode_nodes(fp32))
    by_name = {n.name: n for n in int8.graph.node}
    producers = {o: n for n in int8.graph.node for o in n.output}
    for name in decode:
        node = by_name[name]
        assert all(producers.get(i) is None or producers[i].op_type != "DequantizeLinear" or i.startswith("model.")
                   for i in node.input if i in producers), name
    consumers = _consumers(int8)
    assert all(c.op_type != "QuantizeLinear" for c in consumers.get(int8.graph.output[0].name, []))


def test_head_float_variant_leaves_the_head_float(suite):
    fp32 = onnx.load(str(suite.builder.artifact("onnx-fp32")))
    hf = onnx.load(str(suite.builder.artifact("onnx-int8-minmax-headfloat")))
    head = set(head_nodes(fp32))
    producers = {o: n for n in hf.graph.node for o in n.output}
    head_convs = [n for n in hf.graph.node if n.op_type == "Conv" and n.name in head]
    assert head_convs and all(producers.get(c.input[1]) is None for c in head_convs)  # float weights
    m = suite.builder.manifest("onnx-int8-minmax-headfloat")
    assert set(m.float_nodes) == head


def test_metadata_kept_and_ultralytics_loads_it(suite, tiny_data, int8):
    meta = {p.key: p.value for p in int8.metadata_props}
    assert meta["task"] == "detect" and "circle" in meta["names"] and meta["imgsz"] == "[96, 96]"
    from quant.util.offline import ultralytics_yolo

    results = ultralytics_yolo()(str(suite.builder.artifact("onnx-int8-minmax")), task="detect").predict(
        str(next((tiny_data.parent / "val" / "images").glob("*.png"))), verbose=False)
    assert results[0].names[0] == "circle"


def test_calibration_methods_produce_different_int8_models(suite):
    ranges = {}
    for method in ("minmax", "entropy", "percentile"):
        path = suite.builder.artifact(f"onnx-int8-{method}")
        ranges[method] = json.loads((path.parent / "calibration.json").read_text())["data"]
    lows = {m: {k: str(v["highest"]) for k, v in r.items()} for m, r in ranges.items()}
    assert lows["minmax"] != lows["entropy"] != lows["percentile"] != lows["minmax"]


def test_int8_output_close_to_fp32(suite):
    """INT8 tracks FP32: its error on an image is a small fraction of how much FP32's own output changes
    from one image to another (so an INT8 model that lost the image, or a model that ignores it, fails)."""
    box, cls = error_vs_spread(suite, "onnx-int8-minmax")
    assert box < 0.25 and cls < 0.25, (box, cls)


def test_second_build_comes_from_cache(suite, tiny_weights, tiny_data):
    first = suite.builder.artifact("onnx-int8-minmax")  # built here if this test runs first (alone, or on its own xdist worker)
    again = Suite.create(tiny_weights, tiny_data, 96, suite.builder.cache.root, calib_images=4)
    assert again.builder.artifact("onnx-int8-minmax") == first
    assert again.builder.manifest("onnx-int8-minmax").cached is True
    other = Suite.create(tiny_weights, tiny_data, 96, suite.builder.cache.root, calib_images=3)
    assert other.builder.artifact("onnx-int8-minmax") != suite.builder.artifact("onnx-int8-minmax")  # calibration set is in the key
    assert other.builder.manifest("onnx-fp32").cached is True  # ... but not in the FP32 export's key


@pytest.mark.parametrize("reduce_range, limit", [(False, 127), (True, 64)])
def test_weight_range_is_what_the_variant_asks_for(suite, tmp_path, reduce_range, limit):
    from dataclasses import replace

    from quant.build.qdq import quantize_qdq
    from quant.registry import REGISTRY

    v = REGISTRY["onnx-int8-minmax"]
    v = replace(v, qdq=replace(v.qdq, reduce_range=reduce_range))
    out, _ = quantize_qdq(suite.builder.artifact("onnx-fp32"), tmp_path / "m.onnx", v, suite.builder)
    model = onnx.load(str(out))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    peaks = [int(np.abs(inits[producers[c.input[1]].input[0]].astype(np.int32)).max())
             for c in model.graph.node if c.op_type == "Conv" and producers.get(c.input[1]) is not None
             and producers[c.input[1]].op_type == "DequantizeLinear"]
    assert peaks and max(peaks) <= limit and max(peaks) >= limit - 1  # per-channel symmetric: the peak is used
