"""OpenVINO on CPU: the FP32 IR and NNCF post-training INT8, both converted from the suite's ONNX.

The artifact is an Ultralytics-style ``model_openvino_model/`` folder (``model.xml``, ``model.bin``,
``metadata.yaml``), so ``YOLO(folder).val()`` loads it. OpenVINO names its ops after the ONNX
nodes, so the float scope resolved on the ONNX graph is NNCF's ``IgnoredScope`` as it is.
"""

from __future__ import annotations

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


def _save(ov_model, onnx_path: Path, out_dir: Path) -> Path:
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


def build(variant, ctx, out_dir: Path):
    import onnx
    import openvino as ov

    src = ctx.artifact(variant.source)
    ov_model = ov.convert_model(str(src))
    if variant.precision == "fp32":
        return _save(ov_model, src, out_dir), {}
    if variant.precision != "int8":
        raise ValueError(f"openvino backend cannot build precision '{variant.precision}'")
    import nncf

    from quant.graph import conv_layers

    graph = onnx.load(str(src))
    float_nodes = ctx.float_nodes(variant, graph)
    ov_names = {op.get_friendly_name() for op in ov_model.get_ops()}
    reader = ctx.calibration_reader(graph.graph.input[0].name)
    quantized = nncf.quantize(
        ov_model, nncf.Dataset(reader.tensors()), subset_size=len(reader),
        preset=getattr(nncf.QuantizationPreset, variant.setting("preset", "mixed").upper()),
        fast_bias_correction=variant.setting("fast_bias_correction", False),
        ignored_scope=nncf.IgnoredScope(names=ov_names_of(float_nodes, ov_names), validate=False))
    convs = conv_layers(graph)
    return _save(quantized, src, out_dir), {
        "float_nodes": float_nodes, "calibration_images": len(reader), "convs": len(convs),
        "int8_convs": sum(1 for n in convs if n not in set(float_nodes))}


def runner(variant, artifact: Path, ctx):
    import openvino as ov

    compiled = ov.Core().compile_model(str(Path(artifact) / "model.xml"), "CPU", {"PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    return lambda x: request.infer({0: x})
