"""Accuracy-vs-latency chart (quant.plot): the PNG and its Pareto front."""

from __future__ import annotations

from quant.plot import pareto_front, write_plot

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _row(variant, ratio, map50_95, fidelity=None, ci=None, peer=False):
    return {"variant": variant, "peer": peer, "map50_95": map50_95, "fidelity_map50_95": fidelity,
            "latency_ratio": ratio, "latency_ratio_ci": ci, "latency_ms": None if ratio is None else 18.0 * ratio}


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
    rows = [{**r, "latency_ratio_ci": None, "peer": False} for r in ROWS]
    assert _is_png(write_plot(rows, tmp_path / "p.png"))


def test_plot_fidelity_and_its_fallback(tmp_path):
    assert _is_png(write_plot(ROWS, tmp_path / "fid.png", metric="fidelity_map50_95"))
    no_fid = [{**r, "fidelity_map50_95": None} for r in ROWS]
    assert _is_png(write_plot(no_fid, tmp_path / "fallback.png", metric="fidelity_map50_95"))


def test_plot_with_nothing_to_plot_still_writes_a_chart(tmp_path):
    """A run where every variant failed must not fail again when its report is written."""
    out = write_plot([_row("x", None, 0.5), {"variant": "y"}], tmp_path / "x.png")
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert write_plot([], tmp_path / "empty.png").read_bytes()[:8] == PNG_MAGIC
