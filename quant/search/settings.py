"""Settings of the automatic INT8 recipe search (``*-int8-auto``): one typed value, :class:`SearchConfig`,
whose field defaults are the search's defaults (the ``--auto-*`` options read them from here).

No project imports, so the registry, the benchmark options and the search can all read it without
importing one another.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SearchConfig:
    target_drop: float = 0.3  # largest mAP50-95 drop (points vs FP32) the searched recipe may lose
    margin: float = 0.2  # aim this many points under the target on the search images
    methods: tuple[str, ...] = ("percentile", "minmax", "entropy")  # calibration methods tried
    images: int = 256  # calibration-split images after the calibration ones that candidates are scored on
    sensitivity_images: int = 8  # images of the layer sensitivity analysis up to imgsz 640 (above: as many pixels)
    max_evals: int = 24  # most candidate evaluations per search
    budget_s: float = 600.0  # time budget of one search in seconds
    min_int8_macs: float = 0.8  # least share (0-1) of the convolution compute the recipe keeps in INT8
    profile_runs: int = 0  # profiled runs that time each layer in FP32 and INT8 on the target (0: count MACs)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# the analysis's cost grows with the pixels of its images: the image count is set for this size
SENSITIVITY_IMGSZ = 640


def sensitivity_images(count: int, imgsz: int) -> int:
    """Images of the layer sensitivity analysis at ``imgsz``: ``count`` up to 640 px; above it the pixels of
    ``count`` images at 640 px, at least 2 (at 1280 px 8 images would take the analysis several minutes of
    the search's budget on 2 cores, before it has tried a float set)."""
    if imgsz <= SENSITIVITY_IMGSZ:
        return count
    return min(count, max(2, round(count * (SENSITIVITY_IMGSZ / imgsz) ** 2)))
