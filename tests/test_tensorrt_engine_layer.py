"""The TensorRT engine layer against a stand-in TensorRT and CUDA (no GPU needed): the runner's call order
and synchronisation, checked return values, exact version keys, FP32 pinning of the decode, and what the engine
runs (its inspector's layers) and where its time goes (its per-layer profiler)."""

from __future__ import annotations

import json
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


# An engine inspector's JSON (LayerInformationFormat.JSON, detailed verbosity) as TensorRT writes it for a
# Q/DQ YOLO: the older long format names and the newer bare data types both occur
def _tensor(fmt):
    return [{"Name": "t", "Location": "Device", "Dimensions": [1, 16, 40, 40], "Format/Datatype": fmt}]


INSPECTOR_LAYERS = [
    {"Name": "/model.0/conv/Conv_input_QuantizeLinear", "LayerType": "Reformat", "ParameterType": "Reformat",
     "Origin": "QDQ", "Inputs": _tensor("Row major linear FP32"), "Outputs": _tensor("Row major Int8 format")},
    {"Name": "/model.0/conv/Conv + PWN(/model.0/act/Sigmoid, /model.0/act/Mul)", "LayerType": "CaskConvolution",
     "ParameterType": "Convolution", "Weights": {"Type": "Int8", "Count": 432},
     "Inputs": _tensor("Thirty-two wide channel vectorized row major Int8 format"),
     "Outputs": _tensor("Thirty-two wide channel vectorized row major Int8 format")},
    {"Name": "/model.2/cv1/conv/Conv", "LayerType": "CaskGemmConvolution", "ParameterType": "Convolution",
     "Inputs": _tensor("Channel major INT8 format where channel % 16 == 0"), "Outputs": _tensor("Int8")},
    {"Name": "/model.22/cv2.0/cv2.0.2/Conv", "LayerType": "CaskConvolution", "ParameterType": "Convolution",
     "Weights": {"Type": "Float", "Count": 4096}, "Inputs": _tensor("Row major linear FP32"),
     "Outputs": _tensor("Row major linear FP32")},
    {"Name": "/model.22/cv3.0/cv3.0.2/Conv", "LayerType": "CaskConvolution", "ParameterType": "Convolution",
     "Weights": {"Type": "Half", "Count": 1280}, "Inputs": _tensor("Half"), "Outputs": _tensor("Half")},
    {"Name": "Reformatting CopyNode for Input Tensor 0 to /model.22/dfl/Softmax", "LayerType": "Reformat",
     "ParameterType": "Reformat", "Origin": "REFORMAT", "Inputs": _tensor("Channel major FP16 format"),
     "Outputs": _tensor("Row major linear FP32")},
    {"Name": "/model.22/dfl/Softmax", "LayerType": "CaskSoftMax", "ParameterType": "SoftMax",
     "Inputs": _tensor("Row major linear FP32"), "Outputs": _tensor("Row major linear FP32")},
]


