"""TensorRT: the runtime of the ``trt-*`` rows. An engine runs on the GPU (:func:`engine_runner`); where none could
be built (no TensorRT or no GPU: :mod:`quant.build.trt_engine`), the ONNX it would be built from runs in ONNX
Runtime on the CPU as its stand-in, for accuracy (its latency is not the engine's and is not judged).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from quant.backends.base import Backend
from quant.backends.onnxruntime import ONNXRUNTIME
from quant.build import trt_engine
from quant.util.errors import QuantError


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
    _, blob = trt_engine.read_engine(engine_path)
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(blob)
    if engine is None:
        raise QuantError(f"engine '{engine_path}' cannot be loaded by TensorRT {trt.__version__} on this GPU: an "
                         "engine loads only with the exact TensorRT version and GPU that built it; delete it and "
                         "run again to rebuild")
    context = engine.create_execution_context()
    if context is None:
        raise QuantError(f"TensorRT could not create an execution context for '{engine_path}' (out of GPU memory?)")
    return engine, context


def _bind(trt, engine, context, cuda, engine_path: Path) -> tuple[dict, list[str], list[str]]:
    """A device buffer for each I/O tensor of ``engine``, its address set in ``context`` (checked): (buffers by
    name, input names, output names)."""
    buffers, inputs = {}, []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        buffers[name] = cuda.empty(engine.get_tensor_shape(name), trt.nptype(engine.get_tensor_dtype(name)))
        if not context.set_tensor_address(name, buffers[name].data_ptr()):
            raise QuantError(f"TensorRT refused the address of tensor '{name}' of '{engine_path}'")
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            inputs.append(name)
    return buffers, inputs, [n for n in buffers if n not in inputs]


def engine_layers(trt, engine) -> list:
    """The engine inspector's layers (``LayerInformationFormat.JSON``): one dict per layer with its type, weights
    and tensor formats where the engine was built with detailed profiling verbosity
    (:func:`quant.build.trt_engine.build_engine` does), else only names."""
    info = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    return json.loads(info).get("Layers", [])


def executed_layers(layers: list) -> dict | None:
    """What the engine runs, from the inspector's ``layers``: its convolutions by the precision their kernels
    compute in, and the Reformat layers (layout and precision conversions, as OpenVINO's reorders) between
    layers; None where the engine lists only layer names."""
    from collections import Counter

    from quant.measure.profile import trt_is_conv, trt_precision

    if not layers or not all(isinstance(x, dict) for x in layers):
        return None
    convs = Counter(trt_precision(x) for x in layers if trt_is_conv(x))
    kinds = Counter(x.get("LayerType", "?") for x in layers)
    return {"convs_int8": convs["int8"], "convs_float": sum(n for p, n in convs.items() if p != "int8"),
            "convs_by_precision": dict(convs), "reorders": kinds["Reformat"], "kernels": dict(kinds.most_common(8))}


def engine_runner(engine_path: Path, cuda=None):
    """Batch-1 call of the engine. Input copy, enqueue, event records and output copies all go on one
    stream, which is synchronized before outputs are returned or times read; every TensorRT return value
    is checked. ``run.gpu_ms`` keeps the CUDA-event time of each execution alone (warm-up calls included:
    callers drop the first ones); ``run.executed`` what the engine runs (the inspector's layers), ``run.profile``
    where its time goes (a second context with a per-layer profiler, so the timed one runs without it)."""
    import tensorrt as trt

    cuda = cuda or TorchCuda()
    engine, context = _load_engine(trt, engine_path)
    buffers, inputs, outputs = _bind(trt, engine, context, cuda, engine_path)
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

    layers = engine_layers(trt, engine)
    run.gpu_ms = []
    run.executed = executed_layers(layers)
    run.profile = lambda x: engine_profile(trt, engine, layers, x, cuda, engine_path)
    return run


def engine_profile(trt, engine, layers: list, x: np.ndarray, cuda, engine_path: Path) -> dict:
    """Where the engine's time goes by precision (:func:`quant.measure.profile.trt_breakdown`): a few synchronous
    calls (``execute_v2``, which reports each layer's time to the context's profiler) of a context of its own."""
    from quant.measure.profile import PROFILE_RUNS, PROFILE_WARMUP, trt_breakdown

    context = engine.create_execution_context()
    if context is None:
        raise QuantError(f"TensorRT could not create a profiling context for '{engine_path}' (out of GPU memory?)")
    buffers, inputs, _ = _bind(trt, engine, context, cuda, engine_path)
    layer_ms: dict[str, list[float]] = {}

    class Profiler(trt.IProfiler):
        def __init__(self):
            trt.IProfiler.__init__(self)

        def report_layer_time(self, layer_name, ms):
            layer_ms.setdefault(layer_name, []).append(float(ms))

    profiler = Profiler()  # held here while the context reports to it
    context.profiler = profiler
    stream = cuda.stream()
    with cuda.on(stream):
        cuda.upload(buffers[inputs[0]], x)
    stream.synchronize()  # the input is on the device before the synchronous calls read it
    addresses = [buffers[engine.get_tensor_name(i)].data_ptr() for i in range(engine.num_io_tensors)]
    for _ in range(PROFILE_WARMUP + PROFILE_RUNS):
        if not context.execute_v2(addresses):
            raise QuantError(f"TensorRT failed to run '{engine_path}' for its profile (execute_v2 returned False)")
    return trt_breakdown(layer_ms, layers, PROFILE_WARMUP)


class TensorRT(Backend):
    name = "tensorrt"

    def unavailable(self, variant=None) -> str | None:
        if variant is not None and variant.implicit:
            return trt_engine.engine_unavailable(variant)  # the implicit path has no CPU stage
        return None  # the ONNX stage builds anywhere

    def key_extras(self, variant) -> dict:
        """An engine loads only with the exact TensorRT version and GPU that built it: both are in its key."""
        if trt_engine.engine_unavailable(variant):
            return {"engine": None}
        import tensorrt as trt
        import torch

        major, minor = torch.cuda.get_device_capability(0)
        return {"engine": {"tensorrt": trt.__version__, "gpu": torch.cuda.get_device_name(0),
                           "compute_capability": f"{major}.{minor}"}}

    def runner(self, variant, artifact: Path, ctx):
        if Path(artifact).suffix == ".engine":
            return engine_runner(artifact)
        return ONNXRUNTIME.runner(variant, artifact, ctx)  # no engine here: the ONNX on CPU (accuracy proxy)

    def eval_args(self, variant, artifact: Path) -> dict:
        return {"device": "0" if Path(artifact).suffix == ".engine" else "cpu"}


TENSORRT = TensorRT()
