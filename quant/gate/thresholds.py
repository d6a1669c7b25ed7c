"""Accuracy floors and latency ceilings, read from a TOML thresholds file. Every accuracy is in points
(0-100), as the table prints it; :data:`LIMITS` names each key with its unit and, where it has one, its
default (the only place a default is written: the plugin, ``python -m quant compare`` and the docs read it).

    [defaults]                       # every variant, any model
    max_drop_points = 1.0            # mAP50-95 points below onnx-fp32 of the same run
    max_latency_ratio = 2.0          # ms/img divided by onnx-fp32's ms/img of the same run (paired)

    [variants."onnx-int8-*"]         # fnmatch pattern or exact name; the most specific match wins
    max_drop_points = 5.0
    min_map50_95 = 40.0              # absolute floor in points, any model

    [embedded.variants."onnx-fp32"]  # absolute floors that hold only for the embedded default model
    min_map50_95 = 55.0

    [profiles.cpu-2core.variants."onnx-fp32"]   # absolute ceilings, active with --device-profile
    max_latency_ms = 60.0
"""

from __future__ import annotations

import difflib
import fnmatch
import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from quant.measure.row import Row
from quant.util.errors import QuantError


@dataclass(frozen=True)
class Limit:
    """One key of a thresholds file: its unit, what it bounds, and its default where one applies unset."""

    unit: str
    meaning: str
    default: float | None = None


LIMITS = {
    "min_map50_95": Limit("points", "absolute mAP50-95 floor"),
    "min_map50": Limit("points", "absolute mAP50 floor"),
    "min_fidelity_map50_95": Limit("points", "floor of mAP50-95 against the FP32 model's own detections"),
    "max_drop_points": Limit("points", "largest mAP50-95 drop below onnx-fp32 in the same run"),
    "max_latency_ratio": Limit("× onnx-fp32", "largest paired latency ratio against onnx-fp32 in the same run"),
    "max_latency_ms": Limit("ms", "largest ms/img (absolute; with --device-profile)"),
    "max_map_regression_points": Limit("points", "history comparison: largest fall of mAP50-95 or fidelity since "
                                                 "the reference run", 0.1),
    "max_latency_regression": Limit("fraction", "history comparison: largest significant rise of the paired latency "
                                                "ratio since the reference run (0.25 = 25 %)", 0.25),
    "max_ab_latency_regression": Limit("fraction", "A/B against a commit (--compare-to REF): largest significant "
                                                   "rise of the candidate's time over the reference build's, timed "
                                                   "interleaved in the same run (0.05 = 5 %)", 0.05),
}
# What the history comparison applies where no thresholds file sets a value. The latency default is what
# identical reruns need on a shared 2-core machine: their INT8/FP32 ratios moved by up to 1.20x between runs.
# The A/B default: the smallest limit with no false alarm in 10 clean A/B runs of 4 rows on a 2-core machine (none
# down to 0.04); it caught a planted 10 % slowdown 9 times in 10, a 5 % one 5 times (docs/results/run-times-and-ab.md).
HISTORY_DEFAULTS = {k: lim.default for k, lim in LIMITS.items() if lim.default is not None}


# ------------------------------------------------------------------------------------------ checks
# One small object per kind of limit, in the spirit of pytest-benchmark's RegressionCheck:
# ``check.fails(current, reference, where)`` -> the breach as one line, or None. ``current`` and
# ``reference`` are rows (quant.measure.row.Row); ``where`` names the reference in the message
# ("vs onnx-fp32" for the same-run baseline, "since main/report.json" for a recorded run). The
# same-run gates and the history comparison (quant.gate.compare) use the same classes.


