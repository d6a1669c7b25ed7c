from dataclasses import replace

import pytest

from quant.util.errors import QuantError
from quant.gate.thresholds import Thresholds, check_row as check
from quant.measure.row import Row


def _row(variant, map50, map50_95, latency_ms, fidelity_map50_95=None, latency_ratio=None) -> Row:
    """A row with what the gates look at."""
    return Row(variant, map50=map50, map50_95=map50_95, latency_ms=latency_ms, fidelity_map50_95=fidelity_map50_95,
               latency_ratio=latency_ratio)

GOOD = """
[defaults]
max_drop_points = 1.0
max_latency_ratio = 1.5

[variants."onnx-int8-*"]
max_drop_points = 5.0

[variants."onnx-int8-minmax"]
max_drop_points = 3.0

[embedded.variants."*"]
min_map50_95 = 50.0

[profiles.ci.variants."onnx-fp32"]
max_latency_ms = 40
"""


def _load(tmp_path, text):
    p = tmp_path / "t.toml"
    p.write_text(text)
    return Thresholds.load(p)


def test_most_specific_match_wins(tmp_path):
    t = _load(tmp_path, GOOD)
    assert t.for_variant("onnx-int8-minmax")["max_drop_points"] == 3.0
    assert t.for_variant("onnx-int8-entropy")["max_drop_points"] == 5.0
    assert t.for_variant("pt-fp32") == {"max_drop_points": 1.0, "max_latency_ratio": 1.5}
    assert t.for_variant("pt-fp32", embedded=True)["min_map50_95"] == 50.0
    assert t.for_variant("onnx-fp32", profile="ci")["max_latency_ms"] == 40


@pytest.mark.parametrize("text, message", [
    ("[defaults\nmax_drop_points = 1", "not valid TOML"),
    ("[defaults]\nmax_drop = 1", "unknown key 'max_drop'"),
    ("[defaults]\nmax_drop_points = 'one'", "must be a non-negative number"),
    ("[defaults]\nmax_drop_points = -1", "must be a non-negative number"),
    ("[limits]\nx = 1", "unknown section"),
    ('[variants."a"]\nmin_map50_95 = true', "must be a non-negative number"),
    ("[profiles.x]\ny = 1", "profiles.NAME"),
])
def test_malformed_files_give_one_line_errors(tmp_path, text, message):
    with pytest.raises(QuantError, match=message) as e:
        _load(tmp_path, text)
    assert "\n" not in str(e.value) and "t.toml" in str(e.value)


def test_missing_file_and_unknown_profile(tmp_path):
    with pytest.raises(QuantError, match="not found"):
        Thresholds.load(tmp_path / "nope.toml")
    with pytest.raises(QuantError, match="device profile 'gpu'"):
        _load(tmp_path, GOOD).for_variant("x", profile="gpu")


def test_check_names_variant_metric_value_and_threshold():
    base = _row("onnx-fp32", 90.0, 70.0, 20.0)
    bad = _row("onnx-int8-minmax", 80.0, 60.0, 30.0)
    msgs = check(bad, {"max_drop_points": 3.0, "max_latency_ratio": 1.2, "min_map50_95": 65.0, "max_latency_ms": 25},
                 base)
    assert len(msgs) == 4
    assert any("onnx-int8-minmax: mAP50-95 fell 10.00 points vs onnx-fp32 (70.00 -> 60.00)" in m and "> max 3.00" in m for m in msgs)
    assert any("1.50x onnx-fp32" in m and "max ratio 1.20" in m for m in msgs)
    assert any("mAP50-95 60.00 < floor 65.00" in m for m in msgs)
    assert any("latency 30.00 ms > ceiling 25.00 ms" in m for m in msgs)
    assert check(_row("x", 90.0, 69.5, 21.0), {"max_drop_points": 1.0, "max_latency_ratio": 1.2}, base) == []


def test_repository_thresholds_file_is_valid():
    from pathlib import Path

    t = Thresholds.load(Path(__file__).resolve().parents[1] / "quant" / "gate" / "thresholds.toml")
    assert t.for_variant("onnx-int8-minmax")["max_latency_ratio"] <= 1.2  # INT8 must not be slower than FP32


