"""Compare two benchmark runs and say what got worse since the older one.

A run is a ``report.json`` (what ``pytest benchmarks/`` writes to ``bench-report/``) or a
pytest-benchmark history file (``--benchmark-autosave``), named by path or by its run id::

    python -m quant compare main-report/report.json bench-report/report.json
    python -m quant compare 0003 0004 --storage .benchmarks

Accuracy (mAP50-95 and the label-free fidelity, in points) is compared on any machines. Latency is
compared as a *ratio of ratios*: each run records every variant's latency relative to the baseline
(``onnx-fp32``), timed paired and interleaved in the same process, so machine-wide speed changes
cancel out; a variant regresses when that ratio rose by more than the limit AND the rise is
significant (the lower end of its 95 % interval is above 1). Latency is not compared between runs
recorded on different CPUs or instruction sets (VNNI, AMX, ... change which kernels run) unless
forced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from quant.gate.thresholds import HISTORY_DEFAULTS, LatencyRise, MaxDrop, latency_change
from quant.measure.row import ACCURACY_UNIT, Row
from quant.registry import BASELINE
from quant.util.errors import QuantError
from quant.util.hardware import cpu_label

ACCURACY_METRICS = (("map50_95", "mAP50-95"), ("fidelity_map50_95", "fidelity mAP50-95"))


# ---------------------------------------------------------------------------------------------- loading


def _read_json(path: Path):
    """The parsed JSON of ``path``, or a QuantError naming what is wrong with the file."""
    if path.is_dir():
        raise QuantError(f"run '{path}' is a directory, not a report.json or a pytest-benchmark JSON file")
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise QuantError(f"run file '{path}' not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise QuantError(f"run file '{path}' is not valid JSON ({e})") from None
    except OSError as e:
        raise QuantError(f"run file '{path}' cannot be read ({e.strerror or e})") from None


def _variant_of(bench: dict) -> str | None:
    """The variant a pytest-benchmark entry measured: ``extra_info['variant']``, else the test's parameter."""
    extra = bench.get("extra_info") or {}
    if isinstance(extra.get("variant"), str):
        return extra["variant"]
    name = str(bench.get("name", ""))
    return name[name.index("[") + 1:name.rindex("]")] if "[" in name and name.endswith("]") else None


def _rows_from_history(data: dict) -> tuple[list[dict], dict | None]:
    """One row per pytest-benchmark entry (from its ``extra_info``), and the first recorded ``machine``."""
    rows, machine = [], None
    for bench in data["benchmarks"]:
        extra = bench.get("extra_info") if isinstance(bench, dict) else None
        if not isinstance(extra, dict) or not extra:
            continue
        variant = _variant_of(bench)
        if variant is None:
            continue
        rows.append({**extra, "variant": variant})  # accuracy_unit travels with each entry
        if machine is None and isinstance(extra.get("machine"), dict):
            machine = extra["machine"]
    return rows, machine


def _run_from_data(data, source: str) -> dict:
    """Normalise a parsed report.json or pytest-benchmark history into ``{machine, rows, source, ...}``."""
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        rows, machine = [{"accuracy_unit": data.get("accuracy_unit"), **r} for r in data["rows"]
                         if isinstance(r, dict)], data.get("machine")
        baseline = data.get("baseline") or BASELINE
    elif isinstance(data, dict) and isinstance(data.get("benchmarks"), list):
        rows, machine = _rows_from_history(data)
        baseline = next((r["baseline"] for r in rows if isinstance(r.get("baseline"), str)), BASELINE)
    else:
        raise QuantError(f"run '{source}' is neither a report.json (no 'rows' list) "
                         f"nor a pytest-benchmark history (no 'benchmarks' list)")
    by_variant = {r["variant"]: Row.from_dict(r, fractions=r.get("accuracy_unit") != ACCURACY_UNIT)
                  for r in rows if isinstance(r, dict) and isinstance(r.get("variant"), str)}
    if not by_variant:
        raise QuantError(f"run '{source}' has no benchmark rows (no row names a variant)")
    return {"machine": machine if isinstance(machine, dict) else None, "rows": by_variant,
            "source": source, "baseline": baseline, "date": data.get("date") or data.get("datetime"),
            "weights_sha256": data.get("weights_sha256"), "imgsz": data.get("imgsz")}


