"""Accuracy-vs-latency chart (quant.report.plot): the PNG and its Pareto front."""

from __future__ import annotations

from dataclasses import replace

import pytest

from quant.report.plot import LABEL_GID, chart, pareto_front, place_labels, write_plot
from quant.measure.row import Row

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _row(variant, ratio, map50_95, fidelity=None, ci=None, peer=False, **more):
    """A row; accuracies given as fractions for brevity, held in points as every row holds them."""
    points = lambda v: None if v is None else 100 * v  # noqa: E731
    return Row(variant, peer=peer, map50_95=points(map50_95), fidelity_map50_95=points(fidelity), latency_ratio=ratio,
               latency_ratio_ci=ci, latency_ms=None if ratio is None else 18.0 * ratio, **more)


ROWS = [_row("onnx-fp32", 1.0, 0.526, 0.979, [1.0, 1.0]),
        _row("onnx-int8-minmax", 1.06, 0.506, 0.874, [1.01, 1.10]),
        _row("onnx-int8-percentile", 0.74, 0.513, 0.874, [0.71, 0.77]),
        _row("ov-int8", 0.70, 0.497, 0.831),               # no interval
        _row("pt-fp32", 3.45, 0.526, None, None),
        _row("ul-onnx-int8", 1.97, 0.4985, 0.840, [1.90, 2.05], peer=True),
        _row("ul-openvino", 1.10, 0.526, None, peer=True),
        _row("trt-int8", None, 0.50, None)]                 # no latency: left out


def _is_png(path) -> bool:
    data = path.read_bytes()
    return data[:8] == PNG_MAGIC and len(data) > 10_000


def test_pareto_front_on_a_hand_made_set():
    pts = [("a", 1.0, 0.50), ("b", 0.7, 0.49), ("c", 0.8, 0.48),   # c: b is faster and better
           ("d", 1.2, 0.50),                                        # d: a is as good and faster
           ("e", 1.5, 0.53), ("f", 0.5, 0.30), ("g", 0.7, 0.49),    # g equals b: both on the front
           ("h", float("nan"), 0.9)]                                # ignored
    assert pareto_front(pts) == ["f", "b", "g", "a", "e"]
    assert pareto_front([]) == []
    assert pareto_front([("x", 1.0, 0.5)]) == ["x"]


def test_plot_with_cis_peers_and_gaps(tmp_path):
    out = write_plot(ROWS, tmp_path / "sub" / "pareto.png")
    assert out == tmp_path / "sub" / "pareto.png" and _is_png(out)
    assert not list(out.parent.glob("*.tmp"))


def test_plot_without_cis_or_peers(tmp_path):
    rows = [replace(r, latency_ratio_ci=None, peer=False) for r in ROWS]
    assert _is_png(write_plot(rows, tmp_path / "p.png"))


def test_plot_fidelity_and_its_fallback(tmp_path):
    assert _is_png(write_plot(ROWS, tmp_path / "fid.png", metric="fidelity_map50_95"))
    no_fid = [replace(r, fidelity_map50_95=None) for r in ROWS]
    assert _is_png(write_plot(no_fid, tmp_path / "fallback.png", metric="fidelity_map50_95"))


def test_plot_with_nothing_to_plot_still_writes_a_chart(tmp_path):
    """A run where every variant failed must not fail again when its report is written."""
    out = write_plot([_row("x", None, 0.5), Row("y")], tmp_path / "x.png")
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert write_plot([], tmp_path / "empty.png").read_bytes()[:8] == PNG_MAGIC