def finite_number(v) -> float | None:
    """A finite float, or None (missing values, NaN, strings, booleans)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


@dataclass(frozen=True)
class Floor:
    """``current[field]`` must not be under ``limit`` (absolute, points)."""

    field: str
    limit: float
    label: str

    def fails(self, current: Row, reference: Row | None = None, where: str = "") -> str | None:
        x = finite_number(getattr(current, self.field))
        if x is not None and x < self.limit:
            return f"{current.variant}: {self.label} {x:.2f} < floor {self.limit:.2f}"
        return None


@dataclass(frozen=True)
class Ceiling:
    """``current[field]`` must not be over ``limit`` (absolute, e.g. ms)."""

    field: str
    limit: float
    label: str
    unit: str = ""

    def fails(self, current: Row, reference: Row | None = None, where: str = "") -> str | None:
        x = finite_number(getattr(current, self.field))
        if x is not None and x > self.limit:
            return f"{current.variant}: {self.label} {x:.2f}{self.unit} > ceiling {self.limit:.2f}{self.unit}"
        return None


@dataclass(frozen=True)
class MaxDrop:
    """``current[field]`` may fall at most ``limit`` points (0-100) below ``reference[field]``."""

    field: str
    limit: float
    label: str

    def delta(self, current: Row, reference: Row | None) -> float | None:
        """current - reference in points, None when either lacks the value."""
        new = finite_number(getattr(current, self.field))
        old = finite_number(getattr(reference, self.field)) if reference is not None else None
        return None if new is None or old is None else new - old

    def _says(self, verb: str, current: Row, reference: Row, where: str) -> str:
        d = self.delta(current, reference)
        old, new = getattr(reference, self.field), getattr(current, self.field)
        return f"{current.variant}: {self.label} {verb} {abs(d):.2f} points {where} ({old:.2f} -> {new:.2f})"

    def fails(self, current: Row, reference: Row | None, where: str = "") -> str | None:
        d = self.delta(current, reference)
        if d is not None and -d > self.limit:
            return self._says("fell", current, reference, where) + f" > max {self.limit:.2f}"
        return None

    def improved(self, current: Row, reference: Row | None, where: str = "") -> str | None:
        d = self.delta(current, reference)
        return self._says("rose", current, reference, where) if d is not None and d > self.limit else None


@dataclass(frozen=True)
class MaxRatio:
    """Same run: the variant's paired latency ratio vs the baseline (``reference``) at most ``limit``."""

    limit: float

    def fails(self, current: Row, reference: Row | None, where: str = "") -> str | None:
        ratio = finite_number(current.latency_ratio)
        if ratio is None:
            if reference is None or not finite_number(reference.latency_ms) or finite_number(current.latency_ms) is None:
                return None
            ratio = current.latency_ms / reference.latency_ms
        if ratio > self.limit:
            return (f"{current.variant}: latency {ratio:.2f}x {reference.variant if reference else 'baseline'} "
                    f"(paired median; {current.latency_ms:.2f} ms) > max ratio {self.limit:.2f}")
        return None


def _ci(v) -> tuple[float, float] | None:
    """A (lo, hi) pair of positive finite numbers, or None."""
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        return None
    lo, hi = finite_number(v[0]), finite_number(v[1])
    return (lo, hi) if lo is not None and hi is not None and 0 < lo <= hi else None


def _rounds(v) -> list[float] | None:
    """The per-round ratios if every one is a positive finite number, else None."""
    if not isinstance(v, (list, tuple)) or not v:
        return None
    xs = [finite_number(x) for x in v]
    return xs if all(x is not None and x > 0 for x in xs) else None


def latency_change(old_row: Row, new_row: Row) -> tuple[float | None, tuple[float, float] | None]:
    """(ratio of ratios, 95 % interval) of one variant between two runs.

    With both runs' per-round ratios: ``quant.measure.latency.ratio_of_ratios`` (median over median, seeded
    bootstrap interval). Otherwise new ``latency_ratio`` / old ``latency_ratio``, with the conservative
    interval (new_lo / old_hi, new_hi / old_lo) when both runs recorded one, else no interval.
    """
    new_r, old_r = _rounds(new_row.latency_ratio_rounds), _rounds(old_row.latency_ratio_rounds)
    if new_r and old_r:
        from quant.measure.latency import ratio_of_ratios

        return ratio_of_ratios(new_r, old_r)
    new_x, old_x = finite_number(new_row.latency_ratio), finite_number(old_row.latency_ratio)
    if new_x is None or old_x is None or old_x <= 0:
        return None, None
    new_ci, old_ci = _ci(new_row.latency_ratio_ci), _ci(old_row.latency_ratio_ci)
    ci = (new_ci[0] / old_ci[1], new_ci[1] / old_ci[0]) if new_ci and old_ci else None
    return new_x / old_x, ci


