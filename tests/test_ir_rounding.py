"""Weight rounding on NNCF's grid (quant.calibration.ir_rounding) and the float choice's refinement step that keeps
it only where it brings the output closer to FP32 (quant.search.float_choice)."""

import numpy as np
import onnx
import pytest

from quant.registry import REGISTRY
from quant.search import float_choice

F32 = {"INFERENCE_PRECISION_HINT": "f32"}


@pytest.fixture(scope="module")
def feeds(tiny_onnx):
    rng = np.random.default_rng(0)
    name = onnx.load(str(tiny_onnx)).graph.input[0].name
    return [{name: rng.random((1, 3, 96, 96), dtype=np.float32)} for _ in range(6)]


class _Reader:
    def __init__(self, feeds):
        self.feeds = feeds

    def __len__(self):
        return len(self.feeds)

    def tensors(self):
        return [next(iter(f.values())) for f in self.feeds]

    def __iter__(self):
        return iter(self.feeds)


def _quantized(tiny_onnx, feeds, alpha=None):
    pytest.importorskip("nncf")
    from quant.build.nncf_ir import quantize

    v = REGISTRY["ov-int8-auto"]  # its decode stays float, as in the suite
    return quantize(v, tiny_onnx, _Reader(feeds), v.float_scope.resolve(onnx.load(str(tiny_onnx))), alpha,
                    bias_correction=False)


def _error(model, tiny_onnx, feeds) -> float:
    import openvino as ov

    from quant.search.sensitivity import OutputError

    oe = OutputError(tiny_onnx, feeds)
    compiled = ov.Core().compile_model(model, "CPU", F32)
    return sum(oe.compare([compiled(f)[0] for f in feeds]))


@pytest.mark.parametrize("alpha", [None, 0.5])
def test_the_weights_rounded_are_nncfs_own(tiny_onnx, feeds, alpha):
    """Each INT8 convolution NNCF stored is found with the FP32 weights its values approximate: NNCF's own values
    are those weights rounded to the nearest step of its scale, also where SmoothQuant divided them by its factors."""
    from quant.calibration.ir_rounding import _jobs

    model = _quantized(tiny_onnx, feeds, alpha)
    jobs = _jobs(model, onnx.load(str(tiny_onnx)))
    assert len(jobs) >= 10
    if alpha is not None:
        from quant.calibration.ir_rounding import _smooth_factors

        assert any(_smooth_factors(j.conv) is not None for j in jobs)
    for j in jobs:
        stored = j.values.get_data().reshape(len(j.scale), -1).astype(np.float64)
        nearest = np.clip(np.round(j.w / j.scale[:, None]), -j.qmax, j.qmax)
        assert np.mean(nearest == stored) > 0.99, j.conv.get_friendly_name()


def test_rounding_keeps_the_grid_and_brings_each_convolution_closer(tiny_onnx, feeds):
    """What the rounding minimizes, each convolution's output error on its inputs ||X (W - Wq)^T||^2 = tr(D H D^T),
    falls well below NNCF's nearest rounding, on NNCF's own range and scales; each bias takes the mean shift."""
    from quant.calibration.ir_rounding import _jobs, _measure, round_ir_weights

    model = _quantized(tiny_onnx, feeds)
    reference = model.clone()  # NNCF's rounding, measured as round_ir_weights measures it before its edits
    jobs = _jobs(reference, onnx.load(str(tiny_onnx)))
    _measure(reference, jobs, feeds, F32)
    names = [j.conv.get_friendly_name() for j in jobs]
    biases = {name: _bias(model, name) for name in names}
    assert round_ir_weights(model, tiny_onnx, feeds, F32) == len(jobs)
    before = after = 0.0
    changed = 0

    def err(j, values, scale) -> float:
        d = j.w - values.reshape(len(scale), -1) * scale[:, None]
        return float(np.trace(d @ j.h @ d.T))

    for j, name in zip(jobs, names):
        new, scale = _weights(model, name)
        stored = j.values.get_data()
        assert new.dtype == np.int8 and new.shape == stored.shape and np.abs(new.astype(int)).max() <= j.qmax
        assert np.array_equal(scale, j.scale)  # NNCF's range and scales
        changed += not np.array_equal(new, stored)
        before, after = before + err(j, stored, scale), after + err(j, new, scale)
        assert not np.array_equal(_bias(model, name), biases[name])  # the mean shift goes back in the bias
    assert changed >= len(jobs) // 2
    assert after < 0.5 * before, (after, before)


