"""ONNX Runtime: the session every ONNX variant is timed and validated in (CPU, or the CUDA provider).

The FP32 ONNX (the baseline) is exported by :func:`quant.build.export.onnx_fp32`; INT8 models are written by
:mod:`quant.build.qdq` and :mod:`quant.build.auto_qdq`; this module only runs them.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from quant.backends.base import Backend
from quant.build.variant import Provider
from quant.measure.latency import ort_session_options

# ONNX Runtime's CUDA provider rounds the inputs of float convolutions and matrix products to TF32 by
# default on Ampere and newer GPUs (10-bit mantissa): a row that says FP32 computes FP32.
CUDA_OPTIONS = {"use_tf32": "0"}


def _pin_cuda(providers: list | None) -> list | None:
    """``providers`` as given, with :data:`CUDA_OPTIONS` added to the CUDA provider's own options."""
    pinned = []
    for p in providers or []:
        name, opts = (p, {}) if isinstance(p, str) else p
        pinned.append((name, {**opts, **CUDA_OPTIONS}) if name == Provider.CUDA else p)
    return pinned or providers


def providers(variant) -> list:
    """The execution providers of the variant's sessions, with the options that pin its precision."""
    wanted = variant.runtime.provider
    return [(wanted.value, dict(CUDA_OPTIONS))] if wanted == Provider.CUDA else [wanted.value]


class OnnxRuntime(Backend):
    name = "onnxruntime"

    def unavailable(self, variant=None) -> str | None:
        try:
            import onnxruntime
        except ImportError as e:
            return f"onnxruntime is not installed ({e})"
        wanted = variant.runtime.provider if variant is not None else Provider.CPU
        if wanted.value not in onnxruntime.get_available_providers():
            return f"ONNX Runtime has no {wanted.value} here (install onnxruntime-gpu on a CUDA machine)"
        if wanted == Provider.CUDA:
            import torch

            if not torch.cuda.is_available():
                return "no CUDA GPU visible to torch"
        return None

    def eval_args(self, variant, artifact) -> dict:
        """Ultralytics' validator picks ONNX Runtime's CUDA provider when given a GPU device."""
        return {"device": "0" if variant.runtime.provider == Provider.CUDA else "cpu"}

    @contextlib.contextmanager
    def eval_context(self, variant):
        """CUDA rows: the sessions Ultralytics' validator opens compute in the timed session's precision."""
        if variant.runtime.provider != Provider.CUDA:
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

    def runner(self, variant, artifact: Path, ctx):
        import onnxruntime as ort

        so, executed = ort_session_options(ctx.threads), None
        if variant.runtime.provider == Provider.CUDA:
            sess = ort.InferenceSession(str(artifact), so, providers=providers(variant))
        else:  # what runs: the CPU provider's graph after its fusions, written as the session is made
            with tempfile.TemporaryDirectory() as tmp:
                so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
                so.log_severity_level = 3  # its "hardware specific" warning: known, the file is only read here
                sess = ort.InferenceSession(str(artifact), so, providers=providers(variant))
                executed = executed_graph(so.optimized_model_filepath)
        name = sess.get_inputs()[0].name
        run = lambda x: sess.run(None, {name: x})  # noqa: E731
        provider = sess.get_providers()[0]
        if provider == Provider.CUDA:
            tf32 = sess.get_provider_options()[provider].get("use_tf32")
            precision = f"as stored, float in FP32 on the GPU (TF32 {'on' if tf32 == '1' else 'off'})"
        else:
            precision = "as stored (ONNX Runtime's CPU provider computes FP32 in FP32)"
        run.executed = executed
        if provider == Provider.CPU:
            from quant.measure.profile import ort_breakdown

            run.profile = lambda x: ort_breakdown(artifact, {name: x}, ctx.threads)
        run.runs_as = {"precision": precision, "provider": provider,
                       "intra_op_num_threads": sess.get_session_options().intra_op_num_threads}
        return run


def executed_graph(optimized) -> dict:
    """The graph ONNX Runtime's CPU provider runs (``optimized``: the file a session's
    ``optimized_model_filepath`` wrote), after its fusions: a Q/DQ pair around a convolution becomes one
    ``QLinearConv`` where it can; where it cannot, the convolution runs in float between a DequantizeLinear and a
    QuantizeLinear (INT8 asked, float run). Its convolutions by kernel, and its Q/DQ nodes."""
    from collections import Counter

    import onnx

    from quant.measure.profile import ORT_FLOAT_CONVS, ORT_INT8_CONVS  # its kernels by what they compute in

    ops = Counter(n.op_type for n in onnx.load(str(optimized)).graph.node)
    return {"convs_int8": sum(ops[k] for k in ORT_INT8_CONVS), "convs_float": sum(ops[k] for k in ORT_FLOAT_CONVS),
            "quantize": ops["QuantizeLinear"], "dequantize": ops["DequantizeLinear"],
            "kernels": dict(ops.most_common(8))}


ONNXRUNTIME = OnnxRuntime()
