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
