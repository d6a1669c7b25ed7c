"""The TensorRT engine layer against a stand-in TensorRT and CUDA (no GPU needed): the runner's call order
and synchronisation, checked return values, exact version keys, FP32 pinning of the decode."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from quant.backends import tensorrt as trt_backend
from quant.backends.tensorrt import TENSORRT
from quant.build import trt_engine, trt_implicit
from quant.util.errors import QuantError
from quant.registry import REGISTRY


class Log(list):
    def __call__(self, what):
        self.append(what)


def fake_trt(log: Log, *, engine_ok=True, address_ok=True, enqueue_ok=True):
    """A stand-in `tensorrt` module with one input and one output tensor."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.16.0.4"
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level=None: None})
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    trt.nptype = lambda dtype: np.float32

    class Context:
        def set_tensor_address(self, name, ptr):
            log(f"address {name}")
            return address_ok

        def execute_async_v3(self, stream_handle):
            log(f"execute on {stream_handle}")
            return enqueue_ok

    class Engine:
        num_io_tensors = 2

        def get_tensor_name(self, i):
            return ["images", "output0"][i]

        def get_tensor_mode(self, name):
            return "in" if name == "images" else "out"

        def get_tensor_shape(self, name):
            return (1, 3, 8, 8) if name == "images" else (1, 9, 4)

        def get_tensor_dtype(self, name):
            return "float"

        def create_execution_context(self):
            return Context()

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, blob):
            return Engine() if engine_ok else None

    trt.Runtime = Runtime
    return trt


class FakeCuda:
    """Records the order of the CUDA operations the runner asks for; `current` is the active stream."""

    def __init__(self, log: Log):
        self.log, self.current = log, "default"
        cuda = self

        class Stream:
            cuda_stream = "stream-1"

            def synchronize(self):
                cuda.log("synchronize stream-1")

        class Event:
            def __init__(self, name):
                self.name = name

            def record(self, stream):
                cuda.log(f"record {self.name} on {stream.cuda_stream}")

            def elapsed_time(self, other):
                cuda.log("elapsed_time")
                return 1.5

        self._stream, self._events, self.Event = Stream(), iter(["start", "end"]), Event

    def stream(self):
        return self._stream

    def event(self):
        return self.Event(next(self._events))

    def on(self, stream):
        cuda = self

        class Ctx:
            def __enter__(self):
                cuda.current = stream.cuda_stream
                cuda.log(f"enter {stream.cuda_stream}")

            def __exit__(self, *exc):
                cuda.current = "default"
                cuda.log("exit stream")

        return Ctx()

    def empty(self, shape, np_dtype):
        buf = np.zeros(shape, np_dtype)
        return types.SimpleNamespace(data_ptr=lambda: id(buf), array=buf)

    def upload(self, dst, x):
        self.log(f"upload on {self.current}")
        dst.array[...] = x

    def download(self, src):
        self.log(f"download on {self.current}")
        return src.array.copy()


@pytest.fixture()
def engine_file(tmp_path):
    path = tmp_path / "model.engine"
    trt_engine.write_engine(path, b"blob", {"names": {0: "a"}})
    return path


def _runner(monkeypatch, engine_file, log, **fake):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt(log, **fake))
    return trt_backend.engine_runner(engine_file, cuda=FakeCuda(log))


def test_everything_runs_on_one_stream_and_is_synchronized_before_reading(monkeypatch, engine_file):
    log = Log()
    run = _runner(monkeypatch, engine_file, log)
    log.clear()
    out = run(np.ones((1, 3, 8, 8), np.float32))
    assert log == ["enter stream-1", "upload on stream-1", "record start on stream-1", "execute on stream-1",
                   "record end on stream-1", "download on stream-1", "exit stream", "synchronize stream-1",
                   "elapsed_time"]
    assert len(out) == 1 and out[0].shape == (1, 9, 4) and run.gpu_ms == [1.5]


