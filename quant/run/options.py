"""A benchmark run's options and its checks: everything ``pytest benchmarks/`` verifies before any work.

``OPTIONS`` are the plugin's command-line options (:mod:`quant.run.plugin` adds them); ``open_session``
turns parsed options into a :class:`quant.run.session.BenchSession` or raises one QuantError line naming the
first problem. Tests call it in-process with ``defaults(**overrides)``.

Names: an option that takes a folder ends in ``-dir``; one that ends in ``-images`` is a count of images.
The older ``--images`` and ``--fidelity-images`` (folders) are still accepted, with a deprecation line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from quant.search.settings import SearchConfig
from quant.util.errors import QuantError
from quant.util.paths import default_cache_dir

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WEIGHTS = ROOT / "quant" / "embedded" / "yolov8n-shapes.pt"
DEFAULT_THRESHOLDS = ROOT / "quant" / "gate" / "thresholds.toml"  # package data: the defaults of an installed package
SEARCH = SearchConfig()  # the defaults of the --auto-* options
IMGSZ_RANGE = (320, 1280)  # input sizes the suite supports without --allow-imgsz
DEPRECATED = {"--images": "--image-dir", "--fidelity-images": "--fidelity-image-dir"}  # old name -> new
AUTO_OPTIONS = {  # SearchConfig fields set by --auto-<field>, with their help texts
    "target_drop": "largest mAP50-95 drop (points vs FP32) the searched recipe may lose",
    "margin": "aim this many points under the target on the search images",
    "images": "calibration-split images after the calibration ones that candidates are scored on",
    "sensitivity_images": "images of the layer sensitivity analysis up to imgsz 640 (above: as many pixels, "
                          "at least 2)",
    "max_evals": "most candidate evaluations per search",
    "budget_s": "time budget of one search in seconds",
    "min_int8_macs": "least share (0-1) of the convolution compute the recipe keeps in INT8",
    "profile_runs": "profiled runs that time each layer in FP32 and INT8 on the target (0: count MACs)",
}


def _flag(help_text: str) -> dict:
    return {"action": "store_true", "default": False, "help": help_text}


OPTIONS: dict[str, dict] = {
    "--preset": {"default": "full", "choices": ("quick", "standard", "full"),
                 "help": "which variants run: quick (a first look in minutes), standard (a CI gate), full (every "
                         "variant; default). -k selects within it. `quant-bench list` shows each preset's rows"},
    "--wide": _flag("print every column of the table (report.md always has them), not the compact ones"),
    "--progress": {"default": "auto", "choices": ("auto", "bar", "lines", "off"),
                   "help": "the overall progress line: a bar on a terminal and one line per step elsewhere (auto), "
                           "either of them, or none"},
    "--weights": {"default": None, "help": "Ultralytics detection .pt (default: the embedded default model)"},
    "--data": {"default": None, "help": "data YAML; val split for accuracy, 'calib' (else 'train') for calibration"},
    "--image-dir": {"default": None, "aliases": ("--images",),
                    "help": "label-free mode: a folder of unlabeled images in place of --data, split into calibration, "
                            "search and validation images; accuracy = fidelity (--images: the older name)"},
    "--imgsz": {"type": int, "default": None, "help": f"input size, a multiple of the model's largest stride (32; 64 "
                                                      f"for P6 models), {IMGSZ_RANGE[0]}-{IMGSZ_RANGE[1]} (default: the "
                                                      "weights' training size)"},
    "--allow-imgsz": {"action": "store_true", "default": False,
                      "help": f"accept an --imgsz outside {IMGSZ_RANGE[0]}-{IMGSZ_RANGE[1]}"},
    "--calib-images": {"type": int, "default": 64, "help": "number of calibration images (default 64)"},
    "--skip-bad-images": _flag("skip unreadable images (counted in the report header) instead of failing"),
    "--cache-dir": {"default": None, "help": f"artifact cache (default $YQB_CACHE_DIR or {default_cache_dir()})"},
    "--revalidate": _flag("evaluate accuracy and fidelity even when cached"),
    "--verify-cache": _flag("hash every cached file on lookup (default: only files whose size or mtime changed)"),
    "--build-timeout": {"type": float, "default": 3600.0,
                        "help": "seconds one variant's build may take before it fails (default 3600)"},
    "--threads": {"type": int, "default": None, "help": "threads of every timed model in ONNX Runtime, OpenVINO "
                                                        "and torch (default: the physical cores)"},
    "--report-dir": {"default": "bench-report", "help": "where report.json / .md / .png go (default ./bench-report)"},
    "--thresholds": {"default": str(DEFAULT_THRESHOLDS), "help": "TOML file of accuracy floors and latency ceilings"},
    "--device-profile": {"default": None, "help": "profile in the thresholds file with absolute latency ceilings"},
    "--latency-rounds": {"type": int, "default": 15, "help": "paired rounds per variant (default 15)"},
    "--latency-calls": {"type": int, "default": 2, "help": "calls of each model per paired round (default 2)"},
    "--latency-warmup": {"type": int, "default": 3, "help": "untimed warm-up calls of each model (default 3)"},
    "--compare-to": {"default": None, "help": "reference to compare with: a recorded run (a report.json, a "
                                              "pytest-benchmark JSON or a history id such as 0003: cross-run, less "
                                              "sensitive), or a commit of quant-bench (a git ref such as origin/main, "
                                              "or a checkout folder): timed A/B, interleaved in this run"},
    "--compare-force": _flag("compare latency even when the machines differ, and runs of other weights or imgsz"),
    "--allow-network": _flag("do not block network access (it is blocked by default)"),
    "--fidelity-image-dir": {"default": None, "aliases": ("--fidelity-images",),
                             "help": "image folder (no labels needed) for the label-free fidelity score (default: the "
                                     "val images; --fidelity-images: the older name)"},
    "--no-fidelity": _flag("skip the label-free fidelity score"),
    "--ppq-platform": {"default": "ONNXRUNTIME", "help": "PPQ target platform: ONNXRUNTIME, OPENVINO_INT8, TRT_INT8 "
                                                         "or PPL_CUDA_INT8 (all scored as ONNX Q/DQ)"},
    "--ppq-calib-steps": {"type": int, "default": 32, "help": "PPQ calibration steps (min 8)"},
    "--ppq-lsq-steps": {"type": int, "default": 0, "help": "PPQ LSQ optimization steps per block (0 = off)"},
    "--ppq-analysis-images": {"type": int, "default": 4, "help": "images for PPQ's error analysis"},
    **{"--auto-" + k.replace("_", "-"): {"type": type(getattr(SEARCH, k)), "default": getattr(SEARCH, k),
                                         "help": f"*-int8-auto: {text} (default {getattr(SEARCH, k)})"}
       for k, text in AUTO_OPTIONS.items()},
}


def dest(flag: str) -> str:
    """The attribute an option is parsed into (``--image-dir`` -> ``image_dir``)."""
    return flag[2:].replace("-", "_")


def deprecated(args) -> list[str]:
    """One line for each older option name among the command-line ``args``."""
    given = {a.split("=", 1)[0] for a in args if isinstance(a, str)}
    return [f"quant-bench: {old} is deprecated; use {new}" for old, new in DEPRECATED.items() if old in given]


def defaults(**overrides) -> argparse.Namespace:
    """Options as parsed with nothing on the command line, then ``overrides`` (python names)."""
    d = {dest(flag): spec["default"] for flag, spec in OPTIONS.items()}
    unknown = set(overrides) - set(d)
    if unknown:
        raise TypeError(f"unknown options: {sorted(unknown)}")
    return argparse.Namespace(**{**d, **overrides})


def default_data(cache: Path) -> Path:
    """The embedded shapes data set, generated on first use (its folder changes with the generator's code)."""
    from quant.embedded import shapes
    from quant.run import codehash

    code = codehash.combined(codehash.digests(["quant.embedded.shapes"]))[:8]
    return shapes.generate(cache / "data" / f"shapes-v{shapes.VERSION}-{code}")


def label_free_data(o, weights: Path, cache: Path) -> Path:
    """The data YAML of a label-free run: the --image-dir folder split deterministically (quant.model.labelfree)."""
    from quant.model.labelfree import write_data
    from quant.model.weights import load_weights

    names = load_weights(weights).model.names  # bad weights: one line, before the images are read
    return write_data(o.image_dir, names, o.calib_images, o.auto_images, cache / "data")


def weights_imgsz(weights) -> int:
    """The size the weights were trained at (Ultralytics keeps it in the checkpoint's args), else 640."""
    from quant.model.weights import load_weights

    size = (load_weights(weights).overrides or {}).get("imgsz") or 640
    return int(size if isinstance(size, int) else max(size))


def check_options(o) -> None:
    if min(o.auto_images, o.auto_sensitivity_images, o.auto_max_evals) < 1 or o.auto_budget_s <= 0:
        raise QuantError("--auto-images, --auto-sensitivity-images, --auto-max-evals and --auto-budget-s "
                         "must be positive")
    if not 0.0 <= o.auto_min_int8_macs <= 1.0:
        raise QuantError(f"--auto-min-int8-macs must be between 0 and 1, got {o.auto_min_int8_macs}")
    if o.auto_profile_runs < 0:
        raise QuantError(f"--auto-profile-runs must be 0 (count MACs) or more, got {o.auto_profile_runs}")
    if min(o.latency_rounds, o.latency_calls) < 1 or o.latency_warmup < 0:
        raise QuantError("--latency-rounds and --latency-calls must be at least 1, --latency-warmup at least 0")
    if o.calib_images < 1:
        raise QuantError(f"--calib-images must be at least 1, got {o.calib_images}")
    if o.image_dir and o.data:
        raise QuantError("--image-dir (unlabeled images) and --data (a labelled data YAML) exclude each other")
    if o.threads is not None and o.threads < 1:
        raise QuantError(f"--threads must be at least 1, got {o.threads}")
    if o.build_timeout <= 0:
        raise QuantError(f"--build-timeout must be positive, got {o.build_timeout:g}")
    report_dir = Path(o.report_dir)
    if report_dir.exists() and not report_dir.is_dir():
        raise QuantError(f"--report-dir '{report_dir}' is a file, not a directory")
    if report_dir.exists():
        from quant.run.cache import check_writable_dir

        check_writable_dir(report_dir, "--report-dir")


def _thresholds(o):
    from quant.gate.thresholds import Thresholds
    from quant.registry import BASELINE

    thresholds = Thresholds.load(o.thresholds)
    if o.device_profile:
        thresholds.for_variant(BASELINE, profile=o.device_profile)  # unknown profile: fail now
    return thresholds


def variants_of(o) -> dict:
    """The run's variants: the registry with the ``--auto-*`` and ``--ppq-*`` settings applied."""
    from quant.registry import configured

    # an --auto-* option set away from its default sets it for every searched variant; the others keep each
    # variant's own (onnx-int8-auto-quick's lighter search)
    search = {k: getattr(o, f"auto_{k}") for k in AUTO_OPTIONS if getattr(o, f"auto_{k}") != getattr(SEARCH, k)}
    return configured(search=search, ppq=dict(platform=o.ppq_platform, calib_steps=o.ppq_calib_steps,
                                              lsq_steps=o.ppq_lsq_steps, analysis_images=o.ppq_analysis_images))


def _suite(o, cache: Path, variants: dict):
    from quant.run.suite import Suite
    from quant.util.hardware import physical_cores

    weights = Path(o.weights) if o.weights else DEFAULT_WEIGHTS
    imgsz = o.imgsz or weights_imgsz(weights)
    if not IMGSZ_RANGE[0] <= imgsz <= IMGSZ_RANGE[1] and not o.allow_imgsz:
        raise QuantError(f"imgsz {imgsz} is outside {IMGSZ_RANGE[0]}-{IMGSZ_RANGE[1]}, the sizes the suite supports "
                         "(every variant is built and searched at it); pass --allow-imgsz to run it anyway")
    data = Path(o.data) if o.data else label_free_data(o, weights, cache) if o.image_dir else default_data(cache)
    marks = getattr(o, "markexpr", "") or ""
    return Suite.create(weights, data, imgsz, cache, o.calib_images,
                        verify_cache=o.verify_cache, revalidate=o.revalidate, variants=variants,
                        build_timeout=o.build_timeout, threads=o.threads or physical_cores(),
                        require_engines="gpu" in marks and "not gpu" not in marks,
                        check_search_images=o.auto_images, skip_bad=o.skip_bad_images, label_free=bool(o.image_dir),
                        fidelity_images=o.fidelity_image_dir)


def _check_reference(o, storage, inputs) -> None:
    """The --compare-to run: it loads, and it measured this model at this size (unless --compare-force): one line,
    before any work."""
    from quant.gate.compare import load_run, models_differ

    reference = load_run(o.compare_to, storage)
    why = None if o.compare_force else models_differ(
        reference, {"weights_sha256": inputs.weights_sha256, "imgsz": inputs.imgsz, "source": "this run"})
    if why:
        raise QuantError(why)


def open_session(o, storage: Path | None = None):
    """Check everything a run needs, then the session (:class:`quant.run.session.BenchSession`); QuantError (one
    line) on the first problem."""
    from quant.run.cache import check_writable_dir
    from quant.run.session import BenchSession

    check_options(o)
    thresholds = _thresholds(o)
    cache = check_writable_dir(Path(o.cache_dir) if o.cache_dir else default_cache_dir(), "cache directory")
    variants = variants_of(o)  # a bad --ppq-platform: one line, now
    unmatched = thresholds.unmatched(variants)
    if unmatched:
        raise QuantError(unmatched)
    checkout = None  # --compare-to a commit (a git ref or a checkout): A/B timing (quant.run.ab)
    if o.compare_to and not str(o.compare_to).endswith(".json"):
        from quant.run.reference import resolve

        checkout = resolve(str(o.compare_to), cache, storage)
    suite = _suite(o, cache, variants)
    suite.builder.cache.sweep()  # temp folders of killed builds
    if o.compare_to and checkout is None:
        _check_reference(o, storage, suite.inputs)
    embedded = o.weights is None and o.data is None and o.image_dir is None
    return BenchSession.create(suite, thresholds, embedded, rounds=o.latency_rounds, calls=o.latency_calls,
                               warmup=o.latency_warmup, timing_lock=cache / "timing.lock", profile=o.device_profile,
                               fidelity=not o.no_fidelity, ab_reference=checkout)
