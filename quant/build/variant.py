"""What a variant is, as a typed value: its vocabulary (precision, format, who calibrates), how its artifact
runs (:class:`Runtime`), and the :class:`Variant` itself, which names the builder functions that make its
artifact. The registry (:mod:`quant.registry`) holds the variants; builders and backends read their fields.

Each builder's settings are a frozen dataclass beside the builder (``QdqConfig`` in :mod:`quant.build.qdq`,
``NncfConfig`` in :mod:`quant.build.nncf_ir`, ``PpqConfig`` in :mod:`quant.build.ppq`, ``SearchConfig`` in
:mod:`quant.search.settings`): a misspelt setting fails where the variant is registered, and a default is
written once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from quant.build.context import missing
from quant.model.graph import FloatScope
from quant.util.errors import QuantError

if TYPE_CHECKING:  # types only: a variant's key holds the code of the builders it names, not of every builder
    from quant.backends.base import Backend
    from quant.build.context import BuildContext
    from quant.build.nncf_ir import NncfConfig
    from quant.build.ppq import PpqConfig
    from quant.build.qdq import QdqConfig
    from quant.build.ultralytics import ExportConfig
    from quant.search.settings import SearchConfig


def _plain(v):
    """A field's value as JSON-ready data."""
    if isinstance(v, Enum):
        return v.value
    if callable(v) and hasattr(v, "__qualname__"):
        return f"{v.__module__}.{v.__qualname__}"
    if hasattr(v, "name") and hasattr(v, "runner"):  # a backend
        return v.name
    if isinstance(v, FloatScope):
        return v.to_dict()
    if dataclasses.is_dataclass(v):
        return {f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _coerce(obj, what: str, **enums) -> None:
    """Turn each named field's value into its enum (strings are accepted), or fail in one line naming the field
    and the values it takes."""
    for name, enum in enums.items():
        value = getattr(obj, name)
        if value is None or isinstance(value, enum):
            continue
        try:
            object.__setattr__(obj, name, enum(value))
        except ValueError:
            raise QuantError(f"{what}: {name} {value!r} is not one of {', '.join(e.value for e in enum)}") from None


class Precision(StrEnum):
    """The numeric precision a row is named by (its INT8 rows may run some layers in a float precision)."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"


class Format(StrEnum):
    """The artifact's format: an Ultralytics .pt, an ONNX file, a TensorRT engine, an OpenVINO IR folder."""

    PT = "pt"
    ONNX = "onnx"
    ENGINE = "engine"
    OPENVINO = "openvino"


class Method(StrEnum):
    """The suite's own calibration methods (:mod:`quant.calibration.ranges`)."""

    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


class Tool(StrEnum):
    """An outside quantizer that calibrates the variant itself."""

    NNCF = "nncf"
    PPQ = "ppq"
    ULTRALYTICS = "ultralytics"
    TENSORRT_IMPLICIT = "tensorrt-implicit"


class Split(StrEnum):
    """The data split a variant's calibration reads."""

    CALIB = "calib"  # the suite's variants: never the images that are scored
    VAL = "val"  # Ultralytics' own INT8 exports, as a user calls them (their default)


class Provider(StrEnum):
    """ONNX Runtime's execution provider."""

    CPU = "CPUExecutionProvider"
    CUDA = "CUDAExecutionProvider"


class Device(StrEnum):
    """Where PyTorch runs the model."""

    CPU = "cpu"
    CUDA = "cuda"


class Implicit(StrEnum):
    """TensorRT <= 10's implicit INT8 calibrators."""

    MINMAX = "minmax"
    ENTROPY2 = "entropy2"
    ENTROPY = "entropy"
    LEGACY = "legacy"


@dataclass(frozen=True)
class Runtime:
    """How the artifact runs where it is timed and validated (backend settings)."""

    provider: Provider = Provider.CPU  # ONNX Runtime
    device: Device = Device.CPU  # PyTorch
    inference_precision: Precision | None = None  # OpenVINO's INFERENCE_PRECISION_HINT (None: by the precision)

    def __post_init__(self) -> None:
        _coerce(self, "runtime", provider=Provider, device=Device, inference_precision=Precision)


Builder = Callable[["Variant", "BuildContext", Path], "tuple[Path, dict]"]  # (variant, ctx, out_dir) -> artifact, info
Finisher = Callable[["Variant", "BuildContext", Path], "tuple[Path, dict]"]  # (variant, ctx, artifact) -> the next


@dataclass(frozen=True)
class Variant:
    """One export/quantization variant. ``build(variant, ctx, out_dir)`` makes its artifact inside ``out_dir``;
    each of ``then`` takes the artifact so far and returns the next (e.g. FP16 outside the Q/DQ pairs, then the
    TensorRT engine). The modules these functions live in, with their import closure, are the code in the
    variant's cache key (:func:`quant.run.codehash.digests`)."""

    name: str
    backend: Backend  # the runtime the artifact is timed and validated in (quant.backends)
    precision: Precision
    format: Format
    build: Builder
    then: tuple[Finisher, ...] = ()
    source: str | None = None  # the variant whose artifact this one is built from
    method: Method | None = None  # the suite's calibration method
    search: SearchConfig | None = None  # the automatic recipe picks the method and the float set
    tool: Tool | None = None  # an outside quantizer that calibrates itself
    calib_split: Split = Split.CALIB
    float_scope: FloatScope | None = None  # what stays float in an INT8 model
    qdq: QdqConfig | None = None  # how Q/DQ pairs are written (the suite's and the searched INT8)
    nncf: NncfConfig | None = None
    ppq: PpqConfig | None = None
    implicit: Implicit | None = None  # TensorRT <= 10's implicit calibrator
    export: ExportConfig | None = None  # Ultralytics' own export (peers)
    runtime: Runtime = Runtime()
    peer: bool = False  # a yardstick (Ultralytics' own export), gated only for "did not crash"
    markers: tuple[str, ...] = ()  # pytest markers of its benchmark (e.g. "gpu")
    description: str = ""

    def __post_init__(self) -> None:
        _coerce(self, f"variant '{self.name}'", precision=Precision, format=Format, method=Method, tool=Tool,
                calib_split=Split, implicit=Implicit)
        if not callable(self.build) or not all(callable(f) for f in self.then):
            raise QuantError(f"variant '{self.name}': build and then must be builder functions")

    @property
    def calibrates(self) -> bool:
        """Whether building this variant reads calibration images."""
        return self.precision == Precision.INT8 and bool(self.method or self.search or self.tool)

    @property
    def float_set_from(self) -> str | None:
        """The variant whose searched float set this one reuses (NNCF's and PPQ's ``float_set_from``)."""
        return next((c.float_set_from for c in (self.nncf, self.ppq) if c is not None), None)

    def builders(self) -> tuple[Callable, ...]:
        """The functions that make the artifact, in order."""
        return (self.build, *self.then)

    def unavailable(self) -> str | None:
        """Why this variant cannot run here (its backend, or a module a builder needs), None when it can."""
        return self.backend.unavailable(self) or next(filter(None, map(missing, self.builders())), None)

    def config(self) -> dict:
        """What the variant is, as JSON-ready data (report.json, and the inputs of its cache key): every field
        but the description and markers, builders by their qualified names, the backend by its name."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name in ("description", "markers"):
                continue
            out[f.name] = _plain(getattr(self, f.name))
        return out