@pytest.mark.parametrize("fake, message", [
    ({"engine_ok": False}, r"cannot be loaded by TensorRT 10\.16\.0\.4 on this GPU: .* exact TensorRT version and GPU"),
    ({"address_ok": False}, r"TensorRT refused the address of tensor 'images'"),
    ({"enqueue_ok": False}, r"TensorRT failed to enqueue .* \(execute_async_v3 returned False\)"),
])
def test_every_tensorrt_return_value_is_checked(monkeypatch, engine_file, fake, message):
    log = Log()
    with pytest.raises(QuantError, match=message):
        _runner(monkeypatch, engine_file, log, **fake)(np.ones((1, 3, 8, 8), np.float32))
    assert "download on stream-1" not in log  # nothing read after a failure


def test_engine_key_has_the_exact_version_gpu_and_compute_capability(monkeypatch):
    import torch

    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt(Log()))
    monkeypatch.setattr(trt_engine, "engine_unavailable", lambda v: None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (9, 0))
    assert TENSORRT.key_extras(REGISTRY["trt-int8-minmax"]) == {
        "engine": {"tensorrt": "10.16.0.4", "gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}}
    from quant.run.cache import LIBRARIES

    assert {"tensorrt", "tensorrt-cu12", "tensorrt-cu13"} <= set(LIBRARIES)


class _Layer:
    def __init__(self, name, outputs=1):
        self.name, self.num_outputs, self.precision, self.types = name, outputs, None, {}

    def set_output_type(self, k, t):
        self.types[k] = t


def test_decode_pinning_matches_expanded_layers_and_sets_output_types():
    layers = [_Layer("/model.22/dfl/Softmax"), _Layer("/model.22/Sigmoid_output_0"), _Layer("/model.22/Sigmoid 2", 2),
              _Layer("/model.21/cv2/conv/Conv"), _Layer("/model.22/SigmoidX")]
    network = types.SimpleNamespace(num_layers=len(layers), get_layer=lambda i: layers[i])
    pinned = trt_implicit.pin_fp32(network, ["/model.22/dfl/Softmax", "/model.22/Sigmoid"], "fp32")
    assert pinned == ["/model.22/dfl/Softmax", "/model.22/Sigmoid_output_0", "/model.22/Sigmoid 2"]
    assert layers[2].precision == "fp32" and layers[2].types == {0: "fp32", 1: "fp32"}
    assert layers[3].precision is None and layers[4].precision is None
    with pytest.raises(QuantError, match="no TensorRT layer matched the 1 box decode nodes"):
        trt_implicit.pin_fp32(network, ["/model.99/Concat"], "fp32")


def test_a_gpu_machine_asked_for_engines_fails_instead_of_reporting_cpu_numbers(monkeypatch, tmp_path):
    monkeypatch.setattr(trt_engine, "gpu_present", lambda: True)
    monkeypatch.setattr(trt_engine, "engine_unavailable", lambda v: "TensorRT is not installed (pip install tensorrt)")
    ctx = types.SimpleNamespace(require_engines=True)
    with pytest.raises(QuantError, match="an engine was asked for .* NVIDIA GPU, but TensorRT is not installed"):
        trt_engine.engine(REGISTRY["trt-fp32"], ctx, tmp_path / "model.onnx")


@pytest.mark.parametrize("markexpr, required", [("gpu", True), ("gpu and tensorrt", True), ("", False),
                                                ("not gpu", False)])
def test_engines_are_required_when_gpu_tests_are_selected(markexpr, required, tiny_weights, tiny_data, tmp_path):
    from quant.run.options import defaults, open_session

    o = defaults(weights=str(tiny_weights), data=str(tiny_data), imgsz=96, allow_imgsz=True, calib_images=4,
                 cache_dir=str(tmp_path / "c"), report_dir=str(tmp_path / "r"))
    o.markexpr = markexpr
    assert open_session(o).suite.builder.require_engines is required
