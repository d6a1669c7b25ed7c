"""OpenVINO/NNCF variants and Ultralytics peer rows (skipped, with the reason, without the extra)."""

import pytest

from quant.report.tables import with_peer_comparison
from quant.measure.row import Row


def test_ov_names_map_from_onnx_nodes():
    from quant.build.ir import ov_names_of

    ov = {"/m/conv/Conv", "/m/conv/Conv/WithoutBiases", "/m/act/Mul", "/x/Conv/WithoutBiases"}
    assert ov_names_of(["/m/conv/Conv", "/m/act/Mul", "/m/act/Sigmoid"], ov) == [
        "/m/act/Mul", "/m/conv/Conv", "/m/conv/Conv/WithoutBiases"]


def test_best_peer_is_shown_next_to_our_int8_rows():
    rows = [
        {"variant": "onnx-fp32", "precision": "fp32", "map50_95": 70.0, "latency_ms": 20.0},
        {"variant": "onnx-int8-minmax", "precision": "int8", "map50_95": 69.0, "latency_ms": 12.0},
        {"variant": "ov-int8", "precision": "int8", "map50_95": 60.0, "latency_ms": 9.0},
        {"variant": "ul-onnx-int8", "precision": "int8", "map50_95": 50.0, "latency_ms": 40.0, "peer": True},
        {"variant": "ul-openvino-int8", "precision": "int8", "map50_95": 65.0, "latency_ms": 10.0, "peer": True},
    ]
    rows = [Row.from_dict(r) for r in rows]
    out = {r.variant: r.vs_peer for r in with_peer_comparison(rows)}
    assert out["onnx-fp32"] is None and out["ul-onnx-int8"] is None
    assert out["onnx-int8-minmax"]["peer"] == "ul-openvino-int8"
    assert out["onnx-int8-minmax"]["delta_points"] == pytest.approx(4.0)
    assert out["onnx-int8-minmax"]["ahead"] is False  # more accurate but slower: not ahead on both
    assert out["ov-int8"]["ahead"] is False and out["ov-int8"]["latency_ratio"] == pytest.approx(0.9)
    rows[2].map50_95 = 66.0
    assert {r.variant: r.vs_peer for r in with_peer_comparison(rows)}["ov-int8"]["ahead"] is True


@pytest.fixture(scope="module")
def suite(tiny_weights, tiny_data, tmp_path_factory):
    pytest.importorskip("openvino", reason="openvino not installed (pip install -e '.[openvino]')")
    pytest.importorskip("nncf", reason="nncf not installed (pip install -e '.[openvino]')")
    from quant.run.suite import Suite

    return Suite.create(tiny_weights, tiny_data, 96, tmp_path_factory.mktemp("cache"), calib_images=4)


def test_openvino_int8_keeps_the_decode_float_and_loads_in_ultralytics(suite, tiny_data, tmp_path):
    import openvino as ov

    folder = suite.builder.artifact("ov-int8")
    assert (folder / "metadata.yaml").is_file() and (folder / "model.xml").is_file()
    model = ov.Core().read_model(str(folder / "model.xml"))
    fq = [op for op in model.get_ops() if op.get_type_name() == "FakeQuantize"]
    assert len(fq) > 50
    assert not any("/dfl/" in op.get_friendly_name() or op.get_friendly_name().startswith("/model.22/Sigmoid")
                   for op in fq)
    head = suite.builder.artifact("ov-int8-headfloat")
    hmodel = ov.Core().read_model(str(head / "model.xml"))
    assert not any(op.get_friendly_name().startswith("/model.22/") for op in hmodel.get_ops()
                   if op.get_type_name() == "FakeQuantize")
    from quant.build.ir import ir_int8_convs
    from quant.model.graph import conv_layers, head_nodes, load_onnx

    fp32 = load_onnx(suite.builder.artifact("onnx-fp32"))
    assert sorted(ir_int8_convs(folder)) == sorted(conv_layers(fp32))  # every learned convolution reads INT8
    assert sorted(ir_int8_convs(head)) == sorted(set(conv_layers(fp32)) - set(head_nodes(fp32)))
    from dataclasses import replace

    from quant.build import export
    from quant.registry import REGISTRY

    rerun = replace(REGISTRY["ov-int8-auto-bf16"], source="ov-int8")  # reuses ov-int8's IR as it reuses ov-int8-auto's
    (tmp_path / "rerun").mkdir()
    _, info = export.source_as_is(rerun, suite.builder, tmp_path / "rerun")
    assert info == {"convs": len(conv_layers(fp32)), "int8_convs": len(conv_layers(fp32))}
    acc = suite.evaluations.accuracy("ov-int8")  # Ultralytics' validator loads the folder through its metadata.yaml
    assert 0.0 <= acc.map50_95 <= 1.0 and acc.inference_ms > 0
    out = suite.builder.runner("ov-int8")(suite.inputs.sample_input())
    assert out[0].shape == suite.builder.runner("onnx-fp32")(suite.inputs.sample_input())[0].shape


