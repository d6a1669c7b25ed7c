"""ONNX Runtime on CPU: the FP32 export and static Q/DQ INT8 models.

INT8 = ranges from :mod:`quant.calibration` (the variant's method), written as an ONNX Runtime
calibration cache, then ``quantize_static`` places Q/DQ pairs everywhere except the variant's
float scope. Ultralytics' metadata survives (ONNX Runtime keeps ``metadata_props``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from quant.errors import QuantError

_QTYPES = {"int8": "QInt8", "uint8": "QUInt8"}


def unavailable(variant=None) -> str | None:
    try:
        import onnxruntime
    except ImportError as e:
        return f"onnxruntime is not installed ({e})"
    wanted = variant.setting("provider", "CPUExecutionProvider") if variant is not None else "CPUExecutionProvider"
    if wanted not in onnxruntime.get_available_providers():
        return f"ONNX Runtime has no {wanted} here (install onnxruntime-gpu on a CUDA machine)"
    if wanted == "CUDAExecutionProvider":
        import torch

        if not torch.cuda.is_available():
            return "no CUDA GPU visible to torch"
    return None


def eval_args(variant, artifact) -> dict:
    """Ultralytics' validator picks ONNX Runtime's CUDA provider when given a GPU device."""
    return {"device": "0" if variant.setting("provider") == "CUDAExecutionProvider" else "cpu"}


def load_onnx(path):
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001  (protobuf DecodeError, ValidationError, OSError)
        raise QuantError(f"ONNX model '{path}' is corrupt or invalid ({type(e).__name__}: {e})") from None
    return model


def build(variant, ctx, out_dir: Path):
    out = out_dir / "model.onnx"
    if variant.precision == "fp32" and variant.source:  # the same model on another execution provider
        shutil.copyfile(ctx.artifact(variant.source), out)
        return out, {}
    if variant.precision == "fp32":
        from quant.model import export_onnx

        export_onnx(ctx.weights, out, ctx.imgsz, opset=variant.setting("opset", 13))
        return out, {}
    if variant.precision == "int8":
        return quantize_qdq(ctx.artifact(variant.source), out, variant, ctx)
    raise ValueError(f"onnxruntime backend cannot build precision '{variant.precision}'")


def quantize_qdq(src: Path, out: Path, variant, ctx):
    """Static Q/DQ INT8 of ``src`` by the variant's calibration method and float scope. With
    ``calibration='auto'`` the method and the float set are searched first (:mod:`quant.autoselect`)."""
    from quant.graph import conv_layers

    model = load_onnx(src)
    float_nodes = ctx.float_nodes(variant, model)
    info: dict = {}
    method = variant.calibration
    if method == "auto":
        from quant.autoselect import auto_quantize

        method, float_nodes, info = auto_quantize(src, out.parent, variant, ctx, float_nodes)
    write_qdq(src, out, variant, ctx.activation_ranges(src, method), float_nodes)
    convs = conv_layers(model)
    return out, {**info, "float_nodes": float_nodes, "calibration_method": method,
                 "calibration_images": len(ctx.calibration_files()), "convs": len(convs),
                 "int8_convs": sum(1 for n in convs if n not in set(float_nodes))}


def write_qdq(src: Path, out: Path, variant, ranges: dict, float_nodes: list[str]) -> Path:
    """``quantize_static`` with precomputed per-tensor ranges (handed over as a calibration cache),
    then the float nodes are rewired to read float tensors (see ``quant.graph.remove_qdq_before``)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    from quant.graph import remove_qdq_before

    table = TensorsData(CalibrationMethod.MinMax, {
        k: TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for k, (lo, hi) in ranges.items()})
    calib_json = out.parent / "calibration.json"
    save_tensors_data(table, calib_json)
    quantize_static(
        str(src), str(out), calibration_data_reader=None, calibration_cache_path=str(calib_json),
        calibrate_method=CalibrationMethod.MinMax,  # ranges come from the cache above, whatever the method
        quant_format=QuantFormat.QDQ,
        activation_type=getattr(QuantType, _QTYPES[variant.setting("activation_type", "uint8")]),
        weight_type=getattr(QuantType, _QTYPES[variant.setting("weight_type", "int8")]),
        per_channel=variant.setting("per_channel", True), reduce_range=variant.setting("reduce_range", False),
        nodes_to_exclude=list(float_nodes), op_types_to_quantize=list(variant.setting("op_types", ())) or None,
        extra_options={"ActivationSymmetric": variant.setting("activation_type") == "int8", "WeightSymmetric": True,
                       "OpTypesToExcludeOutputQuantization": list(variant.setting("no_output_qdq", ())),
                       "QuantizeBias": variant.setting("quantize_bias", True)},
    )
    qmodel = onnx.load(str(out))
    if remove_qdq_before(qmodel, float_nodes):
        tmp = out.with_suffix(".rewired.onnx")
        onnx.save(qmodel, str(tmp))
        tmp.replace(out)
    return out


def runner(variant, artifact: Path, ctx):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(artifact), providers=[variant.setting("provider", "CPUExecutionProvider")])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})
