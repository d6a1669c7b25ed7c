"""Q/DQ INT8 ONNX by NNCF's ONNX backend, with TensorRT's placement, from the suite's FP32 ONNX.

NNCF quantizes the inputs and weights of convolutions only and leaves their outputs float: what
TensorRT's explicit INT8 wants (it fuses Conv+bias+SiLU and requantizes at the next convolution). The
``performance`` preset makes the activations symmetric INT8 (zero point 0), which TensorRT requires;
NNCF chooses the ranges and corrects the biases (full bias correction). The float set is an
``IgnoredScope`` of ONNX node names; with ``choose_float_set`` NNCF builds the set ``float_set_from``
searched and prefixes of its ranking, each with and without SmoothQuant (``smooth_quant_alpha``), and
keeps the one whose output ONNX Runtime finds closest to FP32 on the search images
(:func:`quant.search.float_choice.pick`), as ``ov-int8-auto`` does for OpenVINO. The candidates are measured
before the TensorRT backend turns what is outside the Q/DQ pairs into FP16 (on a real model the same
candidate ranked first either way).

On ONNX Runtime's CPU kernels this placement is no faster than FP32 (unquantized convolution outputs
cannot fuse into integer convolutions); it is a TensorRT recipe, scored on CPU like every TensorRT ONNX.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from quant.build.context import BuildContext, needs
from quant.build.nncf_ir import smooth_quant
from quant.calibration.readers import reader_for
from quant.model.graph import int8_conv_counts, load_onnx, qdq_int8_convs
from quant.search import float_choice
from quant.util.errors import QuantError

MODEL = "model.onnx"


@needs("nncf", extra="openvino")
def build(variant, ctx: BuildContext, out_dir: Path):
    import onnx

    if variant.nncf.weight_rounding:
        raise QuantError(f"variant '{variant.name}': weight_rounding re-rounds an OpenVINO IR's INT8 weights "
                         "(quant.build.nncf_ir); NNCF's Q/DQ ONNX has no such step")
    src = ctx.artifact(variant.source)
    graph = onnx.load(str(src))
    float_nodes = ctx.float_nodes(variant, graph)
    reader = reader_for(ctx.calibration_files(), ctx.imgsz, graph.graph.input[0].name)

    failed: list[str] = []  # NNCF's full bias correction, where it cannot run on this graph

    def build_one(nodes: list[str], alpha: float | None, folder: Path) -> Path:
        onnx.save(_quantize(variant, src, reader, nodes, alpha, failed), str(folder / MODEL))
        return folder / MODEL

    out = out_dir / MODEL
    float_nodes, info = float_choice.pick(variant.nncf, variant.float_scope, ctx, src, graph, float_nodes, out_dir, out,
                                          build_one, lambda path, oe: oe(path))  # ONNX Runtime CPU runs it
    fast = bool(failed) or variant.nncf.fast_bias_correction
    info["bias_correction"] = "fast" if fast else "full"
    if failed:
        note = f"NNCF's full bias correction failed on this graph ({failed[0]}); built with its fast bias correction"
        info["bias_correction_note"] = note
        if "float_choice" in info:
            info["float_choice"]["note"] = note
    return out, {"float_nodes": float_nodes, "calibration_images": len(reader), "quantizer": "nncf", **info,
                 **int8_conv_counts(graph, qdq_int8_convs(load_onnx(out)))}


def _quantize(variant, src: Path, reader, float_nodes: list[str], alpha: float | None, failed: list[str]):
    """:func:`quantize`, or with NNCF's fast bias correction where its full one fails on the graph (NNCF's ONNX
    backend cannot run the subgraphs it cuts out of some models, e.g. YOLO11's: "Duplicate definition-site for
    /model.6/Split_output_1"). After one failure every further candidate is built the fast way, so that the
    candidates stay comparable; the failure is recorded in ``failed``."""
    if not failed and not variant.nncf.fast_bias_correction:
        try:
            return quantize(variant, src, reader, float_nodes, alpha)
        except Exception as e:  # NNCF passes ONNX Runtime's own error types through
            failed.append(f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200]}")
    fast = replace(variant, nncf=replace(variant.nncf, fast_bias_correction=True))
    return quantize(fast, src, reader, float_nodes, alpha)


def quantize(variant, src: Path, reader, float_nodes: list[str], smooth_alpha: float | None = None):
    """The NNCF Q/DQ ONNX model of ``src`` with ``float_nodes`` ignored (and ``smooth_alpha``: with SmoothQuant)."""
    import nncf
    import onnx

    model = onnx.load(str(src))
    name = model.graph.input[0].name
    return nncf.quantize(
        model, nncf.Dataset([{name: x} for x in reader.tensors()]), subset_size=len(reader),
        preset=getattr(nncf.QuantizationPreset, variant.nncf.preset.value.upper()),
        fast_bias_correction=variant.nncf.fast_bias_correction,
        ignored_scope=nncf.IgnoredScope(names=list(float_nodes), validate=False),
        **(smooth_quant(smooth_alpha) if smooth_alpha is not None else {}))
