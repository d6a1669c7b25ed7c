"""pytest plugin for the benchmark suite: options, the session, the table at the end."""

from __future__ import annotations

from pathlib import Path

import pytest

import quant  # noqa: F401  (Ultralytics offline switches, before anything imports it)
from quant.autoselect import DEFAULTS
from quant.bench import BenchSession
from quant.errors import QuantError
from quant.gates import Thresholds
from quant.offline import NetworkGuard
from quant.paths import default_cache_dir
from quant.suite import Suite
from quant.variants import BASELINE, REGISTRY, override_settings

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_WEIGHTS = ROOT / "fixtures" / "yolov8n-shapes.pt"
DEFAULT_THRESHOLDS = ROOT / "thresholds.toml"
AUTO_OPTIONS = {  # search settings of the *-int8-auto variants; defaults in quant.autoselect.DEFAULTS
    "auto_target_drop": "largest mAP50-95 drop (points vs FP32) the searched recipe may lose",
    "auto_margin": "aim this many points under the target on the search images",
    "auto_images": "calibration-split images after the calibration ones that candidates are scored on",
    "auto_sensitivity_images": "images of the layer sensitivity analysis",
    "auto_max_evals": "most candidate evaluations per search",
    "auto_budget_s": "time budget of one search in seconds",
}


def pytest_addoption(parser):
    g = parser.getgroup("quant", "YOLO quantization benchmarks")
    g.addoption("--weights", default=None, help="Ultralytics detection .pt (default: the embedded default model)")
    g.addoption("--data", default=None, help="data YAML; val split for accuracy, 'calib' (else 'train') for calibration")
    g.addoption("--imgsz", type=int, default=None, help="input size, multiple of 32 (default: the weights' training size)")
    g.addoption("--calib-images", type=int, default=64, help="number of calibration images (default 64)")
    g.addoption("--cache-dir", default=None, help=f"artifact cache (default $YQB_CACHE_DIR or {default_cache_dir()})")
    g.addoption("--report-dir", default="bench-report", help="where report.json / report.md go (default ./bench-report)")
    g.addoption("--thresholds", default=str(DEFAULT_THRESHOLDS), help="TOML file of accuracy floors and latency ceilings")
    g.addoption("--device-profile", default=None, help="profile in the thresholds file with absolute latency ceilings")
    g.addoption("--latency-rounds", type=int, default=50, help="timed rounds per variant (median reported)")
    g.addoption("--latency-warmup", type=int, default=5, help="untimed warm-up rounds per variant")
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

    return shapes.generate(cache / "data" / f"shapes-v{shapes.VERSION}")


def _weights_imgsz(weights) -> int:
    """The size the weights were trained at (Ultralytics keeps it in the checkpoint's args), else 640."""
    from quant.model import load_weights

    size = (load_weights(weights).overrides or {}).get("imgsz") or 640
    return int(size if isinstance(size, int) else max(size))


def pytest_configure(config):
    if not hasattr(config.option, "weights"):
        return
    config.addinivalue_line("markers", "gpu: needs an NVIDIA GPU with CUDA")
    guard = None
    if not config.option.allow_network:
        guard = NetworkGuard().__enter__()
    config._quant_guard = guard
    try:
        o = config.option
        if min(o.auto_images, o.auto_sensitivity_images, o.auto_max_evals) < 1 or o.auto_budget_s <= 0:
            raise QuantError("--auto-images, --auto-sensitivity-images, --auto-max-evals and --auto-budget-s "
                             "must be positive")
        cache = Path(config.option.cache_dir) if config.option.cache_dir else default_cache_dir()
        embedded = config.option.weights is None and config.option.data is None
        weights = Path(config.option.weights) if config.option.weights else DEFAULT_WEIGHTS
        data = Path(config.option.data) if config.option.data else _default_data(cache)
        imgsz = config.option.imgsz or _weights_imgsz(weights)
        suite = Suite.create(weights, data, imgsz, cache, config.option.calib_images)
        if config.option.fidelity_images:
            from quant.data import list_images

            list_images(config.option.fidelity_images)  # missing or empty: one line, now
            suite.fidelity_images = Path(config.option.fidelity_images)
        for name in [n for n, v in REGISTRY.items() if v.calibration == "auto"]:
            override_settings(name, **{key: getattr(config.option, key) for key in AUTO_OPTIONS})
        override_settings("ppq-", platform=config.option.ppq_platform, calib_steps=config.option.ppq_calib_steps,
                          lsq_steps=config.option.ppq_lsq_steps, analysis_images=config.option.ppq_analysis_images)
        thresholds = Thresholds.load(config.option.thresholds)
        if config.option.device_profile:
            thresholds.for_variant(BASELINE, profile=config.option.device_profile)  # unknown profile: fail now
    except QuantError as e:
        raise pytest.UsageError(str(e)) from None
    config._quant = BenchSession(suite, thresholds, embedded=embedded,
                                 profile=config.option.device_profile, rounds=config.option.latency_rounds,
                                 warmup=config.option.latency_warmup, fidelity=not config.option.no_fidelity)


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


def pytest_terminal_summary(terminalreporter, config):
    session: BenchSession | None = getattr(config, "_quant", None)
    if session is None or not session.rows:
        return
    from quant import report

    rows = session.table_rows()
    tr = terminalreporter
    tr.section("YOLO quantization benchmark")
    tr.write_line(f"weights {session.suite.weights}  imgsz {session.suite.imgsz}  data {session.suite.data.yaml}")
    tr.write_line("mAP in %, Δ = mAP50-95 points vs onnx-fp32 (same run), fidelity = mAP50-95 against onnx-fp32's "
                  "own detections (label-free), ms/img = median model call at batch 1")
    tr.write_line(report.table(rows))
    for line in report.auto_lines(rows):
        tr.write_line(line)
    guard = getattr(config, "_quant_guard", None)
    if guard is not None and guard.attempts:
        tr.write_line(f"network access attempted and blocked: {guard.attempts[:5]}", red=True)
    attempts = guard.attempts if guard is not None else None  # None: the guard was off (--allow-network)
    paths = session.write_report(Path(config.option.report_dir), network_attempts=attempts)
    tr.write_line(f"report: {paths[0]}  {paths[1]}")
