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
_CHUNK = 2_000_000  # weightings x predictions (x 10) scored at once: bounds the memory of a resample batch
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
    def _by_class(self) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Each class's predictions, most confident first (Ultralytics' order: one sort of all predictions),
        in runs: a true positive at any IoU threshold is a run of its own, consecutive predictions that are
        false at every threshold form one. Inside such a run recall stays put and precision falls, so only
        its last point reaches the interpolated AP (whatever the images' weights): scoring the runs is exact
        and, with the validator's many low-confidence false positives, several times smaller. Per class:
        the image of each prediction, where each run starts, and each run's ``tp`` (runs, 10)."""
        order = np.argsort(-self.conf)
        cls = self.pred_cls[order]
        out = {}
        for c in np.unique(cls):
            idx = order[cls == c]
            miss = ~self.tp[idx].any(axis=1)
            starts = np.flatnonzero(np.concatenate(([True], ~(miss[1:] & miss[:-1]))))
            out[int(c)] = self.pred_img[idx], starts, self.tp[idx][starts]
        return out

    def resampled(self, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
        """mAP50-95 on each of the seeded bootstrap resamples of the images (computed once per object: the
        baseline is paired with every row)."""
        memo = self.__dict__.setdefault("_resampled", {})
        if (resamples, seed) not in memo:
            draws = _draws(self.images, resamples, seed)
            size = max((max(len(i), 10 * len(s)) for i, s, _ in self._by_class.values()), default=1)
            step = max(1, _CHUNK // size)
            maps = np.concatenate([self.maps(draws[i:i + step]) for i in range(0, resamples, step)])
            maps.setflags(write=False)  # kept and handed to every caller
            memo[resamples, seed] = maps
        return memo[resamples, seed]

    def map50_95(self, weights: np.ndarray | None = None) -> float:
        """mAP50-95 as Ultralytics computes it (per class with labels: AP at ten IoU thresholds, 101-point
        interpolation; mean over those classes), each image counted ``weights[i]`` times (default once)."""
        w = np.ones(self.images) if weights is None else np.asarray(weights, dtype=np.float64)
        return float(self.maps(w[None])[0])

    def maps(self, weights: np.ndarray) -> np.ndarray:
        """:meth:`map50_95` for each row of ``weights`` (weightings, images), all rows at once."""
        w = np.asarray(weights, dtype=np.float64)
        per_image = np.zeros((self.images, int(self.target_cls.max(initial=-1)) + 1))
        np.add.at(per_image, (self.target_img, self.target_cls), 1.0)
        labels = w @ per_image  # (rows, classes): each class's labels in each weighting
        total = np.zeros(len(w))
        for c in np.flatnonzero(labels.max(axis=0, initial=0) > 0):
            runs = self._by_class.get(int(c))
            if runs is not None:  # a class with labels and no predictions: AP 0
                img, starts, tp = runs
                ap, drawn = _class_ap(np.add.reduceat(w[:, img], starts, axis=1), tp, labels[:, c])
                total += np.where(drawn & (labels[:, c] > 0), ap, 0.0)
        counted = (labels > 0).sum(axis=1)
        return np.where(counted > 0, total / (10 * np.maximum(counted, 1)), 0.0)


def _class_ap(ww: np.ndarray, tp: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One class's AP summed over the ten IoU thresholds in each weighting: ``ww`` (rows, runs) the weight
    of each run of predictions (most confident first), ``tp`` (runs, 10), ``labels`` (rows,). Also whether
    each row has a prediction of weight > 0 at all (where not, its AP is meaningless)."""
    hits = np.cumsum(ww[:, :, None] * tp[None], axis=1)  # true positives so far
    seen = np.cumsum(ww, axis=1)[:, :, None]  # predictions so far
    drawn = ww > 0
    # runs of weight 0 are not in that weighting: further on they repeat the curve's last point (no
    # change to the interpolated AP); before the first drawn one they take its point instead
    first = np.maximum(np.arange(ww.shape[1])[None], drawn.argmax(axis=1)[:, None])[:, :, None]
    hits, seen = np.take_along_axis(hits, first, 1), np.take_along_axis(seen, first, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall, precision = hits / (labels[:, None, None] + _EPS), hits / seen
    ap = _ap(recall.transpose(0, 2, 1).reshape(-1, ww.shape[1]), precision.transpose(0, 2, 1).reshape(-1, ww.shape[1]))
    return ap.reshape(len(ww), 10).sum(axis=1), drawn.any(axis=1)


def _ap(recall: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """AP of each row's curve (rows, points), exactly as Ultralytics' ``compute_ap`` (``np.interp`` at 101
    recall points, replicated for all rows at once)."""
    rows, n = recall.shape
    mrec = np.concatenate([np.zeros((rows, 1)), recall, recall[:, -1:], np.ones((rows, 1))], axis=1)
    mpre = np.concatenate([np.ones((rows, 1)), precision, np.zeros((rows, 2))], axis=1)
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre, 1), axis=1), 1)
    # np.interp's segment for each grid recall x: the last point at or left of x (how many points are)
    grid = np.searchsorted(_AP_X, mrec, side="left") + (len(_AP_X) + 1) * np.arange(rows)[:, None]
    at = np.bincount(grid.ravel(), minlength=rows * (len(_AP_X) + 1)).reshape(rows, -1)[:, :-1].cumsum(axis=1) - 1
    last = at == n + 2
    at = at + (n + 3) * np.arange(rows)[:, None]
    x0, x1 = mrec.ravel()[at], mrec.ravel()[at + ~last]
    y0, y1 = mpre.ravel()[at], mpre.ravel()[at + ~last]
    with np.errstate(invalid="ignore", divide="ignore"):  # the last point: no segment to its right
        y = np.where(last, y0, (y1 - y0) / (x1 - x0) * (_AP_X - x0) + y0)
    return np.trapezoid(y, _AP_X, axis=1)


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
