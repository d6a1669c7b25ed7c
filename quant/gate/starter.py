"""A starter thresholds file for a user's model (``quant-bench init``): every limit is what one run measured
plus a stated margin, with a comment saying both. Reads one run (:func:`quant.gate.compare.load_run`)."""

from __future__ import annotations

from quant.gate.thresholds import HISTORY_DEFAULTS
from quant.measure.row import Row
from quant.util.hardware import cpu_label


def _fmt(x: float) -> str:
    return f"{x:.2f}"


def _variant_section(r: Row, baseline: str, drop_margin: float, latency_margin: float) -> list[str]:
    """The limits of one measured row: a floor under its mAP50-95; for the others a largest drop and, where it
    ran on its target, a largest paired latency ratio."""
    lines = []
    if r.map50_95 is not None:
        lines.append(f"min_map50_95 = {_fmt(max(r.map50_95 - drop_margin, 0.0))}"
                     f"   # measured {r.map50_95:.2f} - {drop_margin:g}")
    if r.variant != baseline and r.delta_points is not None:
        drop = max(-r.delta_points, 0.0)
        ci = f" (95 % interval {r.delta_ci[0]:+.2f} to {r.delta_ci[1]:+.2f})" if r.delta_ci else ""
        lines.append(f"max_drop_points = {_fmt(drop + drop_margin)}   # measured drop {drop:.2f}{ci} + {drop_margin:g}")
    if r.variant != baseline and r.latency_ratio is not None and not r.engine_missing:
        hi = (r.latency_ratio_ci or [None, r.latency_ratio])[1] or r.latency_ratio
        lines.append(f"max_latency_ratio = {_fmt(hi * (1 + latency_margin))}   # measured {r.latency_ratio:.2f}x "
                     f"(upper 95 % bound {hi:.2f}) x {1 + latency_margin:g}")
    return lines


def starter_thresholds(run: dict, header: dict, drop_margin: float = 0.5, latency_margin: float = 0.25) -> str:
    """The thresholds TOML text for the rows of ``run`` (``load_run``'s dict of a report.json, whose rows carry
    their Δ mAP50-95 against the baseline; ``header``: the report.json's top level, for the model and machine named
    in the comments)."""
    baseline = run["baseline"]
    rows = [r for r in run["rows"].values() if not r.peer and r.status != "skipped"]
    machine = header.get("machine") or {}
    out = [f"# Starter thresholds for {header.get('weights')} at imgsz {header.get('imgsz')}, written by "
           f"`quant-bench init` from the run of {header.get('date')}",
           f"# on {cpu_label(machine)} ({machine.get('cores')} cores). Each limit is what that run measured plus a "
           f"margin ({drop_margin:g} mAP50-95 points;",
           f"# latency: the upper 95 % bound of the paired ratio x {1 + latency_margin:g}). Latency ratios are "
           "machine-dependent: keep this file with",
           "# the runner kind it was measured on. Units and every key: the gates page of the documentation.",
           "", "[defaults]"]
    for key, value in HISTORY_DEFAULTS.items():
        out.append(f"{key} = {value:g}   # history comparison (--compare-to): the package's default")
    for r in rows:
        lines = _variant_section(r, baseline, drop_margin, latency_margin)
        if lines:
            out += ["", f'[variants."{r.variant}"]', *lines]
    return "\n".join(out) + "\n"
