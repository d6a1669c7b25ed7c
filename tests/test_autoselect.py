"""The automatic INT8 search: its stopping rule on synthetic scores, and its wiring on a real model."""

import json
from dataclasses import replace

import onnx
import pytest

from quant.search.recipe import search
from quant.model.graph import decode_nodes
from quant.registry import REGISTRY
from quant.measure.row import Row

LAYERS = [f"L{i}" for i in range(10)]  # ranked, most sensitive first


def scorer(drop_of):
    """evaluate(method, layers) from a function of (method, float set) -> drop in points; counts calls."""
    calls = []

    def evaluate(method, layers):
        calls.append((method, tuple(layers)))
        return drop_of(method, set(layers))

    evaluate.calls = calls
    return evaluate


def test_smallest_prefix_found_by_doubling_then_bisection():
    ev = scorer(lambda m, s: 2.0 - 0.25 * len(s & set(LAYERS[:7])))  # 7 layers needed: 2.0 - 1.75 = 0.25
    r = search(ev, ["minmax"], lambda m: LAYERS, target=0.3)
    assert r.met and r.float_layers == tuple(LAYERS[:7]) and r.drop == pytest.approx(0.25)
    prefixes = [len(layers) for _, layers in ev.calls[1:8]]
    assert prefixes[:4] == [1, 2, 4, 8]  # doubling until the first hit
    assert 6 in prefixes and 7 in prefixes  # then bisection between 4 (miss) and 8 (hit)
    assert "minimal" in r.stop
    assert len(ev.calls) == len(set(ev.calls))  # no candidate evaluated twice


def test_best_method_chosen_and_no_float_layer_when_it_already_meets_the_target():
    ev = scorer(lambda m, s: {"minmax": 1.0, "percentile": 0.2, "entropy": 3.0}[m])
    r = search(ev, ["minmax", "percentile", "entropy"], lambda m: pytest.fail("no ranking needed"), target=0.3)
    assert r.met and r.method == "percentile" and r.float_layers == () and len(ev.calls) == 3


def test_screened_methods_are_refined_in_screened_order_while_half_the_budget_lasts():
    now = [0.0]

    def drop(m, s):
        now[0] += 100.0  # every evaluation takes 100 s
        return {"minmax": 1.0, "percentile": 0.8, "entropy": 3.0}[m] - (0.7 if "L0" in s else 0)

    screened = {"minmax": 2.0, "percentile": 2.5, "entropy": 5.0}  # refining reorders minmax and percentile
    methods = ["percentile", "minmax", "entropy"]
    ev = scorer(drop)
    r = search(ev, methods, lambda m: LAYERS, target=0.3, screen=screened.get, budget_s=1000, clock=lambda: now[0])
    assert [c for c in ev.calls if not c[1]] == [("minmax", ()), ("percentile", ()), ("entropy", ())]
    assert r.method == "percentile" and r.float_layers == ("L0",) and r.screen == screened
    ev = scorer(drop)  # 300 s budget: after minmax (100 s), another 100 s would pass half of it
    r = search(ev, methods, lambda m: LAYERS, target=0.3, screen=screened.get, budget_s=300, clock=lambda: now[0])
    assert [c for c in ev.calls if not c[1]] == [("minmax", ())] and r.method == "minmax"
    one = search(scorer(lambda m, s: 0.1), ["minmax"], lambda m: LAYERS, target=0.3, screen=lambda m: pytest.fail())
    assert one.met and one.screen == {}  # one method: nothing to screen


def test_ranking_comes_from_the_best_method():
    seen = []
    ev = scorer(lambda m, s: {"a": 1.0, "b": 0.8}[m] - (0.7 if "L0" in s else 0))
    r = search(ev, ["a", "b"], lambda m: seen.append(m) or LAYERS, target=0.3)
    assert seen == ["b"] and r.method == "b" and r.float_layers == ("L0",)


def test_prune_returns_layers_that_only_looked_needed():
    # only L1 and L5 matter; the prefix search stops at 6 layers, pruning keeps just those two
    ev = scorer(lambda m, s: 1.0 - 0.4 * len(s & {"L1", "L5"}))
    r = search(ev, ["minmax"], lambda m: LAYERS, target=0.3)
    assert r.met and set(r.float_layers) == {"L1", "L5"}


def test_unreachable_target_is_reported_not_faked():
    ev = scorer(lambda m, s: 1.0 - 0.05 * len(s))  # all 10 float: 0.5, still over 0.3
    r = search(ev, ["minmax"], lambda m: LAYERS, target=0.3)
    assert not r.met and "not reachable" in r.stop
    assert r.float_layers == tuple(LAYERS) and r.drop == pytest.approx(0.5)


