"""OpenVINO's own pick of what stays float (quant.search.float_choice): candidates within the INT8 bound, the
closest to FP32 kept, and the real NNCF build that records and keeps it."""

from dataclasses import replace

import numpy as np
import onnx
import pytest

from quant.search import float_choice
from quant.search.sensitivity import LayerSensitivity, Sensitivity
from quant.registry import REGISTRY


def _sens(macs: dict[str, int]) -> Sensitivity:
    """A ranking in the dict's order; each layer's nodes are the layer name and its activation."""
    return Sensitivity(4, 1.0, 1.0, [LayerSensitivity(k, [k, f"{k}/act"], "Conv", 0, 0, 0, 0, 0, 0, macs=v)
                                     for k, v in macs.items()])


MACS = {"L0": 30, "cat": 0, "L1": 10, "L2": 50, "L3": 10}  # 100 in all


def test_prefix_takes_layers_in_rank_order_while_their_compute_fits():
    s = _sens(MACS)
    assert float_choice.prefix_within(s, 0.8) == ["cat", "L1", "L3"]  # L0 (30) and L2 (50) do not fit 20
    assert float_choice.prefix_within(s, 0.6) == ["L0", "cat", "L1"]  # 40; L2 and then L3 would exceed it
    assert float_choice.prefix_within(s, 1.0) == ["cat"]  # no compute float: only layers without any
    assert float_choice.prefix_within(s, 0.0) == list(MACS)


def test_candidates_keep_the_bound_and_skip_duplicates():
    s = _sens(MACS)
    reused = ["decode", "L1", "L1/act", "L3", "L3/act"]
    sets = float_choice.candidates(reused, ["decode"], s, bound=0.6, steps=(0.0, 0.2, 0.25))
    assert list(sets) == ["reused", "ranked, 60 % INT8", "ranked, 80 % INT8", "ranked, 85 % INT8"]
    assert sets["ranked, 60 % INT8"] == ["decode", "L0", "L0/act", "cat", "cat/act", "L1", "L1/act"]
    assert sets["ranked, 85 % INT8"] == ["decode", "cat", "cat/act", "L1", "L1/act"]
    for label, nodes in sets.items():  # never more than 40 % of the compute float
        assert sum(MACS[k] for k in MACS if k in nodes) <= 40, label
    same = float_choice.candidates(sets["ranked, 60 % INT8"], ["decode"], s, bound=0.6, steps=(0.0,))
    assert list(same) == ["reused"]  # the prefix is the reused set: built once


def test_the_set_closest_to_fp32_is_chosen_relative_to_the_reused_one():
    sets = {"reused": ["a"], "x": ["b"], "y": ["c"]}
    errors = {"reused": (0.001, 0.10), "x": (0.004, 0.02), "y": (0.0009, 0.09)}  # x: box 4x, class 0.2x
    built = []
    best, paths, record = float_choice.choose(sets, lambda k, nodes: built.append(k) or f"/ir/{k}",
                                              lambda p: errors[p.rsplit("/", 1)[1]])
    assert built == ["reused", "x", "y"] and paths["x"] == "/ir/x"
    assert best == "y"  # 0.9 + 0.9 = 1.8 beats x's 4 + 0.2 and the reused set's 2
    assert record["chosen"] == "y" and [c["label"] for c in record["candidates"]] == ["reused", "x", "y"]
    assert record["candidates"][0]["score"] == pytest.approx(2.0)
    tie = float_choice.choose({"reused": [], "z": []}, lambda k, n: k, lambda p: (0.5, 0.5))[0]
    assert tie == "reused"


def test_output_error_of_another_runtimes_outputs(tiny_onnx):
    from quant.search.sensitivity import OutputError

    rng = np.random.default_rng(0)
    feeds = [{"images": rng.random((1, 3, 96, 96), dtype=np.float32)} for _ in range(2)]
    oe = OutputError(tiny_onnx, feeds)
    same = [np.concatenate([b, c], 1) for b, c in oe.ref]
    assert oe.compare(same) == (0.0, 0.0)
    noisy = [o + 0.1 * np.abs(o).mean() * rng.standard_normal(o.shape).astype(np.float32) for o in same]
    box, cls = oe.compare(noisy)
    assert box > 0 and cls > 0
    scores_only = [np.concatenate([o[:, :4], n[:, 4:]], 1) for o, n in zip(same, noisy)]
    assert oe.compare(scores_only) == (0.0, cls)  # rows 0-3 are the box, the rest scores


