"""TensorRT path: everything before the engine on CPU; the engine itself only where TensorRT and CUDA exist."""


import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from quant.backends.tensorrt import TENSORRT
from quant.build import fp16, nncf_qdq, trt_engine
from quant.model.graph import decode_nodes
from quant.registry import REGISTRY

from conftest import error_vs_spread


def _onnx_of(suite, name: str):
    """The ONNX a TensorRT variant's engine is built from (beside the engine where one was built)."""
    path = suite.builder.artifact(name)
    return path if path.suffix == ".onnx" else path.with_name("model.onnx")


def test_fp16_onnx_keeps_decode_and_io_in_fp32(suite):
    fp32 = onnx.load(str(suite.builder.artifact("onnx-fp32")))
    m = onnx.load(str(_onnx_of(suite, "trt-fp16")))
    onnx.checker.check_model(m)
    assert m.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert m.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    convs = {n.input[1] for n in m.graph.node if n.op_type == "Conv" and "dfl" not in n.name}
    inits = {i.name: i for i in m.graph.initializer}
    assert convs and all(inits[w].data_type == TensorProto.FLOAT16 for w in convs)
    types = {v.name: v.type.tensor_type.elem_type for v in m.graph.value_info}
    decode = set(decode_nodes(fp32))
    for n in m.graph.node:
        if n.name in decode:
            assert all(types.get(o, TensorProto.FLOAT) == TensorProto.FLOAT for o in n.output), n.name
    x = suite.inputs.sample_input()
    from quant.backends.onnxruntime import ONNXRUNTIME

    ref, out = suite.builder.runner("onnx-fp32")(x)[0], ONNXRUNTIME.runner(REGISTRY["onnx-fp32"], _onnx_of(suite, "trt-fp16"), suite.builder)(x)[0]
    assert out.dtype == np.float32
    assert np.abs(out[:, 4:] - ref[:, 4:]).max() < 5e-3  # class scores
    assert np.abs(out[:, :4] - ref[:, :4]).max() < 0.5  # box pixels at 96 px


def _graph_maps(m):
    consumers, producers = {}, {o: n for n in m.graph.node for o in n.output}
    for n in m.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    return consumers, producers


def _readers(consumers, tensor):
    """Nodes reading ``tensor``, looking through the Casts that the FP16 conversion puts around Q/DQ."""
    out = []
    for n in consumers.get(tensor, []):
        out += _readers(consumers, n.output[0]) if n.op_type == "Cast" else [n]
    return out


def _source(producers, tensor):
    n = producers.get(tensor)
    return _source(producers, n.input[0]) if n is not None and n.op_type == "Cast" else n


@pytest.fixture
def searched(suite, monkeypatch):
    """onnx-int8-auto cut down to a tiny search that always ranks (an unreachable target), so that the variants
    reusing its float set have a ranking to pick prefixes from."""
    from dataclasses import replace

    v = REGISTRY["onnx-int8-auto"]
    search = replace(v.search, max_evals=3, images=6, sensitivity_images=2, target_drop=-1.0, margin=0.0)
    monkeypatch.setitem(REGISTRY, "onnx-int8-auto", replace(v, search=search))
    return suite


@pytest.mark.parametrize("name", ["trt-int8-minmax", "trt-int8-nncf"])
def test_trt_qdq_placement(searched, name):
    suite = searched
    if REGISTRY[name].tool == "nncf":
        pytest.importorskip("nncf", reason="nncf not installed (pip install -e '.[openvino]')")
    m = onnx.load(str(_onnx_of(suite, name)))
    inits = {i.name: i for i in m.graph.initializer}
    consumers, producers = _graph_maps(m)
    dqs = [n for n in m.graph.node if n.op_type == "DequantizeLinear"]
    assert dqs
    for dq in dqs:
        zp = numpy_helper.to_array(inits[dq.input[2]])
        assert zp.dtype == np.int8 and not zp.any()  # symmetric INT8, weights and activations; no INT32 bias
        # a tensor is quantized only because a conv reads it (its other readers share the value)
        assert any(c.op_type == "Conv" for c in _readers(consumers, dq.output[0])), dq.name
        if dq.input[0] in inits:  # weights: per output channel
            axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
            assert axis == 0 and numpy_helper.to_array(inits[dq.input[1]]).ndim == 1
    quantized = [q for q in m.graph.node if q.op_type == "QuantizeLinear"]
    assert not any((_source(producers, q.input[0]) or q).op_type == "Conv" for q in quantized)
    decode = set(decode_nodes(onnx.load(str(suite.builder.artifact("onnx-fp32")))))
    assert not any((_source(producers, i) or n).op_type == "DequantizeLinear"
                   for n in m.graph.node if n.name in decode for i in n.input if i not in inits)