def test_evaluation_budget_stops_the_search_with_the_best_so_far():
    ev = scorer(lambda m, s: 2.0 - 0.25 * len(s & set(LAYERS[:7])))
    r = search(ev, ["minmax"], lambda m: LAYERS, target=0.3, max_evals=5)  # 0, 1, 2, 4, 8
    assert len(ev.calls) == 5 and "evaluation budget" in r.stop
    assert r.met and len(r.float_layers) == 8  # the only hit so far
    r = search(scorer(lambda m, s: 2.0), ["minmax"], lambda m: LAYERS, target=0.3, max_evals=3)
    assert not r.met and "target not met" in r.stop


def test_time_budget_stops_the_search():
    now = [0.0]

    def clock():
        return now[0]

    def drop(m, s):
        now[0] += 10.0  # every evaluation takes 10 s
        return 2.0

    r = search(scorer(drop), ["minmax"], lambda m: LAYERS, target=0.3, budget_s=35, clock=clock)
    assert "time budget" in r.stop and len(r.trials) == 4 and not r.met


def test_sensitivity_images_keep_the_pixels_of_640_px_above_it():
    from quant.search.settings import sensitivity_images

    assert [sensitivity_images(8, s) for s in (96, 320, 640)] == [8, 8, 8]  # up to 640: the setting
    assert [sensitivity_images(8, s) for s in (800, 960, 1280)] == [5, 4, 2]  # above: its pixels
    assert sensitivity_images(8, 1920) == 2 and sensitivity_images(1, 1280) == 1  # at least 2, never more
    assert sensitivity_images(32, 1280) == 8


def test_search_images_are_held_out_from_calibration_and_val(suite):
    files = suite.inputs.search_files(100)
    assert files and not set(files) & set(suite.inputs.calibration_files())
    assert all(suite.inputs.data.val not in f.parents for f in files)


def test_onnx_int8_auto_builds_reports_and_a_declarative_float_set(suite, monkeypatch):
    # an untrained model scores 0 everywhere, so an impossible target keeps the search going until
    # its evaluation budget is spent: every stage runs, and the result says the target was not met
    v = REGISTRY["onnx-int8-auto"]
    search = replace(v.search, target_drop=-1.0, margin=0.0, max_evals=5, images=6, sensitivity_images=2, profile_runs=12)
    monkeypatch.setitem(REGISTRY, "onnx-int8-auto", replace(v, search=search))
    from quant.search import layertime  # measured kernel times vary: a fixed profile in which the first conv is slower in INT8

    def profile(fp32, int8, feed, threads, runs):
        assert feed and runs == 12
        return {n.name: (-1.0 if n.name == "/model.0/conv/Conv" else 1.0)
                for n in onnx.load(str(fp32)).graph.node if n.op_type == "Conv"}

    monkeypatch.setattr(layertime, "int8_savings", profile)
    path = suite.builder.artifact("onnx-int8-auto")
    m = suite.builder.manifest("onnx-int8-auto")
    auto = json.loads((path.parent / "auto.json").read_text())
    assert auto["cost"]["model"].startswith("kernel times measured by ONNX Runtime's profiler")
    assert auto["cost"]["int8_saving_us"]["/model.0/conv/Conv"] == -1.0
    assert auto["met"] is False and "evaluation budget" in auto["stop"] and len(auto["trials"]) == 5
    assert auto["search_metric"].startswith("labelled drop estimated from fidelity") and auto["search_images"] == 2
    assert json.loads((path.parent / "sensitivity.json").read_text())["images"] == 2  # the setting, at 96 px
    assert set(auto["measured"]) >= {"percentile", "minmax", "entropy", "chosen_labelled_drop", "screened"}
    # every method refined (cheap here), in the screened order; then the free conv alone, then one more
    assert [t["layers"] for t in auto["trials"]] == [0, 0, 0, 1, 2]
    assert set(auto["screen"]) == set(auto["measured"]["screened"]) == {"percentile", "minmax", "entropy"}
    assert [t["method"] for t in auto["trials"][:3]] == sorted(auto["screen"], key=auto["screen"].get)
    for f in ("auto.json", "search.log", "sensitivity.json", "sensitivity.md", "sensitivity.png"):
        assert f in m.reports and (path.parent / f).stat().st_size > 0
    log = (path.parent / "search.log").read_text().splitlines()  # one progress line per screen and trial
    assert len(log) == 8 and log[0].startswith("onnx-int8-auto search: 1/8 percentile screened without refinements")
    assert log[3].startswith(f"onnx-int8-auto search: 4/8 {auto['trials'][0]['method']}, 0 layers float")
    assert "percentile, 0 layers float" in "\n".join(log[3:6])
    model = onnx.load(str(path))
    fp32 = onnx.load(str(suite.builder.artifact("onnx-fp32")))
    assert set(decode_nodes(fp32)) <= set(m.float_nodes)
    assert auto["float_scope"]["presets"] == ["decode"]
    assert set(auto["float_scope"].get("names", [])) <= set(m.float_nodes)
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)
    assert not list(path.parent.glob("full-*.onnx")) and not (path.parent / "trial.onnx").exists()


