"""Accuracy-vs-latency chart of one run: which variants are worth deploying.

Each variant is one point: x = its latency relative to the baseline (paired, same process; lower is
faster), with the 95 % interval as a horizontal bar; y = its mAP50-95 (or fidelity) in %. The step
line joins the Pareto front: the variants no other variant beats on both speed and accuracy. Names are
placed by :func:`place_labels` so that no two overlap (a name set apart from its point gets a leader line);
report.html's chart (:mod:`quant.report.html`) places its names the same way.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from quant.measure.row import Row
from quant.registry import BASELINE

LABELS = {"map50_95": "mAP50-95 (%)", "fidelity_map50_95": "fidelity mAP50-95 vs FP32 detections (%)"}
LABEL_GID = "point-label"  # the gid of each point's name on the PNG's figure (tests find them by it)
DPI = 120
FRONT_COLOR = "#d62728"

Box = tuple  # (x0, y0, x1, y1), x0 <= x1 and y0 <= y1, in one chart's pixels


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


def ci_bounds(row: Row) -> tuple[float, float] | None:
    """A row's 95 % latency-ratio interval (low, high), None where it has none (or not two finite numbers)."""
    ci = row.latency_ratio_ci
    ok = isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_finite(v) for v in ci)
    return (float(ci[0]), float(ci[1])) if ok else None


def _xerr(rows: list[Row]) -> list[list[float]]:
    """Asymmetric horizontal error bars from ``latency_ratio_ci`` (0 where a row has none)."""
    lo, hi = [], []
    for r in rows:
        ci, x = ci_bounds(r), r.latency_ratio
        lo.append(max(0.0, x - ci[0]) if ci else 0.0)
        hi.append(max(0.0, ci[1] - x) if ci else 0.0)
    return [lo, hi]


def label_order(rows: list[Row], metric: str) -> list[int]:
    """The order in which the rows' names are placed: the front's first (they get the spots nearest their
    points), then from the top of the chart down, left to right."""
    front = set(pareto_front([(r.variant, r.latency_ratio, getattr(r, metric)) for r in rows if on_target(r)]))
    return sorted(range(len(rows)), key=lambda i: (rows[i].variant not in front, -getattr(rows[i], metric),
                                                   rows[i].latency_ratio, rows[i].variant))


# ---- label placement --------------------------------------------------------------------------------------

def crosses(p: tuple[float, float], q: tuple[float, float], box: Box) -> bool:
    """Whether the segment p-q passes through the box's interior (Liang-Barsky clipping)."""
    t0, t1 = 0.0, 1.0
    dx, dy = q[0] - p[0], q[1] - p[1]
    for d, lo, hi, v in ((dx, box[0], box[2], p[0]), (dy, box[1], box[3], p[1])):
        if abs(d) < 1e-12:
            if not lo < v < hi:
                return False
            continue
        a, b = (lo - v) / d, (hi - v) / d
        t0, t1 = max(t0, min(a, b)), min(t1, max(a, b))
        if t0 >= t1:
            return False
    return True


def segments_cross(p: tuple[float, float], q: tuple[float, float], r: tuple[float, float],
                   s: tuple[float, float]) -> bool:
    """Whether the segments p-q and r-s cross at a point inside both (sharing an end point does not count)."""
    def side(a, b, c) -> float:
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    return side(p, q, r) * side(p, q, s) < 0 and side(r, s, p) * side(r, s, q) < 0


def nearest_point(box: Box, p: tuple[float, float]) -> tuple[float, float]:
    """The point of a box nearest to p: where a leader line from p meets the label."""
    return min(max(p[0], box[0]), box[2]), min(max(p[1], box[1]), box[3])


@dataclass(frozen=True)
class Placement:
    box: Box  # where the name stands
    leader: bool  # set apart from its point: draw a line from the point to the name


