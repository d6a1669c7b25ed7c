"""OpenVINO IR folders: writing one Ultralytics loads, reading back which convolutions run INT8, and the
settings an IR is compiled with where it is timed.

The artifact is an Ultralytics-style ``model_openvino_model/`` folder (``model.xml``, ``model.bin``,
``metadata.yaml``), so ``YOLO(folder).val()`` loads it. OpenVINO names its ops after the ONNX nodes, so the
float scope resolved on the ONNX graph is NNCF's ``IgnoredScope`` as it is (:func:`ov_names_of`).

Precision: OpenVINO's CPU plugin runs a model's float parts in BF16 on CPUs that support it unless told
otherwise, so every row pins ``INFERENCE_PRECISION_HINT`` (:func:`inference_precision`): ``f32`` for FP32
and INT8 rows (their float layers stay FP32), ``bf16`` for the BF16 rows. Ultralytics' own exports (peers)
run as Ultralytics runs them: no hint, the CPU's default.
"""

from __future__ import annotations

from pathlib import Path

from quant.build.context import BuildContext, needs

FOLDER = "model_openvino_model"


_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}  # OpenVINO's names for the precisions


def inference_precision(variant) -> str | None:
    """The INFERENCE_PRECISION_HINT the variant runs with (None: the CPU's default, for peers): the one its
    runtime names, else ``bf16`` for a BF16 row and ``f32`` for every other."""
    if variant.peer:
        return None
    wanted = variant.runtime.inference_precision or ("bf16" if variant.precision == "bf16" else "fp32")
    return _HINTS[wanted]


def save_ir(ov_model, onnx_path: Path, out_dir: Path) -> Path:
    """An Ultralytics-style IR folder (model.xml/.bin + metadata.yaml) that ``YOLO(folder)`` loads."""
    import openvino as ov
    import yaml

    from quant.model.weights import onnx_metadata

    folder = out_dir / FOLDER
    folder.mkdir()
    ov.save_model(ov_model, str(folder / "model.xml"), compress_to_fp16=False)
    (folder / "metadata.yaml").write_text(yaml.safe_dump(onnx_metadata(onnx_path), sort_keys=False))
    return folder


def ov_names_of(onnx_nodes, ov_names) -> list[str]:
    """OpenVINO ops converted from the given ONNX nodes (the ONNX frontend keeps node names; see
    :func:`_onnx_name`)."""
    wanted = set(onnx_nodes)
    return sorted(n for n in ov_names if n in wanted or _onnx_name(n) in wanted)


def ir_int8_convs(folder: Path) -> list[str]:
    """Convolutions of an IR that read INT8 (their input from a FakeQuantize, possibly through ops that
    only move values, e.g. the Concat or Split NNCF quantizes once for every convolution behind it), by
    their ONNX names."""
    import openvino as ov

    from quant.model.graph import reads_quantized

    def sources(node) -> list:
        return [node.input_value(i).get_node() for i in range(node.get_input_size())]

    return [_onnx_name(op.get_friendly_name())
            for op in ov.Core().read_model(str(Path(folder) / "model.xml")).get_ops()
            if op.get_type_name() in ("Convolution", "GroupConvolution")
            and reads_quantized(sources(op)[0], lambda n: n.get_type_name(), sources, "FakeQuantize")]


def _onnx_name(ov_name: str) -> str:
    """The ONNX node an OpenVINO op was converted from: the frontend splits a biased Conv into
    ``<name>/WithoutBiases`` (the Convolution) plus ``<name>`` (the Add)."""
    return ov_name.removesuffix("/WithoutBiases")


def runtime_config(variant, threads: int | None = None) -> dict:
    """What the timed model is compiled with: latency mode, the pinned precision, the thread count."""
    cfg = {"PERFORMANCE_HINT": "LATENCY"}
    if inference_precision(variant):
        cfg["INFERENCE_PRECISION_HINT"] = inference_precision(variant)
    if threads:
        cfg["INFERENCE_NUM_THREADS"] = int(threads)
    return cfg


@needs("openvino", extra="openvino")
def convert(variant, ctx: BuildContext, out_dir: Path) -> tuple[Path, dict]:
    """The source ONNX converted to an OpenVINO IR as it is (FP32 weights; BF16 rows differ only in how it runs)."""
    import openvino as ov

    src = ctx.artifact(variant.source)
    return save_ir(ov.convert_model(str(src)), src, out_dir), {}
