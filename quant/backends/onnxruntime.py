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
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    from quant.calibration import collect_ranges, make_method

    model = load_onnx(src)
    float_nodes = variant.float_scope.resolve(model) if variant.float_scope else []
    reader = ctx.calibration_reader(model.graph.input[0].name)
    ranges = collect_ranges(src, reader, make_method(variant.calibration))
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
        nodes_to_exclude=float_nodes, op_types_to_quantize=list(variant.setting("op_types", ())) or None,
        extra_options={"ActivationSymmetric": variant.setting("activation_type") == "int8", "WeightSymmetric": True,
                       "OpTypesToExcludeOutputQuantization": list(variant.setting("no_output_qdq", ())),
                       "QuantizeBias": variant.setting("quantize_bias", True)},
    )
    import onnx

    from quant.graph import conv_layers, remove_qdq_before

    qmodel = onnx.load(str(out))
    if remove_qdq_before(qmodel, float_nodes):
        tmp = out.with_suffix(".rewired.onnx")
        onnx.save(qmodel, str(tmp))
        tmp.replace(out)
    convs = conv_layers(model)
    return out, {"float_nodes": float_nodes, "calibration_images": len(reader), "convs": len(convs),
                 "int8_convs": sum(1 for n in convs if n not in set(float_nodes))}


def runner(variant, artifact: Path, ctx):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(artifact), providers=[variant.setting("provider", "CPUExecutionProvider")])
    name = sess.get_inputs()[0].name
    return lambda x: sess.run(None, {name: x})
