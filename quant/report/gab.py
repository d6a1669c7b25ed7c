"""Export one run for github-action-benchmark's charts (its ``customSmallerIsBetter`` and
``customBiggerIsBetter`` tools).

Each file is a JSON list of ``{"name", "unit", "value", "range"?, "extra"?}`` entries, one per
tracked number. Latency is exported as the paired ratio vs the baseline (comparable across runners
of the same kind) and as raw ms/img (only comparable on one machine); accuracy as mAP50-95 and
fidelity in %.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from quant.gate.thresholds import finite_number
from quant.measure.row import Row
from quant.registry import BASELINE


def _half_width(ci) -> str | None:
    """github-action-benchmark's ``range`` string ("±0.031") from a [lo, hi] interval, or None."""
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return None
    lo, hi = finite_number(ci[0]), finite_number(ci[1])
    return None if lo is None or hi is None else f"±{(hi - lo) / 2:.3f}"


def _smaller(row: Row, baseline: str) -> list[dict]:
    """Latency entries of one row: ratio vs the baseline (with its interval) and ms/img."""
    out, variant = [], row.variant
    ratio, ms = finite_number(row.latency_ratio), finite_number(row.latency_ms)
    if ratio is not None:
        entry = {"name": f"{variant} latency ratio vs {baseline}", "unit": "x", "value": round(ratio, 4)}
        rng = _half_width(row.latency_ratio_ci)
        if rng is not None:
            entry["range"] = rng
        if ms is not None:
            entry["extra"] = f"ms/img {ms:.1f}"
        out.append(entry)
    if ms is not None:
        out.append({"name": f"{variant} ms/img", "unit": "ms", "value": round(ms, 3)})
    return out


def _bigger(row: Row) -> list[dict]:
    """Accuracy entries of one row, in %: mAP50-95 and, when measured, fidelity."""
    out, variant = [], row.variant
    extra = f"precision {row.precision or '?'}" + (", Ultralytics peer" if row.peer else "")
    for key, label in (("map50_95", "mAP50-95"), ("fidelity_map50_95", "fidelity mAP50-95")):
        v = finite_number(getattr(row, key))
        if v is not None:
            out.append({"name": f"{variant} {label}", "unit": "%", "value": round(v, 4), "extra": extra})
    return out


def gab_entries(rows: list[Row], baseline: str = BASELINE) -> tuple[list[dict], list[dict]]:
    """(customSmallerIsBetter entries, customBiggerIsBetter entries) for a run's rows."""
    smaller = [e for r in rows for e in _smaller(r, baseline)]
    bigger = [e for r in rows for e in _bigger(r)]
    return smaller, bigger


def write_gab(rows: list[Row], out_dir, baseline: str = BASELINE) -> tuple[Path, Path]:
    """Write ``gab-smaller.json`` and ``gab-bigger.json`` (JSON lists) into ``out_dir``, atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / "gab-smaller.json", out / "gab-bigger.json")
    for path, entries in zip(paths, gab_entries(rows, baseline)):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(entries, indent=1, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    return paths
