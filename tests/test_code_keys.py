"""Code-aware cache keys: editing a module re-keys exactly the variants whose build imports it.

Edits happen in a temporary copy of the package, never in the checkout."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from quant.run import codehash
from quant.registry import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
CALIBRATED = {"onnx-int8-minmax", "onnx-int8-entropy", "onnx-int8-percentile", "onnx-int8-minmax-headfloat",
              "ov-int8", "ov-int8-headfloat", "trt-int8-minmax", "trt-int8-entropy", "trt-int8-percentile",
              "trt-int8-headfloat", "ort-cuda-int8", "trt10-int8-minmax-implicit", "trt10-int8-entropy2-implicit",
              "trt10-int8-entropy-implicit", "trt10-int8-legacy-implicit", "ppq-int8", "ppq-int8-headfloat",
              "onnx-int8-auto", "onnx-int8-auto-quick", "trt-int8-auto", "trt-int8-nncf", "ov-int8-auto", "ppq-int8-auto",
              "ov-int8-nncf-ac"}


@pytest.fixture()
def copy(tmp_path) -> Path:
    for pkg in ("quant",):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pt"))
    return tmp_path


def _code_keys(root: Path) -> dict[str, str]:
    return {n: codehash.combined(codehash.variant_digests(v, root)) for n, v in REGISTRY.items()}


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


# the variants whose build computes the suite's own activation ranges (NNCF, PPQ and TensorRT's implicit
# calibrators compute theirs)
OWN_RANGES = CALIBRATED - {"ov-int8", "ov-int8-headfloat", "ov-int8-auto", "ov-int8-nncf-ac", "trt-int8-nncf", "ppq-int8",
                           "ppq-int8-headfloat", "ppq-int8-auto", "trt10-int8-minmax-implicit",
                           "trt10-int8-entropy2-implicit", "trt10-int8-entropy-implicit", "trt10-int8-legacy-implicit"}


def test_editing_the_calibration_readers_rekeys_exactly_the_calibrated_variants(copy):
    before = _code_keys(copy)
    _edit(copy / "quant" / "calibration" / "readers.py", "auto=False, stride=stride", "auto=False, stride=stride * 1")
    after = _code_keys(copy)
    assert {n for n in REGISTRY if before[n] != after[n]} == CALIBRATED


def test_editing_a_range_method_rekeys_exactly_the_variants_that_use_it(copy):
    before = _code_keys(copy)
    _edit(copy / "quant" / "calibration" / "ranges.py", "percentile: float = 99.99", "percentile: float = 99.0")
    after = _code_keys(copy)
    assert {n for n in REGISTRY if before[n] != after[n]} == OWN_RANGES


@pytest.mark.parametrize("module", ["report/tables.py", "gate/thresholds.py", "run/session.py", "gate/compare.py",
                                    "report/plot.py"])
def test_editing_report_or_gate_code_rekeys_nothing(copy, module):
    before = _code_keys(copy)
    with open(copy / "quant" / module, "a") as f:
        f.write("\n# an edit\n")
    assert _code_keys(copy) == before


def test_editing_a_builder_rekeys_its_variants(copy):
    before = _code_keys(copy)
    with open(copy / "quant" / "build" / "fp16.py", "a") as f:
        f.write("\n# an edit\n")
    after = _code_keys(copy)
    assert {n for n in REGISTRY if before[n] != after[n]} == {  # FP16 ONNX, and INT8 engines' FP16 outside Q/DQ
        "trt-fp16", "trt-int8-minmax", "trt-int8-entropy", "trt-int8-percentile", "trt-int8-headfloat", "trt-int8-auto",
        "trt-int8-nncf"}


def test_closure_follows_function_level_imports_and_the_worker_module():
    assert "quant.calibration.ranges" in codehash.closure(["quant.build.qdq"])
    assert "quant.model.weights" in codehash.closure(["quant.backends.openvino"])  # imported inside save_ir()
    assert "quant.search.sensitivity" in codehash.closure(["quant.search.recipe"])  # imported inside auto_quantize()
    assert {"quant.build.ppq_worker", "quant.build.ppq_compat"} <= set(codehash.closure(["quant.build.ppq"]))
    assert "quant.report.tables" not in codehash.closure(["quant.search.recipe"])
    assert "quant.build.qdq" not in codehash.closure(["quant.build.variant"])  # imported for its types only
    assert {"quant.search.recipe", "quant.build.qdq"} <= set(codehash.closure(["quant.build.auto_qdq"]))
    with pytest.raises(ValueError, match="not a module"):
        codehash.closure(["quant.nope"])


SCRIPT = textwrap.dedent("""
    import hashlib, json, sys
    import numpy as np
    import quant
    from quant.run.suite import Suite
    s = Suite.create(sys.argv[1], sys.argv[2], 96, sys.argv[3], calib_images=4)
    path = s.builder.artifact("onnx-int8-percentile")
    out = s.builder.runner("onnx-int8-percentile")(s.inputs.sample_input())[0]
    print(json.dumps({"why": s.builder.manifest("onnx-int8-percentile").built_because,
                      "fp32_cached": s.builder.manifest("onnx-fp32").cached, "module": quant.__file__,
                      "sha": hashlib.sha256(path.read_bytes()).hexdigest(), "out": hashlib.sha256(np.ascontiguousarray(out).tobytes()).hexdigest()}))
""")


@pytest.mark.slow
def test_a_calibration_edit_rebuilds_that_variant_and_changes_it(copy, tiny_weights, tiny_data, tmp_path):
    def run():
        env = {**os.environ, "PYTHONPATH": str(copy)}
        p = subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_weights), str(tiny_data), str(tmp_path / "cache")],
                           cwd=copy, env=env, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr[-3000:]
        return json.loads(p.stdout.strip().splitlines()[-1])

    first = run()
    assert first["module"].startswith(str(copy)) and first["why"] == "new key"
    assert run()["why"] == "cached"  # a warm run: nothing rebuilt
    _edit(copy / "quant" / "calibration" / "ranges.py", "percentile: float = 99.99", "percentile: float = 50.0")
    third = run()
    assert third["why"] == "code changed (quant.calibration.ranges)" and third["fp32_cached"] is True
    assert third["sha"] != first["sha"] and third["out"] != first["out"]  # its outputs changed
