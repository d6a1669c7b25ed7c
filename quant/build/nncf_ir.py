"""OpenVINO INT8 by NNCF post-training quantization, from the suite's FP32 ONNX.

Preset, bias correction and the float set come from the variant's :class:`NncfConfig`; the float set resolved
on the ONNX graph maps onto OpenVINO's op names (:func:`quant.build.ir.ov_names_of`) as NNCF's
``IgnoredScope``. With ``choose_float_set`` (and ``float_set_from``), NNCF builds the reused set and
a few prefixes of the same search's ranking, and keeps the one closest to FP32 on the search images
(:mod:`quant.search.float_choice`); with ``smooth_quant_alpha`` too, each of those once more with NNCF's
SmoothQuant for the convolutions (:func:`smooth_quant`), so SmoothQuant is kept only where it brings the
output closer to FP32. With ``weight_rounding``, the kept candidate is built once more with its INT8 weights
rounded by output reconstruction on NNCF's grid and its biases corrected after
(:mod:`quant.calibration.ir_rounding`; NNCF's own bias correction off there), and that build is kept where it is
closer to FP32 still.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from quant.build.context import BuildContext, needs
from quant.build.ir import FOLDER, ir_int8_convs, ov_names_of, runtime_config, save_ir
from quant.calibration.readers import reader_for
from quant.model.graph import int8_conv_counts
from quant.search import float_choice


class NncfPreset(StrEnum):
    MIXED = "mixed"  # symmetric weights, asymmetric activations (OpenVINO's CPU path)
    PERFORMANCE = "performance"  # symmetric weights and activations (what TensorRT requires)


WEIGHT_ROUNDING = "weight rounding"  # how a refined candidate's label names the step


@dataclass(frozen=True)
class NncfConfig:
    """NNCF's post-training quantization, as the NNCF variants call it (OpenVINO IR and TensorRT Q/DQ)."""

    preset: NncfPreset = NncfPreset.MIXED
    fast_bias_correction: bool = False  # False: NNCF's full bias correction
    float_set_from: str | None = None  # the variant whose searched float set is reused
    choose_float_set: bool = False  # also build prefixes of that search's ranking; keep the closest to FP32
    smooth_quant_alpha: float | None = None  # also build each candidate with SmoothQuant at this alpha
    weight_rounding: bool = False  # also build the kept candidate with GPTQ-rounded weights; keep the closer

    def __post_init__(self) -> None:
        object.__setattr__(self, "preset", NncfPreset(self.preset))


@needs("openvino", "nncf", extra="openvino")
def build(variant, ctx: BuildContext, out_dir: Path):
    import onnx
    import openvino as ov

    src = ctx.artifact(variant.source)
    graph = onnx.load(str(src))
    float_nodes = ctx.float_nodes(variant, graph)
    reader = reader_for(ctx.calibration_files(), ctx.imgsz, graph.graph.input[0].name)

    def build_one(nodes: list[str], alpha: float | None, folder: Path) -> Path:
        return save_ir(quantize(variant, src, reader, nodes, alpha), src, folder)

    def build_rounded(nodes: list[str], alpha: float | None, folder: Path) -> Path:
        from quant.calibration.ir_rounding import round_ir_weights

        model = quantize(variant, src, reader, nodes, alpha, bias_correction=False)
        round_ir_weights(model, src, list(reader), runtime_config(variant, ctx.threads))
        return save_ir(model, src, folder)

    def error(ir: Path, oe) -> tuple[float, float]:  # measured as the variant runs: its precision and threads
        compiled = ov.Core().compile_model(str(ir / "model.xml"), "CPU", runtime_config(variant, ctx.threads))
        return oe.compare([compiled(f[graph.graph.input[0].name])[0] for f in oe.feeds])

    float_nodes, info = float_choice.pick(variant.nncf, variant.float_scope, ctx, src, graph, float_nodes, out_dir,
                                          out_dir / FOLDER, build_one, error,
                                          refine=(WEIGHT_ROUNDING, build_rounded) if variant.nncf.weight_rounding else None)
    return out_dir / FOLDER, {"float_nodes": float_nodes, "calibration_images": len(reader), **info,
                              **int8_conv_counts(graph, ir_int8_convs(out_dir / FOLDER))}


def quantize(variant, src: Path, reader, float_nodes: list[str], smooth_alpha: float | None = None,
             bias_correction: bool = True):
    """The NNCF-quantized OpenVINO model of ``src`` with ``float_nodes`` ignored (and ``smooth_alpha``: with
    :func:`smooth_quant`; ``bias_correction=False``: without NNCF's bias correction)."""
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters

    ov_model = ov.convert_model(str(src))
    ov_names = {op.get_friendly_name() for op in ov_model.get_ops()}
    extra = smooth_quant(smooth_alpha) if smooth_alpha is not None else {}
    if not bias_correction:
        extra.setdefault("advanced_parameters", AdvancedQuantizationParameters()).disable_bias_correction = True
    return nncf.quantize(
        ov_model, nncf.Dataset(reader.tensors()), subset_size=len(reader),
        preset=getattr(nncf.QuantizationPreset, variant.nncf.preset.value.upper()),
        fast_bias_correction=variant.nncf.fast_bias_correction,
        ignored_scope=nncf.IgnoredScope(names=ov_names_of(float_nodes, ov_names), validate=False), **extra)


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