@dataclass
class _Placer:
    """The state of one :func:`place_labels` call: what is taken, and the spill column's next free spot."""
    bounds: Box
    markers: list
    hard: list
    soft: list
    gap: float
    step: float
    y_down: bool
    leaders: list
    column_at: float = 0.0

    def candidates(self, anchor, size, radius: float):
        """Boxes around ``anchor`` whose near side is ``gap + radius`` from it, most wanted first: to the right,
        then turning both ways (up first) towards the left."""
        import numpy as np

        n = max(8, int(2 * math.pi * (self.gap + radius) / 6) // 2 * 2)
        ks = [0] + [s * k for k in range(1, n // 2) for s in (1, -1)] + [n // 2]
        th = 2 * math.pi * np.array(ks, float) / n
        c, s = np.cos(th), np.sin(th) * (-1 if self.y_down else 1)
        px, py = anchor[0] + (self.gap + radius) * c, anchor[1] + (self.gap + radius) * s
        fx, fy = np.clip(2 * c, -1, 1), np.clip(2 * s, -1, 1)
        x0, y0 = px - size[0] * (1 - fx) / 2, py - size[1] * (1 - fy) / 2
        return np.stack([x0, y0, x0 + size[0], y0 + size[1]], axis=1)

    def free(self, boxes, taken):
        """Which candidate boxes lie inside the bounds and clear every box of ``taken`` (a mask)."""
        import numpy as np

        b = self.bounds
        ok = (boxes[:, 0] >= b[0]) & (boxes[:, 1] >= b[1]) & (boxes[:, 2] <= b[2]) & (boxes[:, 3] <= b[3])
        if taken:
            t = np.asarray(taken, float)
            hit = ((boxes[:, None, 0] < t[None, :, 2]) & (t[None, :, 0] < boxes[:, None, 2])
                   & (boxes[:, None, 1] < t[None, :, 3]) & (t[None, :, 1] < boxes[:, None, 3]))
            ok &= ~hit.any(axis=1)
        return ok

    def clean(self, i: int, anchor, box: Box, leader: bool) -> bool:
        """Whether a label box that clears every hard obstacle also keeps off the placed leader lines and, when
        it needs one, whether its own leader line keeps off the placed names, the other points and the placed
        leader lines."""
        if any(crosses(p, q, box) for p, q in self.leaders):
            return False
        if not leader:
            return True
        end = nearest_point(box, anchor)
        others = [m for j, m in enumerate(self.markers) if j != i]
        return not (any(crosses(anchor, end, t) for t in self.hard[len(self.markers):] + others)
                    or any(segments_cross(anchor, end, p, q) for p, q in self.leaders))

    def place(self, i: int, anchor, size) -> Placement:
        """The nearest spot for one name: clear of everything if there is one not much farther than the nearest
        spot clear of the hard obstacles; else that spot; else the spill column right of the bounds."""
        b, patience = self.bounds, max(2.5 * size[1], 20.0)
        far = math.hypot(b[2] - b[0], b[3] - b[1])
        fallback, radius = None, 0.0
        while radius <= far and not (fallback and radius > fallback[1] + patience):
            boxes = self.candidates(anchor, size, radius)
            ok = self.free(boxes, self.hard)
            clear = ok & self.free(boxes, self.soft) if self.soft else ok
            leader = radius > 1.5 * self.step
            for j in (k for k in range(len(boxes)) if ok[k]):
                box = tuple(float(v) for v in boxes[j])
                if clear[j] and self.clean(i, anchor, box, leader):
                    return Placement(box, leader)
                fallback = fallback or (Placement(box, leader), radius)
            radius += self.step
        if fallback:
            return fallback[0]
        top = b[1] if self.y_down else b[3]  # nowhere inside: stack it in a column right of the chart
        y0 = top + self.column_at if self.y_down else top - self.column_at - size[1]
        self.column_at += size[1]
        return Placement((b[2] + self.gap, y0, b[2] + self.gap + size[0], y0 + size[1]), True)


def place_labels(anchors: list[tuple[float, float]], sizes: list[tuple[float, float]], bounds: Box,
                 markers: list[Box] = (), obstacles: list[Box] = (), soft: list[Box] = (),
                 order: list[int] | None = None, gap: float = 6.0, pad: float = 1.5, step: float = 3.0,
                 y_down: bool = False) -> list[Placement]:
    """Where each name goes, deterministically, so that no two names overlap.

    Everything is in one chart's pixels. ``anchors``: each name's point; ``sizes``: each name's (width, height);
    ``bounds``: the box the names stay inside; ``markers``: each point's marker box (same order as ``anchors``),
    which no name covers; ``obstacles``: other boxes no name covers (e.g. other text); ``soft``: boxes a name
    keeps off where it can (error bars, the Pareto line). ``order``: the order in which names are placed
    (earlier ones get the nearer spots); ``gap``: the distance from a point to its name; ``pad``: the least space
    between two names; ``y_down``: y grows downwards (SVG), so that "above" stays above.

    Each name takes the spot nearest its point, searched on growing rings (to the right first, then turning
    both ways towards the left, above before below), that stays inside ``bounds`` and clears the names placed
    before it, the markers and the obstacles; among such spots it prefers, within a short extra distance, one
    that also keeps off the soft boxes and the leader lines placed before it, and whose own leader line (drawn
    where the name stands away from its point) crosses no name or other marker. A name with no room left inside
    ``bounds`` goes in a column just right of it. Returns the boxes (without their padding) in the order of
    ``anchors``.
    """
    markers = [tuple(m) for m in markers]
    placer = _Placer(tuple(bounds), markers, markers + [tuple(o) for o in obstacles], [tuple(s) for s in soft],
                     gap, step, y_down, [])
    out: list[Placement | None] = [None] * len(anchors)
    for i in (range(len(anchors)) if order is None else order):
        w, h = sizes[i]
        p = placer.place(i, anchors[i], (w + 2 * pad, h + 2 * pad))
        box = (p.box[0] + pad, p.box[1] + pad, p.box[2] - pad, p.box[3] - pad)
        out[i] = Placement(box, p.leader)
        placer.hard.append(p.box)
        if p.leader:
            placer.leaders.append((tuple(anchors[i]), nearest_point(box, anchors[i])))
    return out


# ---- the PNG ---------------------------------------------------------------------------------------------

MARKERS = (  # (which rows, marker, face, edge, legend), drawn in this order
    (lambda r: not r.peer and on_target(r), "o", "C0", "C0", "variant"),
    (lambda r: r.peer, "s", "C1", "C1", "Ultralytics peer"),
    (lambda r: not r.peer and not on_target(r), "o", "white", "C0", "TensorRT timed without its engine (CPU)"),
)


def _draw_points(ax, rows: list[Row], metric: str) -> None:
    """Variants as filled circles, Ultralytics peers as squares, TensorRT rows timed without an engine as open
    circles, each with its interval as a horizontal bar."""
    for keep, marker, face, edge, label in MARKERS:
        group = [r for r in rows if keep(r)]
        if group:
            ax.errorbar([r.latency_ratio for r in group], [getattr(r, metric) for r in group], xerr=_xerr(group),
                        fmt=marker, color=edge, mfc=face, mec=edge, ms=6, capsize=3, elinewidth=1, label=label,
                        zorder=3)


def _draw_front(ax, rows: list[Row], metric: str) -> list[tuple[float, float]]:
    """The Pareto front as a step line (best accuracy reachable at each latency), above the points, with a white
    edge so that it shows over markers and bars; its vertices (data)."""
    import matplotlib.patheffects as pe

    by_name = {r.variant: r for r in rows}
    front = pareto_front([(r.variant, r.latency_ratio, getattr(r, metric)) for r in rows if on_target(r)])
    xs = [by_name[n].latency_ratio for n in front]
    ys = [getattr(by_name[n], metric) for n in front]
    ax.step(xs, ys, where="post", color=FRONT_COLOR, lw=2, ls="--", label="Pareto front", zorder=6,
            path_effects=[pe.Stroke(linewidth=4, foreground="white"), pe.Normal()])
    ax.plot(xs, ys, "o", ms=10, mfc="none", mec=FRONT_COLOR, mew=1.5, zorder=6)
    return step_vertices(xs, ys)


def step_vertices(xs: list[float], ys: list[float]) -> list[tuple[float, float]]:
    """The corners of a step line through the points that holds each y until the next x (``where="post"``)."""
    out = []
    for i, (x, y) in enumerate(zip(xs, ys)):
        out += [(x, y)] + ([(xs[i + 1], y)] if i + 1 < len(xs) else [])
    return out


def _segment_boxes(points_px: list[tuple[float, float]], width: float) -> list[Box]:
    """Thin boxes around the axis-parallel segments of a polyline (pixels)."""
    return [(min(p[0], q[0]) - width, min(p[1], q[1]) - width, max(p[0], q[0]) + width, max(p[1], q[1]) + width)
            for p, q in zip(points_px, points_px[1:])]


def _place_names(fig, ax, rows: list[Row], metric: str, front: list[tuple[float, float]], avoid: list) -> None:
    """Each row's name beside its point, none over another or over a marker (:func:`place_labels`), with a grey
    leader line where it had to stand away."""
    renderer = fig.canvas.get_renderer()
    to_px, scale = ax.transData.transform, 72 / fig.dpi  # pixels, and points per pixel
    anchors = [tuple(to_px((r.latency_ratio, getattr(r, metric)))) for r in rows]
    sizes, shifts = [], []
    for r, a in zip(rows, anchors):  # measure each name as it will be drawn
        t = ax.annotate(r.variant, a, xycoords="figure pixels", fontsize=7.5, ha="left", va="bottom")
        e = t.get_window_extent(renderer)
        sizes.append((e.width, e.height))
        shifts.append((e.x0 - a[0], e.y0 - a[1]))
        t.remove()
    r_m = 6 * 1.0 / scale / 2 + 1  # the marker's radius (6 pt wide) and a pixel
    markers = [(x - r_m, y - r_m, x + r_m, y + r_m) for x, y in anchors]
    soft = _segment_boxes([tuple(to_px(p)) for p in front], 2.5)
    for r, (x, y) in zip(rows, anchors):
        ci = ci_bounds(r)
        if ci:
            soft.append((to_px((ci[0], 0))[0], y - 1.5, to_px((ci[1], 0))[0], y + 1.5))
    box = ax.get_window_extent(renderer)
    bounds = (box.x0 + 2, box.y0 + 2, box.x1 - 2, box.y1 - 2)
    places = place_labels(anchors, sizes, bounds, markers, avoid, soft, label_order(rows, metric), gap=r_m + 2)
    for r, a, p, (sx, sy) in zip(rows, anchors, places, shifts):
        end = nearest_point(p.box, a)
        relpos = ((end[0] - p.box[0]) / (p.box[2] - p.box[0]), (end[1] - p.box[1]) / (p.box[3] - p.box[1]))
        arrow = dict(arrowstyle="-", color="0.45", lw=0.6, relpos=relpos, shrinkA=0, shrinkB=r_m * scale)
        t = ax.annotate(r.variant, (r.latency_ratio, getattr(r, metric)), fontsize=7.5, ha="left", va="bottom",
                        xytext=((p.box[0] - a[0] - sx) * scale, (p.box[1] - a[1] - sy) * scale),
                        textcoords="offset points", arrowprops=arrow if p.leader else None, zorder=4,
                        annotation_clip=False)
        t.set_gid(LABEL_GID)


def chart(rows: list[Row], baseline: str = BASELINE, metric: str = "map50_95"):
    """The accuracy-vs-latency figure of :func:`write_plot` (a matplotlib Figure; the caller closes it). Its point
    names carry the gid :data:`LABEL_GID`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = _metric(rows, metric)
    keep = plottable(rows, metric)
    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=DPI)
    ax.axvline(1.0, ls=":", color="grey", lw=1, label=f"{baseline} (x = 1)", zorder=1)
    base = ax.annotate(baseline, (1.0, 0.0), xycoords=("data", "axes fraction"), xytext=(-9, 4),
                       textcoords="offset points", fontsize=7, color="grey", rotation=90, va="bottom")
    front = []
    if keep:
        front = _draw_front(ax, keep, metric)
        _draw_points(ax, keep, metric)
    else:  # e.g. every variant failed: an empty chart that says so, never an error at report time
        ax.text(0.5, 0.5, f"nothing to plot: no variant has both a latency ratio and {metric}",
                transform=ax.transAxes, ha="center", va="center", fontsize=9)
    ax.set_xlabel(f"latency ratio vs {baseline} (lower is faster)")
    ax.set_ylabel(LABELS.get(metric, metric))
    ax.set_title(f"accuracy vs latency (paired, vs {baseline})")
    ax.margins(x=0.08, y=0.12)  # room for the labels at the edges
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=5, frameon=False)
    fig.canvas.draw()  # fixes the limits and the layout: names are placed in the pixels they are drawn in
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    if keep:
        e = base.get_window_extent(fig.canvas.get_renderer())
        _place_names(fig, ax, keep, metric, front, [(e.x0 - 2, e.y0 - 2, e.x1 + 2, e.y1 + 2)])
    return fig


def _save_atomically(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, dpi=DPI, format="png", bbox_inches="tight")
    os.replace(tmp, path)


def write_plot(rows: list[Row], path, baseline: str = BASELINE, metric: str = "map50_95") -> Path:
    """Write the accuracy-vs-latency scatter of one run's rows (``report.json``'s ``rows``) as a PNG.

    ``metric``: ``map50_95`` or ``fidelity_map50_95`` (falls back to mAP50-95 when no row has
    fidelity). Rows without a latency ratio or the metric are left out; with none left the chart
    says so instead of failing the run. No two names overlap (:func:`place_labels`). Written atomically.
    """
    import matplotlib.pyplot as plt

    fig = chart(rows, baseline, metric)
    try:
        out = Path(path)
        _save_atomically(fig, out)
    finally:
        plt.close(fig)
    return out
