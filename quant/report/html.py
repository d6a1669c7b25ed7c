"""report.html: one run's report as a single self-contained page, for a browser or a CI artifact.

The header (weights, image size, data, machine, date), the table (the compact columns, all of them in a
``<details>``), the accuracy-vs-latency chart as inline SVG drawn here (names placed by
:func:`quant.report.plot.place_labels` so that none overlap; hovering a point or a name shows its numbers),
the notes and sections report.md has (trade-offs, breaches, losses, searched recipes) and, where given, the
comparison with a reference run (:func:`quant.gate.compare.markdown_summary`). Nothing is loaded from
elsewhere: no script, font, style sheet or image; every text from the run is escaped.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from html import escape
from pathlib import Path

from quant.measure.row import Row
from quant.registry import BASELINE
from quant.report import tables
from quant.report.plot import (LABELS, _finite, ci_bounds, label_order, nearest_point, on_target, pareto_front,
                               place_labels, plottable, step_vertices)
from quant.util.hardware import describe

COMPACT = [("variant", "variant"), ("precision", "precision"), ("latency_ms", "ms/img"),
           ("latency_ratio", "× FP32 [95 % CI]"), ("map50_95", "mAP50-95"), ("delta_points", "Δ mAP50-95 vs {b} [95 % CI]"),
           ("int8_share", "INT8 convs"), ("status", "status")]
FONT = "DejaVu Sans, Verdana, Arial, sans-serif"
LABEL_SIZE = 11  # px, the points' names
COLORS = {"variant": "#1f77b4", "peer": "#ff7f0e", "front": "#d62728", "grid": "#e3e3e3", "muted": "#777"}
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em auto;max-width:1240px;padding:0 1em;
color:#222;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.3em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
dl.head{display:grid;grid-template-columns:max-content auto;gap:.15em 1em;font-size:.9em;margin:0}
dl.head dt{color:#555}dl.head dd{margin:0;word-break:break-all}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;white-space:nowrap}
th{background:#f3f3f3}tr.fail td{background:#fde8e8}tr.peer td{color:#8a5a00}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{font-size:.75em;background:#d62728;color:#fff;border-radius:3px;padding:0 .3em;margin-left:.4em}
details{margin:.6em 0}summary{cursor:pointer;color:#1f5fa0}.wide{overflow-x:auto}
svg.chart{max-width:100%;height:auto;border:1px solid #eee}
svg.chart g.point:hover circle,svg.chart g.point:hover rect{stroke:#000;stroke-width:2}
code{background:#f3f3f3;padding:0 .2em}
"""
NUMERIC = {"latency_ms", "latency_ratio", "preprocess_ms", "postprocess_ms", "box_precision", "recall", "map50",
           "map50_95", "delta_points", "fidelity_map50_95", "size_mb"}


# ---- rows -------------------------------------------------------------------------------------------------

def _clean(row: Row) -> Row:
    """The row with every non-finite number (NaN, inf) and every interval holding one replaced by None, so that
    the table shows "-" and the chart leaves the row out."""
    changes = {}
    for f in dataclasses.fields(row):
        v = getattr(row, f.name)
        if isinstance(v, float) and not math.isfinite(v):
            changes[f.name] = None
        elif f.name in ("latency_ratio_ci", "delta_ci") and v is not None and not (
                isinstance(v, (list, tuple)) and len(v) == 2 and all(_finite(x) for x in v)):
            changes[f.name] = None
    return dataclasses.replace(row, **changes) if changes else row


def _front(rows: list[Row], metric: str = "map50_95") -> set[str]:
    """The names on the Pareto front, as report.png and the trade-offs have it."""
    return set(pareto_front([(r.variant, r.latency_ratio, getattr(r, metric))
                             for r in plottable(rows, metric) if on_target(r)]))


