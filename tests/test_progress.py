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


def _overall(total, now, lines, bar_file=None):
    return progress.Overall(total, lines.append, bar_file=bar_file, clock=lambda: now[0])


def test_the_overall_line_counts_variants_names_the_stage_and_estimates_what_is_left():
    now, lines = [0.0], []
    o = _overall(3, now, lines)
    o.begin("onnx-fp32")
    o.stage("validating")
    o.stage("validating")  # the same stage again: no new line
    now[0] = 60.0
    o.end("done")
    o.begin("ov-int8")
    now[0] = 90.0
    o.stage("timing")  # 30 s into a variant: what is left counts them as spent
    assert lines == ["[1/3] onnx-fp32: building", "[1/3] onnx-fp32: validating", "[1/3] onnx-fp32: done · ~2m00s left",
                     "[2/3] ov-int8: building · ~2m00s left", "[2/3] ov-int8: timing · ~1m30s left"]


def test_inner_progress_is_the_bar_s_detail_on_a_terminal_and_its_own_line_elsewhere():
    import io

    now, lines, screen = [0.0], [], io.StringIO()
    bar = _overall(2, now, lines, bar_file=screen)
    progress.start_overall(bar)
    try:
        bar.begin("onnx-int8-auto")
        progress.say("onnx-int8-auto search: 4/12 minmax, 2 layers float [1m elapsed, at most ~2m left]")
        progress.stage("timing")
    finally:
        progress.start_overall(None)
        bar.close()
    text = screen.getvalue()
    assert "[1/2] onnx-int8-auto: building, search: 4/12 minmax" in text and "[1/2] onnx-int8-auto: timing" in text
    assert lines == []  # a bar writes no lines
    printed = []
    progress.set_sink(printed.append)
    try:
        progress.start_overall(_overall(2, now, lines))
        progress.say("onnx-int8-auto search: 4/12 minmax")
    finally:
        progress.start_overall(None)
        progress.set_sink(None)
    assert printed == ["onnx-int8-auto search: 4/12 minmax"]
