"""PPQ variants (skipped, with the reason, without the [ppq] extra) and their compatibility layer."""

import json
from dataclasses import replace
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from quant.build import ppq
from quant.build.context import missing
from quant.util.errors import QuantError
from quant.build.ppq_compat import check_opset

from conftest import error_vs_spread

ROOT = Path(__file__).resolve().parents[1]


def test_opset_check_names_the_problem(tiny_onnx):
    model = onnx.load(str(tiny_onnx))
    check_opset(model)  # the suite exports opset 13
    model.opset_import[0].version = 17
    with pytest.raises(QuantError, match="opsets 10-13 only; this model is opset 17"):
        check_opset(model)


def test_compat_fixes_apply_only_in_their_own_process():
    reason = missing(ppq.build)  # never `import ppq` here: it needs the fixes first
    if reason:
        pytest.skip(reason)
    code = "from quant.build import ppq_compat; ppq_compat.apply(); import onnx.mapping, ppq; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
    assert "onnx.mapping" not in sys.modules or hasattr(sys.modules["onnx.mapping"], "__file__")  # not shimmed here
    late = "import onnx; from quant.build import ppq_compat; ppq_compat.apply()"
    out = subprocess.run([sys.executable, "-c", late], capture_output=True, text=True, cwd=ROOT,
                         env={k: v for k, v in os.environ.items() if k != "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"})
    assert out.returncode != 0 and "must run before protobuf" in out.stderr


def test_ranking_puts_ops_over_the_threshold_first(tmp_path):
    analysis = {"platform": "ONNXRUNTIME", "images": 2,
                "graphwise": {"a": 0.05, "b": 0.2, "c": 0.01}, "layerwise": {"a": 0.001, "b": 0.01, "c": 0.3}}
    assert [op for op, _, _ in ppq.ranked(analysis)] == ["b", "c", "a"]
    md = tmp_path / "a.md"
    ppq.write_analysis_markdown(analysis, md, "ppq-int8")
    text = md.read_text()
    assert "2 of 3 ops exceed PPQ's 0.1 threshold" in text and text.index("| b |") < text.index("| a |")


def test_ppq_builds_offline_keeps_metadata_and_writes_analysis(tiny_weights, tiny_data, tmp_path):
    reason = missing(ppq.build)
    if reason:
        pytest.skip(reason)
    from quant.model.graph import conv_layers, head_nodes, qdq_int8_convs
    from quant.util.offline import NetworkGuard
    from quant.run.suite import Suite

    suite = Suite.create(tiny_weights, tiny_data, 96, tmp_path, calib_images=4)
    with NetworkGuard() as g:
        path = suite.builder.artifact("ppq-int8-headfloat")
    assert g.attempts == []
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["task"] == "detect" and "circle" in meta["names"]  # PPQ drops it; the backend restores it
    head = set(head_nodes(onnx.load(str(suite.builder.artifact("onnx-fp32")))))
    producers = {o: n for n in model.graph.node for o in n.output}
    head_convs = [n for n in model.graph.node if n.op_type == "Conv" and n.name in head]
    assert head_convs and all(producers.get(c.input[1]) is None or producers[c.input[1]].op_type != "DequantizeLinear"
                              for c in head_convs)  # head weights float
    # its INT8 count is what the exported model computes in INT8, not the float set it was asked for: PPQ
    # leaves a convolution behind a Split or a residual Add reading float (an "overlapped" quantizer)
    int8 = set(qdq_int8_convs(model)) & set(conv_layers(model))
    assert suite.builder.manifest("ppq-int8-headfloat").info["int8_convs"] == len(int8) and int8 <= set(conv_layers(model)) - head
    analysis = json.loads((path.parent / "error_analysis.json").read_text())
    assert analysis["graphwise"] and analysis["layerwise"] and not set(analysis["graphwise"]) & head
    assert (path.parent / "error_analysis.md").read_text().startswith("# PPQ error analysis: ppq-int8-headfloat")
    x = suite.inputs.sample_input()  # the PPQ model computes what FP32 computes, within INT8 error
    ref, out = suite.builder.runner("onnx-fp32")(x)[0], suite.builder.runner("ppq-int8-headfloat")(x)[0]
    assert out.shape == ref.shape and np.isfinite(out).all()
    assert np.abs(out[:, 4:] - ref[:, 4:]).mean() < 0.05  # class scores
    assert np.abs(out[:, :4] - ref[:, :4]).mean() < 0.05 * np.abs(ref[:, :4]).mean()  # box pixels
    box, cls = error_vs_spread(suite, "ppq-int8-headfloat")  # and relative to how FP32's output varies between images
    assert box < 0.4 and cls < 0.4, (box, cls)  # measured 0.11 and 0.23 (a model that lost the image: near 1)


def test_ppq_worker_reports_its_calibration_and_lsq_blocks(tiny_weights, tiny_data, tmp_path, monkeypatch):
    """PPQ's own progress counts reach the suite: calibration images, LSQ blocks, analysis ops."""
    reason = missing(ppq.build)
    if reason:
        pytest.skip(reason)
    from quant.util import progress
    from quant.run.suite import Suite
    from quant.registry import REGISTRY

    v = REGISTRY["ppq-int8"]
    monkeypatch.setitem(REGISTRY, "ppq-int8", replace(v, ppq=replace(v.ppq, lsq_steps=2, calib_steps=8,
                                                                       analysis_images=1)))
    monkeypatch.setattr(ppq, "HEARTBEAT_S", 1.0)
    lines = []
    progress.set_sink(lines.append)
    try:
        path = Suite.create(tiny_weights, tiny_data, 96, tmp_path, calib_images=4).builder.artifact("ppq-int8")
    finally:
        progress.set_sink(None)
    steps = {s["name"]: s for s in json.loads((path.parent / "error_analysis.json").read_text())["steps"]}
    assert steps["Calibration Progress(Phase 1)"]["done"] == steps["Calibration Progress(Phase 1)"]["total"] == 8
    assert steps["Tuning Procedure"]["done"] == 2 and "Analysing Layerwise quantization error" in steps
    assert not (path.parent / "progress.json").exists()  # the worker's state does not stay in the cache
    assert any(": LSQ blocks " in line for line in lines), lines
