"""The quant-bench command: presets, list, pytest's command line for run, init's starter thresholds, merge, and the
compact table. In-process and fast; the installed command end to end is tests/test_install.py."""

from __future__ import annotations

import json
import os
import tomllib

import pytest

from quant import cli
from quant.gate.starter import starter_thresholds
from quant.gate.thresholds import Thresholds, check_row
from quant.measure.row import Row
from quant.registry import BASELINE, PRESETS, REGISTRY
from quant.report import tables
from quant.run.options import OPTIONS


def test_the_preset_option_offers_exactly_the_registry_s_presets_and_full_runs_everything():
    assert set(OPTIONS["--preset"]["choices"]) == set(PRESETS)
    assert OPTIONS["--preset"]["default"] == "full"
    assert PRESETS["full"].select(REGISTRY) == [n for n in REGISTRY if n != "onnx-int8-auto-quick"]


def test_quick_is_inside_standard_and_each_names_registered_variants():
    for p in PRESETS.values():
        assert set(p.variants or ()) <= set(REGISTRY), p.name
    assert set(PRESETS["quick"].variants) - {"onnx-int8-auto-quick"} <= set(PRESETS["standard"].variants)
    quick = PRESETS["quick"].select(REGISTRY, gpu=False)
    assert quick[0] == BASELINE and "onnx-int8-auto-quick" in quick and "ov-int8" in quick
    assert all(REGISTRY[n].precision.value == "int8" for n in quick[1:])


def test_on_a_machine_without_cuda_the_gpu_rows_are_left_out_of_quick_and_standard_not_full():
    for name in ("quick", "standard"):
        without, with_gpu = PRESETS[name].select(REGISTRY, gpu=False), PRESETS[name].select(REGISTRY, gpu=True)
        assert not any("gpu" in REGISTRY[n].markers for n in without)
        assert any("gpu" in REGISTRY[n].markers for n in with_gpu)
    assert PRESETS["full"].select(REGISTRY, gpu=False) == PRESETS["full"].select(REGISTRY, gpu=True)