def fake_trt(log: Log, *, engine_ok=True, address_ok=True, enqueue_ok=True, layers=INSPECTOR_LAYERS,
             layer_ms=None):
    """A stand-in `tensorrt` module with one input and one output tensor, whose engine's inspector lists
    ``layers`` and whose profiler reports ``layer_ms`` ({layer name: milliseconds}) on every synchronous call."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.16.0.4"
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level=None: None})
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    trt.LayerInformationFormat = types.SimpleNamespace(JSON="json", ONELINE="oneline")
    trt.nptype = lambda dtype: np.float32

    class IProfiler:
        def __init__(self):
            log("profiler")

    trt.IProfiler = IProfiler

    class Context:
        profiler = None

        def set_tensor_address(self, name, ptr):
            log(f"address {name}")
            return address_ok

        def execute_async_v3(self, stream_handle):
            log(f"execute on {stream_handle}" + (" profiled" if self.profiler else ""))
            return enqueue_ok

        def execute_v2(self, addresses):
            log(f"execute_v2 {len(addresses)} tensors")
            for name, ms in (layer_ms or {}).items():
                self.profiler.report_layer_time(name, ms)
            return True

    class Inspector:
        def get_engine_information(self, fmt):
            assert fmt == "json"
            return json.dumps({"Layers": layers, "Bindings": ["images", "output0"]})

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

        def create_engine_inspector(self):
            return Inspector()

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


def test_the_runner_reads_what_the_engine_runs_from_its_inspector(monkeypatch, engine_file):
    run = _runner(monkeypatch, engine_file, Log())
    assert run.executed == {"convs_int8": 2, "convs_float": 2, "convs_by_precision": {"int8": 2, "fp32": 1, "fp16": 1},
                            "reorders": 2, "kernels": {"CaskConvolution": 3, "Reformat": 2, "CaskGemmConvolution": 1,
                                                       "CaskSoftMax": 1}}


def test_an_engine_built_with_layer_names_only_records_nothing(monkeypatch, engine_file):
    run = _runner(monkeypatch, engine_file, Log(), layers=["/model.0/conv/Conv", "/model.22/dfl/Softmax"])
    assert run.executed is None


def test_the_profile_runs_a_context_of_its_own_and_sums_the_layers_by_precision(monkeypatch, engine_file):
    from quant.measure.profile import line

    log = Log()
    names = [x["Name"] for x in INSPECTOR_LAYERS]
    ms = {names[0]: 0.05, names[1]: 0.40, names[2]: 0.20, names[3]: 0.10, names[4]: 0.08, names[5]: 0.02,
          names[6]: 0.10, "a layer the inspector does not list": 0.05}
    run = _runner(monkeypatch, engine_file, log, layer_ms=ms)
    log.clear()
    split = run.profile(np.ones((1, 3, 8, 8), np.float32))
    assert split["profiler"] == "TensorRT IProfiler"
    assert split["us"] == pytest.approx({"conv int8": 600.0, "conv fp32": 100.0, "other fp32": 100.0,
                                         "conv fp16": 80.0, "quantize/dequantize": 50.0, "other ?": 50.0,
                                         "reorder": 20.0})
    assert list(split["us"])[0] == "conv int8"  # largest first
    assert log.count("execute_v2 2 tensors") == 8  # 2 warm-up + 6 profiled calls, synchronous
    assert log.index("synchronize stream-1") < log.index("execute_v2 2 tensors")  # the input is uploaded first
    assert "conv int8 60 %" in line(split)
    log.clear()
    run(np.ones((1, 3, 8, 8), np.float32))
    assert "execute on stream-1" in log  # the timed context has no profiler


def test_engines_are_built_with_detailed_layer_information(monkeypatch, tmp_path):
    """Without detailed profiling verbosity the inspector lists layer names only (nothing to read what ran from)."""
    seen = {}

    class Config:
        def set_memory_pool_limit(self, pool, size):
            pass

        def __setattr__(self, name, value):
            seen[name] = value

    trt = types.ModuleType("tensorrt")
    trt.__version__ = "11.0.0.1"
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level=None: None})
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.ProfilingVerbosity = types.SimpleNamespace(DETAILED="detailed", LAYER_NAMES_ONLY="names")
    trt.BuilderFlag = types.SimpleNamespace()
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=0)
    trt.OnnxParser = lambda network, logger: types.SimpleNamespace(parse_from_file=lambda path: True)
    trt.Builder = lambda logger: types.SimpleNamespace(create_network=lambda flags: "network",
                                                       create_builder_config=Config,
                                                       build_serialized_network=lambda network, config: b"plan")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr("quant.model.weights.onnx_metadata", lambda path: {"names": {0: "a"}})
    trt_engine.build_engine(tmp_path / "model.onnx", tmp_path / "model.engine", REGISTRY["trt-int8-minmax"])
    assert seen.get("profiling_verbosity") == "detailed"
    assert trt_engine.read_engine(tmp_path / "model.engine")[1] == b"plan"
