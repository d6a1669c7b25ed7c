"""A/B against a commit (--compare-to REF): the interleaved protocol, what a ref may be, and, end to end on the tiny
model, a planted slowdown and a planted accuracy loss in a scratch copy of the package (the candidate) against this
clean checkout (the reference), each caught with one line and explained. The measured false-alarm and catch rates
on the embedded default are benchmarks, in the docs, not tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import checkout_copy

from quant.measure.latency import interleaved
from quant.run.reference import is_checkout, resolve
from quant.util.errors import QuantError

ROOT = Path(__file__).resolve().parents[1]


def _side(ms: float, jitter):
    """A stand-in timer: ``n`` calls of ``ms`` each, times a drift factor shared by both sides of the moment."""
    def time(n: int) -> list[float]:
        return [ms / 1000 * next(jitter) for _ in range(n)]
    return time


def _drift(seed: int = 0):
    """A machine that slows down and speeds up by up to 40 % over time (the same for whichever side runs)."""
    import random

    rng, level = random.Random(seed), 1.0
    while True:
        level = min(max(level * rng.uniform(0.97, 1.03), 0.8), 1.4)
        yield level


def test_interleaving_divides_out_a_drifting_machine_and_finds_a_10_percent_slowdown():
    same = interleaved(_side(20, _drift()), _side(20, _drift()), rounds=15, calls=2, warmup=1)
    assert 0.95 <= same.ci[0] <= 1.0 <= same.ci[1] <= 1.05
    slower = interleaved(_side(20, _drift(1)), _side(22, _drift(1)), rounds=15, calls=2, warmup=1)
    assert 1.07 < slower.ci[0] and 1.08 < slower.ratio < 1.12 and slower.baseline_ms < slower.variant_ms
    assert interleaved(_side(20, _drift()), _side(20, _drift()), seed=3).ratios == \
        interleaved(_side(20, _drift()), _side(20, _drift()), seed=3).ratios  # seeded order: deterministic


def test_a_ref_that_names_nothing_is_one_line(tmp_path):
    with pytest.raises(QuantError, match="not a report file, a history id or a git ref"):
        resolve("no-such-branch-xyz", tmp_path)
    (tmp_path / "folder").mkdir()
    with pytest.raises(QuantError, match="not a checkout of quant-bench"):
        resolve(str(tmp_path / "folder"), tmp_path)


def test_a_checkout_whose_package_cannot_be_imported_is_one_line(tmp_path):
    (tmp_path / "quant").mkdir()
    (tmp_path / "quant" / "__init__.py").write_text("raise ImportError('planted')\n")
    with pytest.raises(QuantError, match="cannot be imported for A/B timing.*planted"):
        resolve(str(tmp_path), tmp_path / "cache")


def test_a_git_ref_is_extracted_once_into_the_cache(tmp_path):
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: no ref to resolve")
    checkout = resolve("HEAD", tmp_path)
    assert checkout.commit and is_checkout(checkout.root) and checkout.root.parent == tmp_path / "checkouts"
    assert resolve("HEAD", tmp_path).root == checkout.root  # reused


def _bench(args, cwd: Path, timeout=900) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}, "PYTHONPATH": str(cwd)}
    return subprocess.run([sys.executable, "-m", "pytest", "benchmarks/", "-p", "no:cacheprovider", *args], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.parametrize("ref", ["no-such-branch-xyz", "broken"])
def test_compare_to_a_bad_ref_stops_the_run_with_exit_4_before_any_work(tmp_path, ref):
    if ref == "broken":
        (tmp_path / "broken" / "quant").mkdir(parents=True)
        (tmp_path / "broken" / "quant" / "__init__.py").write_text("import no_such_module_xyz\n")
        ref = str(tmp_path / "broken")
    out = _bench(["--compare-to", ref, "--cache-dir", str(tmp_path / "cache")], ROOT, timeout=300)
    assert out.returncode == 4, out.stdout[-2000:] + out.stderr[-2000:]
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("ERROR:")]
    assert len(errors) == 1 and "--compare-to" in errors[0]
    assert not (tmp_path / "cache" / "data").exists() and not (tmp_path / "cache" / "artifacts").exists()


def _plant(root: Path, rel: str, old: str, new: str) -> None:
    path = root / rel
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


@pytest.fixture()
def candidate(tmp_path, tiny_weights, tiny_data):
    """A scratch copy of the package (the candidate, to plant a regression in) and the run's options."""
    copy = checkout_copy(tmp_path / "candidate")
    args = ["--weights", str(tiny_weights), "--data", str(tiny_data), "--imgsz", "96", "--allow-imgsz",
            "--calib-images", "4", "--latency-rounds", "15", "--latency-calls", "2", "--latency-warmup", "2",
            "--cache-dir", str(tmp_path / "cache"), "--thresholds", os.devnull, "--report-dir", str(tmp_path / "r"),
            "--compare-to", str(ROOT)]
    return copy, args, tmp_path / "r"


