"""OpenVINO INT8 by NNCF post-training quantization, from the suite's FP32 ONNX.

Preset, bias correction and the float set come from the variant; the float set resolved on the
ONNX graph maps onto OpenVINO's op names (:func:`quant.backends.openvino.ov_names_of`) as NNCF's
``IgnoredScope``.
"""

from __future__ import annotations

from pathlib import Path

from quant.backends.openvino import ov_names_of, save_ir
from quant.calibration import reader_for
from quant.context import BuildContext
from quant.graph import int8_conv_counts


def build(variant, ctx: BuildContext, out_dir: Path):
    import nncf
    import onnx
    import openvino as ov

    src = ctx.artifact(variant.source)
    ov_model = ov.convert_model(str(src))
    graph = onnx.load(str(src))
    float_nodes = ctx.float_nodes(variant, graph)
    ov_names = {op.get_friendly_name() for op in ov_model.get_ops()}
    reader = reader_for(ctx.calibration_files(), ctx.imgsz, graph.graph.input[0].name)
    quantized = nncf.quantize(
        ov_model, nncf.Dataset(reader.tensors()), subset_size=len(reader),
        preset=getattr(nncf.QuantizationPreset, variant.setting("preset", "mixed").upper()),
        fast_bias_correction=variant.setting("fast_bias_correction", False),
        ignored_scope=nncf.IgnoredScope(names=ov_names_of(float_nodes, ov_names), validate=False))
    return save_ir(quantized, src, out_dir), {
        "float_nodes": float_nodes, "calibration_images": len(reader), **int8_conv_counts(graph, float_nodes)}
