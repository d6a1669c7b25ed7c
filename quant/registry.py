"""The variant registry: every export/quantization variant is a value here, nothing else.

A variant names its backend (one module under ``quant/backends``), its precision, and the
settings that backend reads. Adding a variant is adding an entry; the benchmarks parametrize
over ``REGISTRY``.

May import: quant.backends, quant.build, quant.model, quant.search, quant.util.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Callable

from quant.search.settings import DEFAULTS
from quant.model.graph import FloatScope
from quant.util.hardware import x86_without_vnni


@dataclass(frozen=True)
class Variant:
    name: str
    backend: str  # module in quant.backends
    precision: str  # fp32 | fp16 | bf16 | int8
    format: str  # artifact format: pt | onnx | engine | openvino
    method: str | None = None  # the suite's calibration method (quant.calibration.ranges): minmax | entropy | percentile
    search: bool = False  # the automatic recipe (quant.search.recipe) picks the method and the float set
    tool: str | None = None  # an outside quantizer that calibrates itself: nncf | ppq | ultralytics | tensorrt-implicit
    calib_split: str = "calib"  # the data split calibration reads: calib, or val (Ultralytics' own default)
    float_scope: FloatScope | None = None  # what stays float in an INT8 model
    settings: tuple[tuple[str, Any], ...] = ()  # backend-specific, hashable
    source: str | None = None  # variant whose artifact this one is built from
    peer: bool = False  # a yardstick (e.g. Ultralytics' own export), gated only for "did not crash"
    markers: tuple[str, ...] = ()  # pytest markers of its benchmark (e.g. "gpu")
    description: str = ""

    @property
    def calibrates(self) -> bool:
        """Whether building this variant reads calibration images."""
        return self.precision == "int8" and bool(self.method or self.search or self.tool)

    def setting(self, key: str, default: Any = None) -> Any:
        return dict(self.settings).get(key, default)

    def config(self) -> dict:
        d = asdict(self)
        d["float_scope"] = self.float_scope.to_dict() if self.float_scope else None
        d["settings"] = dict(self.settings)
        d.pop("description")
        d.pop("markers")
        return d


BASELINE = "onnx-fp32"  # gates compare against this variant, measured in the same run
REGISTRY: dict[str, Variant] = {}


def register(v: Variant) -> Variant:
    if v.name in REGISTRY:
        raise ValueError(f"variant '{v.name}' registered twice")
    REGISTRY[v.name] = v
    return v


# ONNX Runtime CPU INT8: static Q/DQ, per-channel symmetric INT8 weights, asymmetric UINT8
# activations (ORT's fast path on x86 CPUs; symmetric INT8 activations ran ~2x slower than FP32
# here), 7-bit weights on x86 CPUs without VNNI (whose u8*s8 kernels saturate otherwise).
_ORT_INT8 = (("activation_type", "uint8"), ("weight_type", "int8"), ("per_channel", True),
             ("reduce_range", x86_without_vnni()))

register(Variant("pt-fp32", "pytorch", "fp32", "pt", description="PyTorch (Ultralytics .pt), CPU"))
register(Variant("pt-fp16", "pytorch", "fp16", "pt", settings=(("device", "cuda"),), markers=("gpu",),
                 description="PyTorch FP16 on CUDA: the framework baseline on GPU"))
register(Variant("onnx-fp32", "onnxruntime", "fp32", "onnx", description="ONNX Runtime CPU, FP32 (the baseline)"))
for _method in ("minmax", "entropy", "percentile"):
    register(Variant(f"onnx-int8-{_method}", "onnxruntime", "int8", "onnx", method=_method,
                     float_scope=FloatScope(presets=("decode",)), settings=_ORT_INT8, source="onnx-fp32",
                     description=f"ONNX Runtime Q/DQ INT8, {_method} calibration, box decode float"))
register(Variant("onnx-int8-minmax-headfloat", "onnxruntime", "int8", "onnx", method="minmax",
                 float_scope=FloatScope(presets=("head",)), settings=_ORT_INT8, source="onnx-fp32",
                 description="ONNX Runtime Q/DQ INT8, minmax, whole detection head float"))

# OpenVINO CPU: FP32 IR, and NNCF INT8 (preset MIXED, full bias correction) with the box decode
# (or the whole head) as an ignored scope.
_NNCF = (("preset", "mixed"), ("fast_bias_correction", False))
register(Variant("ov-fp32", "openvino", "fp32", "openvino", source="onnx-fp32",
                 description="OpenVINO CPU, FP32 IR"))
register(Variant("ov-int8", "openvino", "int8", "openvino", tool="nncf",
                 float_scope=FloatScope(presets=("decode",)), settings=_NNCF, source="onnx-fp32",
                 description="OpenVINO CPU, NNCF INT8, box decode ignored"))
register(Variant("ov-int8-headfloat", "openvino", "int8", "openvino", tool="nncf",
                 float_scope=FloatScope(presets=("head",)), settings=_NNCF, source="onnx-fp32",
                 description="OpenVINO CPU, NNCF INT8, whole detection head ignored"))

# Peers: Ultralytics' own exports, as a user calls them (settings = export() arguments).
register(Variant("ul-onnx", "ultralytics", "fp32", "onnx", settings=(("format", "onnx"),), peer=True,
                 description="Ultralytics export(format='onnx')"))
register(Variant("ul-onnx-int8", "ultralytics", "int8", "onnx", tool="ultralytics", calib_split="val", settings=(("format", "onnx"), ("quantize", 8)),
                 peer=True, description="Ultralytics export(format='onnx', quantize=8)"))
register(Variant("ul-openvino-int8", "ultralytics", "int8", "openvino", tool="ultralytics", calib_split="val",
                 settings=(("format", "openvino"), ("quantize", 8)), peer=True,
                 description="Ultralytics export(format='openvino', quantize=8)"))

# TensorRT: the ONNX each engine is built from is made (and scored with ONNX Runtime) on CPU; the
# engine where TensorRT >= 10 and a GPU exist. Explicit INT8 = Q/DQ at convolution inputs only,
# symmetric INT8 activations, float biases (TensorRT's placement; it fuses Conv+bias+SiLU).
_TRT_INT8 = (("activation_type", "int8"), ("weight_type", "int8"), ("per_channel", True), ("reduce_range", False),
             ("op_types", ("Conv",)), ("no_output_qdq", ("Conv",)), ("quantize_bias", False))
_TRT_MIXED = (("float_precision", "fp16"),)  # INT8 engines run what is not INT8 in FP16 (decode FP32)
_GPU = ("gpu", "tensorrt")
register(Variant("trt-fp32", "tensorrt", "fp32", "engine", source="onnx-fp32", markers=_GPU,
                 description="TensorRT FP32 engine"))
register(Variant("trt-fp16", "tensorrt", "fp16", "engine", source="onnx-fp32", markers=_GPU,
                 float_scope=FloatScope(presets=("decode",)),
                 description="TensorRT FP16 (FP16 ONNX, box decode FP32, strongly typed)"))
for _method in ("minmax", "entropy", "percentile"):
    register(Variant(f"trt-int8-{_method}", "tensorrt", "int8", "engine", method=_method,
                     float_scope=FloatScope(presets=("decode",)), settings=_TRT_INT8 + _TRT_MIXED, source="onnx-fp32",
                     markers=_GPU, description=f"TensorRT explicit Q/DQ INT8 + FP16, {_method}, box decode FP32"))
register(Variant("trt-int8-headfloat", "tensorrt", "int8", "engine", method="minmax",
                 float_scope=FloatScope(presets=("head",)), settings=_TRT_INT8 + _TRT_MIXED, source="onnx-fp32",
                 markers=_GPU, description="TensorRT explicit Q/DQ INT8, minmax, detection head FP16 (decode FP32)"))
_CUDA_EP = (("provider", "CUDAExecutionProvider"),)
register(Variant("ort-cuda-fp32", "onnxruntime", "fp32", "onnx", settings=_CUDA_EP, source="onnx-fp32",
                 markers=("gpu",), description="ONNX Runtime CUDA execution provider, FP32 (needs onnxruntime-gpu)"))
register(Variant("ort-cuda-int8", "onnxruntime", "int8", "onnx", method="minmax",
                 float_scope=FloatScope(presets=("decode",)), settings=_TRT_INT8 + _CUDA_EP, source="onnx-fp32",
                 markers=("gpu",), description="ONNX Runtime CUDA provider on the TensorRT-style Q/DQ INT8 ONNX"))
for _calib in ("minmax", "entropy2", "entropy", "legacy"):  # the reference report's implicit path
    register(Variant(f"trt10-int8-{_calib}-implicit", "tensorrt", "int8", "engine", tool="tensorrt-implicit",
                     settings=(("implicit", _calib),), source="onnx-fp32", markers=_GPU,
                     description=f"TensorRT <= 10 implicit INT8, {_calib} calibrator, box decode FP32"))

# PPQ (the reference report's tool): default setting, box decode float (full INT8 zeroes the class
# scores in PPQ too), or the whole head float (the report's "layer 22 left float").
_PPQ = (("platform", "ONNXRUNTIME"), ("calib_steps", 32), ("lsq_steps", 0), ("analysis_images", 4))
register(Variant("ppq-int8", "ppq", "int8", "onnx", tool="ppq", float_scope=FloatScope(presets=("decode",)),
                 settings=_PPQ, source="onnx-fp32", description="PPQ INT8, default setting, box decode float"))
register(Variant("ppq-int8-headfloat", "ppq", "int8", "onnx", tool="ppq", float_scope=FloatScope(presets=("head",)),
                 settings=_PPQ, source="onnx-fp32", description="PPQ INT8, default setting, detection head float"))


# Accuracy-preserving INT8: the calibration method and the fewest float layers meeting a target drop
# are searched (quant/search/recipe.py) and saved with the artifact (auto.json). OpenVINO and PPQ reuse
# the float set onnx-int8-auto found (a declarative value), with their own calibration.
_AUTO = tuple(DEFAULTS.items())
# levers beyond the calibration method, in every candidate the search scores: SiLU-aware ranges of the
# pre-activations, weight rounding by per-layer output reconstruction (quant/calibration/rounding.py) and empirical
# bias correction (quant/calibration/biascorr.py), each on 32 calibration images
_LEVERS = (("silu_ranges", True), ("weight_rounding", 32), ("bias_correction", 32))
register(Variant("onnx-int8-auto", "onnxruntime", "int8", "onnx", search=True,
                 float_scope=FloatScope(presets=("decode",)), settings=_ORT_INT8 + _LEVERS + _AUTO, source="onnx-fp32",
                 description="ONNX Runtime Q/DQ INT8, searched method and float set (target drop 0.3 points)"))
register(Variant("trt-int8-auto", "tensorrt", "int8", "engine", search=True,
                 float_scope=FloatScope(presets=("decode",)), settings=_TRT_INT8 + _TRT_MIXED + _LEVERS + _AUTO,
                 source="onnx-fp32", markers=_GPU,
                 description="TensorRT explicit Q/DQ INT8, searched method and float set (run in FP16)"))
# NNCF's ONNX backend as TensorRT's Q/DQ builder (quant/build/nncf_qdq.py): symmetric INT8 (preset performance) at the
# convolution inputs, NNCF's ranges and bias correction, the float set picked like ov-int8-auto's
register(Variant("trt-int8-nncf", "tensorrt", "int8", "engine", tool="nncf", float_scope=FloatScope(presets=("decode",)),
                 settings=(("preset", "performance"), ("fast_bias_correction", False), ("float_set_from", "onnx-int8-auto"),
                           ("choose_float_set", True), ("smooth_quant_alpha", 0.5)) + _TRT_MIXED,
                 source="onnx-fp32", markers=_GPU,
                 description="TensorRT explicit Q/DQ INT8 by NNCF: onnx-int8-auto's float set or a prefix of its ranking, "
                 "with or without SmoothQuant, whichever is closer to FP32 (run in FP16)"))
register(Variant("ov-int8-auto", "openvino", "int8", "openvino", tool="nncf",
                 float_scope=FloatScope(presets=("decode",)),
                 settings=_NNCF + (("float_set_from", "onnx-int8-auto"), ("choose_float_set", True),
                                   ("smooth_quant_alpha", 0.5)),
                 source="onnx-fp32", description="OpenVINO NNCF INT8: onnx-int8-auto's float set or a prefix of its "
                 "ranking, with or without SmoothQuant, whichever NNCF keeps closer to FP32"))
register(Variant("ppq-int8-auto", "ppq", "int8", "onnx", tool="ppq", float_scope=FloatScope(presets=("decode",)),
                 settings=_PPQ + (("float_set_from", "onnx-int8-auto"),), source="onnx-fp32",
                 description="PPQ INT8, the float set onnx-int8-auto found left float"))

# BF16 (CPUs with AVX512_BF16 or AMX; skipped with the reason elsewhere): OpenVINO runs the float IR,
# or the float layers of ov-int8-auto, in BF16 (INFERENCE_PRECISION_HINT=bf16); every other OpenVINO row
# pins f32.
register(Variant("ov-bf16", "openvino", "bf16", "openvino", source="onnx-fp32",
                 description="OpenVINO CPU, the FP32 IR run in BF16"))
register(Variant("ov-int8-auto-bf16", "openvino", "int8", "openvino", source="ov-int8-auto",
                 settings=(("inference_precision", "bf16"),),
                 description="ov-int8-auto's IR with what stays float run in BF16"))


def override_settings(selected: Callable[[Variant], bool], **settings) -> None:
    """Change settings of every variant ``selected`` picks (command-line options), e.g.
    ``override_settings(lambda v: v.tool == "ppq", calib_steps=64)``."""
    for name, v in list(REGISTRY.items()):
        if selected(v):
            REGISTRY[name] = replace(v, settings=tuple({**dict(v.settings), **settings}.items()))
