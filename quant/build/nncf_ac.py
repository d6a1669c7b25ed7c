"""OpenVINO INT8 by NNCF's own accuracy control (``nncf.quantize_with_accuracy_control``): the yardstick a user
would try instead of the suite's search (``*-int8-auto``).

NNCF quantizes as ``ov-int8`` does (the variant's :class:`~quant.build.nncf_ir.NncfConfig`, its float scope),
then ranks the quantizers by how much each moves the output and reverts them to float one group at a time
until the validation metric is within ``max_drop`` of FP32's. Here it gets what the search gets:
the same calibration images, the same search images as its validation set (held out from calibration
and from val, which stays for the table's row), and the search's target drop (``SearchConfig.target_drop``
points of mAP50-95: labelled where the search images have labels, else against FP32's own detections).
The metric is :mod:`quant.measure.boxmap` (NNCF hands the validation function a compiled model, not a file).

Bounded: at most ``max_evals`` layers reverted, layers ranked on at most ``RANKING_IMAGES`` images, and past
``budget_s`` the validation function reports the FP32 metric, so NNCF stops with the model it has; the
manifest says so (``stopped``).
"""

from __future__ import annotations

import time
from pathlib import Path

from quant.build.context import BuildContext, needs
from quant.build.ir import ir_int8_convs, ov_names_of, runtime_config, save_ir
from quant.calibration.readers import reader_for
from quant.model.graph import int8_conv_counts

RANKING_IMAGES = 64  # validation images NNCF ranks the quantizers on


@needs("openvino", "nncf", extra="openvino")
def build(variant, ctx: BuildContext, out_dir: Path):
    import nncf
    import onnx
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    from quant.measure.boxmap import Scorer

    cfg = variant.search
    src = ctx.artifact(variant.source)
    graph = onnx.load(str(src), load_external_data=False)
    name = graph.graph.input[0].name
    calib = reader_for(ctx.calibration_files(), ctx.imgsz, name)
    files = ctx.search_files(cfg.images)
    val = reader_for(files, ctx.imgsz, name).tensors()
    compiled_cfg = runtime_config(variant, ctx.threads)
    core = ov.Core()
    fp32 = core.compile_model(ov.convert_model(str(src)), "CPU", compiled_cfg)
    score = Scorer.for_images(files, ctx.imgsz, (fp32(x)[0] for x in val))
    reference = score([fp32(x)[0] for x in val])

    start, state = time.monotonic(), {"validations": 0, "stopped": None}

    def validate(compiled, items) -> float:
        state["validations"] += 1
        if time.monotonic() - start > cfg.budget_s:  # NNCF stops at a metric within max_drop: the model it has
            state["stopped"] = f"time budget {cfg.budget_s:.0f} s"
            return reference
        return score([compiled(x)[0] for x in items])

    ov_model = ov.convert_model(str(src))
    ov_names = {op.get_friendly_name() for op in ov_model.get_ops()}
    quantized = nncf.quantize_with_accuracy_control(
        ov_model, nncf.Dataset(calib.tensors()), nncf.Dataset(val), validate,
        max_drop=cfg.target_drop / 100, drop_type=nncf.DropType.ABSOLUTE,
        preset=getattr(nncf.QuantizationPreset, variant.nncf.preset.value.upper()), subset_size=len(calib),
        fast_bias_correction=variant.nncf.fast_bias_correction,
        ignored_scope=nncf.IgnoredScope(names=ov_names_of(ctx.float_nodes(variant, graph), ov_names), validate=False),
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
            max_num_iterations=cfg.max_evals, ranking_subset_size=min(RANKING_IMAGES, len(val))))
    folder = save_ir(quantized, src, out_dir)
    int8 = core.compile_model(str(folder / "model.xml"), "CPU", compiled_cfg)
    final = score([int8(x)[0] for x in val])
    return folder, {
        "calibration_images": len(calib), "validation_images": len(val),
        "metric": "mAP50-95 against labels" if score.labelled else "mAP50-95 against FP32's detections (fidelity)",
        "max_drop_points": cfg.target_drop, "fp32_metric": reference, "int8_metric": final,
        "drop_points": round(100 * (reference - final), 3), "validations": state["validations"],
        "seconds": round(time.monotonic() - start, 1), "stopped": state["stopped"],
        **int8_conv_counts(graph, ir_int8_convs(folder))}