@dataclass(frozen=True)
class LatencyRise:
    """Between runs: the latency ratio vs ``baseline`` may rise by at most ``limit`` (0.25 = 25 %), judged
    as a ratio of ratios; a rise counts when over ``1 + limit`` and significant (interval entirely
    above 1). Without an interval the point alone decides, and the message says so."""

    limit: float
    baseline: str

    def _says(self, verb: str, current: Row, reference: Row, where: str, point: float, ci) -> str:
        then, now = finite_number(reference.latency_ratio), finite_number(current.latency_ratio)
        ratios = f"{then:.2f}x -> {now:.2f}x" if then is not None and now is not None else "ratios"
        interval = f"95 % interval {ci[0]:.2f}-{ci[1]:.2f}" if ci else "no interval recorded"
        return f"{current.variant}: latency vs {self.baseline} {verb} {point:.2f}x {where} ({ratios}, {interval})"

    def fails(self, current: Row, reference: Row | None, where: str = "") -> str | None:
        point, ci = latency_change(reference or Row(current.variant), current)
        if point is not None and point > 1 + self.limit and (ci is None or ci[0] > 1.0):
            return self._says("rose", current, reference, where, point, ci) + f" > max +{100 * self.limit:g} %"
        return None

    def improved(self, current: Row, reference: Row | None, where: str = "") -> str | None:
        point, ci = latency_change(reference or Row(current.variant), current)
        if point is not None and point < 1 - self.limit and (ci is None or ci[1] < 1.0):
            return self._says("fell", current, reference, where, point, ci)
        return None


def _check_table(table, where: str, path) -> dict:
    if not isinstance(table, dict):
        raise QuantError(f"thresholds file '{path}': [{where}] must be a table")
    for k, v in table.items():
        if k not in LIMITS:
            raise QuantError(f"thresholds file '{path}': unknown key '{k}' in [{where}] (known: {', '.join(LIMITS)})")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise QuantError(f"thresholds file '{path}': '{k}' in [{where}] must be a non-negative number, got {v!r}")
        if k.startswith("min_") and 0 < v <= 1:
            raise QuantError(f"thresholds file '{path}': '{k}' in [{where}] is {v:g}, a fraction; accuracy limits are "
                             f"points (0-100): write {100 * v:g}")
    return table


def _variant_tables(section, where: str, path) -> dict[str, dict]:
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise QuantError(f"thresholds file '{path}': [{where}] must be a table of variant tables")
    return {pat: _check_table(t, f'{where}."{pat}"', path) for pat, t in section.items()}