def _conv(model, name: str):
    return next(op for op in model.get_ordered_ops() if op.get_friendly_name() == name)


def _weights(model, conv_name: str) -> tuple[np.ndarray, np.ndarray]:
    """(INT8 values, scale per output channel) of a quantized convolution: Constant -> Convert -> Multiply."""
    mul = _conv(model, conv_name).input_value(1).get_node()
    values = mul.input_value(0).get_node().input_value(0).get_node().get_data()
    return values.copy(), mul.input_value(1).get_node().get_data().astype(np.float64).reshape(-1)


def _bias(model, conv_name: str) -> np.ndarray:
    conv = _conv(model, conv_name)
    add = next(t.get_node() for t in conv.output(0).get_target_inputs())
    return add.input_value(1).get_node().get_data().copy()


def test_no_int8_convolution_nothing_to_round(tiny_onnx, feeds):
    pytest.importorskip("openvino")
    import openvino as ov

    from quant.calibration.ir_rounding import round_ir_weights

    assert round_ir_weights(ov.convert_model(str(tiny_onnx)), tiny_onnx, feeds) == 0


def _record(errors: dict) -> dict:
    ref = errors["reused"]
    return {"chosen": "b", "candidates": [{"label": k, "float_nodes": 1, "box_nsr": e[0], "class_nsr": e[1],
                                           "score": e[0] / ref[0] + e[1] / ref[1]} for k, e in errors.items()]}


@pytest.mark.parametrize("refined, kept", [((0.5, 0.05), "b, weight rounding"), ((2.0, 0.2), "b")])
def test_the_refined_build_is_kept_only_where_closer(tmp_path, refined, kept):
    errors = {"reused": (1.0, 0.1), "b": (1.0, 0.05)}  # b: score 1.5
    sets, smooth = {"reused": ["x"], "b": ["y"]}, {"b": ["y"]}
    built, calls = {"reused": tmp_path / "r", "b": tmp_path / "b"}, []

    def builder(nodes, alpha, folder):
        calls.append((nodes, alpha, folder.name))
        return folder / "ir"

    record = _record(errors)
    best = float_choice._refined("b", sets, smooth, built, record, ("weight rounding", builder), tmp_path, 0.5,
                                 lambda path: refined)
    assert calls == [(["y"], 0.5, ".candidate-2")]  # the kept set, with its SmoothQuant, in a folder of its own
    assert best == kept == record["chosen"]
    assert record["candidates"][-1] == {"label": "b, weight rounding", "float_nodes": 1, "box_nsr": refined[0],
                                        "class_nsr": refined[1], "score": refined[0] + refined[1] / 0.1}
    assert sets["b, weight rounding"] == ["y"] and "b, weight rounding" in smooth  # its SmoothQuant is recorded


def test_weight_rounding_is_refused_where_nncf_writes_qdq_onnx(tmp_path):
    """Asked of a builder without the step, the setting is refused, not silently ignored (before any work)."""
    from dataclasses import replace

    from quant.build import nncf_qdq
    from quant.util.errors import QuantError

    v = REGISTRY["trt-int8-nncf"]
    with pytest.raises(QuantError, match="weight_rounding"):
        nncf_qdq.build(replace(v, nncf=replace(v.nncf, weight_rounding=True)), None, tmp_path)
