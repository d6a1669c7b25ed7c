"""pytest plugin for the benchmark suite: options, the session, the report and the comparison at the end.

Works the same with pytest-xdist (``-n 2``): each worker measures its variants and attaches each
row to its test report; the controlling process collects the rows and writes the report.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import quant  # noqa: F401  (Ultralytics offline switches, before anything imports it)
from quant.autosettings import DEFAULTS
from quant.bench import BenchSession, table_rows, write_report
from quant.cache import check_writable_dir
from quant.errors import QuantError
from quant.gates import Thresholds
from quant.offline import NetworkGuard
from quant.paths import default_cache_dir
from quant.suite import Suite
from quant.variants import BASELINE, REGISTRY, override_settings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WEIGHTS = ROOT / "fixtures" / "yolov8n-shapes.pt"
DEFAULT_THRESHOLDS = ROOT / "thresholds.toml"
ROW = "quant_row"  # user_properties key a test's row travels under (to the xdist controller too)
AUTO_OPTIONS = {  # search settings of the *-int8-auto variants; defaults in quant.autosettings.DEFAULTS
    "auto_target_drop": "largest mAP50-95 drop (points vs FP32) the searched recipe may lose",
    "auto_margin": "aim this many points under the target on the search images",
    "auto_images": "calibration-split images after the calibration ones that candidates are scored on",
    "auto_sensitivity_images": "images of the layer sensitivity analysis",
    "auto_max_evals": "most candidate evaluations per search",
    "auto_budget_s": "time budget of one search in seconds",
}
MARKERS = {"gpu": "needs an NVIDIA GPU with CUDA", "tensorrt": "builds or runs a TensorRT engine",
           "slow": "end-to-end runs (minutes)"}


def pytest_addoption(parser):
    g = parser.getgroup("quant", "YOLO quantization benchmarks")
    g.addoption("--weights", default=None, help="Ultralytics detection .pt (default: the embedded default model)")
    g.addoption("--data", default=None, help="data YAML; val split for accuracy, 'calib' (else 'train') for calibration")
    g.addoption("--imgsz", type=int, default=None, help="input size, multiple of 32 (default: the weights' training size)")
    g.addoption("--calib-images", type=int, default=64, help="number of calibration images (default 64)")
    g.addoption("--cache-dir", default=None, help=f"artifact cache (default $YQB_CACHE_DIR or {default_cache_dir()})")
    g.addoption("--revalidate", action="store_true", help="evaluate accuracy and fidelity even when cached")
    g.addoption("--verify-cache", action="store_true",
                help="hash every cached file on lookup (default: only files whose size or mtime changed)")
    g.addoption("--report-dir", default="bench-report", help="where report.json / .md / .png go (default ./bench-report)")
    g.addoption("--thresholds", default=str(DEFAULT_THRESHOLDS), help="TOML file of accuracy floors and latency ceilings")
    g.addoption("--device-profile", default=None, help="profile in the thresholds file with absolute latency ceilings")
    g.addoption("--latency-rounds", type=int, default=15, help="paired rounds per variant (default 15)")
    g.addoption("--latency-calls", type=int, default=3, help="calls of each model per paired round (default 3)")
    g.addoption("--latency-warmup", type=int, default=3, help="untimed warm-up calls of each model (default 3)")
    g.addoption("--compare-to", default=None,
                help="reference run to compare with: a report.json, a pytest-benchmark JSON or a history id (e.g. 0003)")
    g.addoption("--compare-force", action="store_true", help="compare latency even when the machines differ")
    g.addoption("--allow-network", action="store_true", help="do not block network access (it is blocked by default)")
    g.addoption("--fidelity-images", default=None,
                help="image folder (no labels needed) for the label-free fidelity score (default: the val images)")
    g.addoption("--no-fidelity", action="store_true", help="skip the label-free fidelity score")
    g.addoption("--ppq-platform", default="ONNXRUNTIME",
                help="PPQ target platform: ONNXRUNTIME, OPENVINO_INT8, TRT_INT8 or PPL_CUDA_INT8 (all scored as ONNX Q/DQ)")
    g.addoption("--ppq-calib-steps", type=int, default=32, help="PPQ calibration steps (min 8)")
    g.addoption("--ppq-lsq-steps", type=int, default=0, help="PPQ LSQ optimization steps per block (0 = off)")
    g.addoption("--ppq-analysis-images", type=int, default=4, help="images for PPQ's error analysis")
    for key, text in AUTO_OPTIONS.items():
        g.addoption("--" + key.replace("_", "-"), type=type(DEFAULTS[key]), default=DEFAULTS[key],
                    help=f"*-int8-auto: {text} (default {DEFAULTS[key]})")


def _default_data(cache: Path) -> Path:
    from fixtures import shapes
    from quant import codehash

    code = codehash.combined(codehash.digests(["fixtures.shapes"]))[:8]  # a generator change makes a new set
    return shapes.generate(cache / "data" / f"shapes-v{shapes.VERSION}-{code}")


def _weights_imgsz(weights) -> int:
    """The size the weights were trained at (Ultralytics keeps it in the checkpoint's args), else 640."""
    from quant.model import load_weights

    size = (load_weights(weights).overrides or {}).get("imgsz") or 640
    return int(size if isinstance(size, int) else max(size))


def _check_options(o) -> None:
    if min(o.auto_images, o.auto_sensitivity_images, o.auto_max_evals) < 1 or o.auto_budget_s <= 0:
        raise QuantError("--auto-images, --auto-sensitivity-images, --auto-max-evals and --auto-budget-s "
                         "must be positive")
    if min(o.latency_rounds, o.latency_calls) < 1 or o.latency_warmup < 0:
        raise QuantError("--latency-rounds and --latency-calls must be at least 1, --latency-warmup at least 0")
    report_dir = Path(o.report_dir)
    if report_dir.exists() and not report_dir.is_dir():
        raise QuantError(f"--report-dir '{report_dir}' is a file, not a directory")


def _session(config) -> BenchSession:
    o = config.option
    _check_options(o)
    cache = check_writable_dir(Path(o.cache_dir) if o.cache_dir else default_cache_dir(), "cache directory")
    embedded = o.weights is None and o.data is None
    weights = Path(o.weights) if o.weights else DEFAULT_WEIGHTS
    data = Path(o.data) if o.data else _default_data(cache)
    suite = Suite.create(weights, data, o.imgsz or _weights_imgsz(weights), cache, o.calib_images,
                         verify_cache=o.verify_cache, revalidate=o.revalidate)
    suite.cache.sweep()  # temp folders of killed builds
    if o.fidelity_images:
        from quant.data import list_images

        list_images(o.fidelity_images)  # missing or empty: one line, now
        suite.fidelity_images = Path(o.fidelity_images)
    for name in [n for n, v in REGISTRY.items() if v.calibration == "auto"]:
        override_settings(name, **{key: getattr(o, key) for key in AUTO_OPTIONS})
    override_settings("ppq-", platform=o.ppq_platform, calib_steps=o.ppq_calib_steps,
                      lsq_steps=o.ppq_lsq_steps, analysis_images=o.ppq_analysis_images)
    thresholds = Thresholds.load(o.thresholds)
    if o.device_profile:
        thresholds.for_variant(BASELINE, profile=o.device_profile)  # unknown profile: fail now
    if o.compare_to:
        from quant.compare import load_run

        load_run(o.compare_to, _storage(config))  # a bad reference: one line, before any work
    return BenchSession(suite, thresholds, embedded=embedded, profile=o.device_profile, rounds=o.latency_rounds,
                        calls=o.latency_calls, warmup=o.latency_warmup, fidelity=not o.no_fidelity,
                        timing_lock=cache / "timing.lock")


def _storage(config) -> Path:
    s = str(getattr(config.option, "benchmark_storage", None) or "file://./.benchmarks")
    return Path(s.removeprefix("file://"))


def pytest_configure(config):
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    if not hasattr(config.option, "weights"):
        return
    guard = None
    if not config.option.allow_network:
        guard = NetworkGuard().__enter__()
    config._quant_guard = guard
    config._quant_rows = {}
    if not _is_worker(config):
        config.pluginmanager.register(RowCollector(config._quant_rows), "quant-rows")
    try:
        config._quant = _session(config)
    except QuantError as e:
        raise pytest.UsageError(str(e)) from None


def pytest_unconfigure(config):
    guard = getattr(config, "_quant_guard", None)
    if guard is not None:
        guard.__exit__(None, None, None)


def pytest_collection_modifyitems(config, items):
    """Baseline first: every other variant's gates compare against it."""
    items.sort(key=lambda it: 0 if getattr(it, "callspec", None) and it.callspec.params.get("variant") == BASELINE else 1)


@pytest.fixture(scope="session")
def bench(pytestconfig) -> BenchSession:
    return pytestconfig._quant


def _is_worker(config) -> bool:
    return hasattr(config, "workerinput")


class RowCollector:
    """Collects the rows the tests attach to their reports (from xdist workers too): a measured row wins
    over a "baseline only" row of the same variant."""

    def __init__(self, rows: dict) -> None:
        self.rows = rows

    def pytest_runtest_logreport(self, report):
        for key, row in report.user_properties:
            if key == ROW:
                have = self.rows.get(row["variant"])
                if have is None or have["status"] == "baseline only":
                    self.rows[row["variant"]] = row


def pytest_sessionfinish(session, exitstatus):
    """Write the report, and compare with the reference run (regressions fail the session)."""
    from quant import report

    config = session.config
    bench: BenchSession | None = getattr(config, "_quant", None)
    if bench is None or _is_worker(config) or not config._quant_rows:
        return
    guard = getattr(config, "_quant_guard", None)
    header = {**bench.header(), "network_attempts": guard.attempts if guard is not None else None}
    rows = list(config._quant_rows.values())
    out = Path(config.option.report_dir)
    try:
        config._quant_paths = write_report(rows, out, header)
    except OSError as e:
        config._quant_report_error = f"report not written to '{out}': {e.strerror or e}"
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        return
    if config.option.compare_to:
        from quant.compare import compare, format_comparison, load_run, markdown_summary

        cmp = compare(load_run(config.option.compare_to, _storage(config)), load_run(out / "report.json"),
                      limits_for=lambda v: bench.thresholds.for_variant(v, embedded=bench.embedded),
                      force_latency=config.option.compare_force)
        config._quant_comparison = (cmp, format_comparison(cmp))
        breaches = report.breach_section(table_rows(rows))
        (out / "comparison.md").write_text(markdown_summary(cmp) + breaches)
        if cmp.regressions and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, config):
    bench: BenchSession | None = getattr(config, "_quant", None)
    if bench is None or _is_worker(config) or not config._quant_rows:
        return
    from quant import report

    rows = table_rows(list(config._quant_rows.values()))
    tr = terminalreporter
    tr.section("YOLO quantization benchmark")
    tr.write_line(f"weights {bench.suite.weights}  imgsz {bench.suite.imgsz}  data {bench.suite.data.yaml}")
    tr.write_line("mAP in %, Δ = mAP50-95 points vs onnx-fp32 (same run), fidelity = mAP50-95 against onnx-fp32's "
                  "own detections (label-free), ms/img = median model call at batch 1, × FP32 = paired median ratio "
                  "vs onnx-fp32 with its 95 % interval")
    tr.write_line(report.table(rows))
    for line in report.auto_lines(rows) + report.build_lines(rows) + report.latency_lines(rows):
        tr.write_line(line)
    for notice in bench.suite.cache.notices:
        tr.write_line(notice, yellow=True)
    for line in report.breach_lines(rows):
        tr.write_line(f"GATE: {line}", red=True)
    guard = getattr(config, "_quant_guard", None)
    if guard is not None and guard.attempts:
        tr.write_line(f"network access attempted and blocked: {guard.attempts[:5]}", red=True)
    if getattr(config, "_quant_report_error", None):
        tr.write_line(f"ERROR: {config._quant_report_error}", red=True)
    elif getattr(config, "_quant_paths", None):
        tr.write_line("report: " + "  ".join(str(p) for p in config._quant_paths.values()))
    if getattr(config, "_quant_comparison", None):
        cmp, text = config._quant_comparison
        tr.section(f"comparison with {cmp.old_source}")
        tr.write_line(text)
        for line in cmp.regressions:
            tr.write_line(f"REGRESSION: {line}", red=True)
