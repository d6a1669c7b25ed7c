"""Static Q/DQ INT8 ONNX models: ranges from :mod:`quant.calibration.ranges`, Q/DQ pairs placed by ONNX
Runtime's ``quantize_static``, everything in the variant's float set left float.

Serves the ONNX Runtime INT8 variants and the TensorRT explicit-INT8 ONNX (different settings:
TensorRT's placement quantizes convolution inputs only, with symmetric activations). The searched
recipe (:mod:`quant.search.recipe`) writes its candidates and its result with :func:`write_qdq` too.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from quant.calibration.ranges import activation_ranges, clip_silu_inputs
from quant.calibration.readers import reader_for
from quant.build.context import BuildContext
from quant.model.graph import int8_conv_counts, load_onnx, qdq_int8_convs, remove_qdq_before, silu_inputs
from quant.util.errors import QuantError

class QuantType(StrEnum):
    INT8 = "int8"  # symmetric around 0 (TensorRT's activations; every variant's weights)
    UINT8 = "uint8"  # asymmetric (ONNX Runtime's fast path for activations on x86 CPUs)


_QTYPES = {QuantType.INT8: "QInt8", QuantType.UINT8: "QUInt8"}


@dataclass(frozen=True)
class QdqConfig:
    """How a Q/DQ INT8 model is written, in the spirit of ONNX Runtime's ``StaticQuantConfig``: the types and
    granularity ``quantize_static`` is given, where Q/DQ pairs go, and the accuracy levers applied after it."""

    activation_type: QuantType = QuantType.UINT8
    weight_type: QuantType = QuantType.INT8
    per_channel: bool = True
    reduce_range: bool = False  # 7-bit weights (x86 CPUs without VNNI saturate u8*s8 sums otherwise)
    op_types: tuple[str, ...] = ()  # quantize only these op types (empty: every one ONNX Runtime quantizes)
    no_output_qdq: tuple[str, ...] = ()  # op types whose outputs are left float
    quantize_bias: bool = True
    silu_ranges: bool = False  # SiLU-aware ranges of the pre-activations (quant.calibration.ranges.clip_silu_inputs)
    weight_rounding: int = 0  # calibration images weight rounding reads (quant.calibration.rounding; 0: off)
    bias_correction: int = 0  # calibration images bias correction reads (quant.calibration.biascorr; 0: off)

    def __post_init__(self) -> None:
        for name in ("activation_type", "weight_type"):
            try:
                object.__setattr__(self, name, QuantType(getattr(self, name)))
            except ValueError:
                raise QuantError(f"QdqConfig: {name} {getattr(self, name)!r} is not one of int8, uint8") from None


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
    c = variant.qdq
    return {"silu_ranges": c.silu_ranges, "weight_rounding": bool(c.weight_rounding),
            "bias_correction": bool(c.bias_correction)}


def correction_feeds(variant, files, imgsz: int, input_name: str) -> tuple[list, tuple] | None:
    """The calibration inputs weight rounding and bias correction read (``QdqConfig.weight_rounding`` and
    ``bias_correction``: how many images, 0: off), with the key that names them; None when the variant uses
    neither."""
    n = max(variant.qdq.weight_rounding, variant.qdq.bias_correction)
    if n <= 0:
        return None
    files = list(files)
    feeds = list(reader_for(files, imgsz, input_name))[:n]  # the reader calibration already letterboxed
    return feeds, (tuple(map(str, files[:n])), int(imgsz))


def write_qdq(src: Path, out: Path, variant, ranges: dict, float_nodes: list[str],
              correction: tuple[list, tuple] | None = None) -> Path:
    """``quantize_static`` with precomputed per-tensor ranges (handed over as a calibration cache),
    then the float nodes are rewired to read float tensors (see ``quant.model.graph.remove_qdq_before``).

    ``QdqConfig.silu_ranges``: pre-SiLU tensors get SiLU-aware ranges (:func:`quant.calibration.ranges.clip_silu_inputs`).
    ``correction`` (from :func:`correction_feeds`): on those inputs the INT8 convs' weights are re-rounded
    (:mod:`quant.calibration.rounding`), then their biases corrected (:mod:`quant.calibration.biascorr`), each where its setting
    asks, on the first as many images as it names."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static
    from onnxruntime.quantization import QuantType as OrtQuantType
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    c = variant.qdq
    if c.silu_ranges:
        ranges = clip_silu_inputs(ranges, silu_inputs(onnx.load(str(src), load_external_data=False)))
    table = TensorsData(CalibrationMethod.MinMax, {
        k: TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for k, (lo, hi) in ranges.items()})
    calib_json = out.parent / "calibration.json"
    save_tensors_data(table, calib_json)
    quantize_static(
        str(src), str(out), calibration_data_reader=None, calibration_cache_path=str(calib_json),
        calibrate_method=CalibrationMethod.MinMax,  # ranges come from the cache above, whatever the method
        quant_format=QuantFormat.QDQ,
        activation_type=getattr(OrtQuantType, _QTYPES[c.activation_type]),
        weight_type=getattr(OrtQuantType, _QTYPES[c.weight_type]),
        per_channel=c.per_channel, reduce_range=c.reduce_range,
        nodes_to_exclude=list(float_nodes), op_types_to_quantize=list(c.op_types) or None,
        extra_options={"ActivationSymmetric": c.activation_type == QuantType.INT8, "WeightSymmetric": True,
                       "OpTypesToExcludeOutputQuantization": list(c.no_output_qdq),
                       "QuantizeBias": c.quantize_bias},
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
        for n, apply in ((c.weight_rounding, round_weights), (c.bias_correction, correct_biases)):
            if n > 0:
                apply(src, out, feeds[:n], (files_key, n))
    return out
