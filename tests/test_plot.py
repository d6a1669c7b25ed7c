"""Accuracy-vs-latency chart (quant.report.plot): the PNG and its Pareto front."""

from __future__ import annotations

from dataclasses import replace

from quant.report.plot import pareto_front, write_plot
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
