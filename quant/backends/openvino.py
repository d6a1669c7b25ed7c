"""OpenVINO on CPU: the runtime every IR variant is timed and validated in.

IRs are written by :mod:`quant.build.ir` (FP32) and :mod:`quant.build.nncf_ir` (NNCF INT8). Every row pins
``INFERENCE_PRECISION_HINT`` in its timed model *and* in the validator (:meth:`OpenVino.eval_context`), as
:func:`quant.build.ir.inference_precision` says; the BF16 rows skip on CPUs without BF16.
"""

from __future__ import annotations

import contextlib
from functools import lru_cache
from pathlib import Path

from quant.backends.base import Backend
from quant.build.ir import inference_precision, runtime_config


@lru_cache(maxsize=1)
def cpu_capabilities() -> tuple[str, ...]:
    import openvino as ov

    return tuple(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


class OpenVino(Backend):
    name = "openvino"

    def unavailable(self, variant=None) -> str | None:
        try:
            import openvino  # noqa: F401
        except ImportError as e:
            return f"openvino is not installed (pip install -e '.[openvino]'): {e}"
        if variant is not None and inference_precision(variant) == "bf16" and "BF16" not in cpu_capabilities():
            return (f"this CPU runs no BF16 in OpenVINO (its capabilities: {', '.join(cpu_capabilities())}); "
                    "BF16 rows need AVX512_BF16 or AMX")
        return None

    def inference_precision(self, variant) -> str | None:
        return inference_precision(variant)

    @contextlib.contextmanager
    def eval_context(self, variant):
        """Pin the variant's inference precision in the models Ultralytics' validator compiles."""
        import openvino as ov

        hint = inference_precision(variant)
        if hint is None:
            yield
            return
        original = ov.Core.compile_model

        def pinned(self, model, device_name=None, config=None, **kw):
            return original(self, model, device_name, {**(config or {}), "INFERENCE_PRECISION_HINT": hint}, **kw)

        ov.Core.compile_model = pinned
        try:
            yield
        finally:
            ov.Core.compile_model = original

    def runner(self, variant, artifact: Path, ctx):
        import openvino as ov

        from quant.measure.profile import openvino_breakdown

        compiled = ov.Core().compile_model(str(Path(artifact) / "model.xml"), "CPU",
                                           runtime_config(variant, ctx.threads))
        request = compiled.create_infer_request()
        run = lambda x: request.infer({0: x})  # noqa: E731
        run.runs_as = {k: str(compiled.get_property(k)) for k in ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS")}
        run.executed = executed_graph(compiled)
        run.profile = lambda x: openvino_breakdown(artifact, {"x": x}, ctx.threads, runtime_config(variant, ctx.threads))
        return run


def executed_graph(compiled) -> dict:
    """What the CPU plugin compiled the model into (its runtime graph: each layer's ``layerType`` and
    ``runtimePrecision``): its convolutions by the precision they run in, and the reorders (layout or precision
    conversions) between layers."""
    from collections import Counter

    layers = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        kind = info["layerType"].astype(str) if "layerType" in info else "?"
        precision = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "?"
        layers[(kind, precision)] += 1
    convs = {p: n for (k, p), n in layers.items() if k == "Convolution"}
    return {"convs_int8": sum(n for p, n in convs.items() if p in ("u8", "i8")),
            "convs_float": sum(n for p, n in convs.items() if p not in ("u8", "i8")),
            "convs_by_precision": convs, "reorders": sum(n for (k, _), n in layers.items() if k == "Reorder")}


OPENVINO = OpenVino()
