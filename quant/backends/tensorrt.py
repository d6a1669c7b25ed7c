"""TensorRT: the ONNX an engine is built from is prepared on CPU; engines where TensorRT and CUDA exist.

CPU stage (always, tested in CI): FP32 = the suite's ONNX; FP16 = an FP16 ONNX with the box decode
in FP32 (:mod:`quant.build.fp16`); INT8 = explicit Q/DQ with TensorRT's placement: symmetric INT8
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

from quant.build.context import BuildContext
from quant.util.errors import QuantError

IMPLICIT = ("minmax", "entropy2", "entropy", "legacy")


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
    if variant.setting("implicit"):
        if version[0] > 10:
            return f"TensorRT {version[0]}.{version[1]} removed the implicit INT8 calibrators (TensorRT <= 10 only)"
    elif version[0] < 10:
        return f"TensorRT {version[0]}.{version[1]}: explicit strongly typed builds need TensorRT >= 10"
    return None


def unavailable(variant=None) -> str | None:
    if variant is not None and variant.setting("implicit"):
        return engine_unavailable(variant)  # the implicit path has no CPU stage
    if variant is not None and variant.tool == "nncf":
        try:
            importlib.import_module("nncf")
        except ImportError as e:
            return f"nncf is not installed (pip install -e '.[openvino]'): {e}"
    return None  # the ONNX stage builds anywhere


def key_extras(variant) -> dict:
    """An engine loads only with the exact TensorRT version and GPU that built it: both are in its key."""
    if engine_unavailable(variant):
        return {"engine": None}
    import tensorrt as trt
    import torch

    major, minor = torch.cuda.get_device_capability(0)
    return {"engine": {"tensorrt": trt.__version__, "gpu": torch.cuda.get_device_name(0),
                       "compute_capability": f"{major}.{minor}"}}


def builders(variant) -> list[str]:
    """Modules that build this variant's ONNX besides this one (their code is part of its cache key);
    the build is dispatched through this same value."""
    if variant.setting("implicit"):
        return ["quant.calibration.readers"]  # TensorRT's own calibrators read the suite's calibration images
    if variant.precision == "fp16":
        return ["quant.build.fp16"]
    if variant.precision == "int8":  # Q/DQ INT8, then (float_precision fp16) FP16 outside the Q/DQ pairs
        qdq = ["quant.build.nncf_qdq"] if variant.tool == "nncf" else ["quant.build.auto_qdq"] if variant.search else ["quant.build.qdq"]
        return qdq + (["quant.build.fp16"] if variant.setting("float_precision") == "fp16" else [])
    return []


def prepare_onnx(variant, ctx: BuildContext, out_dir: Path) -> tuple[Path, dict]:
    """The ONNX the engine is built from (runs in ONNX Runtime on CPU too), as ``out_dir/model.onnx``."""
    if variant.precision in ("fp16", "int8") and not variant.setting("implicit"):
        build, *after = [importlib.import_module(m) for m in builders(variant)]
        path, info = build.build(variant, ctx, out_dir)
        for fp16 in after:  # INT8 engines: FP16 everywhere outside the Q/DQ pairs, the box decode FP32
            import onnx

            from quant.model.graph import decode_nodes

            info.update(fp16.mixed_int8_fp16(path, decode_nodes(onnx.load(str(ctx.artifact(variant.source))))))
        return path, info
    if variant.precision != "fp32" and not variant.setting("implicit"):
        raise ValueError(f"tensorrt backend cannot build precision '{variant.precision}'")
    out = out_dir / "model.onnx"
    shutil.copyfile(ctx.artifact(variant.source), out)
    return out, {}


def build(variant, ctx: BuildContext, out_dir: Path):
    reason = engine_unavailable(variant)
    if reason and ctx.require_engines and gpu_present():
        raise QuantError(f"an engine was asked for (-m gpu) and this machine has an NVIDIA GPU, but {reason}; "
                         "its CPU stand-in would be reported under a TensorRT name")
    onnx_path, info = prepare_onnx(variant, ctx, out_dir)
    if reason:
        info["engine"] = {"built": False, "reason": reason}
        return onnx_path, info
    engine = out_dir / "model.engine"
    build_engine(onnx_path, engine, variant, ctx)
    info["engine"] = {"built": True, "tensorrt": trt_version_string()}
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


def build_engine(onnx_path: Path, engine_path: Path, variant, ctx: BuildContext) -> None:
    import onnx
    import tensorrt as trt

    from quant.model.graph import decode_nodes
    from quant.model.weights import onnx_metadata

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
    if variant.precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # on by default: FP32 means FP32
    if variant.setting("implicit"):  # TensorRT <= 10: builder flags and a calibrator
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        pin_fp32(network, decode_nodes(onnx.load(str(onnx_path))), trt.float32)  # the box decode, as everywhere
        calibration = importlib.import_module(builders(variant)[0])  # quant.calibration.readers (see builders)
        reader = calibration.reader_for(ctx.calibration_files(), ctx.imgsz, network.get_input(0).name)
        config.int8_calibrator = make_calibrator(variant.setting("implicit"), reader,
                                                 engine_path.with_name("calibration.cache"))
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from '{onnx_path}'")
    write_engine(engine_path, bytes(serialized), onnx_metadata(onnx_path))


def _expands(layer_name: str, node: str) -> bool:
    """TensorRT names a layer after its ONNX node, and suffixes the layers one node expands into."""
    return layer_name == node or any(layer_name.startswith(node + sep) for sep in ("_", " ", "/", ".", "(", "["))


def pin_fp32(network, nodes, float32) -> list[str]:
    """Constrain the layers of ``nodes`` (and what TensorRT expanded them into) to FP32: their precision
    and their output types. Fails when nothing matched (the constraint would silently constrain nothing)."""
    pinned = []
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if any(_expands(layer.name, n) for n in nodes):
            layer.precision = float32
            for k in range(layer.num_outputs):
                layer.set_output_type(k, float32)
            pinned.append(layer.name)
    if nodes and not pinned:
        raise QuantError(f"no TensorRT layer matched the {len(nodes)} box decode nodes (e.g. '{list(nodes)[0]}'): "
                         "the decode cannot be kept FP32")
    return pinned


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

        # IInt8LegacyCalibrator's extra knobs; TensorRT documents no defaults: these are the values of its
        # own samples (keep the 99.99th percentile, no regression cutoff)
        def get_quantile(self):
            return 0.9999

        def get_regression_cutoff(self):
            return 1.0

        def read_histogram_cache(self, length):
            return None

        def write_histogram_cache(self, data, length):
            return None

    return Calibrator()


class TorchCuda:
    """The few CUDA operations the engine runner needs, done with torch (a stand-in can replace it in tests)."""

    def __init__(self) -> None:
        import torch

        self.torch = torch

    def stream(self):
        return self.torch.cuda.Stream()  # non-blocking: it does not wait for the default stream

    def event(self):
        return self.torch.cuda.Event(enable_timing=True)

    def on(self, stream):
        """Context in which copies run on ``stream`` (the same stream the engine is enqueued on)."""
        return self.torch.cuda.stream(stream)

    def empty(self, shape, np_dtype):
        dtype = self.torch.from_numpy(np.zeros(1, dtype=np_dtype)).dtype
        return self.torch.empty(tuple(shape), dtype=dtype, device="cuda")

    def upload(self, dst, x: np.ndarray) -> None:
        dst.copy_(self.torch.from_numpy(x), non_blocking=True)

    def download(self, src):
        return src.to("cpu", non_blocking=True)


def _load_engine(trt, engine_path: Path):
    _, blob = read_engine(engine_path)
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(blob)
    if engine is None:
        raise QuantError(f"engine '{engine_path}' cannot be loaded by TensorRT {trt.__version__} on this GPU: an "
                         "engine loads only with the exact TensorRT version and GPU that built it; delete it and "
                         "run again to rebuild")
    context = engine.create_execution_context()
    if context is None:
        raise QuantError(f"TensorRT could not create an execution context for '{engine_path}' (out of GPU memory?)")
    return engine, context


def engine_runner(engine_path: Path, cuda=None):
    """Batch-1 call of the engine. Input copy, enqueue, event records and output copies all go on one
    stream, which is synchronized before outputs are returned or times read; every TensorRT return value
    is checked. ``run.gpu_ms`` keeps the CUDA-event time of each execution alone (warm-up calls included:
    callers drop the first ones)."""
    import tensorrt as trt

    cuda = cuda or TorchCuda()
    engine, context = _load_engine(trt, engine_path)
    buffers, inputs = {}, []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        buffers[name] = cuda.empty(engine.get_tensor_shape(name), trt.nptype(engine.get_tensor_dtype(name)))
        if not context.set_tensor_address(name, buffers[name].data_ptr()):
            raise QuantError(f"TensorRT refused the address of tensor '{name}' of '{engine_path}'")
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            inputs.append(name)
    outputs = [n for n in buffers if n not in inputs]
    stream, start, end = cuda.stream(), cuda.event(), cuda.event()

    def run(x):
        with cuda.on(stream):
            cuda.upload(buffers[inputs[0]], x)
            start.record(stream)
            if not context.execute_async_v3(stream.cuda_stream):
                raise QuantError(f"TensorRT failed to enqueue '{engine_path}' (execute_async_v3 returned False)")
            end.record(stream)
            out = [cuda.download(buffers[n]) for n in outputs]
        stream.synchronize()  # outputs and events are complete only now
        run.gpu_ms.append(start.elapsed_time(end))
        return out

    run.gpu_ms = []
    return run


def runner(variant, artifact: Path, ctx: BuildContext):
    if Path(artifact).suffix == ".engine":
        return engine_runner(artifact)
    from quant.backends import onnxruntime as ort_backend

    return ort_backend.runner(variant, artifact, ctx)  # no engine here: the ONNX on CPU (accuracy proxy)


def eval_args(variant, artifact: Path) -> dict:
    return {"device": "0" if Path(artifact).suffix == ".engine" else "cpu"}
