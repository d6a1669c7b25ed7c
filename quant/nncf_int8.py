"""OpenVINO INT8 by NNCF post-training quantization, from the suite's FP32 ONNX.

Preset, bias correction and the float set come from the variant; the float set resolved on the
ONNX graph maps onto OpenVINO's op names (:func:`quant.backends.openvino.ov_names_of`) as NNCF's
``IgnoredScope``. With ``choose_float_set`` (and ``float_set_from``), NNCF builds the reused set and
a few prefixes of the same search's ranking, and keeps the one closest to FP32 on the search images
(:mod:`quant.float_choice`); with ``smooth_quant_alpha`` too, each of those once more with NNCF's
SmoothQuant for the convolutions (:func:`smooth_quant`), so SmoothQuant is kept only where it brings the
output closer to FP32.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from quant.backends.openvino import FOLDER, ir_int8_convs, ov_names_of, runtime_config, save_ir
from quant.calibration import reader_for
from quant.context import BuildContext
from quant.graph import int8_conv_counts


def build(variant, ctx: BuildContext, out_dir: Path):
    import onnx

    src = ctx.artifact(variant.source)
    graph = onnx.load(str(src))
    float_nodes = ctx.float_nodes(variant, graph)
    reader = reader_for(ctx.calibration_files(), ctx.imgsz, graph.graph.input[0].name)
    info = {}
    if variant.setting("choose_float_set") and variant.setting("float_set_from"):
        float_nodes, info = _chosen(variant, ctx, src, graph, float_nodes, reader, out_dir)
    else:
        save_ir(quantize(variant, src, reader, float_nodes), src, out_dir)
    return out_dir / FOLDER, {"float_nodes": float_nodes, "calibration_images": len(reader), **info,
                              **int8_conv_counts(graph, ir_int8_convs(out_dir / FOLDER))}


def quantize(variant, src: Path, reader, float_nodes: list[str], smooth_alpha: float | None = None):
    """The NNCF-quantized OpenVINO model of ``src`` with ``float_nodes`` ignored (and ``smooth_alpha``: with
    :func:`smooth_quant`)."""
    import nncf
    import openvino as ov

    ov_model = ov.convert_model(str(src))
    ov_names = {op.get_friendly_name() for op in ov_model.get_ops()}
    return nncf.quantize(
        ov_model, nncf.Dataset(reader.tensors()), subset_size=len(reader),
        preset=getattr(nncf.QuantizationPreset, variant.setting("preset", "mixed").upper()),
        fast_bias_correction=variant.setting("fast_bias_correction", False),
        ignored_scope=nncf.IgnoredScope(names=ov_names_of(float_nodes, ov_names), validate=False),
        **(smooth_quant(smooth_alpha) if smooth_alpha is not None else {}))


def smooth_quant(alpha: float) -> dict:
    """``nncf.quantize`` arguments for SmoothQuant on the convolutions (NNCF runs it for transformer models
    only): each quantized convolution input's channel c is divided by s_c = max|x_c|^alpha / max|w_c|^(1 -
    alpha) (clipped below at the 10 % quantile of s) and its weights multiplied by it (exact in FP32), so
    that one per-tensor activation grid fits channels whose ranges differ. ``ModelType.TRANSFORMER`` also
    leaves Add and a few other element-wise ops unquantized."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    return {"model_type": nncf.ModelType.TRANSFORMER, "advanced_parameters": AdvancedQuantizationParameters(
        smooth_quant_alphas=AdvancedSmoothQuantParameters(convolution=float(alpha), matmul=-1))}


def _chosen(variant, ctx: BuildContext, src: Path, graph, reused: list[str], reader, out_dir: Path):
    """Build the candidate float sets, keep the closest to FP32 as ``out_dir``'s IR; (its nodes, info)."""
    import openvino as ov

    from quant import float_choice
    from quant.sensitivity import OutputError

    found = float_choice.source_search(ctx.artifact(variant.setting("float_set_from")).parent)
    if found is None:  # the search ranked nothing: its set is the decode alone
        save_ir(quantize(variant, src, reader, reused), src, out_dir)
        return reused, {"float_choice": {"chosen": "reused", "why": "the search ranked no layer"}}
    sens, settings = found
    bound = float(settings.get("auto_min_int8_macs", 0.0))
    base = variant.float_scope.resolve(graph) if variant.float_scope else []
    sets = float_choice.candidates(reused, base, sens, bound)
    alpha = variant.setting("smooth_quant_alpha")
    smooth = {f"{k}, SmoothQuant {alpha}": v for k, v in sets.items()} if alpha is not None else {}
    sets |= smooth
    name = graph.graph.input[0].name
    files = ctx.search_files(settings["auto_images"])[:float_choice.IMAGES]  # the search's own images
    oe = OutputError(src, list(reader_for(files, ctx.imgsz, name)))

    def build_one(label: str, nodes: list[str]) -> Path:
        folder = out_dir / f".candidate-{list(sets).index(label)}"
        folder.mkdir()
        return save_ir(quantize(variant, src, reader, nodes, alpha if label in smooth else None), src, folder)

    def error(ir: Path) -> tuple[float, float]:
        compiled = ov.Core().compile_model(str(ir / "model.xml"), "CPU", runtime_config(variant, ctx.threads))
        return oe.compare([compiled(f[name])[0] for f in oe.feeds])

    best, built, record = float_choice.choose(sets, build_one, error)
    built[best].rename(out_dir / FOLDER)
    for ir in built.values():
        shutil.rmtree(ir.parent, ignore_errors=True)
    record |= {"bound": bound, "images": len(files), "float_nodes": sets[best],
               "smooth_quant": alpha if best in smooth else None}
    (out_dir / "float_choice.json").write_text(json.dumps(record, indent=1))
    return sets[best], {"float_choice": {k: record[k] for k in ("chosen", "candidates", "images", "smooth_quant")},
                        "reports": ["float_choice.json"]}
