"""Sensitivity numbers: SQNR/NSR definitions, layer grouping, isolation, and the analysis on a real Q/DQ model."""

import math

import numpy as np
import onnx
import pytest

from quant.calibration.readers import reader_for
from quant.search.sensitivity import Sensitivity, analyze, keep_quantized, layers, nsr, quantized_layers, to_db, write_reports
from quant.run.suite import Suite


def test_identical_tensors_have_infinite_sqnr_and_zero_nsr():
    x = np.random.default_rng(0).normal(size=(3, 40))
    assert nsr(x, x.copy()) == 0.0
    assert to_db(nsr(x, x.copy())) == math.inf


def test_known_perturbation_gives_the_expected_value():
    ref = np.full(1000, 2.0)
    assert nsr(ref, ref + 0.2) == pytest.approx(0.01)  # 0.04 / 4
    assert to_db(nsr(ref, ref + 0.2)) == pytest.approx(20.0)
    rng = np.random.default_rng(0)
    sig = rng.normal(size=200_000)
    noisy = sig + rng.normal(scale=0.1, size=sig.shape)  # power ratio 100:1 -> 20 dB
    assert to_db(nsr(sig, noisy)) == pytest.approx(20.0, abs=0.2)
    assert to_db(nsr(sig, sig + rng.normal(scale=1.0, size=sig.shape))) == pytest.approx(0.0, abs=0.2)


def test_zero_signal_edge_cases():
    z = np.zeros(10)
    assert nsr(z, z) == 0.0
    assert nsr(z, z + 1) == math.inf and to_db(nsr(z, z + 1)) == -math.inf


@pytest.fixture(scope="module")
def models(tiny_weights, tiny_data, tmp_path_factory):
    s = Suite.create(tiny_weights, tiny_data, 96, tmp_path_factory.mktemp("cache"), calib_images=4)
    fp32, q = s.builder.artifact("onnx-fp32"), s.builder.artifact("onnx-int8-minmax")
    feeds = list(reader_for(s.inputs.calibration_files(), s.inputs.imgsz))[:2]
    return fp32, q, feeds


def test_conv_owns_its_silu(tiny_onnx):
    units = layers(onnx.load(str(tiny_onnx)))
    assert units["/model.0/conv/Conv"] == ["/model.0/conv/Conv", "/model.0/act/Sigmoid", "/model.0/act/Mul"]
    assert all(n in units for n in ("/model.2/Split", "/model.2/Concat"))  # no conv: their own units
    owned = [n for nodes in units.values() for n in nodes]
    assert len(owned) == len(set(owned))  # every node in exactly one unit


T0 = "/model.0/act/Mul_output_0"  # the first layer's output: an untrained model's detections hide small errors


def _run(model, feeds, tensor=None):
    from quant.calibration.activations import session_with_outputs

    name = tensor or model.graph.output[0].name
    sess = session_with_outputs(model, [name])
    return [sess.run([name], f)[0] for f in feeds]


def test_isolation_keeps_exactly_the_named_layer_quantized(models):
    fp32_path, q_path, feeds = models
    fp32, q = onnx.load(str(fp32_path)), onnx.load(str(q_path))
    ref = _run(fp32, feeds)
    none = keep_quantized(q, fp32, set())
    assert not any(n.op_type == "QuantizeLinear" for n in none.graph.node)  # nothing quantized is left
    for a, b in zip(ref, _run(none, feeds)):
        assert to_db(nsr(a, b)) > 100  # = the FP32 model (up to float summation order)
    units = quantized_layers(fp32, q)
    keep = set(units["/model.0/conv/Conv"])
    one = keep_quantized(q, fp32, keep)
    producers = {o: n for n in one.graph.node for o in n.output}
    readers = {n.name for n in one.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
               and any(i in producers and producers[i].op_type == "DequantizeLinear" for i in n.input)}
    assert readers and readers <= keep
    ref0 = _run(fp32, feeds, T0)
    alone = [to_db(nsr(a, b)) for a, b in zip(ref0, _run(one, feeds, T0))]
    assert all(15 < a < 60 for a in alone)  # INT8 error of one layer: tens of dB
    assert all(to_db(nsr(a, b)) > 100 for a, b in zip(ref0, _run(none, feeds, T0)))
    other = keep_quantized(q, fp32, set(units["/model.2/cv1/conv/Conv"]))  # a later layer: layer 0 is float
    assert all(to_db(nsr(a, b)) > 100 for a, b in zip(ref0, _run(other, feeds, T0)))


def test_analysis_ranks_every_quantized_layer(models, tmp_path):
    fp32_path, q_path, feeds = models
    s = analyze(fp32_path, q_path, feeds)
    q_units = quantized_layers(onnx.load(str(fp32_path)), onnx.load(str(q_path)))
    assert {x.layer for x in s.layers} == set(q_units)
    scores = [x.score for x in s.layers]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    for x in s.layers:
        assert x.graphwise_sqnr_db == pytest.approx(-10 * math.log10(x.graphwise_nsr)) if x.graphwise_nsr else True
        assert x.box_nsr <= 10 * s.full_box_nsr + 1e-9 or x.cls_nsr <= 10 * s.full_cls_nsr + 1e-9
    files = write_reports(s, tmp_path, "tiny", float_layers=[s.layers[0].layer])
    assert all((tmp_path / f).stat().st_size > 0 for f in files)
    assert "(float)" in (tmp_path / "sensitivity.md").read_text()
    back = Sensitivity.from_dict(__import__("json").loads((tmp_path / "sensitivity.json").read_text()))
    assert back.ranking() == s.ranking()
