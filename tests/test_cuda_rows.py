"""The CUDA rows that need no TensorRT: ONNX Runtime's CUDA provider and PyTorch FP16 on the GPU.

Their precision is pinned on CPU-only machines too (the provider options every session gets); the rows
themselves run only where a CUDA GPU and onnxruntime-gpu exist, and skip with their reason elsewhere.
"""

import numpy as np
import pytest

from quant.backends import onnxruntime as ort_backend
from quant.registry import REGISTRY


def test_cuda_rows_ask_for_fp32_not_tf32():
    assert ort_backend.providers(REGISTRY["ort-cuda-fp32"]) == [("CUDAExecutionProvider", {"use_tf32": "0"})]
    assert ort_backend.providers(REGISTRY["ort-cuda-int8"]) == [("CUDAExecutionProvider", {"use_tf32": "0"})]
    assert ort_backend.providers(REGISTRY["onnx-fp32"]) == ["CPUExecutionProvider"]


def test_validator_sessions_of_a_cuda_row_are_pinned_too(monkeypatch):
    """Ultralytics' validator opens its own session with ``("CUDAExecutionProvider", {"device_id": 0})``:
    inside the row's evaluation context that session gets TF32 off as well, and only there."""
    import onnxruntime

    seen = []

    class Recording:
        def __init__(self, path_or_bytes, sess_options=None, providers=None, **kw):
            seen.append(providers)

    monkeypatch.setattr(onnxruntime, "InferenceSession", Recording)
    ultralytics_providers = [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]
    with ort_backend.ONNXRUNTIME.eval_context(REGISTRY["ort-cuda-fp32"]):
        onnxruntime.InferenceSession("m.onnx", None, providers=ultralytics_providers)
    assert onnxruntime.InferenceSession is Recording  # restored
    onnxruntime.InferenceSession("m.onnx", None, providers=ultralytics_providers)
    with ort_backend.ONNXRUNTIME.eval_context(REGISTRY["onnx-fp32"]):
        onnxruntime.InferenceSession("m.onnx", None, providers=["CPUExecutionProvider"])
    assert seen == [[("CUDAExecutionProvider", {"device_id": 0, "use_tf32": "0"}), "CPUExecutionProvider"],
                    ultralytics_providers, ["CPUExecutionProvider"]]


def _available(name: str) -> None:
    variant = REGISTRY[name]
    reason = variant.unavailable()
    if reason:
        pytest.skip(f"{name}: {reason}")


@pytest.mark.gpu
@pytest.mark.parametrize("name, class_tol", [("ort-cuda-fp32", 1e-4), ("ort-cuda-int8", 0.05), ("pt-fp16", 0.01)])
def test_cuda_rows_run_on_the_gpu_and_agree_with_the_cpu_baseline(suite, name, class_tol):
    """FP32 on the CUDA provider reproduces the CPU's FP32 outputs (TF32 off); the Q/DQ INT8 ONNX and
    FP16 PyTorch stay close to them."""
    _available(name)
    x = suite.inputs.sample_input()
    ref = suite.builder.runner("onnx-fp32")(x)[0]
    run = suite.builder.runner(name)
    out = run(x)[0]
    out = out.float().cpu().numpy() if hasattr(out, "cpu") else out
    assert out.shape == ref.shape
    err = np.abs(out[:, 4:] - ref[:, 4:])
    assert (err.max() if name == "ort-cuda-fp32" else err.mean()) < class_tol, (name, err.max(), err.mean())
    if name.startswith("ort-cuda"):
        assert run.runs_as["provider"] == "CUDAExecutionProvider" and "TF32 off" in run.runs_as["precision"]