@dataclass(frozen=True)
class Thresholds:
    defaults: dict
    variants: dict[str, dict]
    embedded: dict[str, dict]
    profiles: dict[str, dict[str, dict]]
    path: str = "<none>"

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Thresholds":
        p = Path(path)
        try:
            d = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise QuantError(f"thresholds file '{p}' not found") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise QuantError(f"thresholds file '{p}' is not valid TOML ({e})") from None
        unknown = set(d) - {"defaults", "variants", "embedded", "profiles"}
        if unknown:
            raise QuantError(f"thresholds file '{p}': unknown section [{sorted(unknown)[0]}]")
        embedded = d.get("embedded", {})
        if not isinstance(embedded, dict) or set(embedded) - {"variants"}:
            raise QuantError(f"thresholds file '{p}': [embedded] may only hold [embedded.variants.\"NAME\"] tables")
        profiles = d.get("profiles", {})
        if not isinstance(profiles, dict) or any(not isinstance(t, dict) or set(t) - {"variants"} for t in profiles.values()):
            raise QuantError(f"thresholds file '{p}': [profiles.NAME] may only hold [profiles.NAME.variants.\"X\"] tables")
        return cls(
            defaults=_check_table(d.get("defaults", {}), "defaults", p),
            variants=_variant_tables(d.get("variants"), "variants", p),
            embedded=_variant_tables(embedded.get("variants"), "embedded.variants", p),
            profiles={n: _variant_tables(t.get("variants"), f"profiles.{n}.variants", p) for n, t in profiles.items()},
            path=str(p))

    def unmatched(self, names) -> str | None:
        """One line naming the first table whose variant pattern matches none of ``names``, with the closest name
        (a misspelt section would otherwise judge that variant by the defaults, silently); None when all match."""
        names = list(names)
        sections = [("variants", self.variants), ("embedded.variants", self.embedded),
                    *((f"profiles.{p}.variants", t) for p, t in self.profiles.items())]
        for where, tables in sections:
            for pattern in tables:
                if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                    close = difflib.get_close_matches(pattern, names, n=1, cutoff=0.0)
                    hint = f"; did you mean '{close[0]}'?" if close else ""
                    return f"thresholds file '{self.path}': [{where}.\"{pattern}\"] matches no variant{hint}"
        return None

    def for_variant(self, name: str, embedded: bool = False, profile: str | None = None) -> dict:
        """Merged limits for one variant: defaults < patterns (least to most specific) < exact name."""
        if profile is not None and profile not in self.profiles:
            raise QuantError(f"device profile '{profile}' is not in thresholds file '{self.path}' "
                             f"(has: {', '.join(self.profiles) or 'none'})")
        limits = dict(self.defaults)
        layers = [self.variants] + ([self.embedded] if embedded else []) + ([self.profiles[profile]] if profile else [])
        for tables in layers:
            matches = [pat for pat in tables if fnmatch.fnmatchcase(name, pat)]
            for pat in sorted(matches, key=lambda s: (s == name, len(s.replace("*", "")))):
                limits.update(tables[pat])
        return limits


def same_run_checks(limits: dict) -> list:
    """The checks a variant's merged limits (:meth:`Thresholds.for_variant`) ask for, in one run."""
    table = [("min_map50_95", lambda x: Floor("map50_95", x, "mAP50-95")),
             ("min_map50", lambda x: Floor("map50", x, "mAP50")),
             ("min_fidelity_map50_95", lambda x: Floor("fidelity_map50_95", x, "fidelity mAP50-95")),
             ("max_latency_ms", lambda x: Ceiling("latency_ms", x, "latency", " ms")),
             ("max_drop_points", lambda x: MaxDrop("map50_95", x, "mAP50-95")),
             ("max_latency_ratio", MaxRatio)]
    return [make(limits[key]) for key, make in table if key in limits]


def check_row(row: Row, limits: dict, baseline: Row | None) -> list[str]:
    """Every breached limit of one row against the same run's baseline row, one line each."""
    relative = (MaxDrop, MaxRatio)  # need the baseline, and say nothing about the baseline itself
    out = []
    for c in same_run_checks(limits):
        if isinstance(c, relative) and (baseline is None or baseline.variant == row.variant):
            continue
        msg = c.fails(row, baseline, f"vs {baseline.variant}" if baseline else "")
        if msg:
            out.append(msg + (floor_context(baseline) if isinstance(c, MaxDrop) and row.label_free else ""))
    return out


def floor_context(baseline: Row | None) -> str:
    """For a label-free drop: what an imperceptible change of the same images costs the baseline itself (its
    ``fidelity_floor``), so that a drop within it reads as such; "" when the run has no floor."""
    loss = baseline.floor_loss_points if baseline is not None else None
    if loss is None:
        return ""
    return (f" (fidelity floor: {baseline.variant} itself loses {loss:.2f} points to an "
            "imperceptible change of these images)")
