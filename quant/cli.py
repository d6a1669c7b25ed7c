"""The ``quant-bench`` command (also ``python -m quant``): run the benchmark in any folder, list the variants,
compare two runs, write a starter thresholds file for a model, merge reports of several machines or models.

    quant-bench run [--preset quick|standard|full] [any option of the benchmark or of pytest]
    quant-bench list [--preset NAME]
    quant-bench compare OLD NEW [--thresholds FILE] [--storage DIR] [--compare-force] [--markdown FILE]
    quant-bench init [--out thresholds.toml] [--drop-margin P] [--latency-margin F] [benchmark options]
    quant-bench merge REPORT... [--out DIR]
    quant-bench export-gab REPORT [--out DIR]

``run`` and ``init`` exit as pytest does (0 passed, 1 a gate failed or something regressed, 4 bad input, one
line); ``compare`` 0 when nothing regressed, 1 when something did (each printed as one ``REGRESSION: ...``
line); every command 2 on bad input of its own (one ``ERROR: ...`` line).

May import: anything in quant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from quant.util.errors import QuantError

BENCHMARK = Path(__file__).resolve().parent / "run" / "benchmark.py"  # the benchmark's test module, collected as is


def _limits_for(thresholds: str | None):
    """``limits_for(variant)`` from a thresholds TOML file, or None for the built-in defaults."""
    if thresholds is None:
        return None
    from quant.gate.thresholds import Thresholds

    table = Thresholds.load(thresholds)
    return table.for_variant


def _write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file in the same folder, then rename)."""
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, out)
    except OSError as e:
        raise QuantError(f"cannot write '{out}' ({e.strerror or e})") from None


def cmd_compare(args, rest: list[str]) -> int:
    """Compare two runs; print the table and each regression; 1 if anything regressed."""
    from quant.gate.compare import compare, format_comparison, load_run, markdown_summary

    old, new = load_run(args.old, args.storage), load_run(args.new, args.storage)
    cmp = compare(old, new, limits_for=_limits_for(args.thresholds), force_latency=args.compare_force,
                  force_models=args.compare_force)
    print(format_comparison(cmp, "simple"))
    if args.markdown:
        _write_text(args.markdown, markdown_summary(cmp))
    for message in cmp.regressions:
        print(f"REGRESSION: {message}")
    return 1 if cmp.regressions else 0


def cmd_export_gab(args, rest: list[str]) -> int:
    """Write github-action-benchmark's custom JSON files from a report.json."""
    from quant.gate.compare import load_run
    from quant.report.gab import write_gab

    run = load_run(args.report)
    smaller, bigger = write_gab(list(run["rows"].values()), args.out, baseline=run["baseline"])
    print(f"wrote {smaller} and {bigger}")
    return 0



# ---- run -------------------------------------------------------------------------------------------------
def pytest_args(preset: str, rest: list[str]) -> list[str]:
    """pytest's command line for a benchmark run of ``preset`` in the current folder: the package's own benchmark
    module, the plugin, no ini file or conftest of the folder's project, and ``rest`` (the benchmark's and pytest's
    options) after them."""
    quiet = [] if any(a.startswith("-v") or a == "--verbose" for a in rest) else ["-q", "--no-header"]
    return [str(BENCHMARK), "-p", "quant.run.plugin", "-p", "no:cacheprovider", "-c", os.devnull,
            "--rootdir", os.getcwd(), "--noconftest", *quiet, "--preset", preset, *rest]


def run_benchmark(preset: str, rest: list[str]) -> int:
    import pytest

    return int(pytest.main(pytest_args(preset, rest)))


def cmd_run(args, rest: list[str]) -> int:
    """The benchmark, as ``pytest benchmarks/`` runs it, from any folder."""
    return run_benchmark(args.preset, rest)