def _find_run_id(ref: str, storage: Path) -> Path:
    """The newest ``<storage>/*/<ref>_*.json`` (a pytest-benchmark run id such as ``0003``, or a longer prefix)."""
    if not storage.is_dir():
        raise QuantError(f"run '{ref}' is not a file, and the history folder '{storage}' does not exist")
    found = sorted(storage.glob(f"*/{ref}_*.json")) or sorted(storage.glob(f"*/{ref}*.json"))
    if not found:
        raise QuantError(f"run '{ref}' not found: no file '{ref}' and no '{storage}/*/{ref}_*.json'")
    return max(found, key=lambda p: (p.stat().st_mtime, p.name))


def _looks_like_path(ref: str) -> bool:
    return ref.endswith(".json") or "/" in ref or "\\" in ref


def load_run(ref, storage: str | Path | None = None) -> dict:
    """Load one run for comparison.

    ``ref``: a ``report.json`` path, a pytest-benchmark history JSON path, or a pytest-benchmark run id
    or prefix (``0003``) looked up as ``<storage>/*/0003_*.json`` (``storage`` defaults to
    ``.benchmarks``; the newest match wins). Returns ``{"machine": dict | None, "rows": {variant: Row},
    "source": str, "baseline": str, "date": str | None}``. Raises QuantError (one line) on a missing
    file, a file that is not JSON, a file without rows, or an id that matches nothing.
    """
    ref = str(ref)
    path = Path(ref)
    if not path.exists() and not _looks_like_path(ref):
        path = _find_run_id(ref, Path(storage) if storage is not None else Path(".benchmarks"))
    return _run_from_data(_read_json(path), str(path))


# ------------------------------------------------------------------------------------------- comparing


@dataclass(frozen=True)
class Change:
    """How one variant moved between the old and the new run.

    ``map_delta_points`` / ``fidelity_delta_points``: new minus old, in mAP points (0-100), None when
    either run lacks the value. ``latency_change``: the variant's latency ratio vs the baseline now,
    divided by the same ratio then (1.25 = 25 % slower relative to the baseline), None when not
    compared; ``latency_ci``: its 95 % interval, when known.
    """

    variant: str
    map_delta_points: float | None = None
    fidelity_delta_points: float | None = None
    latency_change: float | None = None
    latency_ci: tuple[float, float] | None = None
    regressions: tuple[str, ...] = ()
    improvements: tuple[str, ...] = ()
    peer_changes: tuple[str, ...] = ()  # a yardstick (Ultralytics' own export) got worse: reported, never failed
    not_compared: tuple[str, ...] = ()  # accuracy fields the two runs measured differently (not_comparable)
    not_compared_why: str = ""  # the row field that differs: 'scoring' or 'fidelity_labels'

    @property
    def verdict(self) -> str:
        return ("REGRESSION" if self.regressions else "worse (peer)" if self.peer_changes
                else "improved" if self.improvements else "ok")


@dataclass
class Comparison:
    """Every variant's :class:`Change`, the variants present in only one run, and why latency was skipped."""

    changes: list[Change] = field(default_factory=list)
    only_old: list[str] = field(default_factory=list)
    only_new: list[str] = field(default_factory=list)
    latency_refused: str | None = None
    old_source: str = "old run"
    new_source: str = "new run"
    baseline: str = BASELINE

    @property
    def regressions(self) -> list[str]:
        """All regression messages, one line each."""
        return [m for c in self.changes for m in c.regressions]

    @property
    def improvements(self) -> list[str]:
        return [m for c in self.changes for m in c.improvements]


