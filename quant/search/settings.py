"""Settings of the automatic INT8 recipe search (``*-int8-auto``), with their defaults.

A plain value with no project imports, so the registry, the benchmark options and the search can
all read it without importing one another.
"""

DEFAULTS = {"auto_target_drop": 0.3, "auto_margin": 0.2, "auto_methods": ("percentile", "minmax", "entropy"),
            "auto_images": 256, "auto_sensitivity_images": 8, "auto_max_evals": 24, "auto_budget_s": 600.0,
            "auto_min_int8_macs": 0.8, "auto_profile_runs": 0}

# the analysis's cost grows with the pixels of its images: the image count is set for this size
SENSITIVITY_IMGSZ = 640


def sensitivity_images(count: int, imgsz: int) -> int:
    """Images of the layer sensitivity analysis at ``imgsz``: ``count`` up to 640 px; above it the pixels of
    ``count`` images at 640 px, at least 2 (at 1280 px 8 images would take the analysis several minutes of
    the search's budget on 2 cores, before it has tried a float set)."""
    if imgsz <= SENSITIVITY_IMGSZ:
        return count
    return min(count, max(2, round(count * (SENSITIVITY_IMGSZ / imgsz) ** 2)))
