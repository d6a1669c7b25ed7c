"""Where a row's time goes by precision (quant.measure.profile), and the report section that shows it."""

import numpy as np
import pytest

from quant.measure import profile


def test_ort_kernels_fall_into_what_they_compute_in():
    assert profile.ort_category("QLinearConv") == "conv int8"
    assert profile.ort_category("FusedConv") == "conv fp32"
    assert profile.ort_category("DequantizeLinear") == "quantize/dequantize"
    assert profile.ort_category("ReorderInput") == "reorder"
    assert profile.ort_category("QLinearAdd") == "other int8"
    assert profile.ort_category("Sigmoid") == "other fp32"


def test_openvino_layers_fall_into_their_kernel_precision():
    assert profile.openvino_category("Convolution", "brgconv_avx512_amx_I8") == "conv int8"
    assert profile.openvino_category("Convolution", "jit_avx2_FP32") == "conv fp32"
    assert profile.openvino_category("GroupConvolution", "jit_avx512_BF16") == "conv bf16"
    assert profile.openvino_category("FakeQuantize", "jit_avx2_FP32") == "quantize/dequantize"
    assert profile.openvino_category("Reorder", "ref_any_I8") == "reorder"
    assert profile.openvino_category("Eltwise", "jit_avx2_I8") == "other int8"


def test_the_breakdown_sums_each_category_and_the_line_gives_shares():
    times = {"a": 300.0, "b": 100.0, "c": 100.0}
    split = profile.by_precision(times, {"a": "conv int8", "b": "quantize/dequantize", "c": "conv int8"}.get)
    assert split == {"conv int8": 400.0, "quantize/dequantize": 100.0}
    assert profile.line({"profiler": "p", "us": split}) == "conv int8 80 % · quantize/dequantize 20 % of 0.50 ms (p)"
    assert profile.line(None) is None and profile.line({"profiler": "p", "us": {}}) is None


def test_an_int8_model_profiles_as_int8_convolutions_and_fp32_as_float(suite):
    fp32, q = suite.builder.artifact("onnx-fp32"), suite.builder.artifact("onnx-int8-minmax")
    x = {"images": np.random.default_rng(0).random((1, 3, 96, 96), np.float32)}
    a, b = profile.ort_breakdown(fp32, x, threads=1, runs=2), profile.ort_breakdown(q, x, threads=1, runs=2)
    assert "conv int8" not in a["us"] and a["us"]["conv fp32"] > 0
    assert b["us"]["conv int8"] > b["us"].get("conv fp32", 0.0)  # the decode's one conv stays float


def test_openvino_int8_profiles_its_convolutions_in_int8(suite):
    pytest.importorskip("openvino")
    ir = suite.builder.artifact("ov-int8")
    x = {"x": np.random.default_rng(0).random((1, 3, 96, 96), np.float32)}
    split = profile.openvino_breakdown(ir, x, threads=1, config={"INFERENCE_PRECISION_HINT": "f32"}, runs=2)
    assert split["us"].get("conv int8", 0) > 0 and split["profiler"] == "OpenVINO PERF_COUNT"


def test_report_md_says_where_each_rows_time_goes(tmp_path):
    from quant.measure.row import Row
    from quant.report import tables

    rows = [Row(variant="onnx-int8-x", backend="onnxruntime", precision="int8",
                time_split={"profiler": "ONNX Runtime profiler", "us": {"conv int8": 750.0, "reorder": 250.0}}),
            Row(variant="pt-fp32", backend="pytorch", precision="fp32")]
    tables.write(rows, tmp_path, {"model": "m"})
    md = (tmp_path / "report.md").read_text()
    assert "## Where the time goes" in md
    assert "- onnx-int8-x: conv int8 75 % · reorder 25 % of 1.00 ms (ONNX Runtime profiler)" in md
    assert "pt-fp32:" not in md.split("## Where the time goes")[1].split("##")[0]