def test_list_names_every_variant_with_its_presets_and_whether_it_runs_here(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in REGISTRY:
        assert f"\n{name} " in out
    rows = {r["variant"]: r for r in cli.variant_table()}
    assert rows[BASELINE]["here"] == "yes" and "quick" in rows[BASELINE]["presets"]
    assert cli.main(["list", "--preset", "quick"]) == 0
    quick = [ln.split()[0] for ln in capsys.readouterr().out.splitlines()[2:] if ln and ":" not in ln.split()[0]]
    assert quick == PRESETS["quick"].select(REGISTRY)


def test_run_collects_the_package_s_benchmark_with_no_ini_or_conftest_of_the_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = cli.pytest_args("quick", ["-k", "ov", "--weights", "m.pt"])
    assert args[0] == str(cli.BENCHMARK) and cli.BENCHMARK.is_file()
    assert args[args.index("-c") + 1] == os.devnull and "--noconftest" in args
    assert args[args.index("--rootdir") + 1] == str(tmp_path)
    assert args[-6:] == ["--preset", "quick", "-k", "ov", "--weights", "m.pt"]
    assert "-q" in args and "-q" not in cli.pytest_args("quick", ["-v"])


def test_unknown_options_of_commands_that_do_not_run_the_benchmark_are_an_error(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["list", "--bogus"])
    assert e.value.code == 2 and "unrecognized arguments: --bogus" in capsys.readouterr().err


def _row(variant, map50_95, ratio=None, ci=None, **kw) -> Row:
    return Row(variant, precision="int8" if "int8" in variant else "fp32", map50_95=map50_95, latency_ms=2.0,
               latency_ratio=ratio, latency_ratio_ci=ci, status="pass", **kw)


def _run(rows) -> dict:
    """A run as load_run gives a report.json: its rows with their Δ against the baseline."""
    return {"rows": {r.variant: r for r in tables.with_deltas(rows)}, "baseline": BASELINE}


HEADER = {"weights": "/models/mine.pt", "imgsz": 640, "date": "2026-12-07T12:00:00+00:00",
          "machine": {"cpu": "AMD EPYC", "isa": ["avx2"], "cores": 2}}


def test_init_s_starter_limits_are_the_measured_values_plus_the_stated_margins(tmp_path):
    run = _run([_row(BASELINE, 50.0, 1.0, [0.98, 1.02]), _row("onnx-int8-percentile", 48.5, 0.8, [0.75, 0.9],
                                                           delta_ci=[-2.0, -1.0]),
                _row("ul-onnx-int8", 47.0, 1.5, [1.4, 1.6], peer=True)])
    text = starter_thresholds(run, HEADER, drop_margin=0.5, latency_margin=0.25)
    data = tomllib.loads(text)
    assert data["variants"]["onnx-fp32"] == {"min_map50_95": 49.5}
    assert data["variants"]["onnx-int8-percentile"] == {"min_map50_95": 48.0, "max_drop_points": 2.0,
                                                       "max_latency_ratio": 1.12}
    assert "ul-onnx-int8" not in data["variants"]  # peers are yardsticks, not gated
    assert "measured drop 1.50 (95 % interval -2.00 to -1.00) + 0.5" in text and "AMD EPYC [avx2]" in text
    (tmp_path / "t.toml").write_text(text)
    t = Thresholds.load(tmp_path / "t.toml")
    base, same = run["rows"][BASELINE], run["rows"]["onnx-int8-percentile"]
    limits = t.for_variant("onnx-int8-percentile")
    assert check_row(same, limits, base) == []  # the run it was written from passes
    worse = _row("onnx-int8-percentile", 47.9, 0.8, [0.75, 0.9])  # 2.1 points below FP32 now
    assert any("fell 2.10 points" in f or "2.10" in f for f in check_row(worse, limits, base))
    slower = _row("onnx-int8-percentile", 48.5, 1.2, [1.15, 1.25])
    assert any("latency" in f for f in check_row(slower, limits, base))


def _report(path, weights, cpu, rows):
    path.mkdir(parents=True)
    (path / "report.json").write_text(json.dumps({**HEADER, "weights": weights, "baseline": BASELINE,
                                                  "machine": {"cpu": cpu, "isa": [], "cores": 2},
                                                  "accuracy_unit": "points", "rows": [r.to_dict() for r in rows]}))
    return path


def test_merge_puts_every_model_and_machine_in_one_table(tmp_path, capsys):
    a = _report(tmp_path / "a", "/m/face.pt", "AMD EPYC", [_row(BASELINE, 50.0, 1.0), _row("ov-int8", 48.0, 0.5)])
    b = _report(tmp_path / "b", "/m/parts.pt", "Intel Xeon", [_row(BASELINE, 60.0, 1.0), _row("ov-int8", 59.5, 0.4)])
    assert cli.main(["merge", str(a), str(b / "report.json"), "--out", str(tmp_path / "m")]) == 0
    md = (tmp_path / "m" / "merged.md").read_text()
    assert "face.pt" in md and "parts.pt" in md and "Intel Xeon" in md and "-2.00" in md and "-0.50" in md
    merged = json.loads((tmp_path / "m" / "merged.json").read_text())
    assert len(merged["rows"]) == 4
    assert "wrote" in capsys.readouterr().out


def test_merge_of_a_missing_report_is_one_line(tmp_path, capsys):
    assert cli.main(["merge", str(tmp_path / "nope"), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("ERROR: ") and "nope" in err
    assert not (tmp_path / "m").exists()


def test_the_compact_table_keeps_the_columns_a_reader_decides_on_and_is_narrow():
    rows = tables.table_rows([_row(BASELINE, 53.3, 1.0, [0.98, 1.03]),
                              _row("onnx-int8-auto-something-long", 53.0, 0.83, [0.8, 0.86], delta_ci=[-0.5, -0.1],
                                   int8_share="59/63")], list(REGISTRY))
    compact, wide = tables.table(rows, wide=False), tables.table(rows)
    assert max(map(len, compact.splitlines())) <= 120 < max(map(len, wide.splitlines()))
    for header in ("× FP32 [95 % CI]", "mAP50-95", "Δ [95 % CI]", "INT8", "status"):
        assert header in compact.splitlines()[0]
    assert "59/63" in compact and "-0.30 [-0.5, -0.1]" in compact and "0.83 [0.80-0.86]" in compact
