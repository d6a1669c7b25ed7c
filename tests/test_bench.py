"""The benchmark session: cached evaluation, the A/A control's verdict, the machine-wide timing lock."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import pytest

from quant.gate.thresholds import Thresholds
from quant.measure.latency import Paired
from quant.measure.row import Row
from quant.registry import REGISTRY
from quant.run.session import BenchSession
from quant.run.suite import Suite
from quant.run.timing import Timing


def _paired(ratio: float, lo: float, hi: float) -> Paired:
    return Paired(ratio, (lo, hi), (ratio,) * 15, 10.0 * ratio, 10.0, 15, 3)


def _row(name: str, map50_95: float, ratio: float) -> Row:
    return Row(name, map50=60.0, map50_95=map50_95, latency_ms=10.0 * ratio, latency_ratio=ratio)


@pytest.mark.parametrize("aa, status, failures", [
    (_paired(1.0, 0.99, 1.01), "FAIL", 1),  # the machine was quiet: a 1.4x variant fails its 1.2 ceiling
    (_paired(1.01, 1.004, 1.015), "FAIL", 1),  # a 1 % A/A bias (seen between two sessions) is within tolerance
    (_paired(1.0, 0.98 - 2 ** -10, 1.0), "FAIL", 1),  # reaches within 2 % of 1.00
    (_paired(1.3, 1.2, 1.4), "pass (latency inconclusive)", 0),  # A/A misses 1.00: no latency verdict
    (_paired(1.04, 1.021, 1.06), "pass (latency inconclusive)", 0),  # misses by more than 2 %
    (_paired(1.0, 0.85, 1.25), "pass (latency inconclusive)", 0),  # contains 1.00 but spreads 47 %
])
def test_a_noisy_machine_makes_latency_inconclusive_not_passed(aa, status, failures):
    t = Thresholds({"max_latency_ratio": 1.2, "max_drop_points": 1.0}, {}, {}, {})
    registry_only = SimpleNamespace(builder=SimpleNamespace(variants=REGISTRY))  # gating reads the variants alone
    bench = BenchSession(suite=registry_only, thresholds=t, timing=Timing(runner=None, sample_input=None), embedded=False)
    bench.timing._aa = aa
    bench.rows = {"onnx-fp32": _row("onnx-fp32", 50.0, 1.0), "onnx-int8-minmax": _row("onnx-int8-minmax", 50.0, 1.4)}
    assert len(bench.gate("onnx-int8-minmax")) == failures
    assert bench.rows["onnx-int8-minmax"].status == status
    bench.rows["onnx-int8-minmax"].map50_95 = 48.0  # accuracy is judged either way
    assert any("mAP50-95 fell 2.00 points vs onnx-fp32" in f for f in bench.gate("onnx-int8-minmax"))


def test_timing_lock_keeps_two_processes_from_timing_at_once(tmp_path):
    timing = Timing(runner=None, sample_input=None, lock=tmp_path / "timing.lock")
    spans = tmp_path / "spans.txt"
    pids = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            log: list = []
            with timing._held(log)():
                time.sleep(0.3)
            with open(spans, "a") as f:
                f.write(f"{log[0]['start']} {log[0]['end']}\n")
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    (a0, a1), (b0, b1) = sorted(tuple(map(float, ln.split())) for ln in spans.read_text().splitlines())
    assert a1 <= b0 and a1 - a0 >= 0.3 and b1 - b0 >= 0.3


def test_evaluation_is_cached_until_the_val_data_changes(tiny_weights, tiny_data, tmp_path):
    import shutil

    shutil.copytree(tiny_data.parent, tmp_path / "data")  # this test edits a label
    original, tiny_data = tiny_data, tmp_path / "data" / tiny_data.name
    tiny_data.write_text(tiny_data.read_text().replace(f"path: {original.parent}", f"path: {tiny_data.parent}"))
    suite = Suite.create(tiny_weights, tiny_data, 96, tmp_path / "c", calib_images=4)
    first = suite.evaluations.accuracy("onnx-fp32")
    assert suite.evaluations.status[("accuracy", "onnx-fp32")] == "measured"
    assert suite.evaluations.accuracy("onnx-fp32") == first and suite.evaluations.status[("accuracy", "onnx-fp32")] == "cached"
    suite.evaluations.revalidate = True
    suite.evaluations.accuracy("onnx-fp32")
    assert suite.evaluations.status[("accuracy", "onnx-fp32")] == "measured"
    suite.evaluations.revalidate = False
    label = sorted((tiny_data.parent / "val" / "labels").glob("*.txt"))[0]
    label.write_text(label.read_text() + "0 0.5 0.5 0.1 0.1\n")  # a label changed: the cached result is stale
    fresh = Suite.create(tiny_weights, tiny_data, 96, tmp_path / "c", calib_images=4)
    fresh.evaluations.accuracy("onnx-fp32")
    assert fresh.evaluations.status[("accuracy", "onnx-fp32")] == "measured"