# ---- list ------------------------------------------------------------------------------------------------
def variant_table(preset: str | None = None) -> list[dict]:
    """Each variant: backend, precision, the presets it is in, what it needs, and whether it can run here."""
    from quant.build.trt_engine import engine_unavailable
    from quant.registry import PRESETS, REGISTRY

    in_preset = {name: p.select(REGISTRY) for name, p in PRESETS.items()}
    out = []
    for name, v in REGISTRY.items():
        if preset and name not in in_preset[preset]:
            continue
        why = v.unavailable()
        if why is None and "tensorrt" in v.markers:
            stand_in = engine_unavailable(v)
            why = f"accuracy only, on its ONNX in ONNX Runtime CPU ({stand_in})" if stand_in else None
        needs = [*v.markers, *([v.tool.value] if v.tool is not None else [])]
        out.append({"variant": name, "backend": v.backend.name, "precision": v.precision.value,
                    "presets": ",".join(p for p in PRESETS if name in in_preset[p]) or "-",
                    "needs": ",".join(dict.fromkeys(needs)) or "-", "here": "yes" if why is None else why})
    return out


def cmd_list(args, rest: list[str]) -> int:
    from tabulate import tabulate

    from quant.registry import PRESETS

    rows = variant_table(args.preset)
    print(tabulate([list(r.values()) for r in rows], headers=["variant", "backend", "precision", "presets", "needs",
                                                              "runs here"], tablefmt="simple", disable_numparse=True))
    for p in PRESETS.values():
        print(f"{p.name}: {p.purpose}")
    return 0


# ---- init ------------------------------------------------------------------------------------------------
def cmd_init(args, rest: list[str]) -> int:
    """Run the quick preset once on the model, then write a starter thresholds file from what it measured."""
    from quant.gate.compare import load_run
    from quant.gate.starter import starter_thresholds

    out = Path(args.out)
    if out.exists() and not args.force:
        raise QuantError(f"'{out}' exists; pass --force to overwrite it")
    if args.drop_margin < 0 or args.latency_margin < 0:
        raise QuantError("--drop-margin and --latency-margin must be 0 or more")
    report_dir = _option(rest, "--report-dir") or "bench-report"
    given = _option(rest, "--thresholds")
    with tempfile.TemporaryDirectory() as tmp:  # init measures, it does not judge: no limits but the history's
        if given is None:
            (Path(tmp) / "none.toml").write_text("[defaults]\n")
        code = run_benchmark(args.preset, rest if given else [*rest, "--thresholds", str(Path(tmp) / "none.toml")])
    report = Path(report_dir) / "report.json"
    if code not in (0, 1) or not report.is_file():
        print(f"ERROR: the {args.preset} run did not finish (exit {code}); no thresholds written", file=sys.stderr)
        return code or 2
    header = json.loads(report.read_text())
    text = starter_thresholds(load_run(report), header, args.drop_margin, args.latency_margin)
    _write_text(str(out), text)
    print(f"wrote {out}: the limits measured now plus the margins (use it with --thresholds {out})")
    return 0


def _option(args: list[str], flag: str) -> str | None:
    """The value of ``flag`` among pytest-style ``args`` (``--flag value`` or ``--flag=value``), the last one given."""
    value = None
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith(flag + "="):
            value = a.split("=", 1)[1]
    return value


