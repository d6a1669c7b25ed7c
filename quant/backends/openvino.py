"""OpenVINO on CPU: the FP32 IR and NNCF post-training INT8, both converted from the suite's ONNX.

The artifact is an Ultralytics-style ``model_openvino_model/`` folder (``model.xml``, ``model.bin``,
``metadata.yaml``), so ``YOLO(folder).val()`` loads it. OpenVINO names its ops after the ONNX
nodes, so the float scope resolved on the ONNX graph is NNCF's ``IgnoredScope`` as it is.
"""

from __future__ import annotations

import importlib
from pathlib import Path

FOLDER = "model_openvino_model"


def unavailable(variant=None) -> str | None:
    try:
        import openvino  # noqa: F401
    except ImportError as e:
        return f"openvino is not installed (pip install -e '.[openvino]'): {e}"
    if variant is not None and variant.precision == "int8":
        try:
            import nncf  # noqa: F401
        except ImportError as e:
            return f"nncf is not installed (pip install -e '.[openvino]'): {e}"
    return None


def save_ir(ov_model, onnx_path: Path, out_dir: Path) -> Path:
    """An Ultralytics-style IR folder (model.xml/.bin + metadata.yaml) that ``YOLO(folder)`` loads."""
    import openvino as ov
    import yaml

    from quant.model import onnx_metadata

    folder = out_dir / FOLDER
    folder.mkdir()
    ov.save_model(ov_model, str(folder / "model.xml"), compress_to_fp16=False)
    (folder / "metadata.yaml").write_text(yaml.safe_dump(onnx_metadata(onnx_path), sort_keys=False))
    return folder


def ov_names_of(onnx_nodes, ov_names) -> list[str]:
    """OpenVINO ops converted from the given ONNX nodes. The ONNX frontend keeps node names, but
    splits a biased Conv into ``<name>/WithoutBiases`` (the Convolution) plus ``<name>`` (the Add)."""
    wanted = set(onnx_nodes)
    return sorted(n for n in ov_names if n in wanted or n.removesuffix("/WithoutBiases") in wanted)


def builders(variant) -> list[str]:
    """Modules that build this variant besides this one (NNCF INT8); part of its cache key."""
    return ["quant.nncf_int8"] if variant.precision == "int8" else []


def build(variant, ctx, out_dir: Path):
    import openvino as ov

    for module in builders(variant):
        return importlib.import_module(module).build(variant, ctx, out_dir)
    if variant.precision != "fp32":
        raise ValueError(f"openvino backend cannot build precision '{variant.precision}'")
    src = ctx.artifact(variant.source)
    return save_ir(ov.convert_model(str(src)), src, out_dir), {}


def runner(variant, artifact: Path, ctx):
    import openvino as ov

    compiled = ov.Core().compile_model(str(Path(artifact) / "model.xml"), "CPU", {"PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    return lambda x: request.infer({0: x})
