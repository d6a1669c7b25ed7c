"""Settings of the automatic INT8 recipe search (``*-int8-auto``), with their defaults.

A plain value with no project imports, so the registry, the benchmark options and the search can
all read it without importing one another.
"""

DEFAULTS = {"auto_target_drop": 0.3, "auto_margin": 0.2, "auto_methods": ("percentile", "minmax", "entropy"),
            "auto_images": 256, "auto_sensitivity_images": 8, "auto_max_evals": 24, "auto_budget_s": 600.0,
            "auto_min_int8_macs": 0.8, "auto_profile_runs": 0}