# ---- merge -----------------------------------------------------------------------------------------------
def cmd_merge(args, rest: list[str]) -> int:
    from quant.report.merge import merge_reports

    table, paths = merge_reports([Path(p) for p in args.reports], Path(args.out))
    print(table)
    print("wrote " + " and ".join(str(p) for p in paths))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from quant.run.options import OPTIONS

    parser = argparse.ArgumentParser(prog="quant-bench", description="Regression benchmarks of quantized Ultralytics "
                                     "YOLO detectors: build every export/quantization variant of a model, measure "
                                     "accuracy and latency, gate and compare.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    presets = OPTIONS["--preset"]["choices"]
    _add_run_commands(sub, presets)
    _add_report_commands(sub)
    return parser


def _add_run_commands(sub, presets) -> None:
    """``run``, ``list`` and ``init``: the commands that run or describe the benchmark."""
    p = sub.add_parser("run", help="run the benchmark here (options: those of pytest benchmarks/, see --help)",
                       description="Run the benchmark in this folder. Every option of `pytest benchmarks/` "
                       "(--weights, --data, --image-dir, --imgsz, --thresholds, --compare-to, --report-dir, ...) and "
                       "of pytest (-k, -m, -n, -x, -v) is passed through; `pytest --help` lists them under "
                       "quant-bench. Writes ./bench-report/ (report.json, .md, .html, .png).")
    p.add_argument("--preset", choices=presets, default="quick",
                   help="quick (default: a first look in minutes), standard (a CI gate), full (every variant, as "
                        "`pytest benchmarks/`)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("list", help="the variants: backend, precision, presets, needs, whether they run here")
    p.add_argument("--preset", choices=presets, default=None, help="only this preset's variants")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("init", help="run the quick preset on a model and write a starter thresholds file",
                       description="Run a preset once (quick by default) on your model (--weights, --data or "
                       "--image-dir, --imgsz, any benchmark option) and write a thresholds TOML: each variant's "
                       "measured mAP50-95 drop and latency ratio plus a stated margin, each limit with a comment.")
    p.add_argument("--out", default="thresholds.toml", metavar="FILE", help="where to write it (default thresholds.toml)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--preset", choices=presets, default="quick", help="the variants to measure (default quick)")
    p.add_argument("--drop-margin", type=float, default=0.5, metavar="POINTS",
                   help="points added to each measured mAP50-95 drop, and taken off each floor (default 0.5)")
    p.add_argument("--latency-margin", type=float, default=0.25, metavar="FRACTION",
                   help="fraction added to each measured latency ratio's upper 95 %% bound (default 0.25)")
    p.set_defaults(func=cmd_init)


def _add_report_commands(sub) -> None:
    """``compare``, ``merge`` and ``export-gab``: the commands that read reports."""
    from quant.gate.thresholds import HISTORY_DEFAULTS

    p = sub.add_parser("compare", help="compare two benchmark runs; exit 1 on a regression",
                       description="Compare two runs (report.json, pytest-benchmark JSON, or a run id such as 0003).")
    p.add_argument("old", metavar="OLD", help="the reference run (e.g. main's report.json)")
    p.add_argument("new", metavar="NEW", help="the run to check (e.g. bench-report/report.json)")
    p.add_argument("--thresholds", default=None, metavar="FILE",
                   help="thresholds TOML; unset, max_map_regression_points = "
                        f"{HISTORY_DEFAULTS['max_map_regression_points']:g} (points) and max_latency_regression = "
                        f"{HISTORY_DEFAULTS['max_latency_regression']:g} "
                        f"({100 * HISTORY_DEFAULTS['max_latency_regression']:g} %%)")
    p.add_argument("--storage", default=None, metavar="DIR",
                   help="pytest-benchmark history folder for run ids (default .benchmarks)")
    p.add_argument("--compare-force", action="store_true",
                   help="compare latency even when the runs were recorded on different CPUs/ISA flags, and runs "
                        "of different weights or imgsz")
    p.add_argument("--markdown", default=None, metavar="FILE", help="also write a Markdown summary here")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("merge", help="merge reports of several machines or models into one table",
                       description="One cross-device, cross-model table from several report.json files.")
    p.add_argument("reports", metavar="REPORT", nargs="+", help="report.json files (or folders holding one)")
    p.add_argument("--out", default="merged", metavar="DIR", help="where merged.md and merged.json go (default merged)")
    p.set_defaults(func=cmd_merge)

    p = sub.add_parser("export-gab", help="write github-action-benchmark custom JSON from a report.json")
    p.add_argument("report", metavar="REPORT", help="a report.json or pytest-benchmark JSON")
    p.add_argument("--out", default="bench-report", metavar="DIR", help="output folder (default bench-report)")
    p.set_defaults(func=cmd_export_gab)


PASS_THROUGH = ("run", "init")  # commands whose unknown options go on to the benchmark


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in PASS_THROUGH:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return args.func(args, rest)
    except QuantError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