def _limits(variant: str, limits_for: Callable[[str], dict] | None) -> tuple[float, float]:
    """(max mAP drop in points, max relative latency rise) for a variant, defaults where unset."""
    limits = {**HISTORY_DEFAULTS, **{k: v for k, v in (limits_for(variant) if limits_for else {}).items()
                                     if k in HISTORY_DEFAULTS and v is not None}}
    return float(limits["max_map_regression_points"]), float(limits["max_latency_regression"])


def history_checks(limits: tuple[float, float], baseline: str, with_latency: bool) -> list:
    """The checks between two runs: mAP50-95 and fidelity may not fall more than ``limits[0]`` points,
    the latency ratio vs ``baseline`` may not rise more than ``limits[1]`` (the same check classes as
    the same-run gates, :mod:`quant.gate.thresholds`)."""
    checks = [MaxDrop(key, limits[0], label) for key, label in ACCURACY_METRICS]
    return checks + ([LatencyRise(limits[1], baseline)] if with_latency else [])


def _describe(machine: dict | None) -> str:
    if not machine:
        return "machine not recorded"
    return cpu_label(machine) + (f" + {machine['gpu']}" if machine.get("gpu") else "")


def machine_mismatch(old: dict | None, new: dict | None) -> str | None:
    """Why two runs' latencies cannot be compared (different CPU model, ISA flags or GPU), or None if they can."""
    same = (bool(old) and bool(new) and old.get("cpu") == new.get("cpu")
            and sorted(old.get("isa") or []) == sorted(new.get("isa") or []) and old.get("gpu") == new.get("gpu"))
    if same:
        return None
    return (f"latency not compared: recorded on different machines ({_describe(old)} vs {_describe(new)}); "
            f"use --compare-force to compare anyway")


def not_comparable(old_row: Row, new_row: Row) -> tuple[tuple[str, ...], str]:
    """The accuracy fields two rows cannot be compared on, and the recorded field that says why: every
    accuracy where the runs scored boxes differently (``scoring``; a row recorded before it was kept
    scored them unclipped), else those of :func:`labels_differ`."""
    if old_row.scoring != new_row.scoring:
        return ("map50_95", "fidelity_map50_95"), "scoring"
    fields = labels_differ(old_row, new_row)
    return fields, "fidelity_labels" if fields else ""


def labels_differ(old_row: Row, new_row: Row) -> tuple[str, ...]:
    """The accuracy fields two rows cannot be compared on: those measured against the FP32 model's own
    detections (fidelity; label-free, every accuracy) where the two runs made those labels differently
    (``fidelity_labels``; a row recorded before it was kept made them with ``predict()``)."""
    if old_row.fidelity_labels == new_row.fidelity_labels:
        return ()
    label_free = old_row.label_free or new_row.label_free
    return ("map50_95", "fidelity_map50_95") if label_free else ("fidelity_map50_95",)


def _change(variant: str, old_row: Row, new_row: Row, baseline: str, limits: tuple[float, float],
            since: str, with_latency: bool) -> Change:
    """One variant's :class:`Change` under its (accuracy points, latency fraction) limits."""
    where = f"since {since}"
    skip, why = not_comparable(old_row, new_row)
    checks = [c for c in history_checks(limits, baseline, with_latency and variant != baseline)
              if getattr(c, "field", None) not in skip]
    regs = [m for c in checks if (m := c.fails(new_row, old_row, where))]
    imps = [m for c in checks if (m := c.improved(new_row, old_row, where))]
    if with_latency:  # the same machine: what the runtime runs is deterministic, so any change is one
        ran = executed_change(new_row, old_row, where)
        (regs if ran and ran[0] else imps).extend([ran[1]] if ran else [])
    point, ci = latency_change(old_row, new_row) if any(isinstance(c, LatencyRise) for c in checks) else (None, None)
    deltas = {c.field: c.delta(new_row, old_row) for c in checks if isinstance(c, MaxDrop)}
    moved = (variant, deltas.get("map50_95"), deltas.get("fidelity_map50_95"), point, ci)
    if new_row.peer:  # not our code: its changes inform, they do not fail the run
        return Change(*moved, (), tuple(imps), tuple(regs), skip, why)
    return Change(*moved, tuple(regs), tuple(imps), (), skip, why)