@pytest.mark.slow
def test_a_slowdown_planted_in_the_candidate_is_caught_in_one_line_and_explained(candidate):
    copy, args, report = candidate
    _plant(copy, "quant/backends/onnxruntime.py", "        run = lambda x: sess.run(None, {name: x})  # noqa: E731\n",
           "        import time\n\n"
           "        def run(x):  # planted: three times the time for one variant, busy\n"
           "            t0 = time.perf_counter()\n"
           "            out = sess.run(None, {name: x})\n"
           "            slow = 2.0 if variant.name == 'onnx-int8-percentile' else 0.0\n"
           "            end = time.perf_counter() + slow * (time.perf_counter() - t0)\n"
           "            while time.perf_counter() < end:\n"
           "                pass\n"
           "            return out\n")
    out = _bench([*args, "-k", "onnx-int8-percentile"], copy)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-2000:]
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("REGRESSION:")]
    assert len(lines) == 1 and "onnx-int8-percentile: latency rose" in lines[0] and "> max +5 %" in lines[0], lines
    # no kernel got slower, the runner did: the added time (twice the call) dwarfs the kernels' profile noise,
    # which on a busy 2-core machine reached half of a 50 % slowdown
    assert "the added time is outside them" in out.stdout, [ln for ln in out.stdout.splitlines() if "kernel" in ln]
    ab = json.loads((report / "ab.json").read_text())
    assert {r["variant"] for r in ab["rows"]} == {"onnx-fp32", "onnx-int8-percentile"}
    assert "latency rose" in (report / "comparison.md").read_text()


@pytest.mark.slow
def test_an_accuracy_loss_planted_in_the_candidate_names_the_layers_whose_error_grew(candidate):
    copy, args, report = candidate
    _plant(copy, "quant/calibration/ranges.py", "    percentile: float = 99.99", "    percentile: float = 90.0")
    out = _bench([*args, "-k", "onnx-int8-percentile"], copy)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-2000:]
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("REGRESSION:")]
    assert any("onnx-int8-percentile: mAP50-95 fell" in ln for ln in lines), lines
    layers = [ln for ln in out.stdout.splitlines() if ln.strip().startswith("layer /model.")]
    assert 1 <= len(layers) <= 5 and all("dB SQNR" in ln for ln in layers), out.stdout[-3000:]


def _paired(ratio, lo, hi):
    from quant.measure.latency import Paired

    return Paired(ratio=ratio, ci=(lo, hi), ratios=(ratio,), variant_ms=10 * ratio, baseline_ms=10.0, rounds=15,
                  calls=2)


@pytest.mark.parametrize("ratio, ci, limits, fails", [
    (1.15, (1.11, 1.20), {}, True),  # the default +5 %: over it, and significant
    (1.15, (0.95, 1.30), {}, False),  # over it, but the interval holds 1: not significant
    (1.04, (1.02, 1.06), {}, False),  # significant, but within +5 %
    (1.08, (1.005, 1.23), {}, False),  # over it, but the interval reaches within half the limit of 1.00: noise
    (1.08, (1.03, 1.12), {}, True),  # over it, the interval clear of +2.5 %
    (1.15, (1.11, 1.20), {"max_ab_latency_regression": 0.2}, False),  # a thresholds file's own limit
])
def test_an_ab_latency_verdict_needs_the_rise_over_the_limit_and_significant(ratio, ci, limits, fails):
    from quant.run.ab import ABRow, _verdict

    row = ABRow("ov-int8", latency=_paired(ratio, *ci))
    _verdict(row, "origin/main", limits)
    assert bool(row.failures) == fails
    if fails and ratio == 1.15:
        assert row.failures == ["ov-int8: latency rose 1.15x against origin/main (A/B in this run, 95 % interval "
                                "1.11-1.20; 10.00 -> 11.50 ms) > max +5 %"]