def _tooltip(r: Row, baseline: str) -> str:
    """A point's full numbers, one line each (the SVG ``<title>`` a browser shows on hover)."""
    lines = [f"{r.variant}" + (" (Ultralytics peer)" if r.peer else "")
             + f" — {r.format or r.backend or '?'}, {r.precision or '?'}",
             f"latency {tables._cell('latency_ms', r)} ms/img, {tables._cell('latency_ratio', r)}× {baseline}",
             f"mAP50-95 {tables._cell('map50_95', r)}, Δ {tables._cell('delta_points', r)} points",
             f"mAP50 {tables._cell('map50', r)}, P {tables._cell('box_precision', r)}, R {tables._cell('recall', r)}, "
             f"fidelity {tables._cell('fidelity_map50_95', r)}",
             f"INT8 convs {tables._cell('int8_share', r)}, size {tables._cell('size_mb', r)} MB",
             f"status: {r.status}"]
    if r.engine_missing:
        lines.append(f"no TensorRT engine: timed as ONNX on the CPU ({r.engine.get('reason', '')})")
    return "\n".join(lines)


# ---- text and page pieces ---------------------------------------------------------------------------------

@lru_cache(maxsize=4096)
def text_width(text: str, size: float) -> float:
    """The advance width (px) of ``text`` in DejaVu Sans (matplotlib's bundled font) at ``size`` px. Each chart
    text is drawn at exactly this width (``textLength``), whichever font the browser has."""
    from matplotlib.font_manager import FontProperties

    w, _, _ = _text_to_path().get_text_width_height_descent(text, FontProperties(family="DejaVu Sans", size=size),
                                                           ismath=False)
    return round(w, 1)


@lru_cache(maxsize=1)
def _text_to_path():
    from matplotlib.textpath import TextToPath

    return TextToPath()


def text_height(size: float) -> float:
    """The height (px) a chart text is given: room for any common font's ascent and descent."""
    return round(1.4 * size, 1)


