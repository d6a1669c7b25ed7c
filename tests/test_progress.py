"""Progress lines of long work: count, elapsed time, an upper estimate of what is left, and a log file."""

from quant.util import progress


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


def test_a_worker_step_file_says_where_it_is_and_what_is_left(tmp_path):
    now = [0.0]
    steps = progress.StepFile(tmp_path / "progress.json", clock=lambda: now[0])
    steps.begin("Calibration Progress(Phase 1)", 32)
    now[0] = 20.0
    steps.advance(16)
    assert progress.describe(tmp_path / "progress.json") == "Calibration Progress(Phase 1) 16/32, ~20s left"
    steps.begin_outer("LSQ blocks", 4)
    steps.begin("Tuning Procedure", None)
    now[0] = 80.0
    steps.advance_outer()
    assert progress.describe(tmp_path / "progress.json") == "LSQ blocks 1/4, ~3m00s left; Tuning Procedure 0/?"
    assert steps.history() == [{"name": "Calibration Progress(Phase 1)", "done": 16, "total": 32, "seconds": 20.0},
                               {"name": "Tuning Procedure", "done": 0, "total": None, "seconds": 60.0}]


def test_a_step_file_is_written_at_most_once_a_second_until_a_step_ends(tmp_path):
    now = [0.0]
    path = tmp_path / "progress.json"
    steps = progress.StepFile(path, clock=lambda: now[0])
    steps.begin("Collecting", 3)
    now[0] = 0.5
    steps.advance()
    assert progress.describe(path) == "Collecting 0/3"  # throttled
    now[0] = 0.6
    steps.advance(2)  # the step ends: written now
    assert progress.describe(path) == "Collecting 3/3, ~0s left"
    assert progress.describe(tmp_path / "absent.json") is None
