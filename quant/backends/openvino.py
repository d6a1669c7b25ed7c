"""OpenVINO on CPU: the FP32 IR and NNCF post-training INT8, both converted from the suite's ONNX.

The artifact is an Ultralytics-style ``model_openvino_model/`` folder (``model.xml``, ``model.bin``,
``metadata.yaml``), so ``YOLO(folder).val()`` loads it. OpenVINO names its ops after the ONNX
nodes, so the float scope resolved on the ONNX graph is NNCF's ``IgnoredScope`` as it is.

Precision: OpenVINO's CPU plugin runs a model's float parts in BF16 on CPUs that support it
unless told otherwise, so every row pins ``INFERENCE_PRECISION_HINT`` in its timed model *and* in
the validator (:func:`eval_context`): ``f32`` for FP32 and INT8 rows (their float layers stay FP32),
``bf16`` for the BF16 rows, which skip on CPUs without BF16. Ultralytics' own exports (peers) run
as Ultralytics runs them: no hint, the CPU's default.
"""

from __future__ import annotations

import contextlib
import importlib
import shutil
from functools import lru_cache
from pathlib import Path

from quant.build.context import BuildContext
from quant.build.ir import FOLDER, inference_precision, ir_int8_convs, runtime_config, save_ir


@lru_cache(maxsize=1)
def cpu_capabilities() -> tuple[str, ...]:
    import openvino as ov

    return tuple(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def unavailable(variant=None) -> str | None:
    try:
        import openvino  # noqa: F401
    except ImportError as e:
        return f"openvino is not installed (pip install -e '.[openvino]'): {e}"
    if variant is not None and variant.precision == "int8" and not _reuses_ir(variant):
        try:
            import nncf  # noqa: F401
        except ImportError as e:
            return f"nncf is not installed (pip install -e '.[openvino]'): {e}"
    if variant is not None and inference_precision(variant) == "bf16" and "BF16" not in cpu_capabilities():
        return (f"this CPU runs no BF16 in OpenVINO (its capabilities: {', '.join(cpu_capabilities())}); "
                "BF16 rows need AVX512_BF16 or AMX")
    return None


def _reuses_ir(variant) -> bool:
    """A variant that runs another OpenVINO variant's IR at another precision (e.g. ov-int8-auto in BF16)."""
    return variant.setting("inference_precision") is not None and variant.source != "onnx-fp32"


def builders(variant) -> list[str]:
    """Modules that build this variant besides this one (NNCF INT8); part of its cache key."""
    return ["quant.build.nncf_ir"] if variant.precision == "int8" and not _reuses_ir(variant) else []


def build(variant, ctx: BuildContext, out_dir: Path):
    import openvino as ov

    for module in builders(variant):
        return importlib.import_module(module).build(variant, ctx, out_dir)
    src = ctx.artifact(variant.source)
    if _reuses_ir(variant):  # the same IR; only the inference precision differs
        from quant.model.graph import int8_conv_counts, load_onnx

        shutil.copytree(src, out_dir / FOLDER)
        return out_dir / FOLDER, int8_conv_counts(load_onnx(ctx.artifact("onnx-fp32")), ir_int8_convs(out_dir / FOLDER))
    if variant.precision not in ("fp32", "bf16"):
        raise ValueError(f"openvino backend cannot build precision '{variant.precision}'")
    return save_ir(ov.convert_model(str(src)), src, out_dir), {}


@contextlib.contextmanager
def eval_context(variant):
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


def runner(variant, artifact: Path, ctx: BuildContext):
    import openvino as ov

    compiled = ov.Core().compile_model(str(Path(artifact) / "model.xml"), "CPU",
                                       runtime_config(variant, ctx.threads))
    request = compiled.create_infer_request()
    run = lambda x: request.infer({0: x})  # noqa: E731
    run.runs_as = {k: str(compiled.get_property(k)) for k in ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS")}
    return run