def test_nncf_builds_tensorrt_qdq_and_keeps_the_candidate_closest_to_fp32(searched):
    """trt-int8-nncf: NNCF's Q/DQ ONNX (placement checked above) from the reused float set or a prefix of its
    ranking, each with and without SmoothQuant; the chosen one is what the engine is built from, run in FP16
    outside the Q/DQ pairs, and its float set is what the model leaves float."""
    pytest.importorskip("nncf", reason="nncf not installed (pip install -e '.[openvino]')")
    suite = searched
    path, m = _onnx_of(suite, "trt-int8-nncf"), suite.builder.manifest("trt-int8-nncf")
    record = m.info["float_choice"]
    labels = [c["label"] for c in record["candidates"]]
    assert labels[0] == "reused" and record["chosen"] in labels and len(labels) >= 2
    alpha = REGISTRY["trt-int8-nncf"].nncf.smooth_quant_alpha
    assert [f"{k}, SmoothQuant {alpha}" for k in labels if "SmoothQuant" not in k] == [k for k in labels if "SmoothQuant" in k]
    scores = {c["label"]: c["score"] for c in record["candidates"]}
    assert scores[record["chosen"]] == min(scores.values()) and scores["reused"] == pytest.approx(2.0)
    assert not list(path.parent.glob(".candidate-*")) and "float_choice.json" in m.reports
    assert m.info["float_precision"] == "fp16" and m.info["quantizer"] == "nncf"
    qmodel = onnx.load(str(path))
    consumers, producers = _graph_maps(qmodel)
    smooth = [n for n in qmodel.graph.node if n.op_type == "Mul" and "smooth_quant" in n.name]
    assert bool(smooth) == ("SmoothQuant" in record["chosen"])
    int8 = {n.name for n in qmodel.graph.node if n.op_type == "Conv"
            and all((_source(producers, t) or n).op_type == "DequantizeLinear" for t in n.input[:2])}
    assert int8 and m.info["int8_convs"] == len(int8)
    convs = {n.name for n in qmodel.graph.node if n.op_type == "Conv"}
    assert convs & set(m.float_nodes) == convs - int8  # what stays float is the chosen set's convolutions
    x = suite.inputs.sample_input()
    ref, out = suite.builder.runner("onnx-fp32")(x)[0], suite.builder.runner("trt-int8-nncf")(x)[0]
    assert out.dtype == np.float32 and np.abs(out[:, 4:] - ref[:, 4:]).mean() < 0.05  # class scores
    box, cls = error_vs_spread(suite, "trt-int8-nncf")  # and relative to how FP32's output varies between images
    assert box < 0.1 and cls < 0.1, (box, cls)  # measured 0.02 and 0.04; calibrated on images scaled by 0.1: 0.09, 0.14