# what else the runtime records about a run, each a count whose rise costs time: Q/DQ nodes ONNX Runtime runs as
# float nodes, OpenVINO's layout and precision reorders
EXECUTED_COUNTS = {"quantize": "QuantizeLinear nodes", "dequantize": "DequantizeLinear nodes", "reorders": "reorders"}


def executed_change(new_row: Row, old_row: Row, where: str) -> tuple[bool, str] | None:
    """(worse, line) when the runtime runs the variant otherwise than in the reference run (:attr:`Row.executed`,
    read from the runtime): its convolutions in other precisions, or more or fewer Q/DQ nodes or reorders; None
    when they are the same or a run did not record it. Fewer convolutions run in INT8, or more of the other
    counts, is a regression even where the timing stays inside its noise."""
    a, b = old_row.executed, new_row.executed
    if not a or not b:
        return None
    old, new = (a.get("convs_int8"), a.get("convs_float")), (b.get("convs_int8"), b.get("convs_float"))
    parts, worse = [], False
    if None not in old and None not in new and old != new:
        parts.append(f"the runtime runs {new[0]} convolutions in INT8 and {new[1]} in float, {old[0]} and {old[1]}")
        worse = new[0] < old[0]
    for key, what in EXECUTED_COUNTS.items():
        if a.get(key) is not None and b.get(key) is not None and a[key] != b[key]:
            parts.append(f"{b[key]} {what}, {a[key]}")
            worse = worse or b[key] > a[key]
    if not parts:
        return None
    return worse, f"{new_row.variant}: " + "; ".join(parts) + f" {where}"


def _rows(run: dict) -> dict[str, Row]:
    """A run's rows by variant, as :class:`Row` values. A run put together by hand may hold records instead, in
    its ``accuracy_unit`` (absent: fractions, as in a report of a version before points)."""
    fractions = run.get("accuracy_unit") != ACCURACY_UNIT
    return {v: r if isinstance(r, Row) else Row.from_dict({**r, "variant": v}, fractions=fractions)
            for v, r in run["rows"].items()}


def models_differ(old: dict, new: dict) -> str | None:
    """Why two runs measured different models (other weights, or another input size), in one line; None when
    they measured the same or did not record it."""
    for key, what in (("weights_sha256", "weights"), ("imgsz", "imgsz")):
        a, b = old.get(key), new.get(key)
        if a is not None and b is not None and a != b:
            shown = (a[:12], b[:12]) if key == "weights_sha256" else (a, b)
            return (f"runs measured different models ({what} {shown[0]} in {old.get('source', 'the old run')}, "
                    f"{shown[1]} in {new.get('source', 'the new run')}): comparing them would report every change "
                    "as a regression; use --compare-force to compare anyway")
    return None


def compare(old: dict, new: dict, limits_for: Callable[[str], dict] | None = None,
            force_latency: bool = False, force_models: bool = False) -> Comparison:
    """Compare two runs from :func:`load_run` (the old one is the reference).

    ``limits_for(variant) -> dict`` supplies ``max_map_regression_points`` (points, used for mAP50-95 and
    fidelity) and ``max_latency_regression`` (a fraction); unset, their defaults are
    :data:`quant.gate.thresholds.HISTORY_DEFAULTS`. Accuracy is compared
    always; latency only when both runs were recorded on the same CPU model and ISA flags, or when
    ``force_latency``. Runs of other weights or another imgsz are refused (QuantError) unless
    ``force_models``. The baseline variant is never compared on latency (its ratio is 1 by definition).
    """
    why = None if force_models else models_differ(old, new)
    if why:
        raise QuantError(why)
    refused = None if force_latency else machine_mismatch(old.get("machine"), new.get("machine"))
    baseline = new.get("baseline") or old.get("baseline") or BASELINE
    since = old.get("source", "old run")
    old_rows, new_rows = _rows(old), _rows(new)
    changes = [_change(v, old_rows[v], row, baseline, _limits(v, limits_for), since, refused is None)
               for v, row in new_rows.items() if v in old_rows]
    return Comparison(changes=changes,
                      only_old=[v for v in old_rows if v not in new_rows],
                      only_new=[v for v in new_rows if v not in old_rows],
                      latency_refused=refused, old_source=since, new_source=new.get("source", "new run"),
                      baseline=baseline)


