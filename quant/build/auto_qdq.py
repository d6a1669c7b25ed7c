"""The automatic INT8 recipe (:mod:`quant.search.recipe`) for ONNX Q/DQ variants: candidates written by
:func:`quant.build.qdq.write_qdq` from the suite's calibration ranges, scored by Ultralytics' validator on the
search images (calibration-split images after the calibration ones: held out from calibration, and
val stays held out for the benchmark row, the confirmation). The ONNX Runtime and TensorRT ``*-int8-auto``
variants name :func:`build` as their builder.
"""

from __future__ import annotations

import functools
from pathlib import Path

from quant.build import qdq
from quant.build.context import BuildContext
from quant.build.variant import Format, Provider
from quant.calibration.ranges import activation_ranges
from quant.calibration.readers import reader_for
from quant.model.graph import load_onnx
from quant.model.preflight import label_path
from quant.search.recipe import DENSE_BELOW_BOXES, Candidates, auto_quantize
from quant.search.settings import sensitivity_images

DENSE_IMAGES = 64  # search images the output error is measured on (inputs held in memory)


def build(variant, ctx: BuildContext, out_dir: Path):
    """Search the recipe for ``variant`` (an ONNX Q/DQ INT8 variant), then write it as ``out_dir/model.onnx``."""
    src = ctx.artifact(variant.source)
    base_float = ctx.float_nodes(variant, load_onnx(src))
    files = ctx.search_files(variant.search.images)
    presets = variant.float_scope.presets if variant.float_scope else ()
    candidates = qdq_candidates(variant, ctx, src, files, out_dir)
    method, float_nodes, info = auto_quantize(src, out_dir, variant.search, base_float, candidates, variant.name,
                                              presets, search_images=len(files))
    return qdq.quantize_qdq(src, out_dir / "model.onnx", variant, ctx, method=method, float_nodes=float_nodes,
                            info=info)


def qdq_candidates(variant, ctx: BuildContext, src: Path, files: list[Path], work: Path) -> Candidates:
    """Q/DQ candidates of ``variant`` calibrated on the suite's calibration images, scored by the validator
    on the search ``files`` (fidelity against ``src``'s own detections, and their labels where they have them)."""
    from quant.measure.evaluate import validate
    from quant.measure.fidelity import pseudo_dataset

    labelled = search_data(ctx, files, work)
    pseudo = pseudo_dataset(src, files, work / "search-fidelity", ctx.names, ctx.imgsz)  # src: the FP32 model
    score = lambda path, data: validate(path, data, ctx.imgsz, ctx.scratch, f"{variant.name}-search").map50_95  # noqa: E731
    input_name = variant_input(src)
    feeds = list(reader_for(ctx.calibration_files(), ctx.imgsz, input_name))
    correction = qdq.correction_feeds(variant, ctx.calibration_files(), ctx.imgsz, input_name)
    boxes = sum(len(p.read_text().split("\n")) - 1 for p in (pseudo.parent / "labels").glob("*.txt"))
    dense = None
    if boxes < DENSE_BELOW_BOXES:  # few boxes: the estimate also reads the raw output (quant.search.recipe._Estimate)
        from quant.search.sensitivity import OutputError

        dense = OutputError(src, list(reader_for(files[:DENSE_IMAGES], ctx.imgsz, input_name)))
    return Candidates(
        # every candidate of a method reuses its ranges (entropy's take seconds to derive from the statistics)
        ranges=functools.cache(lambda method: activation_ranges(src, ctx.calibration_files(), ctx.imgsz, method)),
        write=lambda path, ranges, nodes: qdq.write_qdq(src, path, variant, ranges, nodes, correction),
        write_unrefined=(lambda path, ranges, nodes: qdq.write_qdq(src, path, variant, ranges, nodes))
        if correction is not None else None,
        fidelity=lambda path: score(path, pseudo),
        labelled=(lambda path: score(path, labelled)) if labelled else None,
        feeds=feeds[: sensitivity_images(variant.search.sensitivity_images, ctx.imgsz)],
        output_error=dense, reference_boxes=boxes, **timed_on_cpu(variant, ctx, feeds[0]))


def timed_on_cpu(variant, ctx: BuildContext, feed: dict) -> dict:
    """The measured cost model (:mod:`quant.search.layertime`) where the variant runs here: ONNX Runtime on the
    CPU, with the benchmark's thread count; other targets (TensorRT on a GPU) keep counting MACs."""
    runs = variant.search.profile_runs
    if variant.format != Format.ONNX or variant.runtime.provider != Provider.CPU or not runs:
        return {}
    from quant.search.layertime import int8_savings

    return {"layer_savings": lambda fp32, int8: int8_savings(fp32, int8, feed, ctx.threads, runs),
            "cost_model": f"kernel times measured by ONNX Runtime's profiler on this CPU ({runs} runs, "
                          f"{ctx.threads or 'default'} threads)"}


def search_data(ctx: BuildContext, files: list[Path], work: Path) -> Path | None:
    """A data YAML over ``files`` with their own labels, or None when they have none."""
    if not any(label_path(f).is_file() for f in files):
        return None
    from quant.model.data import write_data_yaml

    (work / "search.txt").write_text("".join(f"{f.resolve()}\n" for f in files))
    return write_data_yaml(work / "search.yaml", work, (work / "search.txt").resolve(), ctx.names)


def variant_input(src: Path) -> str:
    import onnx

    return onnx.load(str(src), load_external_data=False).graph.input[0].name
