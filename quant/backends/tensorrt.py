"""TensorRT: the runtime of the ``trt-*`` rows. An engine runs on the GPU (:func:`engine_runner`); where none could
be built (no TensorRT or no GPU: :mod:`quant.build.trt_engine`), the ONNX it would be built from runs in ONNX
Runtime on the CPU as its stand-in, for accuracy (its latency is not the engine's and is not judged).
"""

from __future__ import annotations

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
