"""TensorRT engines from the ONNX each TensorRT variant's builders made (runs where TensorRT >= 10 and a CUDA
GPU exist; elsewhere the ONNX stays the artifact and is scored on the CPU as a stand-in).

The ONNX is built as a strongly typed network (TensorRT 11 has no other mode; TensorRT 10 is asked for it):
the precision of every layer is what the ONNX says (FP16 ONNX, explicit Q/DQ INT8). Engines carry
Ultralytics' metadata header (4-byte little-endian length + JSON) so ``YOLO('model.engine')`` loads them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from quant.build.context import BuildContext
from quant.util.errors import QuantError


def trt_version() -> tuple[int, int] | None:
    try:
        import tensorrt as trt
    except ImportError:
        return None
    major, minor = (int(x) for x in trt.__version__.split(".")[:2])
    return major, minor


def trt_version_string() -> str:
    import tensorrt as trt

    return trt.__version__


def gpu_present() -> bool:
    """An NVIDIA GPU on this machine, whether or not torch or TensorRT can use it."""
    return Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi") is not None


def engine_unavailable(variant) -> str | None:
    """Why no engine can be built here (None when it can)."""
    version = trt_version()
    if version is None:
        return "TensorRT is not installed (pip install tensorrt; needs an NVIDIA GPU)"
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no CUDA GPU visible to torch"
    if variant.implicit:
        if version[0] > 10:
            return f"TensorRT {version[0]}.{version[1]} removed the implicit INT8 calibrators (TensorRT <= 10 only)"
    elif version[0] < 10:
        return f"TensorRT {version[0]}.{version[1]}: explicit strongly typed builds need TensorRT >= 10"
    return None


def engine(variant, ctx: BuildContext, onnx_path: Path) -> tuple[Path, dict]:
    """The engine of ``onnx_path`` beside it; without TensorRT or a GPU, the ONNX itself, recorded as such. Where
    engines were asked for (-m gpu) and this machine has an NVIDIA GPU, a missing engine is a failure."""
    return build(variant, ctx, onnx_path)


def build(variant, ctx: BuildContext, onnx_path: Path, configure=None) -> tuple[Path, dict]:
    """:func:`engine`, with ``configure(trt, network, config, engine_path)`` setting the builder up (the implicit
    calibrators: :mod:`quant.build.trt_implicit`)."""
    reason = engine_unavailable(variant)
    if reason and ctx.require_engines and gpu_present():
        raise QuantError(f"an engine was asked for (-m gpu) and this machine has an NVIDIA GPU, but {reason}; "
                         "its CPU stand-in would be reported under a TensorRT name")
    if reason:
        return onnx_path, {"engine": {"built": False, "reason": reason}}
    out = onnx_path.with_name("model.engine")
    build_engine(onnx_path, out, variant, configure)
    return out, {"engine": {"built": True, "tensorrt": trt_version_string()}}


def write_engine(path: Path, engine_bytes: bytes, metadata: dict) -> None:
    """Ultralytics' engine format: little-endian uint32 length, JSON metadata, serialized engine."""
    meta = json.dumps(metadata).encode()
    tmp = path.with_suffix(".engine.tmp")
    with open(tmp, "wb") as f:
        f.write(len(meta).to_bytes(4, byteorder="little", signed=True))
        f.write(meta)
        f.write(engine_bytes)
    os.replace(tmp, path)


def read_engine(path: Path) -> tuple[dict, bytes]:
    data = Path(path).read_bytes()
    n = int.from_bytes(data[:4], byteorder="little")
    try:
        return json.loads(data[4:4 + n]), data[4 + n:]
    except ValueError:
        raise QuantError(f"engine '{path}' has no Ultralytics metadata header") from None


def build_engine(onnx_path: Path, engine_path: Path, variant, configure=None) -> None:
    import tensorrt as trt

    from quant.model.weights import onnx_metadata

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = trt_version()[0]
    flags = 0
    if configure is None and major == 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)  # implied from TensorRT 11 on
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise QuantError(f"TensorRT cannot parse '{onnx_path}': {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 4 << 30)
    # the engine records every layer's type, weights and tensor formats for its inspector (what ran, and where
    # the time goes: quant.backends.tensorrt)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if variant.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # on by default: FP32 means FP32
    if configure is not None:
        configure(trt, network, config, engine_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from '{onnx_path}'")
    write_engine(engine_path, bytes(serialized), onnx_metadata(onnx_path))