def test_openvino_builds_the_candidates_and_keeps_the_closest(suite, monkeypatch):
    pytest.importorskip("nncf")
    v = REGISTRY["onnx-int8-auto"]
    search = replace(v.search, max_evals=3, images=6, sensitivity_images=2,
                     target_drop=-1.0, margin=0.0)  # an unreachable target: the search always ranks
    monkeypatch.setitem(REGISTRY, "onnx-int8-auto", replace(v, search=search))
    import openvino as ov

    from quant.build.ir import runtime_config

    compiled, original = [], ov.Core.compile_model

    def recording(self, model, device_name=None, config=None, **kw):
        if ".candidate-" in str(model):
            compiled.append(config)
        return original(self, model, device_name, config, **kw)

    monkeypatch.setattr(ov.Core, "compile_model", recording)
    path = suite.builder.artifact("ov-int8-auto")
    m = suite.builder.manifest("ov-int8-auto")
    record = m.info["float_choice"]
    # each candidate is measured as the variant runs: its precision, its thread count
    assert compiled and all(c == runtime_config(REGISTRY["ov-int8-auto"], suite.builder.threads) for c in compiled)
    assert len(compiled) == len(record["candidates"])
    labels = [c["label"] for c in record["candidates"]]
    assert labels[0] == "reused" and record["chosen"] in labels and record["images"] == len(suite.inputs.search_files(6))
    alpha = REGISTRY["ov-int8-auto"].nncf.smooth_quant_alpha
    *sets, rounded = record["candidates"]  # the kept set once more, its weights rounded by output reconstruction
    plain = [c for c in sets if "SmoothQuant" not in c["label"]]
    smooth = [c for c in sets if "SmoothQuant" in c["label"]]  # each float set once more with it
    assert [(f"{c['label']}, SmoothQuant {alpha}", c["float_nodes"]) for c in plain] == \
        [(c["label"], c["float_nodes"]) for c in smooth]
    scores = {c["label"]: c["score"] for c in record["candidates"]}
    best = min(sets, key=lambda c: c["score"])  # ties keep the earlier
    assert rounded["label"] == f"{best['label']}, weight rounding" and rounded["float_nodes"] == best["float_nodes"]
    assert record["chosen"] == (rounded["label"] if rounded["score"] < best["score"] else best["label"])
    assert record["smooth_quant"] == (alpha if "SmoothQuant" in record["chosen"] else None)
    assert scores[record["chosen"]] == min(scores.values()) and scores["reused"] == pytest.approx(2.0)
    assert all(c["box_nsr"] >= 0 and c["class_nsr"] >= 0 for c in record["candidates"])
    folder = path.parent
    assert (path / "model.xml").is_file() and "float_choice.json" in m.reports
    assert not list(folder.glob(".candidate-*"))  # only the chosen IR stays
    fp32 = onnx.load(str(suite.builder.artifact("onnx-fp32")))
    reused = suite.builder.float_nodes(REGISTRY["ov-int8-auto"], fp32)
    assert (m.float_nodes == reused) == record["chosen"].startswith("reused")
    sens, cfg = float_choice.source_search(suite.builder.artifact("onnx-int8-auto").parent)
    total = sum(x.macs for x in sens.layers)
    float_macs = sum(x.macs for x in sens.layers if set(x.nodes) <= set(m.float_nodes))
    assert float_macs <= (1 - cfg["min_int8_macs"]) * total + 1e-6  # the chosen set keeps the INT8 bound


def test_smooth_quant_moves_channel_ranges_into_the_weights(suite):
    """NNCF applies SmoothQuant to convolutions only for transformer models; asked for it otherwise, it
    silently does nothing. The SmoothQuant build must insert its per-channel scales and change the model."""
    pytest.importorskip("nncf")
    import openvino as ov

    from quant.build import nncf_ir as nncf_int8
    from quant.calibration.readers import reader_for

    v, src = REGISTRY["ov-int8-auto"], suite.builder.artifact("onnx-fp32")
    name = onnx.load(str(src)).graph.input[0].name
    reader = reader_for(suite.inputs.calibration_files(), suite.inputs.imgsz, name)
    plain = nncf_int8.quantize(v, src, reader, [])
    smooth = nncf_int8.quantize(v, src, reader, [], smooth_alpha=0.5)

    def scales(m):
        return [op for op in m.get_ops() if op.get_type_name() == "Multiply" and "smooth_quant" in op.get_friendly_name()]

    assert not scales(plain) and len(scales(smooth)) >= 3
    x = next(iter(reader.tensors()))
    outs = [ov.Core().compile_model(m, "CPU")(x)[0] for m in (plain, smooth)]
    assert not np.allclose(outs[0], outs[1])
