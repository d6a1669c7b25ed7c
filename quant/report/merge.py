"""One table from the reports of several machines or models (``quant-bench merge``): a row per model, machine
and variant, each with the numbers its own run measured (ratios are against that run's own baseline, so rows
of different machines compare as ratios, not as milliseconds)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tabulate import tabulate

from quant.gate.compare import load_run
from quant.report.tables import with_deltas
from quant.util.errors import QuantError
from quant.util.hardware import cpu_label

HEADERS = ["model", "imgsz", "machine", "variant", "precision", "ms", "× FP32 [95 % CI]", "mAP50-95", "Δ", "INT8",
           "status"]


def _report_path(p: Path) -> Path:
    path = p / "report.json" if p.is_dir() else p
    if not path.is_file():
        raise QuantError(f"'{p}' is neither a report.json nor a folder holding one")
    return path


def _machine(header: dict) -> str:
    m = header.get("machine") or {}
    return f"{m['gpu']} GPU, {cpu_label(m)}" if m.get("gpu") else cpu_label(m)


def merged_rows(paths: list[Path]) -> list[dict]:
    """Every row of every report, with its model, size and machine; one QuantError line for a bad file."""
    out = []
    for p in paths:
        path = _report_path(p)
        run = load_run(path)
        try:
            header = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise QuantError(f"cannot read '{path}': {e}") from None
        model, machine = Path(str(header.get("weights") or "?")).name, _machine(header)
        for r in with_deltas(list(run["rows"].values()), run["baseline"]):
            ci = r.latency_ratio_ci
            out.append({"model": model, "imgsz": header.get("imgsz"), "machine": machine, "variant": r.variant,
                        "precision": r.precision, "ms": r.latency_ms, "latency_ratio": r.latency_ratio,
                        "latency_ratio_ci": ci, "map50_95": r.map50_95, "delta_points": r.delta_points,
                        "int8_share": r.int8_share, "status": r.status, "report": str(path)})
    return out


def _cells(r: dict) -> list[str]:
    def num(v, f):
        return "-" if v is None else format(v, f)

    ratio = num(r["latency_ratio"], ".2f")
    if r["latency_ratio_ci"] and r["latency_ratio"] is not None:
        ratio += f" [{r['latency_ratio_ci'][0]:.2f}-{r['latency_ratio_ci'][1]:.2f}]"
    return [r["model"], str(r["imgsz"]), r["machine"], r["variant"], r["precision"] or "-", num(r["ms"], ".1f"), ratio,
            num(r["map50_95"], ".1f"), num(r["delta_points"], "+.2f"), r["int8_share"] or "-", r["status"] or "-"]


def merge_reports(paths: list[Path], out_dir: Path) -> tuple[str, list[Path]]:
    """Write ``out_dir``/merged.md and merged.json from the reports at ``paths``; (the terminal table, paths)."""
    rows = merged_rows(paths)
    body = [_cells(r) for r in rows]
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        md, js = out_dir / "merged.md", out_dir / "merged.json"
        intro = ("Each row as its own run measured it: ms on its machine, × FP32 and Δ (mAP50-95 points) against "
                 "the same run's onnx-fp32.\n\n")
        for path, text in ((md, "# quant-bench: merged reports\n\n" + intro
                            + tabulate(body, headers=HEADERS, tablefmt="github", disable_numparse=True) + "\n"),
                           (js, json.dumps({"rows": rows, "reports": [str(p) for p in paths]}, indent=1))):
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
    except OSError as e:
        raise QuantError(f"cannot write to '{out_dir}': {e.strerror or e}") from None
    return tabulate(body, headers=HEADERS, tablefmt="simple", disable_numparse=True), [md, js]
