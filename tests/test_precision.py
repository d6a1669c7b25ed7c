"""Precision truth: an FP32 row runs FP32 (OpenVINO would run BF16 on BF16 CPUs unless pinned), BF16 rows
skip with their reason where the CPU has none, one --threads for every runtime, the machine in the header."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quant.backends import openvino as ov_backend
from quant.run.session import BenchSession
from quant.gate.thresholds import Thresholds
from quant.run.suite import Suite
from quant.registry import REGISTRY


@pytest.fixture(scope="module")
def suite(tiny_weights, tiny_data, tmp_path_factory):
    return Suite.create(tiny_weights, tiny_data, 96, tmp_path_factory.mktemp("cache"), calib_images=4, threads=1)


def test_ov_fp32_reproduces_onnx_fp32_and_reports_f32(suite):
    x = suite.inputs.sample_input()
    ref = suite.builder.runner("onnx-fp32")(x)[0]
    run = suite.builder.runner("ov-fp32")
    out = run(x)[0]
    assert np.abs(out - ref).max() <= 1e-3 * max(1.0, np.abs(ref).max())  # numerical noise only
    assert run.runs_as["INFERENCE_PRECISION_HINT"] == "<Type: 'float32'>"


@pytest.mark.parametrize("name, hint", [("ov-fp32", "f32"), ("ov-int8", "f32"), ("ov-int8-auto", "f32"),
                                        ("ov-bf16", "bf16"), ("ov-int8-auto-bf16", "bf16"),
                                        ("ul-openvino-int8", None)])
def test_every_openvino_row_pins_its_precision_except_peers(name, hint):
    v = REGISTRY[name]
    assert ov_backend.inference_precision(v) == hint
    cfg = ov_backend.runtime_config(v, threads=2)
    assert cfg.get("INFERENCE_PRECISION_HINT") == hint and cfg["INFERENCE_NUM_THREADS"] == 2


def test_the_validator_compiles_with_the_pinned_precision(monkeypatch):
    import openvino as ov

    seen = []
    monkeypatch.setattr(ov.Core, "compile_model", lambda self, model, device_name=None, config=None: seen.append(config))
    with ov_backend.OPENVINO.eval_context(REGISTRY["ov-fp32"]):
        ov.Core().compile_model("m.xml", "CPU", {"PERFORMANCE_HINT": "LATENCY"})  # as Ultralytics calls it
    with ov_backend.OPENVINO.eval_context(REGISTRY["ov-bf16"]):
        ov.Core().compile_model("m.xml", "CPU", None)
    with ov_backend.OPENVINO.eval_context(REGISTRY["ul-openvino-int8"]):
        ov.Core().compile_model("m.xml", "CPU", {"PERFORMANCE_HINT": "LATENCY"})
    ov.Core().compile_model("m.xml", "CPU", {})  # outside: untouched
    assert seen == [{"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"},
                    {"INFERENCE_PRECISION_HINT": "bf16"}, {"PERFORMANCE_HINT": "LATENCY"}, {}]


def test_bf16_rows_skip_with_their_reason_without_bf16(monkeypatch):
    monkeypatch.setattr(ov_backend, "cpu_capabilities", lambda: ("FP32", "INT8", "BIN"))
    reason = ov_backend.OPENVINO.unavailable(REGISTRY["ov-bf16"])
    assert reason and "runs no BF16" in reason and "AVX512_BF16 or AMX" in reason
    assert ov_backend.OPENVINO.unavailable(REGISTRY["ov-int8-auto-bf16"]) == reason
    assert ov_backend.OPENVINO.unavailable(REGISTRY["ov-fp32"]) is None
    monkeypatch.setattr(ov_backend, "cpu_capabilities", lambda: ("FP32", "BF16", "INT8"))
    assert ov_backend.OPENVINO.unavailable(REGISTRY["ov-bf16"]) is None


def test_one_thread_setting_for_every_runtime(suite):
    before = torch.get_num_threads()
    try:
        assert suite.builder.runner("onnx-fp32").runs_as["intra_op_num_threads"] == 1
        assert suite.builder.runner("ov-fp32").runs_as["INFERENCE_NUM_THREADS"] == "1"
        assert suite.builder.runner("pt-fp32").runs_as["threads"] == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_header_has_a_machine_section(suite):
    h = BenchSession.create(suite, Thresholds({}, {}, {}, {}), embedded=False).header()
    m = h["machine"]
    assert {"cpu", "arch", "isa", "cores", "threads", "reduce_range", "threads_used", "gpu"} <= set(m)
    assert m["threads_used"] == 1 and m["cores"] >= 1 and isinstance(m["isa"], list)
    assert set(m["isa"]) <= {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8"}


def test_machine_line_names_cpu_flags_threads_settings_and_gpu(tmp_path):
    from quant.report import tables as report
    from quant.util.hardware import describe

    m = {"cpu": "Intel Xeon", "isa": ["avx2", "avx512_vnni"], "cores": 16, "threads": 16, "threads_used": 16,
         "reduce_range": False, "gpu": "NVIDIA H200"}
    assert describe(m) == ("Intel Xeon [avx2, avx512_vnni], 16 cores / 16 threads, 16 used, reduce_range off, "
                           "GPU NVIDIA H200")
    assert describe({**m, "gpu": None, "reduce_range": True}).endswith("reduce_range on, no GPU")
    report.write([], tmp_path, {"imgsz": 320, "machine": m})
    assert f"- machine: {describe(m)}\n" in (tmp_path / "report.md").read_text()


def test_what_ran_is_read_from_each_runtime_and_says_when_int8_asked_ran_in_float(suite):
    """ONNX Runtime's optimized graph and OpenVINO's runtime graph say how each convolution runs. The suite's Q/DQ
    INT8 runs as QLinearConv; PPQ-style fake quantization (Q/DQ the CPU provider cannot fuse) runs float."""
    from quant.backends.onnxruntime import executed_graph

    fp32 = suite.builder.runner("onnx-fp32").executed
    assert fp32["convs_int8"] == 0 and fp32["convs_float"] > 50 and fp32["quantize"] == 0
    int8 = suite.builder.runner("onnx-int8-percentile").executed
    assert int8["convs_int8"] > 40 and int8["convs_int8"] + int8["convs_float"] == fp32["convs_float"]
    ov = suite.builder.runner("ov-int8").executed
    assert ov["convs_int8"] > 40 and set(ov["convs_by_precision"]) >= {"u8"} and ov["reorders"] >= 0
    assert suite.builder.runner("ov-fp32").executed["convs_int8"] == 0
    # a Q/DQ graph whose quantized weights are kept float-typed (fake quantization): asked INT8, runs float
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(suite.builder.artifact("onnx-fp32")))
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    scale = numpy_helper.from_array(np.array(0.05, dtype=np.float32), "fq_scale")
    zero = numpy_helper.from_array(np.array(0, dtype=np.int8), "fq_zero")
    m.graph.initializer.extend([scale, zero])
    x = conv.input[0]
    q = helper.make_node("QuantizeLinear", [x, "fq_scale", "fq_zero"], ["fq_q"])
    dq = helper.make_node("DequantizeLinear", ["fq_q", "fq_scale", "fq_zero"], ["fq_dq"])
    conv.input[0] = "fq_dq"
    i = list(m.graph.node).index(conv)
    m.graph.node.insert(i, dq)
    m.graph.node.insert(i, q)
    path = suite.builder.cache.root / "fake-quant.onnx"
    onnx.save(m, str(path))
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.optimized_model_filepath = str(suite.builder.cache.root / "fake-quant-optimized.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    ran = executed_graph(so.optimized_model_filepath)
    assert ran["convs_int8"] == 0 and ran["quantize"] + ran["dequantize"] >= 1  # the input Q/DQ stays: runs float


def test_the_int8_column_shows_asked_and_ran_where_they_differ():
    from quant.measure.row import Row
    from quant.report.tables import int8_cell

    assert int8_cell(Row("a", int8_share="47/63", executed={"convs_int8": 47, "convs_float": 16})) == "47/63"
    assert int8_cell(Row("a", int8_share="63/63", executed={"convs_int8": 57, "convs_float": 6})) == "63→57/63"
    assert int8_cell(Row("ppq", int8_share="64/64", executed={"convs_int8": 0, "convs_float": 64})) == "64→0/64"
    assert int8_cell(Row("ul", executed={"convs_int8": 60, "convs_float": 4})) == "→60/64"
    assert int8_cell(Row("fp32", executed={"convs_int8": 0, "convs_float": 64})) == "-"
    assert int8_cell(Row("old", int8_share="63/63")) == "63/63"  # a report from before it was recorded
    from quant.report.tables import ran_lines

    assert ran_lines([Row("ppq-int8", int8_share="64/64", executed={"convs_int8": 0, "convs_float": 64, "quantize": 77,
                                                                    "dequantize": 122})]) == [
        "ppq-int8: the graph asks for 64 INT8 convolutions; the runtime runs 0 in INT8 and 64 in float, 122 "
        "DequantizeLinear and 77 QuantizeLinear run as float nodes"]
    assert ran_lines([Row("a", int8_share="47/63", executed={"convs_int8": 47, "convs_float": 16})]) == []


def test_the_history_comparison_flags_fewer_convolutions_run_in_int8_even_inside_the_timing_noise():
    from quant.gate.compare import compare
    from quant.measure.row import Row

    def run(ran):
        machine = {"cpu": "AMD EPYC", "isa": ["avx2"]}
        rows = {"onnx-fp32": Row("onnx-fp32", map50_95=50.0, latency_ratio=1.0),
                "ov-int8": Row("ov-int8", map50_95=48.0, latency_ratio=0.55, latency_ratio_ci=[0.5, 0.6],
                               executed={"convs_int8": ran, "convs_float": 63 - ran})}
        return {"rows": rows, "machine": machine, "source": "x", "baseline": "onnx-fp32", "accuracy_unit": "points"}

    worse = compare(run(63), run(59))
    assert worse.regressions == ["ov-int8: the runtime runs 59 convolutions in INT8 and 4 in float, 63 and 0 since x"]
    assert compare(run(63), run(63)).regressions == []
    assert compare(run(59), run(63)).regressions == []  # more in INT8: an improvement, reported, not failed


def test_the_history_comparison_flags_more_reorders_or_float_qdq_nodes_even_inside_the_timing_noise():
    from quant.gate.compare import compare
    from quant.measure.row import Row

    def run(**counts):
        rows = {"onnx-fp32": Row("onnx-fp32", map50_95=50.0, latency_ratio=1.0),
                "v": Row("v", map50_95=48.0, latency_ratio=0.55, latency_ratio_ci=[0.5, 0.6],
                         executed={"convs_int8": 60, "convs_float": 3, **counts})}
        return {"rows": rows, "machine": {"cpu": "AMD EPYC", "isa": ["avx2"]}, "source": "x", "baseline": "onnx-fp32",
                "accuracy_unit": "points"}

    assert compare(run(reorders=4), run(reorders=9)).regressions == ["v: 9 reorders, 4 since x"]
    assert compare(run(dequantize=2, quantize=2), run(dequantize=6, quantize=2)).regressions == [
        "v: 6 DequantizeLinear nodes, 2 since x"]
    fewer = compare(run(reorders=9), run(reorders=4))
    assert fewer.regressions == [] and fewer.improvements == ["v: 4 reorders, 9 since x"]
    assert compare(run(reorders=4), run(reorders=4)).regressions == []