def test_an_ab_accuracy_verdict_compares_the_two_evaluations_in_points():
    from quant.run.ab import ABRow, _verdict

    row = ABRow("onnx-int8-percentile", latency=_paired(1.0, 0.98, 1.02), ref_map50_95=51.9, new_map50_95=51.7)
    _verdict(row, "HEAD~1", {})
    assert row.failures == ["onnx-int8-percentile: mAP50-95 fell 0.20 points against HEAD~1 (51.90 -> 51.70) > max 0.10"]
    same = ABRow("onnx-int8-percentile", latency=_paired(1.0, 0.98, 1.02), ref_map50_95=51.9, new_map50_95=51.9)
    _verdict(same, "HEAD~1", {})
    assert same.failures == []


def test_a_latency_explanation_lists_the_kernels_that_added_time_and_the_kernel_types_that_changed(tmp_path):
    from quant.run.explain import latency_lines

    ref, new = tmp_path / "ref.onnx", tmp_path / "new.onnx"
    ref.touch()
    new.touch()
    profiles = {ref: ({"conv1": 100.0, "conv2": 300.0, "head": 50.0},
                      {"conv1": "QLinearConv", "conv2": "QLinearConv", "head": "Conv"}),
                new: ({"conv1": 100.0, "conv2_nchwc": 700.0, "head": 60.0},
                      {"conv1": "QLinearConv", "conv2_nchwc": "Conv", "head": "Conv"})}

    def kernel_times(path, feed, threads=None, runs=8, ops=None):
        times, op = profiles[path]
        ops.update(op)
        return times

    lines = latency_lines(ref, new, {}, kernel_times=kernel_times)
    assert lines[0] == "kernel conv2_nchwc: 0 -> 700 us (+700 us)" and "kernel head: 50 -> 60 us (+10 us)" in lines
    assert "kernel types changed: Conv 1 -> 2, QLinearConv 2 -> 1" in lines
    quiet = latency_lines(ref, ref, {}, kernel_times=kernel_times)
    assert quiet == ["the model's kernels take 0.45 -> 0.45 ms in all: the added time is outside them (the runner's "
                     "own code, or the session's settings)"]


def test_whichever_side_goes_first_in_a_round_is_decided_by_a_seeded_coin():
    """A machine where the block timed first in a round runs 30 % slower (caches, clocks): with the order drawn
    per round the two sides share the penalty and identical builds come out equal; always one side first would
    read as a 30 % difference."""
    calls = [0]

    def side(n: int) -> list[float]:
        first = calls[0] >= 2 and calls[0] % 2 == 0  # after the two warm-up blocks, blocks come in pairs
        calls[0] += 1
        return [0.02 * (1.3 if first else 1.0)] * n

    same = interleaved(side, side, rounds=15, calls=2, warmup=1)
    assert same.ci[0] <= 1.0 <= same.ci[1] and 0.75 < same.ratio < 1.35


def test_openvino_builds_are_profiled_layer_by_layer_with_the_kernel_each_ran(suite):
    from quant.measure.profile import openvino_layer_times
    from quant.run.explain import latency_lines

    ir = suite.builder.artifact("ov-int8")
    feed = {"images": suite.inputs.sample_input()}
    ops: dict = {}
    times = openvino_layer_times(ir, feed, threads=1, runs=2, warmup=1, ops=ops)
    assert len(times) > 50 and all(t >= 0 for t in times.values())
    assert any("I8" in kind or "U8" in kind.upper() for kind in ops.values()), set(ops.values())
    lines = latency_lines(ir, ir, feed, threads=1, runs=2)
    assert lines[-1].startswith("the model's kernels take") or lines[0].startswith("kernel ")


def test_added_time_the_kernels_do_not_explain_is_said_to_be_outside_them(tmp_path):
    """Against the call's measured rise: kernels whose profile wobbles by a few percent do not hide that the
    time went elsewhere."""
    from quant.run.explain import latency_lines

    ref, new = tmp_path / "ref.onnx", tmp_path / "new.onnx"
    ref.touch()
    new.touch()
    profiles = {ref: {"conv": 1000.0}, new: {"conv": 1050.0}}  # +5 % kernel noise, +0.05 ms

    def kernel_times(path, feed, threads=None, runs=8, ops=None):
        return profiles[path]

    lines = latency_lines(ref, new, {}, kernel_times=kernel_times, added_ms=0.5)
    assert lines[-1] == ("the model's kernels take 1.00 -> 1.05 ms in all, against 0.50 ms more per call: most of the "
                         "added time is outside them (the runner's own code, or the session's settings)")
    assert not latency_lines(ref, new, {}, kernel_times=kernel_times, added_ms=0.08)[-1].startswith("the model's")
