"""Mutation check: plant one-line bugs of the kind a merge could bring, one at a time, in a temporary copy
of the repository, and run the tests named for each. A mutant the tests do not fail on has *survived*:
the behaviour it breaks is untested. Every listed mutant must be killed at each release.

    python tools/mutation_check.py            # all mutants (several minutes on 2 cores)
    python tools/mutation_check.py --only gates-drop-at-limit cache-lock-per-process
    python tools/mutation_check.py --list

Add a mutant to MUTANTS whenever a gate, a cache-key input, a check, a guard or a numeric method is added.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


NUMERIC = "tests/test_numeric_pins.py"


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    old: str  # must occur exactly once in the file
    new: str
    tests: tuple[str, ...]  # pytest node ids or files that must fail with the mutant


MUTANTS = [
    # gates: limits are inclusive, paired ratios are judged
    Mutant("gates-drop-at-limit", "quant/gate/thresholds.py", "if d is not None and -d > self.limit:",
           "if d is not None and -d >= self.limit:", ("tests/test_gates.py",)),
    Mutant("gates-ratio-at-limit", "quant/gate/thresholds.py", "if ratio > self.limit:", "if ratio >= self.limit:",
           ("tests/test_gates.py",)),
    Mutant("gates-floor-at-limit", "quant/gate/thresholds.py", "if x is not None and x < self.limit:",
           "if x is not None and x <= self.limit:", ("tests/test_gates.py",)),
    Mutant("gates-ignore-paired-ratio", "quant/gate/thresholds.py", "ratio = finite_number(current.latency_ratio)",
           "ratio = None", ("tests/test_gates.py",)),
    Mutant("aa-ignore-bias", "quant/measure/latency.py", "if lo > 1 + AA_TOLERANCE or hi < 1 - AA_TOLERANCE:",
           "if False:", ("tests/test_bench.py",)),
    Mutant("aa-ignore-spread", "quant/measure/latency.py", "if hi / lo - 1 > AA_MAX_SPREAD:", "if False:",
           ("tests/test_bench.py",)),
    Mutant("aa-tolerance-off", "quant/measure/latency.py", "if lo > 1 + AA_TOLERANCE or hi < 1 - AA_TOLERANCE:",
           "if lo > 1 or hi < 1:", ("tests/test_bench.py",)),
    Mutant("timing-no-lock", "quant/run/timing.py",
           "with file_lock(self.lock) if self.lock else contextlib.nullcontext():",
           "with contextlib.nullcontext():", ("tests/test_bench.py",)),
    # cache: atomic publish, integrity, one build per key, stale temp folders
    Mutant("cache-publish-not-atomic", "quant/util/fsutil.py", "os.rename(tmp, out)", "shutil.copytree(tmp, out)",
           ("tests/test_cache.py",)),
    Mutant("cache-no-size-check", "quant/run/cache.py", "if st.st_size != size:", "if False:", ("tests/test_cache.py",)),
    Mutant("cache-no-hash-check", "quant/run/cache.py",
           "if (verify or st.st_mtime_ns != mtime_ns) and file_sha256(f) != sha:", "if False:", ("tests/test_cache.py",)),
    Mutant("cache-lock-per-process", "quant/run/cache.py", "with file_lock(self.lock_path(variant, key)):",
           "with file_lock(self.lock_path(variant + str(os.getpid()), key)):", ("tests/test_cache.py",)),
    Mutant("cache-sweep-live-builds", "quant/run/cache.py",
           'fd = _try_lock(self.lock_path(tmp.parent.name, tmp.name[1:].split("-", 1)[0]))',
           "fd = os.open(os.devnull, os.O_RDONLY)", ("tests/test_cache.py",)),
    Mutant("cache-full-disk-traceback", "quant/run/cache.py", "if e.errno in (errno.ENOSPC,", "if e.errno in (",
           ("tests/test_cache.py",)),
    # keys: code and every input
    Mutant("codehash-top-level-imports-only", "quant/run/codehash.py", "for node in _nodes(tree):",
           "for node in tree.body:", ("tests/test_code_keys.py",)),
    Mutant("codehash-importlib-not-followed", "quant/run/codehash.py", "elif dynamic_import(node):", "elif False:",
           ("tests/test_code_health.py",)),
    Mutant("codehash-type-checking-followed", "quant/run/codehash.py", "if _type_checking(child):", "if False:",
           ("tests/test_code_keys.py",)),
    Mutant("key-without-code", "quant/run/builder.py", '"code": codehash.variant_digests(v)}', '"code": {}}',
           ("tests/test_cache.py::test_every_key_input_of_a_variant_changes_its_key",)),
    Mutant("key-without-source", "quant/run/builder.py", 'inputs["source"] = self.manifest(v.source).key', "pass",
           ("tests/test_cache.py::test_every_key_input_of_a_variant_changes_its_key",)),
    Mutant("eval-key-without-data", "quant/run/evaluations.py", '"data": data_key,', '"data": None,',
           ("tests/test_bench.py::test_evaluation_is_cached_until_the_val_data_changes",)),
    # paired latency and the history comparison
    Mutant("latency-fixed-order", "quant/measure/latency.py", "if rng.random() < 0.5:", "if True:",
           ("tests/test_latency.py",)),
    Mutant("latency-ci-off-by-one", "quant/measure/latency.py", "return xs[best - 1], xs[n - best]",
           "return xs[best], xs[n - best - 1]", ("tests/test_latency.py",)),
    Mutant("compare-drop-at-limit", "quant/gate/thresholds.py", "if d is not None and -d > self.limit:",
           "if d is not None and -d >= self.limit:", ("tests/test_compare.py",)),
    Mutant("compare-latency-not-significant", "quant/gate/thresholds.py",
           "if point is not None and point > 1 + self.limit and (ci is None or ci[0] > 1.0):",
           "if point is not None and point > 1 + self.limit:", ("tests/test_compare.py",)),
    Mutant("compare-other-machine", "quant/gate/compare.py", "refused = None if force_latency else machine_mismatch(",
           "refused = None if True else machine_mismatch(", ("tests/test_compare.py",)),
    # the report's headline numbers
    Mutant("report-delta-against-itself", "quant/report/tables.py", "round(r.map50_95 - base.map50_95, 3)",
           "round(r.map50_95 - r.map50_95, 3)", ("tests/test_openvino_and_peers.py",)),
    # offline guard
    Mutant("guard-connect-allowed", "quant/util/offline.py", 'raise guard._blocked(f"connect {address!r}")',
           'guard._blocked(f"connect {address!r}")', ("tests/test_offline.py",)),
    # INT8 settings and precision
    Mutant("qdq-reduce-range-inverted", "quant/build/qdq.py", "reduce_range=c.reduce_range,",
           "reduce_range=not c.reduce_range,",
           ("tests/test_onnxruntime_int8.py::test_weight_range_is_what_the_variant_asks_for",)),
    Mutant("openvino-fp32-unpinned", "quant/build/ir.py", "    return _HINTS[wanted]",
           '    return None if wanted == "fp32" else _HINTS[wanted]', ("tests/test_precision.py",)),
    # TensorRT engine layer (tested against a stand-in TensorRT and CUDA)
    Mutant("trt-enqueue-unchecked", "quant/backends/tensorrt.py", "if not context.execute_async_v3(stream.cuda_stream):",
           "if not (context.execute_async_v3(stream.cuda_stream) or True):", ("tests/test_tensorrt_engine_layer.py",)),
    Mutant("trt-no-synchronize", "quant/backends/tensorrt.py", "stream.synchronize()  # outputs and events",
           "pass  # outputs and events", ("tests/test_tensorrt_engine_layer.py",)),
    Mutant("trt-key-major-minor-only", "quant/backends/tensorrt.py", '"tensorrt": trt.__version__,',
           '"tensorrt": ".".join(trt.__version__.split(".")[:2]),', ("tests/test_tensorrt_engine_layer.py",)),
    Mutant("trt-decode-unmatched-silent", "quant/build/trt_implicit.py", "if nodes and not pinned:", "if False:",
           ("tests/test_tensorrt_engine_layer.py",)),
    Mutant("trt-int8-fp32-outside-qdq", "quant/build/fp16.py", "keep_fp32=list(keep_fp32) + qdq)",
           "keep_fp32=[n.name for n in model.graph.node])", ("tests/test_tensorrt.py",)),
    # checks before any work, contained failures
    Mutant("preflight-unreadable-ignored", "quant/model/preflight.py", "if bad and not skip_bad:", "if False:",
           ("tests/test_checks.py",)),
    Mutant("threads-ignored", "quant/measure/latency.py", "so.intra_op_num_threads = int(threads)", "pass",
           ("tests/test_precision.py",)),
    Mutant("worker-signal-ignored", "quant/build/ppq.py", "if proc.returncode == 0:", "if proc.returncode <= 0:",
           ("tests/test_checks.py::test_killed_ppq_worker_fails_only_that_variant_in_one_line",)),
    # numeric code: range methods, corrections and the statistics gates read (tests/test_numeric_pins.py)
    Mutant("percentile-off-by-bins", "quant/calibration/ranges.py",
           "return _clip(s, s.amax * min(i + 1, len(s.hist)) / len(s.hist))",
           "return _clip(s, s.amax * min(i + 9, len(s.hist)) / len(s.hist))", (NUMERIC,)),
    Mutant("percentile-wrong-quantile", "quant/calibration/ranges.py",
           "i = int(np.searchsorted(cdf, self.percentile / 100.0))",
           "i = int(np.searchsorted(cdf, self.percentile / 101.0))", (NUMERIC,)),
    Mutant("entropy-tail-dropped", "quant/calibration/ranges.py", "p[-1] += tail[i]  # outliers clipped into the last bin",
           "pass", (NUMERIC,)),
    Mutant("entropy-no-even-spread", "quant/calibration/ranges.py",
           "q = np.where(nonzero, qsum[idx] / np.maximum(qcnt[idx], 1), 0.0)", "q = np.where(nonzero, qsum[idx], 0.0)",
           (NUMERIC,)),
    Mutant("entropy-edge-off-by-one", "quant/calibration/ranges.py", "return _clip(s, s.amax * i / len(s.hist))",
           "return _clip(s, s.amax * (i + 1) / len(s.hist))", (NUMERIC,)),
    Mutant("ranges-without-zero", "quant/calibration/ranges.py", "out[name] = (min(lo, 0.0), max(hi, 0.0))",
           "out[name] = (lo, hi)", (NUMERIC,)),
    Mutant("silu-floor-sign", "quant/calibration/ranges.py",
           "out[x] = (max(lo, floor), min(hi, max(out[y][1], 0.0)))",
           "out[x] = (max(lo, -floor), min(hi, max(out[y][1], 0.0)))", (NUMERIC,)),
    Mutant("silu-negative-output-clip", "quant/calibration/ranges.py",
           "out[x] = (max(lo, floor), min(hi, max(out[y][1], 0.0)))", "out[x] = (max(lo, floor), min(hi, out[y][1]))",
           (NUMERIC,)),
    Mutant("biascorr-sign", "quant/calibration/biascorr.py",
           "shift = _conv_of_mean(w, mx, groups[j.conv]) - _conv_of_mean(wq, mq, groups[j.conv])",
           "shift = _conv_of_mean(wq, mq, groups[j.conv]) - _conv_of_mean(w, mx, groups[j.conv])", (NUMERIC,)),
    Mutant("biascorr-input-not-quantized", "quant/calibration/biascorr.py",
           "y = ys[t] if act is None else fake_quant(ys[t], act)", "y = ys[t]", (NUMERIC,)),
    Mutant("rounding-error-sign", "quant/calibration/rounding.py",
           "wb[:, i + 1:] -= np.outer(errs[:, i], ub[i, i + 1:])", "wb[:, i + 1:] += np.outer(errs[:, i], ub[i, i + 1:])",
           (NUMERIC,)),
    Mutant("rounding-no-act-order", "quant/calibration/rounding.py", 'order = np.argsort(-np.diag(h), kind="stable")',
           "order = np.arange(len(h))", (NUMERIC,)),
    Mutant("rounding-no-block-update", "quant/calibration/rounding.py", "w[:, b1:] -= errs @ u[b0:b1, b1:]", "pass",
           (NUMERIC,)),
    Mutant("ratio-of-ratios-inverted", "quant/measure/latency.py",
           "return float(np.median(a) / np.median(b)), (float(lo), float(hi))",
           "return float(np.median(b) / np.median(a)), (float(lo), float(hi))", (NUMERIC,)),
    Mutant("map-over-nine-thresholds", "quant/measure/imagestats.py",
           "return np.where(counted > 0, total / (10 * np.maximum(counted, 1)), 0.0)",
           "return np.where(counted > 0, total / (9 * np.maximum(counted, 1)), 0.0)", (NUMERIC,)),
    Mutant("class-share-over-one-class-less", "quant/measure/classloss.py",
           "shares = {c: 100 * (a[c][0] - b[c][0]) / len(b) for c in b}",
           "shares = {c: 100 * (a[c][0] - b[c][0]) / max(len(b) - 1, 1) for c in b}", (NUMERIC,)),
    Mutant("floor-loss-sign", "quant/measure/row.py", "return ceiling - floor if numbers else None",
           "return floor - ceiling if numbers else None", (NUMERIC,)),
    Mutant("labelfree-val-rounded-down", "quant/model/labelfree.py", "n_val = max(min_val, (len(rest) + 1) // 2)",
           "n_val = max(min_val, len(rest) // 2)", (NUMERIC,)),
    # A/B against a commit: the verdict needs the rise and its significance; rounds go in seeded random order
    Mutant("ab-ignore-significance", "quant/run/ab.py",
           "if lat is not None and lat.ratio > 1 + limit and lat.ci[0] > 1 + limit / 2:",
           "if lat is not None and lat.ratio > 1 + limit:", ("tests/test_ab.py",)),
    Mutant("ab-interval-only-clear-of-one", "quant/run/ab.py",
           "if lat is not None and lat.ratio > 1 + limit and lat.ci[0] > 1 + limit / 2:",
           "if lat is not None and lat.ratio > 1 + limit and lat.ci[0] > 1:", ("tests/test_ab.py",)),
    Mutant("ab-limit-doubled", "quant/run/ab.py",
           "if lat is not None and lat.ratio > 1 + limit and lat.ci[0] > 1 + limit / 2:",
           "if lat is not None and lat.ratio > 1 + 2 * limit and lat.ci[0] > 1 + limit / 2:", ("tests/test_ab.py",)),
    Mutant("ab-reference-always-first", "quant/measure/latency.py",
           "            r, n = list(time_ref(calls)), list(time_new(calls))",
           "            n, r = list(time_new(calls)), list(time_ref(calls))", ("tests/test_ab.py",)),
    # weight rounding on NNCF's grid: the weights NNCF's values stand for, and the build kept only where closer
    Mutant("ir-rounding-ignores-smoothquant", "quant/calibration/ir_rounding.py",
           "self.w = (w / m[None, :, None, None] if m is not None else w)", "self.w = (w if m is not None else w)",
           ("tests/test_ir_rounding.py",)),
    Mutant("ir-rounding-no-bias-shift", "quant/calibration/ir_rounding.py",
           "        if bias is None or bias.get_type_name() != \"Constant\":", "        if True:",
           ("tests/test_ir_rounding.py",)),
    Mutant("refined-build-always-kept", "quant/search/float_choice.py", "    if score < kept[\"score\"]:", "    if True:",
           ("tests/test_ir_rounding.py",)),
    # what a TensorRT engine runs and where its time goes: its inspector's layers, its per-layer profiler
    Mutant("trt-names-only-engine", "quant/build/trt_engine.py",
           "    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED\n", "",
           ("tests/test_tensorrt_engine_layer.py",)),
    Mutant("trt-int8-read-as-float", "quant/measure/profile.py", '("Int8", "int8"), ("INT8", "int8"), ', "",
           ("tests/test_tensorrt_engine_layer.py",)),
    Mutant("trt-qdq-reformat-as-reorder", "quant/measure/profile.py",
           'return "quantize/dequantize" if layer.get("Origin") == "QDQ" else "reorder"', 'return "reorder"',
           ("tests/test_tensorrt_engine_layer.py",)),
]


def _copy(dst: Path) -> None:
    skip = shutil.ignore_patterns(".git", ".venv", "__pycache__", "bench-report", ".benchmarks", "runs")
    for item in ROOT.iterdir():
        if item.name in (".git", ".venv", "bench-report", ".benchmarks"):
            continue
        (shutil.copytree(item, dst / item.name, ignore=skip) if item.is_dir() else shutil.copy2(item, dst / item.name))


def run_mutant(m: Mutant, copy: Path, timeout: float) -> tuple[str, float]:
    path = copy / m.file
    text = path.read_text()
    if text.count(m.old) != 1:
        return f"STALE (the line occurs {text.count(m.old)} times in {m.file})", 0.0
    path.write_text(text.replace(m.old, m.new))
    t0 = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *m.tests],
                              cwd=copy, env={**os.environ, "PYTHONPATH": str(copy)}, capture_output=True,
                              text=True, timeout=timeout)
        verdict = "killed" if proc.returncode in (1, 2) else "SURVIVED" if proc.returncode == 0 else \
            f"ERROR (pytest exit {proc.returncode})"
    except subprocess.TimeoutExpired:
        verdict = "killed (timeout)"
    finally:
        path.write_text(text)
    return verdict, time.monotonic() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", help="mutant names")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per mutant (default 600)")
    args = ap.parse_args(argv)
    mutants = [m for m in MUTANTS if not args.only or m.name in args.only]
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:36s} {m.file}: {m.old!r} -> {m.new!r}")
        return 0
    unknown = set(args.only or ()) - {m.name for m in MUTANTS}
    if unknown:
        print(f"ERROR: unknown mutants: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        copy = Path(tmp)
        _copy(copy)
        results = []
        for m in mutants:
            verdict, seconds = run_mutant(m, copy, args.timeout)
            results.append((m, verdict))
            print(f"{verdict:10s} {m.name:36s} {seconds:6.1f} s  ({', '.join(m.tests)})", flush=True)
    killed = sum(v.startswith("killed") for _, v in results)
    print(f"score: {killed}/{len(results)} mutants killed ({100 * killed / max(len(results), 1):.0f} %)")
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
