"""History comparison (quant.gate.compare) and its command line (python -m quant compare), on hand-made runs."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from quant.gate.compare import Change, Comparison, compare, format_comparison, load_run, markdown_summary
from quant.util.errors import QuantError

ROOT = Path(__file__).resolve().parents[1]
AMD = {"cpu": "AMD EPYC", "arch": "x86_64", "isa": ["avx2"], "cores": 2, "threads": 2}
INTEL = {"cpu": "Intel Xeon", "arch": "x86_64", "isa": ["avx2", "avx512_vnni", "avx512f"], "cores": 2, "threads": 2}
ROUNDS = [0.70 + 0.005 * i for i in range(15)]  # per-round ratios of onnx-int8-percentile, median 0.735


def _row(variant, map50_95, fidelity=None, ratio=1.0, rounds=None, ci=None, peer=False):
    return {"variant": variant, "peer": peer, "precision": "int8" if "int8" in variant else "fp32",
            "map50_95": map50_95, "fidelity_map50_95": fidelity, "latency_ms": 18.0 * ratio,
            "latency_ratio": ratio, "latency_ratio_ci": ci, "latency_ratio_rounds": rounds, "status": "pass"}


def _report(machine=AMD) -> dict:
    """A report.json as the suite writes it (header + rows)."""
    return {"date": "2025-01-01", "weights": "yolov8n-shapes.pt", "imgsz": 320, "baseline": "onnx-fp32",
            "machine": copy.deepcopy(machine),
            "rows": [_row("onnx-fp32", 0.526, 0.979, 1.0, [1.0] * 15, [1.0, 1.0]),
                     _row("onnx-int8-percentile", 0.5261, 0.874, 0.735, list(ROUNDS), [0.715, 0.755]),
                     _row("ul-onnx-int8", 0.4985, 0.840, 1.97, None, None, peer=True)]}


def _run(report: dict, source: str = "old.json") -> dict:
    return {"machine": report["machine"], "rows": {r["variant"]: r for r in report["rows"]}, "source": source,
            "baseline": report["baseline"]}


def _rows(run) -> dict:
    return run["rows"]


def TEN(variant) -> dict:
    """A 10 % latency limit (the default is 25 %: what identical reruns need between runs)."""
    return {"max_latency_regression": 0.10}


# ----------------------------------------------------------------------------------------- compare()


def test_identical_runs_have_no_regression():
    cmp = compare(_run(_report()), _run(_report(), "new.json"))
    assert cmp.regressions == [] and cmp.improvements == []
    assert [c.verdict for c in cmp.changes] == ["ok", "ok", "ok"]
    assert cmp.latency_refused is None and cmp.only_old == [] and cmp.only_new == []
    c = cmp.changes[1]
    assert c.map_delta_points == 0 and c.latency_change == pytest.approx(1.0)


def test_accuracy_drop_is_one_regression_line_with_both_values():
    old, new = _run(_report()), _run(_report(), "new.json")
    _rows(new)["onnx-int8-percentile"]["map50_95"] = 0.5209
    cmp = compare(old, new, limits_for=lambda v: {"max_map_regression_points": 0.1})
    assert len(cmp.regressions) == 1
    msg = cmp.regressions[0]
    assert msg.startswith("onnx-int8-percentile: mAP50-95 fell 0.52 points since old.json")
    assert "(52.61 -> 52.09)" in msg and "> max 0.10" in msg and "\n" not in msg
    assert cmp.changes[1].map_delta_points == pytest.approx(-0.52)


def _drop(new_value: float, limit: float) -> Comparison:
    old, new = _run(_report()), _run(_report(), "new.json")
    _rows(old)["onnx-int8-percentile"]["map50_95"] = 0.5
    _rows(new)["onnx-int8-percentile"]["map50_95"] = new_value
    return compare(old, new, limits_for=lambda v: {"max_map_regression_points": limit})


def test_drop_exactly_at_the_limit_passes_and_a_hair_above_fails():
    limit = 0.09765625  # = 100 * (0.5 - 0.4990234375), exact in binary
    assert _drop(0.4990234375, limit).regressions == []
    assert len(_drop(0.4990234375 - 2.0 ** -30, limit).regressions) == 1


def test_fidelity_drop_uses_the_same_limit():
    old, new = _run(_report()), _run(_report(), "new.json")
    _rows(new)["onnx-int8-percentile"]["fidelity_map50_95"] = 0.860
    cmp = compare(old, new)
    assert len(cmp.regressions) == 1 and "fidelity mAP50-95 fell 1.40 points" in cmp.regressions[0]
    assert cmp.changes[1].fidelity_delta_points == pytest.approx(-1.4)


def _labelled(run, labels, label_free=False):
    for row in _rows(run).values():
        row["fidelity_labels"], row["label_free"] = labels, label_free
    return run


def test_fidelity_against_labels_made_another_way_is_not_compared():
    """A history recorded before the fidelity labels were the validator's own detections (no
    ``fidelity_labels``): its fidelity is not compared, so neither a false alarm nor a false pass comes
    from the change of labels; mAP50-95 against the val labels still is."""
    from quant.measure.row import FIDELITY_LABELS

    old, new = _run(_report()), _labelled(_run(_report(), "new.json"), FIDELITY_LABELS)
    _rows(new)["onnx-int8-percentile"]["fidelity_map50_95"] = 0.760
    cmp = compare(old, new)
    assert cmp.regressions == [] and cmp.changes[1].fidelity_delta_points is None
    assert cmp.changes[1].not_compared == ("fidelity_map50_95",)
    assert "not compared for onnx-fp32, onnx-int8-percentile, ul-onnx-int8: old.json made those labels" in \
        format_comparison(cmp)
    _rows(new)["onnx-int8-percentile"]["map50_95"] = 0.5161
    assert len(compare(old, new).regressions) == 1  # the labelled mAP is still compared
    _labelled(old, FIDELITY_LABELS)  # the same labels on both sides: the planted fidelity drop is caught
    cmp = compare(old, new)
    assert any("fidelity mAP50-95 fell 11.40 points" in m for m in cmp.regressions)
    assert "made those labels" not in format_comparison(cmp)


def test_label_free_runs_with_labels_made_another_way_compare_no_accuracy():
    from quant.measure.row import FIDELITY_LABELS

    old, new = _run(_report()), _labelled(_run(_report(), "new.json"), FIDELITY_LABELS, label_free=True)
    _rows(new)["onnx-int8-percentile"].update(map50_95=0.40, fidelity_map50_95=0.40)
    cmp = compare(old, new)
    assert cmp.regressions == [] and cmp.changes[1].not_compared == ("map50_95", "fidelity_map50_95")
    assert cmp.changes[1].map_delta_points is None


def test_runs_that_scored_boxes_another_way_compare_no_accuracy():
    """A history recorded before predicted boxes were clipped to the image (no ``scoring``): neither
    mAP50-95 nor fidelity is compared with it, latency still is; with the same scoring on both sides
    the planted drop is caught."""
    from quant.measure.row import SCORING

    old, new = _slower(1.25)
    for row in _rows(new).values():
        row["scoring"] = SCORING
    _rows(new)["onnx-int8-percentile"].update(map50_95=0.40, fidelity_map50_95=0.40)
    cmp = compare(old, new, limits_for=TEN)
    assert cmp.changes[1].not_compared == ("map50_95", "fidelity_map50_95") and cmp.changes[1].map_delta_points is None
    assert [m for m in cmp.regressions if "mAP" in m] == [] and any("latency" in m for m in cmp.regressions)
    text = format_comparison(cmp)
    assert "accuracy not compared for onnx-fp32, onnx-int8-percentile, ul-onnx-int8: old.json scored" in text
    assert "made those labels" not in text
    for row in _rows(old).values():
        row["scoring"] = SCORING
    cmp = compare(old, new, limits_for=TEN)
    assert any("mAP50-95 fell 12.61 points" in m for m in cmp.regressions) and "scored the" not in format_comparison(cmp)


def test_improvement_is_reported_not_failed():
    old, new = _run(_report()), _run(_report(), "new.json")
    _rows(new)["onnx-int8-percentile"]["map50_95"] = 0.5361
    cmp = compare(old, new)
    assert cmp.regressions == []
    assert cmp.changes[1].verdict == "improved"
    assert cmp.improvements == ["onnx-int8-percentile: mAP50-95 rose 1.00 points since old.json (52.61 -> 53.61)"]


def _slower(factor: float) -> tuple[dict, dict]:
    old, new = _run(_report()), _run(_report(), "new.json")
    row = _rows(new)["onnx-int8-percentile"]
    row["latency_ratio_rounds"] = [x * factor for x in ROUNDS]
    row["latency_ratio"] = 0.735 * factor
    return old, new


def test_latency_rounds_25_percent_slower_is_a_regression():
    cmp = compare(*_slower(1.25), limits_for=TEN)
    assert len(cmp.regressions) == 1
    msg = cmp.regressions[0]
    assert msg.startswith("onnx-int8-percentile: latency vs onnx-fp32 rose 1.25x since old.json (0.73x -> 0.92x, ")
    assert "95 % interval" in msg and msg.endswith("> max +10 %")
    c = cmp.changes[1]
    assert c.latency_change == pytest.approx(1.25) and c.latency_ci[0] > 1.0


def test_latency_faster_is_an_improvement():
    cmp = compare(*_slower(0.8), limits_for=TEN)
    assert cmp.regressions == [] and len(cmp.improvements) == 1 and "latency vs onnx-fp32 fell 0.80x" in cmp.improvements[0]


def test_latency_rise_within_the_limit_passes():
    assert compare(*_slower(1.05)).regressions == []
    limits = {"max_latency_regression": 0.30}
    assert compare(*_slower(1.25), limits_for=lambda v: limits).regressions == []


def test_latency_without_rounds_falls_back_to_ratios_and_intervals():
    old, new = _run(_report()), _run(_report(), "new.json")
    for run in (old, new):
        _rows(run)["onnx-int8-percentile"]["latency_ratio_rounds"] = None
    _rows(new)["onnx-int8-percentile"].update(latency_ratio=0.735 * 1.25, latency_ratio_ci=[0.90, 0.94])
    cmp = compare(old, new, limits_for=TEN)
    c = cmp.changes[1]
    assert c.latency_change == pytest.approx(1.25)
    assert c.latency_ci == pytest.approx((0.90 / 0.755, 0.94 / 0.715))
    assert len(cmp.regressions) == 1
    # overlapping intervals: a 12 % rise that is not significant is no regression
    _rows(new)["onnx-int8-percentile"].update(latency_ratio=0.735 * 1.12, latency_ratio_ci=[0.70, 0.95])
    assert compare(old, new, limits_for=TEN).regressions == []


def test_different_machines_refuse_latency_but_compare_accuracy():
    old, new = _slower(1.25)
    new["machine"] = INTEL
    _rows(new)["onnx-int8-percentile"]["map50_95"] = 0.5209
    cmp = compare(old, new)
    assert cmp.latency_refused == ("latency not compared: recorded on different machines (AMD EPYC [avx2] vs "
                                   "Intel Xeon [avx2, avx512_vnni, avx512f]); use --compare-force to compare anyway")
    assert len(cmp.regressions) == 1 and "mAP50-95 fell" in cmp.regressions[0]
    assert all(c.latency_change is None for c in cmp.changes)
    assert cmp.latency_refused in format_comparison(cmp)


def test_same_cpu_different_isa_or_missing_machine_refuse_latency():
    old, new = _slower(1.25)
    new["machine"] = {**AMD, "isa": ["avx2", "avx_vnni"]}
    assert compare(old, new).latency_refused is not None
    new["machine"] = None
    cmp = compare(old, new)
    assert "machine not recorded" in cmp.latency_refused and cmp.regressions == []


def test_same_cpu_different_gpu_refuses_latency():
    """GPU rows timed on an H100 and on an H200 are not comparable, even with the same host CPU."""
    old, new = _slower(1.25)
    old["machine"], new["machine"] = {**AMD, "gpu": "NVIDIA H100 80GB HBM3"}, {**AMD, "gpu": "NVIDIA H200"}
    assert "AMD EPYC [avx2] + NVIDIA H100 80GB HBM3 vs AMD EPYC [avx2] + NVIDIA H200" in compare(old, new).latency_refused
    new["machine"] = {**AMD, "gpu": "NVIDIA H100 80GB HBM3"}
    assert compare(old, new).latency_refused is None


def test_force_latency_compares_across_machines():
    old, new = _slower(1.25)
    new["machine"] = INTEL
    cmp = compare(old, new, limits_for=TEN, force_latency=True)
    assert cmp.latency_refused is None and len(cmp.regressions) == 1 and "latency" in cmp.regressions[0]


def test_missing_and_new_variants_are_listed():
    old, new = _run(_report()), _run(_report(), "new.json")
    del _rows(new)["ul-onnx-int8"]
    _rows(new)["ov-int8"] = _row("ov-int8", 0.497, 0.83, 0.70)
    cmp = compare(old, new)
    assert cmp.only_old == ["ul-onnx-int8"] and cmp.only_new == ["ov-int8"]
    assert [c.variant for c in cmp.changes] == ["onnx-fp32", "onnx-int8-percentile"]
    text = format_comparison(cmp)
    assert "missing now" in text and "ul-onnx-int8" in text and "ov-int8" in text


def test_baseline_is_never_a_latency_regression():
    old, new = _run(_report()), _run(_report(), "new.json")
    _rows(new)["onnx-fp32"].update(latency_ratio=2.0, latency_ratio_rounds=[2.0] * 15, latency_ratio_ci=[2.0, 2.0])
    cmp = compare(old, new)
    assert cmp.regressions == [] and cmp.changes[0].latency_change is None


def test_table_and_markdown():
    cmp = compare(*_slower(1.25), limits_for=TEN)
    text = format_comparison(cmp)
    assert "variant" in text and "Δ mAP50-95" in text and "REGRESSION" in text and "1.25x (" in text
    md = markdown_summary(cmp)
    assert md.startswith("## Benchmark comparison\n") and "1 regression since" in md
    assert "| onnx-int8-percentile" in md and "\n- onnx-int8-percentile: latency vs onnx-fp32 rose" in md
    assert "No regressions" in markdown_summary(compare(_run(_report()), _run(_report())))


def test_change_is_frozen():
    c = Change("x")
    with pytest.raises(AttributeError):
        c.variant = "y"  # type: ignore[misc]


# ------------------------------------------------------------------------------------------ load_run()


def _history(report: dict) -> dict:
    """A pytest-benchmark history file with the rows in extra_info (as the suite autosaves it)."""
    return {"machine_info": {"node": "ci", "cpu": {"brand_raw": "AMD EPYC"}}, "datetime": "2025-01-01T00:00:00",
            "benchmarks": [{"name": f"test_variant[{r['variant']}]", "group": None,
                            "extra_info": {**r, "machine": report["machine"]}, "stats": {"median": 0.018}}
                           for r in report["rows"]]}


def test_load_report_json(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(_report()))
    run = load_run(path)
    assert run["machine"] == AMD and run["source"] == str(path) and run["baseline"] == "onnx-fp32"
    assert list(run["rows"]) == ["onnx-fp32", "onnx-int8-percentile", "ul-onnx-int8"]
    assert run["rows"]["onnx-int8-percentile"].latency_ratio_rounds == ROUNDS


def test_load_history_json(tmp_path):
    path = tmp_path / "0001_abc.json"
    hist = _history(_report())
    hist["benchmarks"].append({"name": "test_unrelated", "extra_info": {}})
    path.write_text(json.dumps(hist))
    run = load_run(path)
    assert run["machine"] == AMD and list(run["rows"]) == ["onnx-fp32", "onnx-int8-percentile", "ul-onnx-int8"]
    assert run["rows"]["ul-onnx-int8"].peer is True
    assert compare(load_run(path), run).regressions == []


def test_load_by_run_id_takes_the_newest_match(tmp_path):
    folder = tmp_path / "Linux-CPython-3.11-64bit"
    folder.mkdir()
    older, newer = _history(_report()), _history(_report(INTEL))
    (folder / "0003_aaa_20250101_uncommitted-changes.json").write_text(json.dumps(older))
    newest = folder / "0003_bbb_20250102_uncommitted-changes.json"
    newest.write_text(json.dumps(newer))
    os.utime(newest, (2e9, 2e9))
    (folder / "0004_ccc.json").write_text(json.dumps(older))
    run = load_run("0003", storage=tmp_path)
    assert run["source"] == str(newest) and run["machine"] == INTEL
    assert load_run("0004", storage=str(tmp_path))["machine"] == AMD


def _one_line_error(ref, **kw) -> str:
    with pytest.raises(QuantError) as e:
        load_run(ref, **kw)
    msg = str(e.value)
    assert "\n" not in msg and msg
    return msg


def test_load_run_bad_inputs(tmp_path):
    assert "not found" in _one_line_error(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    assert "not valid JSON" in _one_line_error(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1, 2]")
    assert "neither a report.json" in _one_line_error(tmp_path / "list.json")
    (tmp_path / "empty.json").write_text(json.dumps({"rows": []}))
    assert "no benchmark rows" in _one_line_error(tmp_path / "empty.json")
    (tmp_path / "noextra.json").write_text(json.dumps({"benchmarks": [{"name": "test_x", "extra_info": {}}]}))
    assert "no benchmark rows" in _one_line_error(tmp_path / "noextra.json")
    assert "0009" in _one_line_error("0009", storage=tmp_path)
    assert "does not exist" in _one_line_error("0009", storage=tmp_path / "missing")
    assert "directory" in _one_line_error(tmp_path)


# ----------------------------------------------------------------------------------------------- CLI


def _cli(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "quant", "compare", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def two_reports(tmp_path) -> tuple[Path, Path, dict]:
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(_report()))
    return old, new, _report()


def test_cli_exit_1_on_planted_accuracy_drop(two_reports, tmp_path):
    old, new, report = two_reports
    report["rows"][1]["map50_95"] = 0.5209
    new.write_text(json.dumps(report))
    md = tmp_path / "out" / "comparison.md"
    p = _cli(old, new, "--markdown", md)
    assert p.returncode == 1, p.stdout + p.stderr
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("REGRESSION: ")]
    assert len(lines) == 1 and "onnx-int8-percentile: mAP50-95 fell 0.52 points" in lines[0]
    assert "Traceback" not in p.stdout + p.stderr
    text = md.read_text()
    assert "## Benchmark comparison" in text and "1 regression since" in text


def test_cli_exit_0_on_identical(two_reports):
    old, new, report = two_reports
    new.write_text(json.dumps(report))
    p = _cli(old, new)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "REGRESSION" not in p.stdout and "onnx-int8-percentile" in p.stdout


def test_cli_exit_2_on_missing_file(two_reports, tmp_path):
    old, _, _ = two_reports
    p = _cli(old, tmp_path / "missing.json")
    assert p.returncode == 2
    out = (p.stdout + p.stderr).strip().splitlines()
    assert len(out) == 1 and out[0].startswith("ERROR: ") and "missing.json" in out[0]
    assert "Traceback" not in p.stdout + p.stderr


def test_cli_thresholds_and_force(two_reports, tmp_path, monkeypatch):
    """--thresholds feeds Thresholds.for_variant; --compare-force compares latency across machines."""
    from quant import __main__ as cli
    from quant.gate import thresholds as gates

    old, new, report = two_reports
    report["machine"] = INTEL
    report["rows"][1]["latency_ratio_rounds"] = [x * 1.35 for x in ROUNDS]  # over the default 25 %
    new.write_text(json.dumps(report))

    class FakeThresholds:
        @classmethod
        def load(cls, path):
            assert str(path) == "limits.toml"
            return cls()

        def for_variant(self, name):
            return {"max_drop_points": 1.0, "max_latency_regression": 0.5}

    monkeypatch.setattr(gates, "Thresholds", FakeThresholds)
    assert cli.main(["compare", str(old), str(new)]) == 0  # refused: different machines
    assert cli.main(["compare", str(old), str(new), "--compare-force"]) == 1
    assert cli.main(["compare", str(old), str(new), "--compare-force", "--thresholds", "limits.toml"]) == 0


def test_cli_with_the_repository_thresholds_file(two_reports):
    """The real Thresholds loader: keys it does not set fall back to the defaults (0.1 points, 25 %)."""
    from quant import __main__ as cli

    old, new, report = two_reports
    new.write_text(json.dumps(report))
    assert cli.main(["compare", str(old), str(new), "--thresholds", str(ROOT / "quant" / "gate" / "thresholds.toml")]) == 0
    report["rows"][1]["map50_95"] = 0.5209
    new.write_text(json.dumps(report))
    assert cli.main(["compare", str(old), str(new), "--thresholds", str(ROOT / "quant" / "gate" / "thresholds.toml")]) == 1


def test_a_peer_that_got_worse_is_reported_not_failed():
    old, new = _run(_report()), _run(_report(), "new.json")
    peer = new["rows"]["ul-onnx-int8"]
    new["rows"]["ul-onnx-int8"] = {**peer, "map50_95": peer["map50_95"] - 0.01}  # 1 point worse
    cmp = compare(old, new)
    change = next(c for c in cmp.changes if c.variant == "ul-onnx-int8")
    assert cmp.regressions == [] and change.verdict == "worse (peer)"
    assert change.peer_changes and "fell 1.00 points" in change.peer_changes[0]
