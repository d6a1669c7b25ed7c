"""github-action-benchmark export (quant.report.gab) and the CI workflow file."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from quant.report.gab import gab_entries, write_gab
from quant.measure.row import Row

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "benchmarks.yml"
ALLOWED = {"name", "unit", "value", "range", "extra"}
ROWS = [Row.from_dict(r) for r in [
    {"variant": "onnx-fp32", "peer": False, "precision": "fp32", "map50_95": 52.6, "fidelity_map50_95": 97.9,
     "latency_ms": 18.04, "latency_ratio": 1.0, "latency_ratio_ci": [1.0, 1.0], "latency_ratio_rounds": [1.0]},
    {"variant": "onnx-int8-percentile", "peer": False, "precision": "int8", "map50_95": 51.33,
     "fidelity_map50_95": 87.4, "latency_ms": 13.3, "latency_ratio": 0.73712, "latency_ratio_ci": [0.712, 0.774]},
    {"variant": "ul-onnx-int8", "peer": True, "precision": "int8", "map50_95": 49.85, "fidelity_map50_95": None,
     "latency_ms": 35.5, "latency_ratio": 1.97, "latency_ratio_ci": None},
    {"variant": "trt-int8", "peer": False, "precision": "int8", "map50_95": None, "fidelity_map50_95": None,
     "latency_ms": None, "latency_ratio": None, "latency_ratio_ci": None},
]]


def _check(entries: list[dict]) -> None:
    for e in entries:
        assert {"name", "unit", "value"} <= set(e) <= ALLOWED, e
        assert isinstance(e["value"], (int, float)) and not isinstance(e["value"], bool)
        assert isinstance(e["name"], str) and isinstance(e["unit"], str)
        assert all(isinstance(e[k], str) for k in ("range", "extra") if k in e)


def test_gab_entries_shape_and_values():
    smaller, bigger = gab_entries(ROWS)
    _check(smaller)
    _check(bigger)
    by_name = {e["name"]: e for e in smaller + bigger}
    ratio = by_name["onnx-int8-percentile latency ratio vs onnx-fp32"]
    assert ratio == {"name": "onnx-int8-percentile latency ratio vs onnx-fp32", "unit": "x", "value": 0.7371,
                     "range": "±0.031", "extra": "ms/img 13.3"}
    assert "range" not in by_name["ul-onnx-int8 latency ratio vs onnx-fp32"]
    assert by_name["onnx-int8-percentile ms/img"]["unit"] == "ms"
    assert by_name["onnx-int8-percentile mAP50-95"]["value"] == 51.33
    assert by_name["onnx-int8-percentile fidelity mAP50-95"]["unit"] == "%"
    assert "ul-onnx-int8 fidelity mAP50-95" not in by_name
    assert not any(n.startswith("trt-int8") for n in by_name)


def test_write_gab_files_are_json_lists(tmp_path):
    smaller, bigger = write_gab(ROWS, tmp_path / "out")
    assert (smaller.name, bigger.name) == ("gab-smaller.json", "gab-bigger.json")
    for path, expected in zip((smaller, bigger), gab_entries(ROWS)):
        data = json.loads(path.read_text())
        assert isinstance(data, list) and data == expected
        _check(data)


def test_workflow_charts_the_files_write_gab_writes(tmp_path):
    """benchmarks.yml calls the reusable workflow (quant-bench.yml, whose `quant-bench run` writes the report folder
    with gab-*.json) and, on pushes to main only, feeds those files to github-action-benchmark; the security rules
    of the workflows are in test_workflows.py."""
    text = WORKFLOW.read_text()
    wf = yaml.safe_load(text)
    triggers = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert "pull_request" in triggers and triggers["push"]["branches"] == ["main"]
    assert wf["jobs"]["benchmarks"]["uses"] == "./.github/workflows/quant-bench.yml"
    reusable = (ROOT / ".github" / "workflows" / "quant-bench.yml").read_text()
    assert 'quant-bench "${args[@]}"' in reusable and "--report-dir quant-bench-ci/report" in reusable
    assert "path: quant-bench-ci/report/" in reusable  # the report artifact holds the whole folder

    charts = wf["jobs"]["charts"]
    assert "github.event_name == 'push'" in charts["if"] and "refs/heads/main" in charts["if"]
    download = next(s for s in charts["steps"] if "download-artifact" in s.get("uses", ""))
    assert download["with"]["name"] == "${{ needs.benchmarks.outputs.report-artifact }}"
    gab = [s for s in charts["steps"] if "github-action-benchmark" in s.get("uses", "")]
    assert len(gab) == 2 and all(s["with"]["fail-on-alert"] is False for s in gab)
    assert all(s["with"]["auto-push"] is True for s in gab)  # the job itself runs on pushes to main only
    smaller, bigger = write_gab(ROWS, tmp_path)
    files = {s["with"]["tool"]: s["with"]["output-file-path"] for s in gab}
    assert files == {"customSmallerIsBetter": f"{download['with']['path']}/{smaller.name}",
                     "customBiggerIsBetter": f"{download['with']['path']}/{bigger.name}"}
