"""Where a model's time goes, from the runtime's own per-kernel profile: ONNX Runtime's profiler
(:func:`kernel_times`), OpenVINO's per-layer counters (:func:`openvino_layer_times`) and a TensorRT engine's
per-layer times (its ``IProfiler``, read against the engine inspector's layers: :func:`trt_category`), each
kernel's median time over a few runs, and (:func:`by_precision`) those times summed by what each kernel computes
in: INT8 or float convolutions, quantize/dequantize, layout and precision reorders, everything else by its
precision.

"Why is my INT8 model no faster?" reads from it: a row whose convolutions run INT8 but whose time sits in
quantize/dequantize nodes, reorders or float element-wise ops is bounded there, not by the convolutions.

May import: quant.util (and quant.measure.latency, its own package).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

# ONNX Runtime CPU kernels by what they compute
ORT_INT8_CONVS = {"QLinearConv", "ConvInteger", "DynamicQuantizeConv"}
ORT_FLOAT_CONVS = {"Conv", "FusedConv", "NhwcFusedConv"}
ORT_QUANTIZE = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
ORT_REORDER = {"ReorderInput", "ReorderOutput"}
# OpenVINO CPU layer types
OV_CONVS = {"Convolution", "GroupConvolution", "Deconvolution"}
OV_PRECISIONS = {"I8": "int8", "U8": "int8", "BF16": "bf16", "FP16": "fp16", "F16": "fp16", "FP32": "fp32",
                 "F32": "fp32"}
# TensorRT engine inspector (LayerInformationFormat.JSON): data types in weights and tensor formats
TRT_TYPES = (("BFloat16", "bf16"), ("FP8", "fp8"), ("Int8", "int8"), ("INT8", "int8"), ("Half", "fp16"),
             ("FP16", "fp16"), ("FP32", "fp32"), ("Float", "fp32"), ("Int32", "int32"), ("INT32", "int32"))
PROFILE_RUNS, PROFILE_WARMUP = 6, 2  # a row's breakdown: enough for shares, cheap next to its timing


def kernel_times(path: str | os.PathLike, feed: dict, threads: int | None = None, runs: int = 12,
                 warmup: int = 3, ops: dict | None = None) -> dict[str, float]:
    """Kernel name -> median time (microseconds) per run of the ONNX model at ``path`` on ``feed``, from ONNX
    Runtime's profiler (CPU execution provider, the session options the benchmark times with). ``ops``, if
    given, receives each kernel's op type (``QLinearConv``, ``Conv``, ``QuantizeLinear``, ...)."""
    import onnxruntime as ort

    from quant.measure.latency import ort_session_options

    so = ort_session_options(threads)
    so.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        so.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        for _ in range(warmup + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    per_run: dict[str, list[float]] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            per_run.setdefault(e["name"][: -len("_kernel_time")], []).append(float(e["dur"]))
            if ops is not None:
                ops[e["name"][: -len("_kernel_time")]] = (e.get("args") or {}).get("op_name", "?")
    return {k: float(np.median(v[warmup:] or v)) for k, v in per_run.items()}


def ir_xml(path) -> Path | None:
    """The model.xml of an OpenVINO IR (the file, or an artifact folder holding it), or None."""
    path = Path(path) if path is not None else None
    if path is None:
        return None
    if path.suffix == ".xml" and path.is_file():
        return path
    return next(iter(sorted(path.rglob("*.xml"))), None) if path.is_dir() else None


def openvino_layer_times(path, feed: dict, threads: int | None = None, runs: int = 8, warmup: int = 3,
                         ops: dict | None = None, config: dict | None = None,
                         kinds: dict | None = None) -> dict[str, float]:
    """Layer name -> median time (microseconds) per run of the OpenVINO IR at ``path`` on ``feed``, from the CPU
    plugin's own per-layer counters (``PERF_COUNT``); ``ops`` receives each layer's kernel (``exec_type``, e.g.
    ``brgconv_avx512_amx_I8``, ``jit_avx2_FP32``), which names the precision it ran in, ``kinds`` its layer type
    (``Convolution``, ``FakeQuantize``, ``Reorder``, ...)."""
    import openvino as ov

    cfg = {**(config or {}), "PERF_COUNT": "YES"}
    if threads:
        cfg["INFERENCE_NUM_THREADS"] = int(threads)
    request = ov.Core().compile_model(str(ir_xml(path) or path), "CPU", cfg).create_infer_request()
    x = next(iter(feed.values()))
    per_run: dict[str, list[float]] = {}
    for i in range(warmup + runs):
        request.infer({0: x})
        if i < warmup:
            continue
        for info in request.get_profiling_info():
            if info.status == info.Status.EXECUTED:
                per_run.setdefault(info.node_name, []).append(info.real_time.total_seconds() * 1e6)
                if ops is not None:
                    ops[info.node_name] = info.exec_type
                if kinds is not None:
                    kinds[info.node_name] = info.node_type
    return {k: float(np.median(v)) for k, v in per_run.items()}


def ort_category(op: str) -> str:
    if op in ORT_INT8_CONVS:
        return "conv int8"
    if op in ORT_FLOAT_CONVS:
        return "conv fp32"
    if op in ORT_QUANTIZE:
        return "quantize/dequantize"
    if op in ORT_REORDER:
        return "reorder"
    return "other int8" if op.startswith("QLinear") or op.endswith("Integer") else "other fp32"


def openvino_category(kind: str, exec_type: str) -> str:
    precision = OV_PRECISIONS.get(exec_type.rsplit("_", 1)[-1].upper(), "?") if exec_type else "?"
    if kind == "FakeQuantize":
        return "quantize/dequantize"
    if kind == "Reorder":
        return "reorder"
    return f"{'conv' if kind in OV_CONVS else 'other'} {precision}"


def trt_precision(layer: dict) -> str:
    """What a layer of the engine inspector's JSON computes in: its weights' type where it has weights (an INT8
    convolution has ``"Weights": {"Type": "Int8"}``), else its first input's format (``"Thirty-two wide channel
    vectorized row major Int8 format"``, or just ``"Half"`` in newer TensorRT); ``?`` when neither says."""
    weights = layer.get("Weights")
    texts = [weights.get("Type", "")] if isinstance(weights, dict) else []
    texts += [t.get("Format/Datatype", "") for t in layer.get("Inputs", [])[:1] if isinstance(t, dict)]
    for text in texts:
        words = set(text.replace(".", "").split())
        for word, precision in TRT_TYPES:
            if word in words:
                return precision
    return "?"


def trt_is_conv(layer: dict) -> bool:
    return layer.get("ParameterType") in ("Convolution", "Deconvolution") or "Convolution" in layer.get("LayerType", "")


def trt_category(layer: dict | None) -> str:
    """The category of one engine layer (the inspector's JSON of it; None: a name the inspector does not list)."""
    if layer is None:
        return "other ?"
    if layer.get("LayerType") == "Reformat" or layer.get("ParameterType") == "Reformat":
        return "quantize/dequantize" if layer.get("Origin") == "QDQ" else "reorder"
    return f"{'conv' if trt_is_conv(layer) else 'other'} {trt_precision(layer)}"


def by_precision(times: dict[str, float], category) -> dict[str, float]:
    """Microseconds per run by category (``category(kernel name) -> str``), largest first."""
    out: dict[str, float] = {}
    for k, t in times.items():
        c = category(k)
        out[c] = out.get(c, 0.0) + t
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def ort_breakdown(path, feed: dict, threads: int | None = None, runs: int = PROFILE_RUNS,
                  warmup: int = PROFILE_WARMUP) -> dict:
    """Where an ONNX model's time goes on ONNX Runtime's CPU provider: ``{"profiler": ..., "us": {category:
    microseconds per run}}``."""
    ops: dict = {}
    times = kernel_times(path, feed, threads, runs, warmup, ops=ops)
    return {"profiler": "ONNX Runtime profiler", "us": by_precision(times, lambda k: ort_category(ops.get(k, "?")))}


def openvino_breakdown(path, feed: dict, threads: int | None = None, config: dict | None = None,
                       runs: int = PROFILE_RUNS, warmup: int = PROFILE_WARMUP) -> dict:
    """The same for an OpenVINO IR compiled with ``config`` (the row's precision hint), from PERF_COUNT."""
    ops: dict = {}
    kinds: dict = {}
    times = openvino_layer_times(path, feed, threads, runs, warmup, ops=ops, config=config, kinds=kinds)
    return {"profiler": "OpenVINO PERF_COUNT",
            "us": by_precision(times, lambda k: openvino_category(kinds.get(k, "?"), ops.get(k, "")))}


def trt_breakdown(layer_ms: dict[str, list[float]], layers: list[dict], warmup: int = PROFILE_WARMUP) -> dict:
    """Where an engine's time goes: ``layer_ms`` is what its ``IProfiler`` reported (layer name -> milliseconds,
    one per call, warm-up calls first), ``layers`` the inspector's layers the names are looked up in."""
    by_name = {x.get("Name"): x for x in layers if isinstance(x, dict)}
    times = {k: 1000 * float(np.median(v[warmup:] or v)) for k, v in layer_ms.items()}
    return {"profiler": "TensorRT IProfiler", "us": by_precision(times, lambda k: trt_category(by_name.get(k)))}


def line(breakdown: dict | None) -> str | None:
    """``conv int8 61 % · conv fp32 14 % · ... of 3.20 ms (ONNX Runtime profiler)``, or None."""
    if not breakdown or not breakdown.get("us"):
        return None
    total = sum(breakdown["us"].values())
    if total <= 0:
        return None
    parts = [f"{k} {100 * v / total:.0f} %" for k, v in breakdown["us"].items() if 100 * v / total >= 0.5]
    return f"{' · '.join(parts)} of {total / 1000:.2f} ms ({breakdown['profiler']})"
