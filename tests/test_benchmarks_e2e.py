"""`pytest benchmarks/` end to end on a tiny model: table, report, cache reuse, gates, histories."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from quant.util.hardware import describe
from quant.measure.row import FIDELITY_LABELS, SCORING
from quant.registry import PRESETS, REGISTRY

ROOT = Path(__file__).resolve().parents[1]
PERMISSIVE = """
[defaults]
max_drop_points = 100
max_latency_ratio = 100
max_latency_regression = 100   # a 1-2 ms tiny model is too noisy to judge; tests/test_planted_regressions.py does
"""


def _run(args, timeout=900):
    # a fresh session: not an xdist worker when these tests run under -n (pytest-benchmark reads
    # PYTEST_XDIST_WORKER and then saves no history)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pytest", "benchmarks/", "-p", "no:cacheprovider",
                           "-W", "error::pytest.PytestUnknownMarkWarning", *args],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def common(tiny_weights, tiny_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    (tmp / "t.toml").write_text(PERMISSIVE)
    return tmp, ["--weights", str(tiny_weights), "--data", str(tiny_data), "--imgsz", "96", "--allow-imgsz", "--calib-images", "4",
                 "--latency-rounds", "5", "--latency-calls", "1", "--latency-warmup", "1", "--cache-dir", str(tmp / "cache"),
                 "--thresholds", str(tmp / "t.toml"), "--benchmark-storage", f"file://{tmp / 'hist'}"]


@pytest.mark.slow
def test_full_run_then_cached_rerun_with_history(common):
    tmp, args = common
    first = _run([*args, "--report-dir", str(tmp / "r1"), "--benchmark-autosave"])
    assert first.returncode == 0, first.stdout[-3000:]
    assert "YOLO quantization benchmark" in first.stdout and "Δ [95 % CI]" in first.stdout
    report = json.loads((tmp / "r1" / "report.json").read_text())
    full = PRESETS["full"].select(REGISTRY)  # the default preset
    runnable = [n for n in full if not REGISTRY[n].unavailable()]
    assert [r["variant"] for r in report["rows"]] == runnable
    skipped = len(full) - len(runnable)
    assert (f"{skipped} skipped" in first.stdout) if skipped else "skipped" not in first.stdout
    assert report["network_attempts"] == []
    assert all(r["status"].startswith(("pass", "peer")) and r["latency_ms"] > 0 for r in report["rows"])
    assert not any(r["cached"] for r in report["rows"])
    assert all(r["fidelity_labels"] == FIDELITY_LABELS and not r["label_free"] and r["scoring"] == SCORING
               for r in report["rows"])
    floor = next(r for r in report["rows"] if r["variant"] == "onnx-fp32")["fidelity_floor"]
    assert 0 < floor <= 99.5 + 1e-7 and "fidelity floor: onnx-fp32 on the same images with" in first.stdout
    assert all(r["fidelity_floor"] is None for r in report["rows"] if r["variant"] != "onnx-fp32")
    intervals = {r["variant"]: r["delta_ci"] for r in report["rows"]}
    assert intervals.pop("onnx-fp32") is None and all(lo <= hi for lo, hi in intervals.values())
    assert "| onnx-int8-minmax " in (tmp / "r1" / "report.md").read_text()
    assert f"\nmachine {describe(report['machine'])}" in first.stdout  # the CPU next to every figure
    assert f"- machine: {describe(report['machine'])}" in (tmp / "r1" / "report.md").read_text()
    split = {r["variant"]: r["time_split"] for r in report["rows"]}  # where the time goes, from each profile
    assert split["onnx-int8-minmax"]["us"]["conv int8"] > 0 and "conv int8" not in split["onnx-fp32"]["us"]
    assert split["ov-int8"]["profiler"] == "OpenVINO PERF_COUNT" and split["pt-fp32"] is None
    assert "## Where the time goes" in (tmp / "r1" / "report.md").read_text()
    pt = next(r for r in report["rows"] if r["variant"] == "pt-fp32")
    assert pt["runs_as"]["omp_wait_policy"] == os.environ.get("OMP_WAIT_POLICY", "PASSIVE")  # no spin-waiting

    saved = list((tmp / "hist").rglob("*.json"))
    assert len(saved) == 1
    bench = json.loads(saved[0].read_text())["benchmarks"]
    info = {b["name"]: b["extra_info"] for b in bench}
    assert set(info["test_variant[onnx-int8-entropy]"]) >= {"map50_95", "map50", "box_precision", "recall", "size_mb", "config"}
    assert info["test_variant[onnx-int8-entropy]"]["config"]["method"] == "entropy"

    assert all(r["built_because"] != "cached" and r["evaluation"] == "measured" for r in report["rows"])
    assert (tmp / "r1" / "report.png").stat().st_size > 10_000
    assert json.loads((tmp / "r1" / "gab-smaller.json").read_text())

    second = _run([*args, "--report-dir", str(tmp / "r2"),
                   "--compare-to", str(tmp / "r1" / "report.json")])
    assert second.returncode == 0, second.stdout[-3000:]
    rows = json.loads((tmp / "r2" / "report.json").read_text())["rows"]
    assert all(r["cached"] and r["built_because"] == "cached" for r in rows)  # the rerun builds nothing ...
    assert all(r["evaluation"] == "cached" for r in rows)  # ... and evaluates nothing: it only re-times
    assert {r["variant"]: r["delta_ci"] for r in rows if r["variant"] != "onnx-fp32"} == intervals  # from the cache
    assert "comparison with" in second.stdout and "REGRESSION" not in second.stdout
    assert (tmp / "r2" / "comparison.md").read_text().startswith("## Benchmark comparison")


@pytest.mark.slow
def test_breached_gate_fails_with_a_clear_message(common):
    tmp, args = common
    (tmp / "strict.toml").write_text('[variants."onnx-fp32"]\nmin_map50_95 = 99.0\n')
    args = [a if a != str(tmp / "t.toml") else str(tmp / "strict.toml") for a in args]
    out = _run([*args, "-k", "onnx-fp32", "--report-dir", str(tmp / "r3")])
    assert out.returncode == 1
    assert re.search(r"onnx-fp32: mAP50-95 \d+\.\d\d < floor 99\.00", out.stdout), out.stdout[-2000:]
    assert "Traceback" not in out.stdout and "BenchSession(" not in out.stdout  # the sentence alone
    assert "FAILED benchmarks/test_variants.py::test_variant[onnx-fp32]" in out.stdout  # in pytest's summary
    breaches = [ln for ln in out.stdout.splitlines() if ln.startswith("GATE: ")]  # and whole, in ours
    assert len(breaches) == 1 and re.search(r"onnx-fp32: mAP50-95 \d+\.\d\d < floor 99\.00", breaches[0])
    assert "## Gate breaches" in (tmp / "r3" / "report.md").read_text()


@pytest.mark.slow
def test_parallel_workers_never_time_at_once(common):
    tmp, args = common
    out = _run([*args, "-n", "2", "-k", "onnx or ov", "--revalidate", "--report-dir", str(tmp / "r5")])
    assert out.returncode == 0, out.stdout[-3000:]
    rows = json.loads((tmp / "r5" / "report.json").read_text())["rows"]
    assert len({r["timing"]["pid"] for r in rows}) == 2  # both workers measured
    spans = sorted((r["timing"]["start"], r["timing"]["end"]) for r in rows)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:])), spans
    assert all(set(r["seconds"]) == {"build", "validate", "fidelity", "time"} for r in rows)


@pytest.mark.slow
def test_damaged_cache_entry_is_rebuilt_with_a_notice(common):
    tmp, args = common
    first = _run([*args, "-k", "onnx-int8-percentile", "--report-dir", str(tmp / "r6")])
    assert first.returncode == 0, first.stdout[-3000:]
    row = {r["variant"]: r for r in json.loads((tmp / "r6" / "report.json").read_text())["rows"]}["onnx-int8-percentile"]
    model = Path(row["artifact"])
    model.write_bytes(model.read_bytes()[:1000])  # truncated, manifest intact
    out = _run([*args, "-k", "onnx-int8-percentile", "--report-dir", str(tmp / "r7")])
    assert out.returncode == 0, out.stdout[-3000:]
    notices = [ln for ln in out.stdout.splitlines() if "is damaged" in ln]
    assert len(notices) == 1 and "onnx-int8-percentile" in notices[0] and "rebuilding" in notices[0]


@pytest.mark.slow
def test_compare_to_catches_an_accuracy_regression_with_one_line(common):
    tmp, args = common
    base = _run([*args, "-k", "onnx-int8-minmax", "--report-dir", str(tmp / "r8")])
    assert base.returncode == 0, base.stdout[-3000:]
    ref = json.loads((tmp / "r8" / "report.json").read_text())
    for r in ref["rows"]:  # the reference scored 0.5 points more: today's run has lost them
        if r["variant"] == "onnx-int8-minmax":
            r["map50_95"] += 0.5  # points, as report.json keeps them
    (tmp / "ref.json").write_text(json.dumps(ref))
    out = _run([*args, "-k", "onnx-int8-minmax", "--report-dir", str(tmp / "r9"), "--compare-to", str(tmp / "ref.json")])
    assert out.returncode == 1, out.stdout[-3000:]
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("REGRESSION:")]
    assert len(lines) == 1 and "onnx-int8-minmax: mAP50-95 fell 0.50 points" in lines[0]
    assert "Traceback" not in out.stdout


@pytest.mark.parametrize("option", ["--cache-dir", "--report-dir"])
def test_cache_or_report_dir_that_is_a_file_is_one_line(tmp_path, option):
    f = tmp_path / "file"
    f.write_text("x")
    out = _run([option, str(f), "--collect-only", "-q"], timeout=300)
    assert out.returncode == 4 and "Traceback" not in out.stderr + out.stdout
    assert f"'{f}' is a file, not a directory" in out.stderr


def test_bad_compare_reference_is_a_one_line_usage_error(tmp_path):
    out = _run(["--compare-to", str(tmp_path / "none.json"), "--collect-only", "-q"], timeout=300)
    assert out.returncode == 4 and "Traceback" not in out.stderr
    assert "ERROR:" in out.stderr and "none.json" in out.stderr


def test_bad_option_is_a_one_line_usage_error(tmp_path):
    out = _run(["--weights", str(tmp_path / "missing.pt")], timeout=300)
    assert out.returncode == 4
    assert f"ERROR: weights '{tmp_path / 'missing.pt'}' not found" in out.stderr


def test_bad_auto_search_option_is_a_one_line_usage_error():
    out = _run(["--auto-max-evals", "0", "--collect-only", "-q"], timeout=300)
    assert out.returncode == 4
    assert "ERROR: --auto-images, --auto-sensitivity-images, --auto-max-evals and --auto-budget-s must be positive" \
        in out.stderr


def test_only_a_selected_int8_variant_still_gates_against_the_baseline(common):
    tmp, args = common
    out = _run([*args, "-k", "onnx-int8-minmax and not headfloat", "--report-dir", str(tmp / "r4"), "--benchmark-disable"])
    assert out.returncode == 0, out.stdout[-3000:]
    rows = {r["variant"]: r for r in json.loads((tmp / "r4" / "report.json").read_text())["rows"]}
    assert set(rows) == {"onnx-fp32", "onnx-int8-minmax"}
    # (a 1-2 ms tiny model timed over 5 rounds may leave the A/A control too wide to judge latency)
    assert rows["onnx-fp32"]["status"] == "baseline only" and rows["onnx-int8-minmax"]["status"] in (
        "pass", "pass (latency inconclusive)")


# one row per backend and graph path (each calibration method's graph is the same as minmax's; the peers are
# Ultralytics' own exports), which keeps this run to about half the full table's time
YOLO11_ROWS = ("pt-fp32", "onnx-fp32", "onnx-int8-minmax", "onnx-int8-minmax-headfloat", "ov-fp32", "ov-int8",
               "ov-int8-headfloat", "trt-fp16", "trt-int8-minmax", "trt-int8-headfloat", "ppq-int8",
               "onnx-int8-auto", "trt-int8-auto", "trt-int8-nncf", "ov-int8-auto")


@pytest.mark.slow
def test_yolo11_runs_on_every_backend(common, yolo11_weights):
    """A YOLO11 (its C2PSA attention: MatMul, Softmax; depthwise head convs) builds, scores and times on every
    backend here, its head's decode float; the INT8 rows quantize every convolution outside it."""
    tmp, args = common
    args = [a if a != str(tmp / "cache") else str(tmp / "cache11") for a in args]
    args[args.index("--weights") + 1] = str(yolo11_weights)
    out = _run([*args, "-k", " or ".join(f"test_variant[{n}]" for n in YOLO11_ROWS), "--auto-max-evals", "6",
                "--report-dir", str(tmp / "r11")])
    assert out.returncode == 0, out.stdout[-3000:]
    rows = {r["variant"]: r for r in json.loads((tmp / "r11" / "report.json").read_text())["rows"]}
    assert list(rows) == [n for n in YOLO11_ROWS if not REGISTRY[n].unavailable()]
    assert all(r["status"].startswith("pass") and r["latency_ms"] > 0 for r in rows.values())
    full = rows["onnx-int8-minmax"]
    convs = int(full["int8_share"].split("/")[1])
    assert full["int8_share"] == f"{convs}/{convs}" and convs > 63  # YOLO11n has more convolutions than YOLOv8n
    assert "/model.23/dfl/conv/Conv" in full["float_nodes"]  # the decode, in YOLO11's head (model.23)
    assert rows["onnx-int8-minmax-headfloat"]["int8_share"] != full["int8_share"]
    # counted in the built artifacts (quant.model.graph.qdq_int8_convs, quant.build.ir.ir_int8_convs)
    assert rows["ov-int8"]["int8_share"] == full["int8_share"]
    assert rows["ov-int8-headfloat"]["int8_share"] == rows["onnx-int8-minmax-headfloat"]["int8_share"]
