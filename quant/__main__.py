"""Command line: ``python -m quant <command>``.

    python -m quant compare OLD NEW [--thresholds FILE] [--storage DIR] [--compare-force] [--markdown FILE]
    python -m quant export-gab REPORT [--out DIR]

``compare`` exits 0 when nothing regressed, 1 when something did (each printed as one
``REGRESSION: ...`` line), 2 on bad input (one ``ERROR: ...`` line).

May import: anything in quant.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from quant.util.errors import QuantError


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


def cmd_compare(args) -> int:
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


def cmd_export_gab(args) -> int:
    """Write github-action-benchmark's custom JSON files from a report.json."""
    from quant.gate.compare import load_run
    from quant.report.gab import write_gab

    run = load_run(args.report)
    smaller, bigger = write_gab(list(run["rows"].values()), args.out, baseline=run["baseline"])
    print(f"wrote {smaller} and {bigger}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from quant.gate.thresholds import HISTORY_DEFAULTS

    parser = argparse.ArgumentParser(prog="python -m quant", description="quant-bench tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    p = sub.add_parser("export-gab", help="write github-action-benchmark custom JSON from a report.json")
    p.add_argument("report", metavar="REPORT", help="a report.json or pytest-benchmark JSON")
    p.add_argument("--out", default="bench-report", metavar="DIR", help="output folder (default bench-report)")
    p.set_defaults(func=cmd_export_gab)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except QuantError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
