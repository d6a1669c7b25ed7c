"""TensorRT: the ONNX an engine is built from is prepared on CPU; engines where TensorRT and CUDA exist.

CPU stage (always, tested in CI): FP32 = the suite's ONNX; FP16 = an FP16 ONNX with the box decode
in FP32 (:mod:`quant.fp16`); INT8 = explicit Q/DQ with TensorRT's placement: symmetric INT8
activations quantized at the inputs of convolutions only (TensorRT fuses Conv+SiLU and requantizes
at the next conv), per-channel symmetric weights, box decode float. ONNX Runtime on CPU runs these
ONNX files, so their accuracy predicts the engine's.

Engine stage (TensorRT >= 10 with a CUDA GPU): the ONNX is built as a strongly typed network
(TensorRT 11 has no other mode). TensorRT <= 10 also offers the implicit calibrators
(``IInt8MinMaxCalibrator``, ``IInt8EntropyCalibrator2``, ``IInt8EntropyCalibrator``,
``IInt8LegacyCalibrator``) fed by the suite's calibration reader. Engines carry Ultralytics'
metadata header (4-byte little-endian length + JSON) so ``YOLO('model.engine')`` loads them.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from quant.errors import QuantError

IMPLICIT = ("minmax", "entropy2", "entropy", "legacy")


def trt_version() -> tuple[int, int] | None:
    try:
        import tensorrt as trt
    except ImportError:
        return None
    major, minor = (int(x) for x in trt.__version__.split(".")[:2])
    return major, minor


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
    if variant.setting("implicit"):
        if version[0] > 10:
            return f"TensorRT {version[0]}.{version[1]} removed the implicit INT8 calibrators (TensorRT <= 10 only)"
    elif version[0] < 10:
        return f"TensorRT {version[0]}.{version[1]}: explicit strongly typed builds need TensorRT >= 10"
    return None


def unavailable(variant=None) -> str | None:
    if variant is not None and variant.setting("implicit"):
        return engine_unavailable(variant)  # the implicit path has no CPU stage
    return None  # the ONNX stage builds anywhere


def key_extras(variant) -> dict:
    """The engine depends on the TensorRT build and the GPU it was tuned on."""
    if engine_unavailable(variant):
        return {"engine": None}
    import torch

    return {"engine": {"tensorrt": ".".join(map(str, trt_version())), "gpu": torch.cuda.get_device_name(0)}}


def builders(variant) -> list[str]:
    """Modules that build this variant's ONNX besides this one (their code is part of its cache key);
    the build is dispatched through this same value."""
    if variant.setting("implicit"):
        return ["quant.calibration"]  # TensorRT's own calibrators read the suite's calibration images
    if variant.precision == "fp16":
        return ["quant.fp16"]
    if variant.precision == "int8":
        return ["quant.autoselect"] if variant.calibration == "auto" else ["quant.qdq"]
    return []


def prepare_onnx(variant, ctx, out_dir: Path) -> tuple[Path, dict]:
    """The ONNX the engine is built from (runs in ONNX Runtime on CPU too), as ``out_dir/model.onnx``."""
    if variant.precision in ("fp16", "int8") and not variant.setting("implicit"):
        return importlib.import_module(builders(variant)[0]).build(variant, ctx, out_dir)
    if variant.precision != "fp32" and not variant.setting("implicit"):
        raise ValueError(f"tensorrt backend cannot build precision '{variant.precision}'")
    out = out_dir / "model.onnx"
    shutil.copyfile(ctx.artifact(variant.source), out)
    return out, {}


def build(variant, ctx, out_dir: Path):
    onnx_path, info = prepare_onnx(variant, ctx, out_dir)
    reason = engine_unavailable(variant)
    if reason:
        info["engine"] = f"not built: {reason}"
        return onnx_path, info
    engine = out_dir / "model.engine"
    build_engine(onnx_path, engine, variant, ctx)
    info["engine"] = f"built: TensorRT {'.'.join(map(str, trt_version()))}"
    return engine, info


# ---- engine layer (runs only where TensorRT and CUDA exist) ------------------------------------

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


def build_engine(onnx_path: Path, engine_path: Path, variant, ctx) -> None:
    import onnx
    import tensorrt as trt

    from quant.graph import decode_nodes
    from quant.model import onnx_metadata

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = trt_version()[0]
    flags = 0
    if not variant.setting("implicit") and major == 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)  # implied from TensorRT 11 on
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise QuantError(f"TensorRT cannot parse '{onnx_path}': {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 4 << 30)
    if variant.setting("implicit"):  # TensorRT <= 10: builder flags and a calibrator
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        decode = set(decode_nodes(onnx.load(str(onnx_path))))
        for i in range(network.num_layers):  # the box decode stays FP32 in every variant
            layer = network.get_layer(i)
            if layer.name in decode:
                layer.precision = trt.float32
        calibration = importlib.import_module(builders(variant)[0])  # quant.calibration (see builders)
        reader = calibration.reader_for(ctx.calibration_files(), ctx.imgsz, network.get_input(0).name)
        config.int8_calibrator = make_calibrator(variant.setting("implicit"), reader,
                                                 engine_path.with_name("calibration.cache"))
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from '{onnx_path}'")
    write_engine(engine_path, bytes(serialized), onnx_metadata(onnx_path))


def make_calibrator(kind: str, reader, cache_file: Path):
    """One of TensorRT's implicit calibrators, fed by the suite's reader through torch device buffers."""
    import tensorrt as trt
    import torch

    base = {"minmax": trt.IInt8MinMaxCalibrator, "entropy2": trt.IInt8EntropyCalibrator2,
            "entropy": trt.IInt8EntropyCalibrator, "legacy": trt.IInt8LegacyCalibrator}[kind]

    class Calibrator(base):
        def __init__(self):
            base.__init__(self)
            self.batches = iter(reader.tensors())
            self.device = None

        def get_batch_size(self):
            return 1

        def get_batch(self, names):
            x = next(self.batches, None)
            if x is None:
                return None
            self.device = torch.from_numpy(x).cuda()  # kept alive until the next call
            return [int(self.device.data_ptr())]

        def read_calibration_cache(self):
            return cache_file.read_bytes() if cache_file.exists() else None

        def write_calibration_cache(self, cache):
            cache_file.write_bytes(bytes(cache))

        # IInt8LegacyCalibrator's extra knobs (TensorRT's documented defaults)
        def get_quantile(self):
            return 0.9999

        def get_regression_cutoff(self):
            return 1.0

        def read_histogram_cache(self, length):
            return None

        def write_histogram_cache(self, data, length):
            return None

    return Calibrator()


def engine_runner(engine_path: Path):
    """Batch-1 call of the engine; CUDA-event times of the execution alone are kept in ``run.gpu_ms``."""
    import tensorrt as trt
    import torch

    _, blob = read_engine(engine_path)
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(blob)
    context = engine.create_execution_context()
    buffers, inputs = {}, []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        dtype = torch.from_numpy(np.zeros(1, dtype=trt.nptype(engine.get_tensor_dtype(name)))).dtype
        buffers[name] = torch.empty(tuple(engine.get_tensor_shape(name)), dtype=dtype, device="cuda")
        context.set_tensor_address(name, buffers[name].data_ptr())
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            inputs.append(name)
    outputs = [n for n in buffers if n not in inputs]
    stream = torch.cuda.Stream()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def run(x):
        buffers[inputs[0]].copy_(torch.from_numpy(x))
        start.record(stream)
        context.execute_async_v3(stream.cuda_stream)
        end.record(stream)
        out = [buffers[n].cpu() for n in outputs]  # synchronizes
        run.gpu_ms.append(start.elapsed_time(end))
        return out

    run.gpu_ms = []
    return run


def runner(variant, artifact: Path, ctx):
    if Path(artifact).suffix == ".engine":
        return engine_runner(artifact)
    from quant.backends import onnxruntime as ort_backend

    return ort_backend.runner(variant, artifact, ctx)  # no engine here: the ONNX on CPU (accuracy proxy)


def eval_args(variant, artifact: Path) -> dict:
    return {"device": "0" if Path(artifact).suffix == ".engine" else "cpu"}