def test_report_lists_the_front_fastest_first_without_engineless_tensorrt_rows():
    """report.md's trade-offs: the front's rows in order of speed, peers marked, a failing row marked, and a
    TensorRT row timed without an engine (ONNX Runtime on the CPU) never on it, however fast it timed."""
    from quant.report.tables import front_lines, front_section, with_deltas

    rows = with_deltas([
        _row("onnx-fp32", 1.0, 0.526, ci=[0.97, 1.03]),
        _row("ov-int8-auto", 0.47, 0.525, ci=[0.45, 0.48], int8_share="49/63"),
        _row("onnx-int8-minmax", 0.85, 0.506, ci=[0.82, 0.87]),           # ov-int8-auto is faster and better
        _row("ov-int8", 0.37, 0.497, status="FAIL"),
        _row("ul-openvino-int8", 0.36, 0.480, peer=True),
        _row("trt-int8-minmax", 0.30, 0.530, engine={"built": False, "reason": "no TensorRT"}),
        _row("trt-fp16", 0.20, 0.470, engine={"built": True, "tensorrt": "10.9"}),
        _row("pt-fp32", None, 0.526)], "onnx-fp32")
    lines = front_lines(rows)
    assert [ln.split(":")[0] for ln in lines] == ["trt-fp16", "ul-openvino-int8 (Ultralytics)", "ov-int8",
                                                 "ov-int8-auto", "onnx-fp32"]
    assert lines[2].endswith("fails a gate") and not lines[3].endswith("fails a gate")
    assert lines[3] == "ov-int8-auto: 0.47× [0.45-0.48], mAP50-95 52.5 (Δ -0.10), INT8 convs 49/63"
    assert "## Trade-offs" in front_section(rows) and front_section([_row("x", None, 0.5)]) == ""


# The embedded default's cold run (2-core AMD EPYC): (variant, × FP32, its interval, mAP50-95, peer, engine built)
REAL = [("pt-fp32", 2.321, (2.153, 2.425), 53.29, False, True),
        ("onnx-fp32", 1.036, (1.019, 1.050), 53.29, False, True),
        ("onnx-int8-minmax", 0.846, (0.837, 0.866), 51.16, False, True),
        ("onnx-int8-entropy", 0.737, (0.710, 0.759), 50.18, False, True),
        ("onnx-int8-percentile", 0.807, (0.758, 0.834), 51.90, False, True),
        ("onnx-int8-minmax-headfloat", 0.932, (0.883, 0.945), 51.37, False, True),
        ("ov-fp32", 0.849, (0.804, 0.894), 53.29, False, True),
        ("ov-int8", 0.526, (0.487, 0.592), 50.30, False, True),
        ("ov-int8-headfloat", 0.928, (0.823, 1.082), 50.42, False, True),
        ("ul-onnx", 0.972, (0.908, 1.041), 53.29, True, True),
        ("ul-onnx-int8", 1.704, (1.601, 1.740), 51.26, True, True),
        ("ul-openvino-int8", 0.591, (0.570, 0.614), 50.10, True, True),
        ("trt-fp32", 1.056, (0.873, 1.121), 53.29, False, False),
        ("trt-fp16", 1.033, (0.992, 1.065), 53.23, False, False),
        ("trt-int8-minmax", 1.567, (1.489, 1.643), 51.86, False, False),
        ("trt-int8-entropy", 1.492, (1.303, 1.593), 47.47, False, False),
        ("trt-int8-percentile", 1.434, (1.390, 1.610), 51.53, False, False),
        ("trt-int8-headfloat", 1.434, (1.324, 1.548), 52.02, False, False),
        ("ppq-int8", 1.390, (1.338, 1.473), 51.87, False, True),
        ("ppq-int8-headfloat", 1.457, (1.408, 1.482), 51.91, False, True),
        ("onnx-int8-auto", 0.829, (0.809, 0.867), 53.08, False, True),
        ("trt-int8-auto", 1.412, (1.333, 1.515), 53.02, False, False),
        ("trt-int8-nncf", 1.533, (1.188, 1.718), 53.15, False, False),
        ("ov-int8-auto", 0.783, (0.689, 0.913), 53.08, False, True),
        ("ppq-int8-auto", 1.277, (1.236, 1.440), 53.14, False, True)]


def crowded_rows(squeeze: bool = False) -> list[Row]:
    """The real run's 25 rows; ``squeeze``: their latencies squeezed into 0.4-1.0x (every name in one crowd)."""
    lo, hi = min(x for _, x, *_ in REAL), max(x for _, x, *_ in REAL)
    move = (lambda v: 0.4 + 0.6 * (v - lo) / (hi - lo)) if squeeze else (lambda v: v)  # noqa: E731
    no_engine = {"built": False, "reason": "TensorRT is not installed"}
    return [Row(n, peer=peer, map50_95=m, latency_ratio=move(x), latency_ratio_ci=[move(ci[0]), move(ci[1])],
                latency_ms=25.0 * x, engine=None if built else no_engine) for n, x, ci, m, peer, built in REAL]


