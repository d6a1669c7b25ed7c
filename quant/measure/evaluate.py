"""Accuracy of any artifact Ultralytics can load, with Ultralytics' own validator.

Every format is validated the same way: batch 1, square letterbox (``rect=False``; .pt and ONNX
then see identical inputs and agree exactly), CPU unless told otherwise. Boxes are scored as a
deployed model returns them, clipped to the image (:func:`clip_to_image`).
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Accuracy:
    precision: float
    recall: float
    map50: float
    map50_95: float
    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float

    def to_dict(self) -> dict:
        return asdict(self)


def validate(artifact: str | os.PathLike, data_yaml: str | os.PathLike, imgsz: int, project: str | os.PathLike,
             name: str = "val", device: str = "cpu", half: bool = False, stats_out: Path | None = None,
             save_detections: bool = False, flip_lowest_bit: bool = False) -> Accuracy:
    """Ultralytics' validator on ``data_yaml``. ``stats_out``: also save its per-image matching statistics
    there (:class:`quant.measure.imagestats.ImageStats`, ``.npz``), from which intervals of differences are drawn.
    ``save_detections``: also write every detection the validator scored, with its confidence, to
    ``project/name/labels/<image stem>.txt`` (YOLO format, normalized to the image). ``flip_lowest_bit``:
    score the model on its inputs with every pixel value's lowest bit flipped (:func:`flip_input_lowest_bit`)."""
    from quant.util.offline import ultralytics_yolo

    YOLO = ultralytics_yolo()
    model = YOLO(str(artifact), task="detect")
    per_image: list[dict] = []
    model.add_callback("on_val_start", clip_to_image)
    if flip_lowest_bit:
        model.add_callback("on_val_start", flip_input_lowest_bit)
    if stats_out is not None:
        model.add_callback("on_val_batch_end", lambda validator: _collect(validator, per_image))
    with contextlib.redirect_stdout(io.StringIO()):
        m = model.val(
            data=str(data_yaml), imgsz=imgsz, batch=1, rect=False, device=device, half=half, plots=False, verbose=False,
            save_json=False, project=str(Path(project).resolve()), name=name, exist_ok=True, workers=0,
            save_txt=save_detections, save_conf=save_detections)
    if stats_out is not None:
        from quant.measure.imagestats import ImageStats

        ImageStats.from_images(per_image).save(stats_out)
    s = m.speed
    return Accuracy(float(m.box.mp), float(m.box.mr), float(m.box.map50), float(m.box.map),
                    float(s.get("preprocess", 0.0)), float(s.get("inference", 0.0)), float(s.get("postprocess", 0.0)))


def clip_to_image(validator) -> None:
    """Score predicted boxes clipped to the image, as ``predict()`` returns them and as labels are.

    Ultralytics' validator matches predictions with labels in the letterboxed input, where a predicted
    box may reach into the padding or past the border while labels never do; unclipped, the FP32
    model scored 97.3 mAP50-95 against its own detections instead of the ceiling 99.5 (a 147-class
    model on photos). Clipping only cuts what lies outside the image, so it never lowers a box's IoU
    with a label."""
    update = validator.update_metrics

    def clipped(preds, batch):
        for si, pred in enumerate(preds):
            (rh, rw), (left, top) = batch["ratio_pad"][si]
            h0, w0 = batch["ori_shape"][si]
            boxes = pred["bboxes"]
            boxes[:, 0::2] = boxes[:, 0::2].clamp(left, left + w0 * rw)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(top, top + h0 * rh)
        return update(preds, batch)

    validator.update_metrics = clipped


def flip_input_lowest_bit(validator) -> None:
    """Change the validator's letterboxed input images by 1 in 255: every pixel value's lowest bit flipped
    (padding included), before it becomes the model's float input. Nothing is written to disk."""
    preprocess = validator.preprocess

    def flipped(batch):
        batch["img"] = batch["img"] ^ 1  # uint8 at this point
        return preprocess(batch)

    validator.preprocess = flipped


def _collect(validator, per_image: list[dict]) -> None:
    """After each batch: the images it added to the validator's statistics (one entry per image)."""
    stats = validator.metrics.stats
    for i in range(len(per_image), len(stats["conf"])):
        per_image.append({k: stats[k][i] for k in ("tp", "conf", "pred_cls", "target_cls")})