def test_nncf_falls_back_to_fast_bias_correction_where_the_full_one_fails(searched, monkeypatch):
    """NNCF's ONNX backend cannot run its full bias correction on some graphs (YOLO11: "Duplicate definition-site");
    the build then uses its fast bias correction, for every candidate, and says so. A failure of both is raised."""
    pytest.importorskip("nncf", reason="nncf not installed (pip install -e '.[openvino]')")
    from dataclasses import replace

    import nncf

    from quant.build import nncf_qdq
    from quant.measure.row import Row
    from quant.report.tables import choice_line

    real, calls = nncf.quantize, []

    def flaky(model, dataset, **kw):
        calls.append(kw["fast_bias_correction"])
        if not kw["fast_bias_correction"]:
            raise RuntimeError("Duplicate definition-site for (/model.6/Split_output_1).")
        return real(model, dataset, **kw)

    monkeypatch.setattr(nncf, "quantize", flaky)
    v = REGISTRY["trt-int8-nncf"]
    name = "trt-int8-nncf-fallback"  # a variant of its own: the suite remembers trt-int8-nncf's manifest
    monkeypatch.setitem(REGISTRY, name, replace(v, name=name, nncf=replace(v.nncf, choose_float_set=False)))
    m = searched.builder.manifest(name).info
    assert calls == [False, True] and m["bias_correction"] == "fast"
    assert "full bias correction failed" in m["bias_correction_note"] and "Duplicate definition-site" in m["bias_correction_note"]
    assert choice_line(Row("x", float_choice={"chosen": "reused", "note": "N"})) == ["x: N"]

    def broken(model, dataset, **kw):
        raise ValueError("not a bias correction problem")

    class NoImages:
        def tensors(self):
            return []

        def __len__(self):
            return 1

    monkeypatch.setattr(nncf, "quantize", broken)
    failed = []
    with pytest.raises(ValueError, match="not a bias correction problem"):  # the fast retry fails too: raised
        nncf_qdq._quantize(v, searched.builder.artifact("onnx-fp32"), NoImages(), [], None, failed)
    assert failed == ["ValueError: not a bias correction problem"]


def test_int8_engines_run_fp16_outside_the_qdq_pairs(suite):
    """TensorRT INT8 ONNX: INT8 convolutions, FP16 for everything else but the box decode (FP32); Q/DQ in FP32
    with Casts around them (opset 13 has no FP16 Q/DQ). Valid, and close to the FP32 Q/DQ model in ONNX Runtime."""
    m = onnx.load(str(_onnx_of(suite, "trt-int8-minmax")))
    onnx.checker.check_model(m)
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) == 13
    types = {v.name: v.type.tensor_type.elem_type for v in [*m.graph.value_info, *m.graph.input, *m.graph.output]}
    inits = {i.name: i.data_type for i in m.graph.initializer}
    types.update(inits)
    decode = set(decode_nodes(onnx.load(str(suite.builder.artifact("onnx-fp32")))))
    convs = [n for n in m.graph.node if n.op_type == "Conv" and n.name not in decode]
    assert convs and all(types.get(n.input[0]) == TensorProto.FLOAT16 for n in convs)
    for n in m.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            float_io = [t for t in (n.input[0] if n.op_type == "QuantizeLinear" else n.output[0],) if t]
            assert all(types.get(t) == TensorProto.FLOAT for t in float_io), n.name
        if n.name in decode:
            assert all(types.get(o, TensorProto.FLOAT) == TensorProto.FLOAT for o in n.output), n.name
    assert suite.builder.manifest("trt-int8-minmax").info["float_precision"] == "fp16"
    from quant.backends.onnxruntime import ONNXRUNTIME
    from quant.build.qdq import quantize_qdq

    v = REGISTRY["trt-int8-minmax"]
    fp32_qdq, _ = quantize_qdq(suite.builder.artifact("onnx-fp32"), suite.builder.cache.root / "qdq-fp32.onnx",
                               v, suite.builder)  # the Q/DQ builder alone: no FP16 outside the pairs
    x = suite.inputs.sample_input()
    mixed = ONNXRUNTIME.runner(v, _onnx_of(suite, "trt-int8-minmax"), suite.builder)(x)[0]
    ref = ONNXRUNTIME.runner(v, fp32_qdq, suite.builder)(x)[0]
    assert mixed.dtype == np.float32 and np.abs(mixed[:, 4:] - ref[:, 4:]).max() < 0.02  # class scores


