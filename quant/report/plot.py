"""Accuracy-vs-latency chart of one run: which variants are worth deploying.

Each variant is one point: x = its latency relative to the baseline (paired, same process; lower is
faster), with the 95 % interval as a horizontal bar; y = its mAP50-95 (or fidelity) in %. The step
line joins the Pareto front: the variants no other variant beats on both speed and accuracy.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from quant.measure.row import Row
from quant.registry import BASELINE

LABELS = {"map50_95": "mAP50-95 (%)", "fidelity_map50_95": "fidelity mAP50-95 vs FP32 detections (%)"}


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def pareto_front(points: list[tuple[str, float, float]]) -> list[str]:
    """Names of the points on the Pareto front, in order of increasing x.

    ``points``: (name, x, y) with x lower-is-better (latency ratio) and y higher-is-better (accuracy).
    A point is on the front when no other point is at least as good on both and better on one; equal
    points are both on it. Points with a non-finite coordinate are ignored.
    """
    pts = [(n, float(x), float(y)) for n, x, y in points if _finite(x) and _finite(y)]

    def dominated(p) -> bool:
        return any(q[1] <= p[1] and q[2] >= p[2] and (q[1] < p[1] or q[2] > p[2]) for q in pts)

    return [n for n, _, _ in sorted((p for p in pts if not dominated(p)), key=lambda p: (p[1], -p[2], p[0]))]


def on_target(row: Row) -> bool:
    """Whether a row's latency is its target's: not a TensorRT row timed without an engine (its ONNX in ONNX
    Runtime on the CPU), which may stand on the chart but never on the front."""
    return bool((row.engine or {}).get("built", True))


def _metric(rows: list[Row], metric: str) -> str:
    """``metric`` if any row has it, else mAP50-95 (e.g. fidelity was skipped with --no-fidelity)."""
    if metric != "map50_95" and not any(_finite(getattr(r, metric)) for r in rows):
        return "map50_95"
    return metric


def plottable(rows: list[Row], metric: str) -> list[Row]:
    """Rows with both a latency ratio and the metric."""
    return [r for r in rows if _finite(r.latency_ratio) and _finite(getattr(r, metric))]


def _xerr(rows: list[Row]) -> list[list[float]]:
    """Asymmetric horizontal error bars from ``latency_ratio_ci`` (0 where a row has none)."""
    lo, hi = [], []
    for r in rows:
        ci, x = r.latency_ratio_ci, r.latency_ratio
        ok = isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_finite(v) for v in ci)
        lo.append(max(0.0, x - ci[0]) if ok else 0.0)
        hi.append(max(0.0, ci[1] - x) if ok else 0.0)
    return [lo, hi]


def _label_offsets(rows: list[Row], metric: str) -> dict[str, tuple[int, int]]:
    """Label offsets (points) that stack the names of nearby variants instead of overprinting them."""
    xs = [r.latency_ratio for r in rows]
    ys = [getattr(r, metric) for r in rows]
    dx, dy = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    placed: list[tuple[float, float]] = []
    out = {}
    for r, x, y in sorted(zip(rows, xs, ys), key=lambda t: (-t[2], t[1])):
        near = sum(abs(x - px) < 0.15 * dx and abs(y - py) < 0.04 * dy for px, py in placed)
        out[r.variant] = (4, 4 - 9 * near)
        placed.append((x, y))
    return out


def _draw_points(ax, rows: list[Row], metric: str) -> None:
    """Variants as circles, Ultralytics peers as squares, each labelled with its name."""
    offsets = _label_offsets(rows, metric)
    groups = (([r for r in rows if not r.peer], "o", "C0", "variant"),
              ([r for r in rows if r.peer], "s", "C1", "Ultralytics peer"))
    for group, marker, color, label in groups:
        if not group:
            continue
        ax.errorbar([r.latency_ratio for r in group], [getattr(r, metric) for r in group], xerr=_xerr(group),
                    fmt=marker, color=color, ms=6, capsize=3, elinewidth=1, label=label)
        for r in group:
            ax.annotate(r.variant, (r.latency_ratio, getattr(r, metric)), xytext=offsets[r.variant],
                        textcoords="offset points", fontsize=7)


def _draw_front(ax, rows: list[Row], metric: str) -> None:
    """The Pareto front as a step line (best accuracy reachable at each latency)."""
    by_name = {r.variant: r for r in rows}
    front = pareto_front([(r.variant, r.latency_ratio, getattr(r, metric)) for r in rows if on_target(r)])
    xs = [by_name[n].latency_ratio for n in front]
    ys = [getattr(by_name[n], metric) for n in front]
    ax.step(xs, ys, where="post", color="C2", lw=1.2, alpha=0.8, label="Pareto front")


def _save_atomically(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, dpi=120, format="png", bbox_inches="tight")
    os.replace(tmp, path)


def write_plot(rows: list[Row], path, baseline: str = BASELINE, metric: str = "map50_95") -> Path:
    """Write the accuracy-vs-latency scatter of one run's rows (``report.json``'s ``rows``) as a PNG.

    ``metric``: ``map50_95`` or ``fidelity_map50_95`` (falls back to mAP50-95 when no row has
    fidelity). Rows without a latency ratio or the metric are left out; with none left the chart
    says so instead of failing the run. Written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = _metric(rows, metric)
    keep = plottable(rows, metric)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    try:
        ax.axvline(1.0, ls=":", color="grey", lw=1, label=f"{baseline} (x = 1)")
        ax.annotate(baseline, (1.0, 0.0), xycoords=("data", "axes fraction"), xytext=(-9, 4),
                    textcoords="offset points", fontsize=7, color="grey", rotation=90, va="bottom")
        if keep:
            _draw_front(ax, keep, metric)
            _draw_points(ax, keep, metric)
        else:  # e.g. every variant failed: an empty chart that says so, never an error at report time
            ax.text(0.5, 0.5, f"nothing to plot: no variant has both a latency ratio and {metric}",
                    transform=ax.transAxes, ha="center", va="center", fontsize=9)
        ax.set_xlabel(f"latency ratio vs {baseline} (lower is faster)")
        ax.set_ylabel(LABELS.get(metric, metric))
        ax.set_title(f"accuracy vs latency (paired, vs {baseline})")
        ax.margins(x=0.08, y=0.12)  # room for the labels at the edges
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        out = Path(path)
        _save_atomically(fig, out)
    finally:
        plt.close(fig)
    return out