def test_other_backends_reuse_the_searched_float_set(suite, monkeypatch):
    v = REGISTRY["onnx-int8-auto"]
    monkeypatch.setitem(REGISTRY, "onnx-int8-auto",
                        replace(v, search=replace(v.search, max_evals=3, images=6, sensitivity_images=2)))
    chosen = suite.builder.manifest("onnx-int8-auto").float_nodes
    fp32 = onnx.load(str(suite.builder.artifact("onnx-fp32")))
    for name in ("ov-int8-auto", "ppq-int8-auto"):
        w = REGISTRY[name]
        assert set(chosen) <= set(suite.builder.float_nodes(w, fp32))
        assert suite.builder.key_inputs(w)["float_set_from"] == suite.builder.manifest("onnx-int8-auto").key
    assert suite.builder.float_nodes(REGISTRY["ov-int8"], fp32) == decode_nodes(fp32)  # no borrowing elsewhere


def test_report_lists_the_searched_recipe():
    from quant.report.tables import auto_lines, auto_section

    row = {"variant": "onnx-int8-auto", "int8_share": "44/63", "delta_points": -0.25,
           "auto": {"calibration": "percentile", "float_layers": ["/model.4/cv1/conv/Conv"], "drop": 0.1, "met": True,
                    "stop": "minimal", "seconds": 12.0, "evaluations": 9, "search_metric": "m", "search_images": 32}}
    row = Row.from_dict(row)
    (line,) = auto_lines([row, Row("onnx-fp32")])
    assert "percentile" in line and "44/63" in line and "/model.4/cv1/conv/Conv" in line and "target met" in line
    assert "estimated drop 0.10 points on 32 search images (m), measured drop on val 0.25" in line
    many = replace(row, auto={**row.auto, "float_layers": [f"/model.{i}/conv/Conv" for i in range(20)]})
    (line,) = auto_lines([many])
    assert "/model.7/conv/Conv, and 12 more (auto.json)" in line and "/model.8/" not in line
    assert auto_section([Row("onnx-fp32")]) == ""
    assert "made light" not in auto_lines([row])[0]


def test_a_light_search_that_misses_its_target_points_to_the_full_one():
    from quant.report.tables import auto_lines

    auto = {"calibration": "percentile", "float_layers": [], "drop": 18.58, "met": False,
            "stop": "time budget spent (120 s); target not met", "seconds": 153.0, "evaluations": 3,
            "search_metric": "m", "search_images": 32}
    quick = Row.from_dict({"variant": "onnx-int8-auto-quick", "int8_share": "63/63", "auto": auto})
    (line,) = auto_lines([quick])
    assert line.endswith("target not met); it is onnx-int8-auto's search made light for a first look (no weight "
                         "rounding, fewer images, evaluations and seconds): onnx-int8-auto, in the standard and "
                         "full presets, searches with all of them")
    assert "made light" not in auto_lines([replace(quick, auto={**auto, "met": True})])[0]
    assert "made light" not in auto_lines([replace(quick, variant="onnx-int8-auto")])[0]
    from quant.registry import LIGHT_SEARCHES

    assert all(REGISTRY[k].search and REGISTRY[v].search for k, v in LIGHT_SEARCHES.items())


def test_report_lists_the_float_set_a_target_picked():
    from quant.report.tables import auto_lines

    cands = [{"label": "reused", "float_nodes": 9, "box_nsr": 6.2e-05, "class_nsr": 0.0106, "score": 2.0},
             {"label": "reused, SmoothQuant 0.5", "float_nodes": 9, "box_nsr": 5.5e-05, "class_nsr": 0.0083,
              "score": 1.66}]
    row = {"variant": "ov-int8-auto", "int8_share": "46/63",
           "float_choice": {"chosen": "reused, SmoothQuant 0.5", "candidates": cands, "images": 32}}
    row = Row.from_dict(row)
    (line,) = auto_lines([row, Row("onnx-fp32")])
    assert line.startswith("ov-int8-auto: kept 'reused, SmoothQuant 0.5' of 2 candidate builds") and "32 search" in line
    assert "class-score error 0.0083" in line and "the reused set as built: 0.0106" in line and "46/63" in line
    ranked_nothing = {"chosen": "reused", "why": "the search ranked no layer"}  # no candidates were built
    assert auto_lines([replace(row, float_choice=ranked_nothing)]) == []


