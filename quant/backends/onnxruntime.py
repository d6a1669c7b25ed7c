"""ONNX Runtime: the FP32 export (the baseline), and the session every ONNX variant is timed in.

INT8 models are built by :mod:`quant.build.qdq` (registered method and float set) or :mod:`quant.build.auto_qdq`
(searched recipe); :func:`builders` names which, and the build is dispatched through that same value,
so each variant's cache key covers exactly the code that builds it (:mod:`quant.run.codehash`).
"""

from __future__ import annotations

import contextlib
import importlib
import shutil
from pathlib import Path

from quant.build.context import BuildContext
from quant.measure.latency import ort_session_options


def unavailable(variant=None) -> str | None:
    try:
        import onnxruntime
    except ImportError as e:
        return f"onnxruntime is not installed ({e})"
    wanted = variant.setting("provider", "CPUExecutionProvider") if variant is not None else "CPUExecutionProvider"
    if wanted not in onnxruntime.get_available_providers():
        return f"ONNX Runtime has no {wanted} here (install onnxruntime-gpu on a CUDA machine)"
    if wanted == "CUDAExecutionProvider":
        import torch

        if not torch.cuda.is_available():
            return "no CUDA GPU visible to torch"
    return None


def eval_args(variant, artifact) -> dict:
    """Ultralytics' validator picks ONNX Runtime's CUDA provider when given a GPU device."""
    return {"device": "0" if variant.setting("provider") == "CUDAExecutionProvider" else "cpu"}


# ONNX Runtime's CUDA provider rounds the inputs of float convolutions and matrix products to TF32 by
# default on Ampere and newer GPUs (10-bit mantissa): a row that says FP32 computes FP32.
CUDA_OPTIONS = {"use_tf32": "0"}


def providers(variant) -> list:
    """The execution providers of the variant's sessions, with the options that pin its precision."""
    wanted = variant.setting("provider", "CPUExecutionProvider")
    return [(wanted, dict(CUDA_OPTIONS))] if wanted == "CUDAExecutionProvider" else [wanted]


def _pin_cuda(providers: list | None) -> list | None:
    """``providers`` as given, with :data:`CUDA_OPTIONS` added to the CUDA provider's own options."""
    pinned = []
    for p in providers or []:
        name, opts = (p, {}) if isinstance(p, str) else p
        pinned.append((name, {**opts, **CUDA_OPTIONS}) if name == "CUDAExecutionProvider" else p)
    return pinned or providers


@contextlib.contextmanager
def eval_context(variant):
    """CUDA rows: the sessions Ultralytics' validator opens compute in the timed session's precision."""
    if variant.setting("provider") != "CUDAExecutionProvider":
        yield
        return
    import onnxruntime

    original = onnxruntime.InferenceSession

    class Pinned(original):
        def __init__(self, path_or_bytes, sess_options=None, providers=None, **kw):
            super().__init__(path_or_bytes, sess_options, providers=_pin_cuda(providers), **kw)

    onnxruntime.InferenceSession = Pinned
    try:
        yield
    finally:
        onnxruntime.InferenceSession = original


def builders(variant) -> list[str]:
    """Modules that build this variant besides this one (their code is part of its cache key)."""
    if variant.precision != "int8":
        return []
    return ["quant.build.auto_qdq"] if variant.search else ["quant.build.qdq"]


def build(variant, ctx: BuildContext, out_dir: Path):
    for module in builders(variant):
        return importlib.import_module(module).build(variant, ctx, out_dir)
    out = out_dir / "model.onnx"
    if variant.precision == "fp32" and variant.source:  # the same model on another execution provider
        shutil.copyfile(ctx.artifact(variant.source), out)
        return out, {}
    if variant.precision == "fp32":
        from quant.model.weights import export_onnx

        export_onnx(ctx.weights, out, ctx.imgsz, opset=variant.setting("opset", 13))
        return out, {}
    raise ValueError(f"onnxruntime backend cannot build precision '{variant.precision}'")


def runner(variant, artifact: Path, ctx: BuildContext):
    import onnxruntime as ort

    threads = ctx.threads
    sess = ort.InferenceSession(str(artifact), ort_session_options(threads), providers=providers(variant))
    name = sess.get_inputs()[0].name
    run = lambda x: sess.run(None, {name: x})  # noqa: E731
    provider = sess.get_providers()[0]
    if provider == "CUDAExecutionProvider":
        tf32 = sess.get_provider_options()[provider].get("use_tf32")
        precision = f"as stored, float in FP32 on the GPU (TF32 {'on' if tf32 == '1' else 'off'})"
    else:
        precision = "as stored (ONNX Runtime's CPU provider computes FP32 in FP32)"
    run.runs_as = {"precision": precision, "provider": provider,
                   "intra_op_num_threads": sess.get_session_options().intra_op_num_threads}
    return run