def test_ultralytics_peer_exports_build_offline(suite):
    from quant.util.offline import NetworkGuard

    with NetworkGuard() as g:
        onnx_int8 = suite.builder.artifact("ul-onnx-int8")
        ov_int8 = suite.builder.artifact("ul-openvino-int8")
    assert g.attempts == []
    assert onnx_int8.suffix == ".onnx" and ov_int8.is_dir()
    assert sorted(p.name for p in onnx_int8.parent.iterdir()) == ["manifest.json", onnx_int8.name]
    assert suite.builder.manifest("ul-onnx-int8").inputs["calibration"]["images"] == 6  # the val split, their default


def test_deltas_and_ratios_on_hand_made_rows():
    from quant.report.tables import with_deltas

    rows = [{"variant": "onnx-fp32", "map50_95": 50.0, "latency_ms": 20.0, "latency_ratio": 1.0},
            {"variant": "a", "map50_95": 43.75, "latency_ms": 10.0, "latency_ratio": 0.625},
            {"variant": "b", "map50_95": 56.25, "latency_ms": 30.0}]  # an unpaired row: ratio of medians
    out = {r.variant: r for r in with_deltas([Row.from_dict(r) for r in rows], "onnx-fp32")}
    assert out["onnx-fp32"].delta_points == 0.0
    assert out["a"].delta_points == -6.25 and out["a"].latency_ratio == 0.625
    assert out["b"].delta_points == 6.25 and out["b"].latency_ratio == 1.5


def test_int8_convs_of_an_ir_are_those_reading_a_fakequantize(tmp_path):
    """Directly or through a Concat of quantized inputs (NNCF quantizes a Concat's inputs once for every
    convolution behind it); not through a Concat with a float input, nor a float input."""
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    from quant.build.ir import ir_int8_convs

    x = ops.parameter([1, 2, 8, 8], np.float32)
    lo, hi = ops.constant(np.float32(-1)), ops.constant(np.float32(1))
    fq_a, fq_b = (ops.fake_quantize(x, lo, hi, lo, hi, 256) for _ in range(2))
    convs = {"a": fq_a, "b": ops.concat([fq_a, fq_b], 1), "c": ops.concat([fq_a, x], 1), "d": x}
    outs = []
    for name, src in convs.items():
        w = ops.constant(np.ones((1, src.get_output_partial_shape(0)[1].get_length(), 1, 1), np.float32))
        conv = ops.convolution(src, w, [1, 1], [0, 0], [0, 0], [1, 1])
        conv.set_friendly_name(f"/{name}/Conv/WithoutBiases")
        outs.append(conv)
    ov.save_model(ov.Model(outs, [x]), str(tmp_path / "model.xml"))
    assert sorted(ir_int8_convs(tmp_path)) == ["/a/Conv", "/b/Conv"]