def _svg_text(x: float, y: float, text: str, size: float = LABEL_SIZE, anchor: str = "start", attrs: str = "") -> str:
    """A chart text whose box's top is at ``y`` (its baseline below, see :func:`text_height`), drawn at the width
    :func:`text_width` measured."""
    return (f'<text x="{x:.1f}" y="{y + 1.08 * size:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'textLength="{text_width(text, size):.1f}" lengthAdjust="spacingAndGlyphs"{attrs}>{escape(text)}</text>')


def _cell_html(key: str, r: Row, front: set[str]) -> str:
    text = escape(tables._cell(key, r))
    if key == "variant" and r.variant in front:
        text += '<span class="badge" title="on the Pareto front">front</span>'
    return f'<td class="num">{text}</td>' if key in NUMERIC else f"<td>{text}</td>"


def table_html(rows: list[Row], columns: list[tuple[str, str]], baseline: str = BASELINE) -> str:
    """The table of ``rows`` with ``columns`` ((key, header)), cells as report.md writes them, failing rows
    and peers marked, the front's rows badged."""
    front = _front(rows)
    head = "".join(f"<th>{escape(h.format(b=baseline))}</th>" for _, h in columns)
    body = []
    for r in rows:
        cls = "fail" if r.status == "FAIL" else "peer" if r.peer else ""
        body.append(f'<tr id="row-{escape(r.variant)}" class="{cls}">'
                    + "".join(_cell_html(k, r, front) for k, _ in columns) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _header_html(header: dict) -> str:
    """Weights, image size, data, machine, date first; then the header's other plain entries and the versions."""
    first = ["weights", "imgsz", "data", "date", "baseline", "calibration_images", "accuracy"]
    items = [(k, header[k]) for k in first if k in header]
    if "machine" in header:
        items.insert(3, ("machine", describe(header["machine"])))
    items += [(k, v) for k, v in header.items() if k not in first and not isinstance(v, (dict, list)) and v is not None]
    if isinstance(header.get("versions"), dict):
        items.append(("versions", ", ".join(f"{k} {v}" for k, v in header["versions"].items())))
    return '<dl class="head">' + "".join(f"<dt>{escape(str(k))}</dt><dd>{escape(str(v))}</dd>"
                                         for k, v in items) + "</dl>"


def _section(title: str, lines: list[str], intro: str = "") -> str:
    if not lines:
        return ""
    return (f"<h2>{escape(title)}</h2>" + (f"<p>{escape(intro)}</p>" if intro else "")
            + "<ul>" + "".join(f"<li>{escape(ln)}</li>" for ln in lines) + "</ul>")


def _sections(rows: list[Row], baseline: str) -> str:
    """report.md's notes and sections, from the same helpers."""
    from quant.measure.classloss import line

    notes = (tables.interval_lines(rows) + tables.floor_lines(rows, baseline) + tables.scale_lines(rows, baseline)
             + tables.latency_lines(rows, baseline))
    return (_section("Notes", notes) + _section("Gate breaches", tables.breach_lines(rows))
            + _section("Trade-offs", tables.front_lines(rows), "The rows no other row beats on both mAP50-95 and "
                       "paired latency against the baseline (the chart's Pareto front), fastest first. Where two "
                       "rows' intervals overlap, these images and timing rounds cannot order them.")
            + _section("Where the time goes", tables.time_lines(rows), tables.TIME_INTRO)
            + _section("Where accuracy was lost", [ln for ln in map(line, rows) if ln])
            + _section("Searched INT8 recipes", tables.auto_lines(rows)))


# ---- Markdown (the comparison) ----------------------------------------------------------------------------

def _inline(text: str) -> str:
    """Escaped text with `code` spans."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", escape(text))


def _md_table(lines: list[str]) -> str:
    cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines
             if not re.fullmatch(r"[\s|:-]+", ln)]
    if not cells:
        return ""
    head = "".join(f"<th>{_inline(c)}</th>" for c in cells[0])
    body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in cells[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def markdown_html(text: str) -> str:
    """Simple Markdown as HTML: pipe tables as tables, ``#`` headings one level down, ``- `` lines as a list,
    other lines as paragraphs; everything escaped."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        ln = lines[i].strip()
        j = i + 1
        if ln.startswith("|"):
            while j < len(lines) and lines[j].strip().startswith("|"):
                j += 1
            out.append(_md_table(lines[i:j]))
        elif ln.startswith("- "):
            while j < len(lines) and lines[j].strip().startswith("- "):
                j += 1
            out.append("<ul>" + "".join(f"<li>{_inline(x.strip()[2:])}</li>" for x in lines[i:j]) + "</ul>")
        elif ln.startswith("#"):
            level = min(len(ln) - len(ln.lstrip("#")) + 1, 6)
            out.append(f"<h{level}>{_inline(ln.lstrip('#').strip())}</h{level}>")
        elif ln:
            out.append(f"<p>{_inline(ln)}</p>")
        i = j
    return "\n".join(out)


# ---- the chart --------------------------------------------------------------------------------------------

def nice_ticks(lo: float, hi: float, n: int = 7) -> tuple[list[float], int]:
    """Round tick values covering [lo, hi], about ``n`` of them, and the decimals to print them with."""
    raw = (hi - lo) / n or 1.0
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    first = math.ceil(lo / step - 1e-9) * step
    ticks = [round(first + k * step, 10) for k in range(int((hi - first) / step + 1e-9) + 1)]
    return ticks, max(0, -math.floor(math.log10(step) + 1e-9) + (1 if round(step / mag, 3) == 2.5 else 0))


@dataclass
class Frame:
    """The plot area of the SVG chart (pixels, y down) and the data ranges it shows."""
    left: float
    top: float
    right: float
    bottom: float
    xlim: tuple[float, float]
    ylim: tuple[float, float]

    def x(self, v: float) -> float:
        return self.left + (v - self.xlim[0]) / (self.xlim[1] - self.xlim[0]) * (self.right - self.left)

    def y(self, v: float) -> float:
        return self.bottom - (v - self.ylim[0]) / (self.ylim[1] - self.ylim[0]) * (self.bottom - self.top)


def _limits(values: list[float], margin: float, at_least: float) -> tuple[float, float]:
    """The range shown for ``values``: at least ``at_least`` wide, with ``margin`` of it added at both ends."""
    lo, hi = min(values), max(values)
    if hi - lo < at_least:
        lo, hi = (lo + hi - at_least) / 2, (lo + hi + at_least) / 2
    return lo - margin * (hi - lo), hi + margin * (hi - lo)


def _frame(rows: list[Row], metric: str, width: float, height: float) -> tuple[Frame, tuple, tuple]:
    """The plot area, sized so the y tick labels fit at its left; and the x and y ticks ((values, decimals))."""
    xs = [1.0] + [v for r in rows for v in (r.latency_ratio, *(ci_bounds(r) or ()))]
    ys = [getattr(r, metric) for r in rows] or [0.0, 100.0]
    xlim, ylim = _limits(xs, 0.06, 0.1), _limits(ys, 0.1, 1.0)
    xt, yt = nice_ticks(*xlim, n=10), nice_ticks(*ylim, n=8)
    tick_w = max(text_width(f"{v:.{yt[1]}f}", 11) for v in yt[0])
    frame = Frame(40 + tick_w, 40, width - 16, height - 96, xlim, ylim)
    return frame, xt, yt


def _axes_svg(f: Frame, xt: tuple, yt: tuple, xlabel: str, ylabel: str, title: str) -> list[str]:
    """Grid, frame, ticks and their values, the axis titles and the chart's title."""
    out = []
    for v in xt[0]:
        if f.xlim[0] <= v <= f.xlim[1]:
            out.append(f'<line x1="{f.x(v):.1f}" y1="{f.top}" x2="{f.x(v):.1f}" y2="{f.bottom}" stroke="{COLORS["grid"]}"/>')
            out.append(_svg_text(f.x(v), f.bottom + 5, f"{v:.{xt[1]}f}", 11, "middle", ' class="tick"'))
    for v in yt[0]:
        if f.ylim[0] <= v <= f.ylim[1]:
            out.append(f'<line x1="{f.left}" y1="{f.y(v):.1f}" x2="{f.right}" y2="{f.y(v):.1f}" stroke="{COLORS["grid"]}"/>')
            out.append(_svg_text(f.left - 6, f.y(v) - text_height(11) / 2, f"{v:.{yt[1]}f}", 11, "end", ' class="tick"'))
    out.append(f'<rect x="{f.left}" y="{f.top}" width="{f.right - f.left:.1f}" height="{f.bottom - f.top:.1f}" '
               'fill="none" stroke="#444"/>')
    out.append(_svg_text((f.left + f.right) / 2, f.bottom + 24, xlabel, 12, "middle", ' class="axis-title"'))
    cy = (f.top + f.bottom) / 2
    out.append(f'<g transform="rotate(-90 {14:.1f} {cy:.1f})">'
               + _svg_text(14, cy - text_height(12) / 2, ylabel, 12, "middle", ' class="axis-title"') + "</g>")
    out.append(_svg_text((f.left + f.right) / 2, 10, title, 14, "middle", ' class="title"'))
    return out


def _marker_svg(r: Row, x: float, y: float) -> str:
    color = COLORS["peer"] if r.peer else COLORS["variant"]
    fill = "#fff" if r.engine_missing else color
    if r.peer:
        shape = f'<rect x="{x - 5:.1f}" y="{y - 5:.1f}" width="10" height="10" fill="{fill}" stroke="{color}" stroke-width="1.5"/>'
    else:
        shape = f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{fill}" stroke="{color}" stroke-width="1.5"/>'
    return shape


def _points_svg(rows: list[Row], f: Frame, metric: str, baseline: str) -> tuple[list[str], list]:
    """Each row's interval bar and marker in a group whose ``<title>`` has its numbers; and the bars' boxes."""
    out, bars = [], []
    for r in rows:
        x, y = f.x(r.latency_ratio), f.y(getattr(r, metric))
        color = COLORS["peer"] if r.peer else COLORS["variant"]
        bar = ""
        ci = ci_bounds(r)
        if ci:
            a, b = f.x(ci[0]), f.x(ci[1])
            bar = (f'<path d="M{a:.1f} {y:.1f}H{b:.1f}M{a:.1f} {y - 4:.1f}V{y + 4:.1f}M{b:.1f} {y - 4:.1f}V{y + 4:.1f}" '
                   f'stroke="{color}" stroke-width="1.2" fill="none"/>')
            bars.append((a, y - 1.5, b, y + 1.5))
        out.append(f'<g class="point" data-variant="{escape(r.variant)}"><title>{escape(_tooltip(r, baseline))}</title>'
                   f'{bar}{_marker_svg(r, x, y)}</g>')
    return out, bars


def _front_svg(rows: list[Row], f: Frame, metric: str, front: set[str]) -> tuple[list[str], list]:
    """The Pareto front's step line above the points (a white edge under a red dashed line) and rings around its
    points; and its segments' boxes."""
    on = sorted((r for r in rows if r.variant in front), key=lambda r: (r.latency_ratio, -getattr(r, metric)))
    pts = [(f.x(r.latency_ratio), f.y(getattr(r, metric))) for r in on]
    corners = step_vertices([p[0] for p in pts], [p[1] for p in pts])
    if not corners:
        return [], []
    d = "M" + " L".join(f"{x:.1f} {y:.1f}" for x, y in corners)
    out = [f'<path d="{d}" stroke="#fff" stroke-width="6" fill="none" stroke-linejoin="round"/>',
           f'<path class="front" d="{d}" stroke="{COLORS["front"]}" stroke-width="2.5" stroke-dasharray="7 4" '
           'fill="none"/>']
    out += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" fill="none" stroke="{COLORS["front"]}" stroke-width="1.5"/>'
            for x, y in pts]
    boxes = [(min(p[0], q[0]) - 2.5, min(p[1], q[1]) - 2.5, max(p[0], q[0]) + 2.5, max(p[1], q[1]) + 2.5)
             for p, q in zip(corners, corners[1:])]
    return out, boxes


def _labels_svg(rows: list[Row], f: Frame, metric: str, baseline: str, avoid: list, soft: list) -> tuple[list[str], float]:
    """Each row's name where :func:`place_labels` puts it, a grey leader line where it stands away from its
    point; and the right edge of the rightmost name (names with no room spill right of the plot area)."""
    anchors = [(f.x(r.latency_ratio), f.y(getattr(r, metric))) for r in rows]
    sizes = [(text_width(r.variant, LABEL_SIZE) + 1, text_height(LABEL_SIZE)) for r in rows]
    front = _front(rows, metric)
    markers = [(x - 10, y - 10, x + 10, y + 10) if r.variant in front else (x - 6, y - 6, x + 6, y + 6)
               for r, (x, y) in zip(rows, anchors)]
    places = place_labels(anchors, sizes, (f.left + 2, f.top + 2, f.right - 2, f.bottom - 2), markers, avoid, soft,
                          label_order(rows, metric), gap=7, y_down=True)
    out, right = [], f.right
    for r, a, p in zip(rows, anchors, places):
        if p.leader:
            e = nearest_point(p.box, a)
            out.append(f'<line class="leader" x1="{a[0]:.1f}" y1="{a[1]:.1f}" x2="{e[0]:.1f}" y2="{e[1]:.1f}" '
                       'stroke="#888" stroke-width="0.8"/>')
        out.append(f'<g class="name"><title>{escape(_tooltip(r, baseline))}</title>'
                   + _svg_text(p.box[0], p.box[1], r.variant, LABEL_SIZE, attrs=' class="label"') + "</g>")
        right = max(right, p.box[2])
    return out, right


def _legend_svg(rows: list[Row], baseline: str, y: float, width: float) -> list[str]:
    """One line of keys under the chart (a second where they do not fit)."""
    keys = [("circle", COLORS["variant"], "variant"), ("rect", COLORS["peer"], "Ultralytics peer"),
            ("open", COLORS["variant"], "TensorRT timed without its engine (CPU)"),
            ("front", COLORS["front"], "Pareto front"), ("base", COLORS["muted"], f"{baseline} (x = 1)")]
    present = {"circle": any(not r.peer and not r.engine_missing for r in rows), "rect": any(r.peer for r in rows),
               "open": any(r.engine_missing for r in rows), "front": bool(rows), "base": True}
    out, x = [], 16.0
    for kind, color, text in (k for k in keys if present[k[0]]):
        w = 26 + text_width(text, 11) + 18
        if x + w > width - 8:
            x, y = 16.0, y + 20
        cy = y + text_height(11) / 2
        out.append({"circle": f'<circle cx="{x + 9}" cy="{cy:.1f}" r="5" fill="{color}"/>',
                    "rect": f'<rect x="{x + 4}" y="{cy - 5:.1f}" width="10" height="10" fill="{color}"/>',
                    "open": f'<circle cx="{x + 9}" cy="{cy:.1f}" r="5" fill="#fff" stroke="{color}" stroke-width="1.5"/>',
                    "front": f'<path d="M{x} {cy:.1f}h20" stroke="{color}" stroke-width="2.5" stroke-dasharray="7 4"/>',
                    "base": f'<path d="M{x} {cy:.1f}h20" stroke="{color}" stroke-dasharray="2 2"/>'}[kind])
        out.append(_svg_text(x + 26, y, text, 11, attrs=' class="legend"'))
        x += w
    return out


def chart_svg(rows: list[Row], baseline: str = BASELINE, metric: str = "map50_95", width: int = 1000,
              height: int = 620) -> str:
    """The accuracy-vs-latency chart of report.png as inline SVG: interval bars, markers (peers square, TensorRT
    rows timed without an engine open), the Pareto front above them, every name placed apart from the others
    (:func:`quant.report.plot.place_labels`), a ``<title>`` with each point's numbers. Rows without a latency
    ratio or the metric are left out; with none left the chart says so."""
    rows = plottable([_clean(r) for r in rows], metric)
    f, xt, yt = _frame(rows, metric, width, height)
    out = _axes_svg(f, xt, yt, f"latency ratio vs {baseline} (lower is faster)", LABELS.get(metric, metric),
                    f"accuracy vs latency (paired, vs {baseline})")
    avoid = []
    if f.xlim[0] <= 1.0 <= f.xlim[1]:
        bx = f.x(1.0)
        out.append(f'<line x1="{bx:.1f}" y1="{f.top}" x2="{bx:.1f}" y2="{f.bottom}" stroke="{COLORS["muted"]}" '
                   'stroke-dasharray="2 2"/>')
        top = f.bottom - 4 - text_height(10)
        out.append(_svg_text(bx + 4, top, baseline, 10, attrs=f' fill="{COLORS["muted"]}" class="baseline"'))
        avoid.append((bx + 2, top - 2, bx + 6 + text_width(baseline, 10), f.bottom - 2))
    if not rows:
        out.append(_svg_text((f.left + f.right) / 2, (f.top + f.bottom) / 2, f"nothing to plot: no variant has both "
                             f"a latency ratio and {metric}", 12, "middle"))
    front = _front(rows, metric)
    points, bars = _points_svg(rows, f, metric, baseline)
    line, segments = _front_svg(rows, f, metric, front)
    labels, right = _labels_svg(rows, f, metric, baseline, avoid, bars + segments) if rows else ([], f.right)
    out += points + line + labels + _legend_svg(rows, baseline, f.bottom + 48, width)
    w = max(width, math.ceil(right + 8))
    return (f'<svg class="chart" viewBox="0 0 {w} {height}" width="{w}" '
            f'height="{height}" font-family="{FONT}" role="img" aria-label="accuracy vs latency">'
            f'<rect width="{w}" height="{height}" fill="#fff"/>' + "\n".join(out) + "</svg>")


# ---- the page ---------------------------------------------------------------------------------------------

def page(rows: list[Row], header: dict, comparison: str | None = None) -> str:
    """report.html's text."""
    baseline = header.get("baseline") or BASELINE
    rows = [_clean(r) for r in rows]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>YOLO quantization benchmark — {escape(str(header.get('date', '')))}</title>",
             f"<style>{CSS}</style></head><body>", "<h1>YOLO quantization benchmark</h1>", _header_html(header),
             "<h2>Results</h2>", "<p>mAP in %, Δ in mAP50-95 points vs the baseline, ms/img = median model call at "
             "batch 1; × FP32 = paired latency ratio vs the baseline with its 95 % interval.</p>",
             table_html(rows, COMPACT, baseline),
             '<details><summary>All columns</summary><div class="wide">' + table_html(rows, tables.COLUMNS, baseline)
             + "</div></details>", "<h2>Accuracy vs latency</h2>",
             "<p>Hover a point or a name for its numbers.</p>", chart_svg(rows, baseline), _sections(rows, baseline)]
    if comparison:
        parts += ['<h2 id="comparison">Comparison</h2>', markdown_html(comparison)]
    return "\n".join(p for p in parts if p) + "\n</body></html>\n"


def write_html(rows: list[Row], path: Path, header: dict, comparison: str | None = None) -> Path:
    """Write report.html for ``rows`` (in table order, with their deltas, as :func:`quant.report.write.write_report`
    has them) and the run's ``header``; ``comparison``: the Markdown of
    :func:`quant.gate.compare.markdown_summary`, shown as a "Comparison" section. One self-contained file,
    written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page(rows, header, comparison), encoding="utf-8")
    os.replace(tmp, path)
    return path
