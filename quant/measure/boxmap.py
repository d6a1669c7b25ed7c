"""mAP50-95 straight from a YOLO detector's raw output, for loops that hold a model in memory and cannot hand
Ultralytics' validator a file (NNCF's accuracy control passes its validation function a compiled model).

Inputs are the letterboxed tensors of :mod:`quant.calibration.readers`; boxes are compared in those
letterboxed pixels. Predictions go through Ultralytics' own NMS as its validator runs it (confidence
0.001, IoU 0.7, several labels per box), and are matched to the targets greedily by IoU, one target per
prediction, at the ten IoU thresholds 0.50:0.95, and scored by the suite's own per-image statistics
(:class:`quant.measure.imagestats.ImageStats`, Ultralytics' AP). The targets are the image's labels where it
has a label file, or another model's detections with confidence >= ``quant.measure.fidelity.CONF``
(label-free fidelity, as the suite scores it).

May import: quant.model, quant.util.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quant.model.preflight import label_path

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
NMS = dict(conf_thres=0.001, iou_thres=0.7, multi_label=True, max_det=300)  # Ultralytics' validator's NMS


def detections(raw: np.ndarray, conf: float = NMS["conf_thres"]) -> np.ndarray:
    """(n, 6) boxes x1, y1, x2, y2, confidence, class of one image's raw output ``(1, 4 + classes, anchors)``."""
    import torch

    from quant.util.offline import ultralytics_module

    nms = ultralytics_module("utils.nms").non_max_suppression
    out = nms(torch.from_numpy(np.asarray(raw, dtype=np.float32)), **{**NMS, "conf_thres": conf})[0]
    return out.numpy()


def letterboxed_labels(image: Path, imgsz: int) -> np.ndarray | None:
    """(n, 5) class, x1, y1, x2, y2 of ``image``'s YOLO labels in the letterboxed ``imgsz`` square (Ultralytics'
    ``LetterBox(auto=False)``: scaled to fit, centred), or None when it has no label file."""
    path = label_path(image)
    if not path.is_file():
        return None
    import cv2

    h, w = cv2.imread(str(image), cv2.IMREAD_UNCHANGED).shape[:2]
    r = min(imgsz / h, imgsz / w)
    left = round((imgsz - round(w * r)) / 2 - 0.1)
    top = round((imgsz - round(h * r)) / 2 - 0.1)
    rows = np.array([ln.split()[:5] for ln in path.read_text().splitlines() if ln.strip()], dtype=np.float64)
    if not len(rows):
        return np.zeros((0, 5))
    cls, x, y, bw, bh = rows.T
    x1, y1 = (x - bw / 2) * w * r + left, (y - bh / 2) * h * r + top
    return np.stack([cls, x1, y1, x1 + bw * w * r, y1 + bh * h * r], axis=1)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of xyxy boxes."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def correct(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(len(pred), 10) whether each prediction matches a target of its class at each IoU threshold, each target
    matched at most once, by the highest IoU first (as Ultralytics' validator matches)."""
    hits = np.zeros((len(pred), len(IOU_THRESHOLDS)), dtype=bool)
    if not len(pred) or not len(target):
        return hits
    iou = _iou(target[:, 1:5], pred[:, :4]) * (target[:, :1] == pred[None, :, 5])
    for i, t in enumerate(IOU_THRESHOLDS):
        m = np.argwhere(iou >= t)
        if len(m):
            m = m[iou[m[:, 0], m[:, 1]].argsort()[::-1]]
            m = m[np.unique(m[:, 1], return_index=True)[1]]
            m = m[np.unique(m[:, 0], return_index=True)[1]]
            hits[m[:, 1], i] = True
    return hits


def map50_95(preds: list[np.ndarray], targets: list[np.ndarray]) -> float:
    """mAP50-95 (0-1) of per-image predictions (:func:`detections`) against per-image targets ((n, 5) class and
    xyxy, from :func:`letterboxed_labels` or :func:`as_targets`), computed as the suite computes it from the
    validator's statistics (:meth:`quant.measure.imagestats.ImageStats.map50_95`); 0.0 without any target."""
    from quant.measure.imagestats import ImageStats

    return ImageStats.from_images([{"tp": correct(p, t), "conf": p[:, 4], "pred_cls": p[:, 5], "target_cls": t[:, 0]}
                                   for p, t in zip(preds, targets, strict=True)]).map50_95()


def as_targets(dets: np.ndarray, conf: float) -> np.ndarray:
    """Another model's detections with confidence >= ``conf`` as targets: (n, 5) class, x1, y1, x2, y2."""
    keep = dets[dets[:, 4] >= conf]
    return np.concatenate([keep[:, 5:6], keep[:, :4]], axis=1)


@dataclass(frozen=True)
class Scorer:
    """The targets of a fixed list of images (labels, or a reference model's detections): call it with the
    raw outputs of a model on the same images for its mAP50-95 (0-1)."""

    targets: tuple[np.ndarray, ...]
    labelled: bool

    def __call__(self, raws) -> float:
        return map50_95([detections(r) for r in raws], list(self.targets))

    @classmethod
    def for_images(cls, files: list[Path], imgsz: int, reference_raws) -> Scorer:
        """Labels where every image has a label file, else the reference model's outputs (an iterable of raw
        outputs on ``files``, only read in that case) as label-free targets."""
        from quant.measure.fidelity import CONF

        labels = [letterboxed_labels(f, imgsz) for f in files]
        if all(lb is not None for lb in labels):
            return cls(tuple(labels), True)
        return cls(tuple(as_targets(detections(r), CONF) for r in reference_raws), False)