def test_prune_tries_the_most_expensive_layers_first():
    # L2 plus either L0 or L1 meets the target; the prefix search stops at L0..L2
    need = lambda m, s: 0.0 if "L2" in s and s & {"L0", "L1"} else 1.0  # noqa: E731
    r = search(scorer(need), ["minmax"], lambda m: LAYERS, target=0.3)
    assert r.float_layers == ("L0", "L2")  # without costs: the least sensitive (L1) goes back first
    macs = {f"L{i}": (100 if i == 0 else 1) for i in range(10)}
    r = search(scorer(need), ["minmax"], lambda m: LAYERS, target=0.3, cost=lambda m, layer: macs[layer])
    assert r.met and r.float_layers == ("L1", "L2")  # with costs: the expensive L0 goes back first


def test_measured_savings_keep_slow_int8_layers_float_and_order_the_prune():
    # L9 (least sensitive) and L7 run no faster in INT8: float in every ranked candidate, never pruned;
    # L2 plus either L0 or L1 meets the target; L1's INT8 kernel saves the most time, so it goes back first
    need = lambda m, s: 0.0 if "L2" in s and s & {"L0", "L1"} else 1.0  # noqa: E731
    saved = {"L0": 5.0, "L1": 50.0, "L2": 1.0, "L7": 0.0, "L9": -3.0, "L3": None}
    macs = {f"L{i}": (100 if i == 0 else 1) for i in range(10)}  # MACs alone would send L0 back first
    ev = scorer(need)
    r = search(ev, ["minmax"], lambda m: LAYERS, target=0.3, cost=lambda m, layer: macs[layer],
               saving=lambda m, layer: saved.get(layer))
    assert r.met and set(r.float_layers) == {"L0", "L2", "L7", "L9"}
    ranked_calls = [set(layers) for _, layers in ev.calls[1:]]
    assert ranked_calls[0] == {"L7", "L9"}  # the free layers alone first
    assert all({"L7", "L9"} <= c for c in ranked_calls)
    r = search(scorer(need), ["minmax"], lambda m: LAYERS, target=0.3, cost=lambda m, layer: macs[layer],
               saving=lambda m, layer: None)  # nothing measured: MACs, no free layers
    assert r.float_layers == ("L1", "L2")


def test_float_share_bound_keeps_the_recipe_int8_and_says_when_the_target_needs_more():
    macs = {f"L{i}": 10 for i in range(10)}
    cost = lambda m, layer: macs[layer]  # noqa: E731
    ev = scorer(lambda m, s: 2.0 - 0.25 * len(s & set(LAYERS[:7])))  # needs 7 of 10 layers float
    r = search(ev, ["minmax"], lambda m: LAYERS, target=0.3, cost=cost, max_float_share=0.5)
    assert not r.met and "at most 50 % of the compute float" in r.stop
    assert len(r.float_layers) <= 5 and all(len(layers) <= 5 for _, layers in ev.calls)
    r = search(scorer(lambda m, s: 2.0 - 0.25 * len(s & set(LAYERS[:7]))), ["minmax"], lambda m: LAYERS,
               target=0.3, cost=cost, max_float_share=0.7)
    assert r.met and r.float_layers == tuple(LAYERS[:7])
    macs["L0"] = 1000  # the most sensitive layer alone is over the bound: it is skipped, cheaper ones kept
    r = search(scorer(lambda m, s: 1.0 - 0.4 * len(s & {"L0", "L1"})), ["minmax"], lambda m: LAYERS, target=0.3,
               cost=cost, max_float_share=0.2)
    assert "L0" not in r.float_layers


def test_few_reference_boxes_switch_the_estimate_to_the_dense_output_error(tmp_path):
    from quant.search.recipe import DENSE_BELOW_BOXES, Candidates, _Estimate

    fid = {"fp32": 0.90, "full": 0.70, "half": 0.80}  # fidelity by model
    err = {"full": (0.02, 0.04), "half": (0.005, 0.01)}  # (box, class) output error by model

    def candidates(boxes):
        return Candidates(ranges=None, write=None, fidelity=lambda p: fid[p.name], labelled=None, feeds=[],
                          output_error=lambda p: err[p.name], reference_boxes=boxes)

    for boxes, expected in ((DENSE_BELOW_BOXES - 1, 20.0 * 0.25), (DENSE_BELOW_BOXES, 10.0)):
        est = _Estimate(candidates(boxes), tmp_path / "fp32")
        est.calibrate("percentile", tmp_path / "full")
        assert est.full["percentile"][0] == pytest.approx(20.0)  # the full model: its measured loss either way
        assert est.drop("percentile", tmp_path / "half") == pytest.approx(expected)
        assert ("output error" in est.metric) == (boxes < DENSE_BELOW_BOXES)