def _overlapping(named_boxes) -> list[tuple[str, str]]:
    """Every pair of (name, (x0, y0, x1, y1)) whose boxes share area."""
    return [(a, b) for i, (a, p) in enumerate(named_boxes) for b, q in named_boxes[i + 1:]
            if p[0] < q[2] and q[0] < p[2] and p[1] < q[3] and q[1] < p[3]]


@pytest.mark.parametrize("squeeze", [False, True], ids=["real", "squeezed"])
def test_no_two_names_overlap_on_a_crowded_chart(tmp_path, squeeze):
    """25 rows, most between 0.4x and 1.0x: on the figure as rendered, no two texts of the axes (the names and the
    baseline's) overlap, no name covers a point's marker, every name stays inside the axes, and the Pareto line is
    drawn above the points."""
    import matplotlib.pyplot as plt
    from matplotlib.text import Text

    rows = crowded_rows(squeeze)
    fig = chart(rows)
    try:
        fig.canvas.draw()
        renderer, ax = fig.canvas.get_renderer(), fig.axes[0]
        texts = [t for t in ax.texts if t.get_text()]
        labels = [t for t in texts if t.get_gid() == LABEL_GID]
        assert sorted(t.get_text() for t in labels) == sorted(r.variant for r in rows)
        extents = [(t.get_text(), tuple(Text.get_window_extent(t, renderer).extents)) for t in texts]  # no leader
        assert _overlapping(extents) == []
        markers = [(f"marker {r.variant}", (x - 6, y - 6, x + 6, y + 6)) for r in rows
                   for x, y in [ax.transData.transform((r.latency_ratio, r.map50_95))]]
        assert [(a, b) for a, b in _overlapping(extents + markers) if not a.startswith("marker ") and b.startswith("marker ")] == []
        inside = ax.get_window_extent(renderer)
        assert all(inside.x0 <= e[0] and e[2] <= inside.x1 and inside.y0 <= e[1] and e[3] <= inside.y1
                   for _, e in extents)
        front = [ln for ln in ax.lines if ln.get_label() == "Pareto front"]
        assert len(front) == 1 and front[0].get_zorder() > max(c.lines[0].get_zorder() for c in ax.containers)
    finally:
        plt.close(fig)
    assert _is_png(write_plot(rows, tmp_path / "crowded.png"))


def test_place_labels_keeps_every_name_apart_even_on_one_spot():
    """Thirty names of one point: none overlaps another, the point's marker or an obstacle; each placed name stays
    in the bounds; the same input places them the same way; and with no room left inside, names go to a column
    right of the bounds, still apart."""
    anchors, sizes = [(200.0, 150.0)] * 30, [(60.0 + 3 * i, 12.0) for i in range(30)]
    marker, blocked = (194.0, 144.0, 206.0, 156.0), (210.0, 140.0, 300.0, 160.0)
    places = place_labels(anchors, sizes, (0, 0, 400, 300), [marker] * 30, [blocked])
    boxes = [(f"n{i}", p.box) for i, p in enumerate(places)]
    assert _overlapping(boxes + [("marker", marker), ("blocked", blocked)]) == []
    assert all(0 <= b[0] and b[2] <= 400 and 0 <= b[1] and b[3] <= 300 for _, b in boxes)
    assert all(abs((b[2] - b[0]) - w) < 1e-9 and abs((b[3] - b[1]) - h) < 1e-9 for (_, b), (w, h) in zip(boxes, sizes))
    assert places[0].box[2] <= 194 and not places[0].leader and any(p.leader for p in places)  # right: blocked
    assert place_labels(anchors, sizes, (0, 0, 400, 300), [marker] * 30, [blocked]) == places
    cramped = place_labels(anchors[:6], sizes[:6], (150, 120, 260, 180), [marker] * 6)
    assert _overlapping([(str(i), p.box) for i, p in enumerate(cramped)]) == []
    assert any(p.box[0] > 260 for p in cramped)
