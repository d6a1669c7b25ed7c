"""Histories of runs, saved by the suite itself in pytest-benchmark's file layout and format.

pytest-benchmark times a function it calls; this suite times each variant paired against the baseline
(:mod:`quant.run.timing`), which its fixture cannot express through its public API (feeding it our times
needs its private ``_make_stats``). So the suite does not use the fixture at all: it writes the history file
itself, where pytest-benchmark would (``--benchmark-storage``, default ``.benchmarks``; saved with
``--benchmark-autosave`` or ``--benchmark-save NAME``, pytest-benchmark's own options), one entry per variant
named ``test_variant[<variant>]`` with its row in ``extra_info`` and the statistics of its timed calls in
``stats``. ``--compare-to 0003`` and ``python -m quant compare`` read these files (:mod:`quant.gate.compare`),
and so can ``pytest-benchmark compare``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import statistics
from pathlib import Path

from quant.measure.row import ACCURACY_UNIT, Row

GROUP = "batch-1 model call (paired rounds)"
EXTRA = ("variant", "peer", "precision", "box_precision", "recall", "map50", "map50_95", "delta_ci",
         "fidelity_map50_95", "latency_ms", "latency_ratio", "latency_ratio_ci", "latency_ratio_rounds", "size_mb",
         "preprocess_ms", "postprocess_ms", "int8_share", "cached", "built_because", "config", "status", "scoring",
         "fidelity_labels", "label_free")


def machine_dir() -> str:
    """The folder of this machine's histories, named as pytest-benchmark names it (e.g. Linux-CPython-3.11-64bit)."""
    return "-".join((platform.system(), platform.python_implementation(),
                     ".".join(platform.python_version_tuple()[:2]), platform.architecture()[0]))


def stats(times: tuple[float, ...]) -> dict:
    """pytest-benchmark's statistics of one variant's timed calls (seconds)."""
    xs = sorted(times)
    if not xs:
        return {}
    q1, median, q3 = (statistics.quantiles(xs, n=4) if len(xs) > 1 else (xs[0], xs[0], xs[0]))
    iqr = q3 - q1
    mean = statistics.fmean(xs)
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    inside = [x for x in xs if q1 - 1.5 * iqr <= x <= q3 + 1.5 * iqr]
    return {"min": xs[0], "max": xs[-1], "mean": mean, "stddev": sd, "rounds": len(xs), "median": median,
            "iqr": iqr, "q1": q1, "q3": q3, "iqr_outliers": len(xs) - len(inside),
            "stddev_outliers": sum(abs(x - mean) > sd for x in xs), "outliers": f"{sum(abs(x - mean) > sd for x in xs)};"
            f"{len(xs) - len(inside)}", "ld15iqr": inside[0], "hd15iqr": inside[-1], "ops": 1.0 / mean if mean else 0.0,
            "total": sum(xs), "iterations": 1}


def save(storage: Path, name: str | None, rows: list[Row], machine: dict, times: dict[str, tuple]) -> Path:
    """Write the run as ``<storage>/<machine dir>/<NNNN>_<name>.json`` (the next free number; ``name`` defaults
    to the date and time); its path."""
    folder = Path(storage) / machine_dir()
    folder.mkdir(parents=True, exist_ok=True)
    numbers = [int(m.group(1)) for p in folder.glob("*.json") if (m := re.match(r"(\d{4})_", p.name))]
    now = _dt.datetime.now(_dt.timezone.utc)
    tag = re.sub(r"[^\w.-]+", "-", name) if name else now.strftime("%Y%m%d_%H%M%S")
    path = folder / f"{max(numbers, default=0) + 1:04d}_{tag}.json"
    data = {"machine_info": machine, "commit_info": {}, "datetime": now.isoformat(), "version": "quant-bench",
            "benchmarks": [{"group": GROUP, "name": f"test_variant[{r.variant}]",
                            "fullname": f"test_variant[{r.variant}]", "params": {"variant": r.variant},
                            "param": r.variant, "extra_info": {**{k: getattr(r, k) for k in EXTRA}, "machine": machine,
                                           "accuracy_unit": ACCURACY_UNIT},
                            "options": {"timer": "perf_counter", "mode": "paired rounds (quant.measure.latency.paired)"},
                            "stats": stats(times.get(r.variant, ()))} for r in rows]}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)
    return path
