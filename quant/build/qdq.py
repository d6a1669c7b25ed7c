"""Static Q/DQ INT8 ONNX models: ranges from :mod:`quant.calibration.ranges`, Q/DQ pairs placed by ONNX
Runtime's ``quantize_static``, everything in the variant's float set left float.

Serves the ONNX Runtime INT8 variants and the TensorRT explicit-INT8 ONNX (different settings:
TensorRT's placement quantizes convolution inputs only, with symmetric activations). The searched
recipe (:mod:`quant.search.recipe`) writes its candidates and its result with :func:`write_qdq` too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from quant.calibration.ranges import activation_ranges, clip_silu_inputs
from quant.calibration.readers import reader_for
from quant.build.context import BuildContext
from quant.model.graph import int8_conv_counts, load_onnx, qdq_int8_convs, remove_qdq_before, silu_inputs

_QTYPES = {"int8": "QInt8", "uint8": "QUInt8"}


def build(variant, ctx: BuildContext, out_dir: Path):
    """The variant's INT8 model as ``out_dir/model.onnx`` (calibration method and float set as registered)."""
    return quantize_qdq(ctx.artifact(variant.source), out_dir / "model.onnx", variant, ctx)


def quantize_qdq(src: Path, out: Path, variant, ctx: BuildContext, method: str | None = None, float_nodes=None,
                 info: dict | None = None):
    """Q/DQ INT8 of ``src`` by ``method`` (default: the variant's) leaving ``float_nodes`` (default: the
    variant's float scope) float. Returns (artifact, manifest info)."""
    model = load_onnx(src)
    method = method or variant.method
    float_nodes = list(ctx.float_nodes(variant, model) if float_nodes is None else float_nodes)
    files = ctx.calibration_files()
    write_qdq(src, out, variant, activation_ranges(src, files, ctx.imgsz, method), float_nodes,
              correction_feeds(variant, files, ctx.imgsz, model.graph.input[0].name))
    return out, {**(info or {}), "float_nodes": float_nodes, "calibration_method": method,
                 "calibration_images": len(files), **levers(variant),
                 **int8_conv_counts(model, qdq_int8_convs(load_onnx(out)))}


def levers(variant) -> dict:
    """The accuracy levers beyond the calibration method this variant's Q/DQ model uses (for the record)."""
    return {"silu_ranges": bool(variant.setting("silu_ranges", False)),
            "weight_rounding": bool(variant.setting("weight_rounding", False)),
            "bias_correction": bool(variant.setting("bias_correction", False))}


_CORRECTIONS = ("weight_rounding", "bias_correction")  # settings: on how many calibration images (0: off)


def correction_feeds(variant, files, imgsz: int, input_name: str) -> tuple[list, tuple] | None:
    """The calibration inputs weight rounding and bias correction read (settings ``weight_rounding`` and
    ``bias_correction``: how many images, 0/False: off), with the key that names them; None when the
    variant uses neither."""
    n = max(int(variant.setting(k, 0) or 0) for k in _CORRECTIONS)
    if n <= 0:
        return None
    files = list(files)
    feeds = list(reader_for(files, imgsz, input_name))[:n]  # the reader calibration already letterboxed
    return feeds, (tuple(map(str, files[:n])), int(imgsz))


def write_qdq(src: Path, out: Path, variant, ranges: dict, float_nodes: list[str],
              correction: tuple[list, tuple] | None = None) -> Path:
    """``quantize_static`` with precomputed per-tensor ranges (handed over as a calibration cache),
    then the float nodes are rewired to read float tensors (see ``quant.model.graph.remove_qdq_before``).

    Setting ``silu_ranges``: pre-SiLU tensors get SiLU-aware ranges (:func:`quant.calibration.ranges.clip_silu_inputs`).
    ``correction`` (from :func:`correction_feeds`): on those inputs the INT8 convs' weights are re-rounded
    (:mod:`quant.calibration.rounding`), then their biases corrected (:mod:`quant.calibration.biascorr`), each where its setting
    asks, on the first as many images as it names."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    if variant.setting("silu_ranges", False):
        ranges = clip_silu_inputs(ranges, silu_inputs(onnx.load(str(src), load_external_data=False)))
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
    if correction is not None:
        from quant.calibration.biascorr import correct_biases
        from quant.calibration.rounding import round_weights

        feeds, files_key = correction
        for setting, apply in (("weight_rounding", round_weights), ("bias_correction", correct_biases)):
            n = int(variant.setting(setting, 0) or 0)
            if n > 0:
                apply(src, out, feeds[:n], (files_key, n))
    return out
