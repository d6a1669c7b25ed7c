"""Per-image matching statistics of one validation, and how far a difference in mAP50-95 between two
models scored on the same images can be trusted.

Ultralytics' validator matches each image's predictions to its labels (true positive at each of the ten
IoU thresholds, confidence, class) and then pools all images into one mAP50-95. Kept per image, the same
statistics give that mAP for any reweighting of the images; resampling the images with replacement
(a bootstrap) and scoring both models on each resample gives an interval for their difference that
says how much of it the images can resolve. A drop of 3 points on 32 images can be noise; the interval
shows it. Both models are scored on the same resample (paired), so what the images share cancels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

_AP_X = np.linspace(0, 1, 101)  # COCO's 101 recall points, as Ultralytics interpolates
_EPS = 1e-16  # Ultralytics' epsilon in recall = tp / (labels + eps)
RESAMPLES = 200
CONFIDENCE = 0.95


@dataclass(frozen=True, eq=False)
class ImageStats:
    """All predictions and labels of one validation, each tagged with its image (0..images-1)."""

    tp: np.ndarray  # (predictions, 10) bool: a true positive at IoU 0.50, 0.55, ..., 0.95
    conf: np.ndarray  # (predictions,)
    pred_cls: np.ndarray  # (predictions,)
    pred_img: np.ndarray  # (predictions,) image index
    target_cls: np.ndarray  # (labels,)
    target_img: np.ndarray  # (labels,) image index
    images: int

    @classmethod
    def from_images(cls, per_image: list[dict]) -> "ImageStats":
        """From one dict per image with Ultralytics' keys ``tp``, ``conf``, ``pred_cls``, ``target_cls``."""
        def cat(key, dtype, width=None):
            shape = (-1, width) if width else (-1,)
            parts = [np.asarray(s[key], dtype=dtype).reshape(shape) for s in per_image]
            return np.concatenate(parts) if parts else np.zeros((0, width) if width else (0,), dtype)

        def owner(key):  # the image index of each entry
            return np.repeat(np.arange(len(per_image)), [np.asarray(s[key]).size for s in per_image]).astype(np.int64)

        return cls(tp=cat("tp", bool, 10), conf=cat("conf", np.float64), pred_cls=cat("pred_cls", np.int64),
                   pred_img=owner("conf"), target_cls=cat("target_cls", np.int64), target_img=owner("target_cls"),
                   images=len(per_image))

    def save(self, path: Path) -> None:
        """As a compressed ``.npz`` (written whole or not at all)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
        np.savez_compressed(tmp, tp=self.tp, conf=self.conf, pred_cls=self.pred_cls, pred_img=self.pred_img,
                            target_cls=self.target_cls, target_img=self.target_img, images=np.int64(self.images))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "ImageStats | None":
        try:
            with np.load(Path(path)) as z:
                return cls(**{k: z[k] for k in ("tp", "conf", "pred_cls", "pred_img", "target_cls", "target_img")},
                           images=int(z["images"]))
        except (OSError, KeyError, ValueError):
            return None

    @cached_property
    def _by_class(self) -> dict[int, np.ndarray]:
        """Each class's predictions, most confident first (Ultralytics' order: one sort of all predictions)."""
        order = np.argsort(-self.conf)
        cls = self.pred_cls[order]
        return {int(c): order[cls == c] for c in np.unique(cls)}

    def resampled(self, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
        """mAP50-95 on each of the seeded bootstrap resamples of the images (computed once per object: the
        baseline is paired with every row)."""
        memo = self.__dict__.setdefault("_resampled", {})
        if (resamples, seed) not in memo:
            maps = np.array([self.map50_95(w) for w in _draws(self.images, resamples, seed)])
            maps.setflags(write=False)  # kept and handed to every caller
            memo[resamples, seed] = maps
        return memo[resamples, seed]

    def map50_95(self, weights: np.ndarray | None = None) -> float:
        """mAP50-95 as Ultralytics computes it (per class with labels: AP at ten IoU thresholds, 101-point
        interpolation; mean over those classes), each image counted ``weights[i]`` times (default once)."""
        w = np.ones(self.images) if weights is None else np.asarray(weights, dtype=np.float64)
        wt = w[self.target_img]
        labels = np.bincount(self.target_cls, weights=wt, minlength=1) if len(wt) else np.zeros(1)
        classes = np.flatnonzero(labels > 0)
        if not len(classes):
            return 0.0
        wp = w[self.pred_img]
        total = 0.0
        for c in classes:
            idx = self._by_class.get(int(c))
            if idx is None:
                continue  # a class with labels and no predictions: AP 0
            ww = wp[idx]
            keep = ww > 0
            if not keep.any():
                continue
            hits = self.tp[idx[keep]] * ww[keep, None]
            tpc = np.cumsum(hits, 0)
            fpc = np.cumsum(ww[keep, None] - hits, 0)
            total += _ap(tpc / (labels[c] + _EPS), tpc / (tpc + fpc)).sum()
        return float(total / (10 * len(classes)))


def _ap(recall: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """AP per column (IoU threshold) of one class's curves, exactly as Ultralytics' ``compute_ap``."""
    out = np.empty(recall.shape[1])
    for j in range(recall.shape[1]):
        r, p = recall[:, j], precision[:, j]
        mrec = np.concatenate(([0.0], r, [r[-1]], [1.0]))
        mpre = np.flip(np.maximum.accumulate(np.flip(np.concatenate(([1.0], p, [0.0], [0.0])))))
        out[j] = np.trapezoid(np.interp(_AP_X, mrec, mpre), _AP_X)
    return out


def delta_interval(new: ImageStats, old: ImageStats, resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                   seed: int = 0) -> tuple[float, float]:
    """Paired bootstrap interval of ``new``'s mAP50-95 minus ``old``'s (0-1 scale) over their common images:
    ``resamples`` draws of the images with replacement (seeded), both models scored on each; the
    percentile interval at ``confidence``."""
    if new.images != old.images:
        raise ValueError(f"paired interval needs the same images: {new.images} against {old.images}")
    if new.images == 0:
        raise ValueError("paired interval needs at least one image")
    diffs = new.resampled(resamples, seed) - old.resampled(resamples, seed)
    lo, hi = np.quantile(diffs, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


@lru_cache(maxsize=4)
def _draws(images: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, images) counts: how often each image is drawn in each resample (seeded, shared by every
    model scored on the same images, which is what pairs them)."""
    rng = np.random.default_rng(seed)
    draws = np.stack([rng.multinomial(images, np.full(images, 1.0 / images)) for _ in range(resamples)]).astype(np.float64)
    draws.setflags(write=False)  # shared between callers
    return draws