# ------------------------------------------------------------------------------------------- reporting


def _points(v: float | None) -> str:
    return "-" if v is None else f"{v:+.2f}"


def _latency_cell(c: Change, cmp: Comparison) -> str:
    if c.latency_change is None:
        if c.variant == cmp.baseline:
            return "baseline"
        return "not compared" if cmp.latency_refused else "-"
    ci = f" ({c.latency_ci[0]:.2f}-{c.latency_ci[1]:.2f})" if c.latency_ci else ""
    return f"{c.latency_change:.2f}x{ci}"


def _notes(cmp: Comparison) -> list[str]:
    """The lines under the table: why latency was skipped, variants present in only one run."""
    notes = [cmp.latency_refused] if cmp.latency_refused else []
    rescored = [c.variant for c in cmp.changes if c.not_compared_why == "scoring"]
    if rescored:
        notes.append(f"accuracy not compared for {', '.join(rescored)}: {cmp.old_source} scored the predicted "
                     "boxes another way (recorded as 'scoring'); compare it with a run recorded since")
    skipped = [c.variant for c in cmp.changes if c.not_compared_why == "fidelity_labels"]
    if skipped:
        notes.append(f"accuracy against FP32's own detections not compared for {', '.join(skipped)}: "
                     f"{cmp.old_source} made those labels another way (recorded as 'fidelity_labels'); "
                     "compare it with a run recorded since")
    if cmp.only_old:
        notes.append(f"missing now (only in {cmp.old_source}): {', '.join(cmp.only_old)}")
    if cmp.only_new:
        notes.append(f"new (not in {cmp.old_source}): {', '.join(cmp.only_new)}")
    return notes


def format_comparison(cmp: Comparison, fmt: str = "simple") -> str:
    """The comparison as a table (``fmt``: tabulate format, "simple" for a terminal, "github" for
    Markdown): Δ mAP50-95 and Δ fidelity in points (new - old), latency now/then as the ratio of
    ratios vs the baseline with its 95 % interval, and a verdict; then the notes."""
    from tabulate import tabulate

    rows = [[c.variant, _points(c.map_delta_points), _points(c.fidelity_delta_points),
             _latency_cell(c, cmp), c.verdict] for c in cmp.changes]
    headers = ["variant", "Δ mAP50-95", "Δ fidelity", "latency now/then (95 % interval)", "verdict"]
    text = tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)
    notes = _notes(cmp)
    sep = "\n\n" if fmt == "github" else "\n"  # Markdown needs blank lines between paragraphs
    return text + ("\n\n" + sep.join(notes) if notes else "")


def markdown_summary(cmp: Comparison) -> str:
    """A Markdown section for a pull request or a CI job summary: heading, one sentence, the table,
    and the regressions as a bullet list."""
    n = len(cmp.regressions)
    sentence = (f"{n} regression{'s' if n != 1 else ''} since `{cmp.old_source}`." if n
                else f"No regressions since `{cmp.old_source}`.")
    parts = ["## Benchmark comparison", "", f"`{cmp.new_source}` vs `{cmp.old_source}`: {sentence}", "",
             format_comparison(cmp, "github")]
    if cmp.regressions:
        parts += ["", "Regressions:", ""] + [f"- {m}" for m in cmp.regressions]
    return "\n".join(parts) + "\n"
