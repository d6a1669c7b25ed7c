"""The variant registry: every export/quantization variant is a value here, nothing else.

A variant (:class:`quant.build.variant.Variant`) names the backend it runs in, its precision, and the
builder functions that make its artifact, each with its typed settings. Adding a variant is adding an
entry; the benchmark parametrizes over ``REGISTRY``, and :func:`configured` gives a run's copy of it with
the command line's settings applied.

May import: quant.backends, quant.build, quant.model, quant.search, quant.util.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping

from quant.backends.onnxruntime import ONNXRUNTIME
from quant.backends.openvino import OPENVINO
from quant.backends.pytorch import PYTORCH
from quant.backends.tensorrt import TENSORRT
from quant.build import auto_qdq, export, fp16, ir, nncf_ac, nncf_ir, nncf_qdq, ppq, qdq, trt_engine, trt_implicit, ultralytics
from quant.build.nncf_ir import NncfConfig
from quant.build.ppq import PpqConfig
from quant.build.qdq import QdqConfig
from quant.build.ultralytics import ExportConfig
from quant.build.variant import Device, Format, Implicit, Method, Precision, Provider, Runtime, Split, Tool, Variant
from quant.model.graph import FloatScope
from quant.search.settings import SearchConfig
from quant.util.errors import QuantError
from quant.util.hardware import cuda_device, x86_without_vnni

BASELINE = "onnx-fp32"  # gates compare against this variant, measured in the same run
REGISTRY: dict[str, Variant] = {}

FP32, FP16, BF16, INT8 = Precision.FP32, Precision.FP16, Precision.BF16, Precision.INT8
DECODE, HEAD = FloatScope(presets=("decode",)), FloatScope(presets=("head",))


def register(v: Variant) -> Variant:
    if v.name in REGISTRY:
        raise QuantError(f"variant '{v.name}' registered twice")
    if v.source is not None and v.source not in REGISTRY:
        raise QuantError(f"variant '{v.name}': its source '{v.source}' is not registered before it")
    if v.float_set_from is not None and v.float_set_from not in REGISTRY:
        raise QuantError(f"variant '{v.name}': float_set_from '{v.float_set_from}' is not registered before it")
    REGISTRY[v.name] = v
    return v


# ONNX Runtime CPU INT8: static Q/DQ, per-channel symmetric INT8 weights, asymmetric UINT8
# activations (ORT's fast path on x86 CPUs; symmetric INT8 activations ran ~2x slower than FP32
# here), 7-bit weights on x86 CPUs without VNNI (whose u8*s8 kernels saturate otherwise).
ORT_INT8 = QdqConfig(activation_type="uint8", weight_type="int8", per_channel=True, reduce_range=x86_without_vnni())

register(Variant("pt-fp32", PYTORCH, FP32, Format.PT, build=export.weights, description="PyTorch (Ultralytics .pt), CPU"))
register(Variant("pt-fp16", PYTORCH, FP16, Format.PT, build=export.weights, runtime=Runtime(device=Device.CUDA),
                 markers=("gpu",), description="PyTorch FP16 on CUDA: the framework baseline on GPU"))
register(Variant(BASELINE, ONNXRUNTIME, FP32, Format.ONNX, build=export.onnx_fp32,
                 description="ONNX Runtime CPU, FP32 (the baseline)"))
for _method in Method:
    register(Variant(f"onnx-int8-{_method}", ONNXRUNTIME, INT8, Format.ONNX, build=qdq.build, method=_method,
                     float_scope=DECODE, qdq=ORT_INT8, source=BASELINE,
                     description=f"ONNX Runtime Q/DQ INT8, {_method} calibration, box decode float"))
register(Variant("onnx-int8-minmax-headfloat", ONNXRUNTIME, INT8, Format.ONNX, build=qdq.build, method=Method.MINMAX,
                 float_scope=HEAD, qdq=ORT_INT8, source=BASELINE,
                 description="ONNX Runtime Q/DQ INT8, minmax, whole detection head float"))

# OpenVINO CPU: FP32 IR, and NNCF INT8 (preset MIXED, full bias correction) with the box decode
# (or the whole head) as an ignored scope.
NNCF = NncfConfig(preset="mixed", fast_bias_correction=False)
register(Variant("ov-fp32", OPENVINO, FP32, Format.OPENVINO, build=ir.convert, source=BASELINE,
                 description="OpenVINO CPU, FP32 IR"))
register(Variant("ov-int8", OPENVINO, INT8, Format.OPENVINO, build=nncf_ir.build, tool=Tool.NNCF, float_scope=DECODE,
                 nncf=NNCF, source=BASELINE, description="OpenVINO CPU, NNCF INT8, box decode ignored"))
register(Variant("ov-int8-headfloat", OPENVINO, INT8, Format.OPENVINO, build=nncf_ir.build, tool=Tool.NNCF,
                 float_scope=HEAD, nncf=NNCF, source=BASELINE,
                 description="OpenVINO CPU, NNCF INT8, whole detection head ignored"))

# Peers: Ultralytics' own exports, as a user calls them.
register(Variant("ul-onnx", ONNXRUNTIME, FP32, Format.ONNX, build=ultralytics.export, export=ExportConfig("onnx"),
                 peer=True, description="Ultralytics export(format='onnx')"))
register(Variant("ul-onnx-int8", ONNXRUNTIME, INT8, Format.ONNX, build=ultralytics.export,
                 export=ExportConfig("onnx", quantize=8), tool=Tool.ULTRALYTICS, calib_split=Split.VAL, peer=True,
                 description="Ultralytics export(format='onnx', quantize=8)"))
register(Variant("ul-openvino-int8", OPENVINO, INT8, Format.OPENVINO, build=ultralytics.export,
                 export=ExportConfig("openvino", quantize=8), tool=Tool.ULTRALYTICS, calib_split=Split.VAL, peer=True,
                 description="Ultralytics export(format='openvino', quantize=8)"))

# TensorRT: the ONNX each engine is built from is made (and scored with ONNX Runtime) on CPU; the
# engine where TensorRT >= 10 and a GPU exist (trt_engine.engine). Explicit INT8 = Q/DQ at convolution
# inputs only, symmetric INT8 activations, float biases (TensorRT's placement; it fuses Conv+bias+SiLU),
# and FP16 outside the Q/DQ pairs (fp16.mixed; the decode FP32).
TRT_INT8 = QdqConfig(activation_type="int8", weight_type="int8", per_channel=True, reduce_range=False,
                     op_types=("Conv",), no_output_qdq=("Conv",), quantize_bias=False)
TRT_MIXED = (fp16.mixed, trt_engine.engine)
GPU = ("gpu", "tensorrt")
register(Variant("trt-fp32", TENSORRT, FP32, Format.ENGINE, build=export.source_as_is, then=(trt_engine.engine,),
                 source=BASELINE, markers=GPU, description="TensorRT FP32 engine"))
register(Variant("trt-fp16", TENSORRT, FP16, Format.ENGINE, build=fp16.build, then=(trt_engine.engine,),
                 source=BASELINE, markers=GPU, float_scope=DECODE,
                 description="TensorRT FP16 (FP16 ONNX, box decode FP32, strongly typed)"))
for _method in Method:
    register(Variant(f"trt-int8-{_method}", TENSORRT, INT8, Format.ENGINE, build=qdq.build, then=TRT_MIXED,
                     method=_method, float_scope=DECODE, qdq=TRT_INT8, source=BASELINE, markers=GPU,
                     description=f"TensorRT explicit Q/DQ INT8 + FP16, {_method}, box decode FP32"))
register(Variant("trt-int8-headfloat", TENSORRT, INT8, Format.ENGINE, build=qdq.build, then=TRT_MIXED,
                 method=Method.MINMAX, float_scope=HEAD, qdq=TRT_INT8, source=BASELINE, markers=GPU,
                 description="TensorRT explicit Q/DQ INT8, minmax, detection head FP16 (decode FP32)"))
CUDA_EP = Runtime(provider=Provider.CUDA)
register(Variant("ort-cuda-fp32", ONNXRUNTIME, FP32, Format.ONNX, build=export.source_as_is, runtime=CUDA_EP,
                 source=BASELINE, markers=("gpu",),
                 description="ONNX Runtime CUDA execution provider, FP32 (needs onnxruntime-gpu)"))
register(Variant("ort-cuda-int8", ONNXRUNTIME, INT8, Format.ONNX, build=qdq.build, method=Method.MINMAX,
                 float_scope=DECODE, qdq=TRT_INT8, runtime=CUDA_EP, source=BASELINE, markers=("gpu",),
                 description="ONNX Runtime CUDA provider on the TensorRT-style Q/DQ INT8 ONNX"))
for _calib in Implicit:  # TensorRT <= 10's implicit calibrators (the path of the report this suite grew from)
    register(Variant(f"trt10-int8-{_calib}-implicit", TENSORRT, INT8, Format.ENGINE, build=export.source_as_is,
                     then=(trt_implicit.engine,), tool=Tool.TENSORRT_IMPLICIT, implicit=_calib, source=BASELINE,
                     markers=GPU, description=f"TensorRT <= 10 implicit INT8, {_calib} calibrator, box decode FP32"))

# PPQ: default setting, box decode float (full INT8 zeroes the class scores in PPQ too), or the whole head
# float ("layer 22 left float" in the report this suite grew from).
PPQ = PpqConfig(platform="ONNXRUNTIME", calib_steps=32, lsq_steps=0, analysis_images=4)
register(Variant("ppq-int8", ONNXRUNTIME, INT8, Format.ONNX, build=ppq.build, tool=Tool.PPQ, float_scope=DECODE,
                 ppq=PPQ, source=BASELINE, description="PPQ INT8, default setting, box decode float"))
register(Variant("ppq-int8-headfloat", ONNXRUNTIME, INT8, Format.ONNX, build=ppq.build, tool=Tool.PPQ,
                 float_scope=HEAD, ppq=PPQ, source=BASELINE, description="PPQ INT8, default setting, detection head float"))


# Accuracy-preserving INT8: the calibration method and the fewest float layers meeting a target drop are
# searched (quant.search.recipe) and saved with the artifact (auto.json). OpenVINO and PPQ reuse the float
# set onnx-int8-auto found (a declarative value), with their own calibration.
# The levers beyond the calibration method, in every candidate the search scores: SiLU-aware ranges of the
# pre-activations, weight rounding by per-layer output reconstruction (quant.calibration.rounding) and
# empirical bias correction (quant.calibration.biascorr), each on 32 calibration images.
LEVERS = dict(silu_ranges=True, weight_rounding=32, bias_correction=32)
SEARCH = SearchConfig()
register(Variant("onnx-int8-auto", ONNXRUNTIME, INT8, Format.ONNX, build=auto_qdq.build, search=SEARCH,
                 float_scope=DECODE, qdq=replace(ORT_INT8, **LEVERS), source=BASELINE,
                 description="ONNX Runtime Q/DQ INT8, searched method and float set (target drop 0.3 points)"))
# the quick preset's accuracy-preserving row: the same search on fewer search images, within 12 evaluations and
# 120 s, without weight rounding (the costliest lever: about 30 s per candidate on 2 cores); its own row, so
# onnx-int8-auto stays as it is
QUICK_SEARCH = replace(SEARCH, images=64, max_evals=12, budget_s=120.0)
LIGHT_SEARCHES = {"onnx-int8-auto-quick": "onnx-int8-auto"}  # a light search -> the full search it stands in for
register(Variant("onnx-int8-auto-quick", ONNXRUNTIME, INT8, Format.ONNX, build=auto_qdq.build, search=QUICK_SEARCH,
                 float_scope=DECODE, qdq=replace(ORT_INT8, **{**LEVERS, "weight_rounding": 0}), source=BASELINE,
                 description="onnx-int8-auto's search made light for the quick preset (64 search images, at most 12 "
                 "evaluations in 120 s, no weight rounding)"))
register(Variant("trt-int8-auto", TENSORRT, INT8, Format.ENGINE, build=auto_qdq.build, then=TRT_MIXED, search=SEARCH,
                 float_scope=DECODE, qdq=replace(TRT_INT8, **LEVERS), source=BASELINE, markers=GPU,
                 description="TensorRT explicit Q/DQ INT8, searched method and float set (run in FP16)"))
# NNCF's ONNX backend as TensorRT's Q/DQ builder (quant.build.nncf_qdq): symmetric INT8 (preset performance) at
# the convolution inputs, NNCF's ranges and bias correction, the float set picked like ov-int8-auto's
register(Variant("trt-int8-nncf", TENSORRT, INT8, Format.ENGINE, build=nncf_qdq.build, then=TRT_MIXED, tool=Tool.NNCF,
                 float_scope=DECODE, source=BASELINE, markers=GPU,
                 nncf=NncfConfig(preset="performance", fast_bias_correction=False, float_set_from="onnx-int8-auto",
                                 choose_float_set=True, smooth_quant_alpha=0.5),
                 description="TensorRT explicit Q/DQ INT8 by NNCF: onnx-int8-auto's float set or a prefix of its "
                 "ranking, with or without SmoothQuant, whichever is closer to FP32 (run in FP16)"))
register(Variant("ov-int8-auto", OPENVINO, INT8, Format.OPENVINO, build=nncf_ir.build, tool=Tool.NNCF,
                 float_scope=DECODE, source=BASELINE,
                 nncf=replace(NNCF, float_set_from="onnx-int8-auto", choose_float_set=True, smooth_quant_alpha=0.5,
                              weight_rounding=True),
                 description="OpenVINO NNCF INT8: onnx-int8-auto's float set or a prefix of its ranking, with or "
                 "without SmoothQuant, whichever NNCF keeps closer to FP32; then with its weights rounded by output "
                 "reconstruction, kept where closer still"))
# the yardstick from the field: NNCF's own accuracy control on the search's images, target and bounds
register(Variant("ov-int8-nncf-ac", OPENVINO, INT8, Format.OPENVINO, build=nncf_ac.build, tool=Tool.NNCF,
                 float_scope=DECODE, source=BASELINE, nncf=NNCF, search=SEARCH,
                 description="OpenVINO NNCF INT8 with NNCF's accuracy control (quantize_with_accuracy_control): the "
                 "search's images, target drop, evaluations and time budget; a yardstick for *-int8-auto"))
register(Variant("ppq-int8-auto", ONNXRUNTIME, INT8, Format.ONNX, build=ppq.build, tool=Tool.PPQ, float_scope=DECODE,
                 ppq=replace(PPQ, float_set_from="onnx-int8-auto"), source=BASELINE,
                 description="PPQ INT8, the float set onnx-int8-auto found left float"))

# BF16 (CPUs with AVX512_BF16 or AMX; skipped with the reason elsewhere): OpenVINO runs the float IR, or the
# float layers of ov-int8-auto, in BF16 (INFERENCE_PRECISION_HINT=bf16); every other OpenVINO row pins f32.
register(Variant("ov-bf16", OPENVINO, BF16, Format.OPENVINO, build=ir.convert, source=BASELINE,
                 description="OpenVINO CPU, the FP32 IR run in BF16"))
register(Variant("ov-int8-auto-bf16", OPENVINO, INT8, Format.OPENVINO, build=export.source_as_is,
                 runtime=Runtime(inference_precision=BF16), source="ov-int8-auto",
                 description="ov-int8-auto's IR with what stays float run in BF16"))


@dataclass(frozen=True)
class Preset:
    """A named selection of the registry (``--preset``): what it is for and which variants it runs. ``variants``
    None: every variant. ``on_target``: rows that need a GPU (``gpu`` marker) are left out on a machine without
    CUDA, instead of being skipped or measured on their CPU stand-in."""

    name: str
    purpose: str
    variants: tuple[str, ...] | None = None
    on_target: bool = False
    excludes: tuple[str, ...] = ()  # left out of ``variants`` None (every variant)

    def select(self, variants: Mapping[str, Variant], gpu: bool | None = None) -> list[str]:
        """The names of ``variants`` this preset runs, in their order (``gpu``: whether CUDA is here; default:
        looked up)."""
        names = [n for n in variants if (n in self.variants if self.variants is not None else n not in self.excludes)]
        if self.on_target and not (cuda_device() is not None if gpu is None else gpu):
            names = [n for n in names if "gpu" not in variants[n].markers]
        return names


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("quick", "a first look in minutes: the FP32 baseline, the fastest full-INT8 row of each runtime and one "
           "accuracy-preserving INT8 row (a lighter search)", (BASELINE, "onnx-int8-percentile", "ov-int8",
                                                              "trt-int8-percentile", "onnx-int8-auto-quick"),
           on_target=True),
    Preset("standard", "a CI gate: each runtime's float row, its fastest full-INT8 row and its accuracy-preserving "
           "INT8 row", ("pt-fp32", BASELINE, "onnx-int8-percentile", "onnx-int8-auto", "ov-fp32", "ov-int8",
                        "ov-int8-auto", "ov-bf16", "ov-int8-auto-bf16", "pt-fp16", "ort-cuda-fp32", "trt-fp16",
                        "trt-int8-percentile", "trt-int8-auto"), on_target=True),
    Preset("full", "every variant (but quick's lighter search): other calibration methods, PPQ, Ultralytics' own "
           "exports, TensorRT's CPU stand-ins; the default of pytest benchmarks/", excludes=("onnx-int8-auto-quick",)),
)}


def configured(variants: Mapping[str, Variant] | None = None, search: dict | None = None,
               ppq: dict | None = None) -> dict[str, Variant]:
    """A run's variants: ``variants`` (default: the registry) with ``search`` (SearchConfig fields, e.g. from the
    ``--auto-*`` options) over every searched variant's settings and ``ppq`` (PpqConfig fields, from the
    ``--ppq-*`` options) over every PPQ variant's. The registry itself is not changed."""
    out = dict(REGISTRY if variants is None else variants)
    for name, v in out.items():
        if search and v.search is not None:
            out[name] = v = replace(v, search=replace(v.search, **search))
        if ppq and v.ppq is not None:
            out[name] = replace(v, ppq=replace(v.ppq, **ppq))
    return out
