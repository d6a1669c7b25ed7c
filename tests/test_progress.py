"""Progress lines of long work: count, elapsed time, an upper estimate of what is left, and a log file."""

from quant import progress


def test_progress_lines_carry_count_elapsed_and_estimate(tmp_path):
    now = [0.0]
    lines = []
    progress.set_sink(lines.append)
    try:
        p = progress.Progress("onnx-int8-auto search", 4, tmp_path / "search.log", clock=lambda: now[0])
        now[0] = 30.0
        p.step("percentile, 0 layers float")
        now[0] = 90.0
        p.step("minmax, 0 layers float")
    finally:
        progress.set_sink(None)
    assert lines[0] == "onnx-int8-auto search: 1/4 percentile, 0 layers float [30s elapsed, at most ~1m30s left]"
    assert lines[1].endswith("[1m30s elapsed, at most ~1m30s left]")
    assert (tmp_path / "search.log").read_text().splitlines() == lines