def test_engine_header_round_trips_through_ultralytics(tmp_path, tiny_onnx):
    from ultralytics.nn.backends.base import BaseBackend

    from quant.model.weights import onnx_metadata

    meta = onnx_metadata(tiny_onnx)
    path = tmp_path / "model.engine"
    trt_engine.write_engine(path, b"\x00serialized-engine-bytes", meta)
    offset, theirs = BaseBackend.engine_header(path)
    assert theirs == meta and path.read_bytes()[offset:] == b"\x00serialized-engine-bytes"
    assert trt_engine.read_engine(path) == (meta, b"\x00serialized-engine-bytes")
    assert BaseBackend.read_metadata(path)["names"] == meta["names"]


def test_nncf_variant_skips_without_nncf(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "nncf", None)  # import nncf raises ImportError
    assert "nncf is not installed" in REGISTRY["trt-int8-nncf"].unavailable()
    assert REGISTRY["trt-int8-minmax"].unavailable() is None
    assert REGISTRY["trt-int8-nncf"].builders() == (nncf_qdq.build, fp16.mixed, trt_engine.engine)


def test_skip_reasons_name_the_missing_piece(monkeypatch):
    explicit, implicit = REGISTRY["trt-int8-minmax"], REGISTRY["trt10-int8-entropy2-implicit"]
    monkeypatch.setattr(trt_engine, "trt_version", lambda: None)
    assert "TensorRT is not installed" in trt_engine.engine_unavailable(explicit)
    assert TENSORRT.unavailable(explicit) is None  # the ONNX stage still runs
    assert "TensorRT is not installed" in TENSORRT.unavailable(implicit)
    import torch

    monkeypatch.setattr(trt_engine, "trt_version", lambda: (11, 0))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert "removed the implicit INT8 calibrators" in trt_engine.engine_unavailable(implicit)
    assert trt_engine.engine_unavailable(explicit) is None
    monkeypatch.setattr(trt_engine, "trt_version", lambda: (8, 6))
    assert "need TensorRT >= 10" in trt_engine.engine_unavailable(explicit)
    assert trt_engine.engine_unavailable(implicit) is None


def _skip_or_fail(reason: str | None) -> None:
    """Without a GPU a GPU test skips with its reason; with one, an engine that cannot be built fails."""
    if reason and trt_engine.gpu_present():
        pytest.fail(f"this machine has an NVIDIA GPU but no engine can be built: {reason}")
    if reason:
        pytest.skip(reason)


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_engines_build_and_run_on_gpu(suite):
    _skip_or_fail(trt_engine.engine_unavailable(REGISTRY["trt-int8-minmax"]))
    x = suite.inputs.sample_input()
    ref = suite.builder.runner("onnx-fp32")(x)[0]
    for name in ("trt-fp32", "trt-fp16", "trt-int8-minmax"):
        engine = suite.builder.artifact(name)
        assert engine.suffix == ".engine"
        run = suite.builder.runner(name)
        out = run(x)[0].float().numpy()
        assert out.shape == ref.shape and np.abs(out[:, 4:] - ref[:, 4:]).mean() < 0.05
        assert run.gpu_ms and run.gpu_ms[-1] > 0
        from quant.util.offline import ultralytics_yolo

        assert ultralytics_yolo()(str(engine), task="detect").predict(x[0].transpose(1, 2, 0)[..., ::-1] * 255,
                                                                         verbose=False, device=0)


def test_onnxruntime_gpu_variants_skip_without_the_cuda_provider(monkeypatch):
    import onnxruntime

    from quant.backends.onnxruntime import ONNXRUNTIME

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert "no CUDAExecutionProvider" in ONNXRUNTIME.unavailable(REGISTRY["ort-cuda-int8"])
    assert ONNXRUNTIME.unavailable(REGISTRY["onnx-int8-minmax"]) is None
    assert ONNXRUNTIME.eval_args(REGISTRY["ort-cuda-fp32"], None) == {"device": "0"}