def test_a_drop_exactly_at_the_limit_passes_and_a_hair_above_fails():
    base = _row("onnx-fp32", 50.0, 50.0, 10.0)
    at = _row("v", 50.0, 43.75, 10.0)  # 6.25 points, exact in binary
    assert check(at, {"max_drop_points": 6.25}, base) == []
    above = _row("v", 50.0, 43.75 - 2 ** -20, 10.0)
    assert len(check(above, {"max_drop_points": 6.25}, base)) == 1
    assert check(_row("v", 50.0, 50.0, 10.0, latency_ratio=1.25), {"max_latency_ratio": 1.25}, base) == []
    assert check(_row("v", 50.0, 50.0, 10.0, latency_ratio=1.25 + 2 ** -20), {"max_latency_ratio": 1.25}, base)
    assert check(_row("v", 50.0, 25.0, 10.0), {"min_map50_95": 25.0}, base) == []
    assert check(_row("v", 50.0, 25.0 - 2 ** -20, 10.0), {"min_map50_95": 25.0}, base)


def test_latency_gate_judges_the_paired_ratio_not_the_ratio_of_medians():
    base = _row("onnx-fp32", 50.0, 50.0, 10.0)  # timed at another moment: 10 ms
    paired_fast = _row("v", 50.0, 50.0, 14.0, latency_ratio=0.9)  # 14 ms here, but 0.9x side by side
    assert check(paired_fast, {"max_latency_ratio": 1.2}, base) == []
    msgs = check(_row("v", 50.0, 50.0, 9.0, latency_ratio=1.3), {"max_latency_ratio": 1.2}, base)
    assert msgs == ["v: latency 1.30x onnx-fp32 (paired median; 9.00 ms) > max ratio 1.20"]


def test_checks_are_small_objects_shared_by_the_gate_and_the_history_comparison():
    from quant.gate.compare import history_checks
    from quant.gate.thresholds import Ceiling, Floor, LatencyRise, MaxDrop, MaxRatio, same_run_checks

    row = Row("v", map50_95=50.0, latency_ms=12.0, latency_ratio=1.2)
    ref = Row("onnx-fp32", map50_95=52.0, latency_ms=10.0, latency_ratio=1.0)
    assert MaxDrop("map50_95", 1.0, "mAP50-95").fails(row, ref, "vs onnx-fp32") == (
        "v: mAP50-95 fell 2.00 points vs onnx-fp32 (52.00 -> 50.00) > max 1.00")
    assert MaxDrop("map50_95", 2.5, "mAP50-95").fails(row, ref) is None
    assert MaxDrop("map50_95", 1.0, "mAP50-95").improved(replace(ref, variant="v"), row, "since old") == (
        "v: mAP50-95 rose 2.00 points since old (50.00 -> 52.00)")
    assert Floor("map50_95", 60.0, "mAP50-95").fails(row) == "v: mAP50-95 50.00 < floor 60.00"
    assert Ceiling("latency_ms", 11, "latency", " ms").fails(row) == "v: latency 12.00 ms > ceiling 11.00 ms"
    assert MaxRatio(1.25).fails(row, ref) is None and MaxRatio(1.1).fails(row, ref)
    assert LatencyRise(0.1, "onnx-fp32").fails(row, replace(row, latency_ratio=1.0), "since old")  # 1.2x, no interval
    kinds = {type(c) for c in same_run_checks({"max_drop_points": 1, "max_latency_ratio": 2, "min_map50": 10.0})}
    assert kinds == {MaxDrop, MaxRatio, Floor}
    assert {type(c) for c in history_checks((0.1, 0.1), "onnx-fp32", True)} == {MaxDrop, LatencyRise}


def test_a_label_free_drop_names_the_fidelity_floor():
    """Label-free, a drop is told next to what an imperceptible change of the images costs FP32 itself; the
    verdict does not change, and labelled runs or runs without a floor get no such note."""
    from quant.gate.thresholds import check_row

    base = Row("onnx-fp32", map50=99.5, map50_95=99.5, fidelity_map50_95=99.5, fidelity_floor=95.86,
               latency_ms=10.0, label_free=True)
    row = replace(base, variant="ov-int8-auto", map50_95=97.1, fidelity_map50_95=97.1, fidelity_floor=None)
    msgs = check_row(row, {"max_drop_points": 0.5}, base)
    assert msgs == ["ov-int8-auto: mAP50-95 fell 2.40 points vs onnx-fp32 (99.50 -> 97.10) > max 0.50 (fidelity "
                    "floor: onnx-fp32 itself loses 3.64 points to an imperceptible change of these images)"]
    assert check_row(row, {"max_drop_points": 3.0}, base) == []
    assert check_row(replace(row, label_free=False), {"max_drop_points": 0.5}, base)[0].endswith("> max 0.50")
    assert check_row(row, {"max_drop_points": 0.5}, replace(base, fidelity_floor=None))[0].endswith("> max 0.50")
