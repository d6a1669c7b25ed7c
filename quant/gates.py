"""Accuracy floors and latency ceilings, read from a TOML thresholds file.

    [defaults]                       # every variant, any model
    max_drop_points = 1.0            # mAP50-95 points (0-100) below onnx-fp32 of the same run
    max_latency_ratio = 2.0          # ms/img divided by onnx-fp32's ms/img of the same run

    [variants."onnx-int8-*"]         # fnmatch pattern or exact name; the most specific match wins
    max_drop_points = 5.0
    min_map50_95 = 0.40              # absolute floor (0-1, like Ultralytics), any model

    [embedded.variants."onnx-fp32"]  # absolute floors that hold only for the embedded default model
    min_map50_95 = 0.55

    [profiles.cpu-2core.variants."onnx-fp32"]   # absolute ceilings, active with --device-profile
    max_latency_ms = 60.0
"""

from __future__ import annotations

import fnmatch
import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from quant.errors import QuantError

KEYS = {"min_map50_95": "absolute mAP50-95 floor (0-1)", "min_map50": "absolute mAP50 floor (0-1)",
        "max_drop_points": "max mAP50-95 drop vs the baseline, in points",
        "max_latency_ratio": "max ms/img relative to the baseline", "max_latency_ms": "max ms/img",
        "min_fidelity_map50_95": "floor of mAP50-95 against the FP32 model's own detections (0-1)",
        "max_map_regression_points": "history comparison (--compare-to): max mAP50-95 / fidelity fall since the "
                                     "reference run, in points (default 0.1)",
        "max_latency_regression": "history comparison (--compare-to): max rise of the latency ratio since the "
                                  "reference run, as a fraction (default 0.10 = 10 %)"}


@dataclass(frozen=True)
class Result:
    """What gates look at for one variant."""

    variant: str
    map50: float
    map50_95: float
    latency_ms: float
    fidelity_map50_95: float | None = None
    latency_ratio: float | None = None  # paired against the baseline in the same process (quant.latency.paired)


def _check_table(table, where: str, path) -> dict:
    if not isinstance(table, dict):
        raise QuantError(f"thresholds file '{path}': [{where}] must be a table")
    for k, v in table.items():
        if k not in KEYS:
            raise QuantError(f"thresholds file '{path}': unknown key '{k}' in [{where}] (known: {', '.join(KEYS)})")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise QuantError(f"thresholds file '{path}': '{k}' in [{where}] must be a non-negative number, got {v!r}")
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


def check(result: Result, limits: dict, baseline: Result | None) -> list[str]:
    """Every breached limit as one message naming variant, metric, value and threshold."""
    v, out = result.variant, []
    if "min_map50_95" in limits and result.map50_95 < limits["min_map50_95"]:
        out.append(f"{v}: mAP50-95 {result.map50_95:.4f} < floor {limits['min_map50_95']:.4f}")
    if "min_map50" in limits and result.map50 < limits["min_map50"]:
        out.append(f"{v}: mAP50 {result.map50:.4f} < floor {limits['min_map50']:.4f}")
    f = result.fidelity_map50_95
    if "min_fidelity_map50_95" in limits and f is not None and f < limits["min_fidelity_map50_95"]:
        out.append(f"{v}: fidelity mAP50-95 {f:.4f} < floor {limits['min_fidelity_map50_95']:.4f}")
    if "max_latency_ms" in limits and result.latency_ms > limits["max_latency_ms"]:
        out.append(f"{v}: latency {result.latency_ms:.2f} ms > ceiling {limits['max_latency_ms']:.2f} ms")
    if baseline is not None and baseline.variant != v:
        drop = 100.0 * (baseline.map50_95 - result.map50_95)
        if "max_drop_points" in limits and drop > limits["max_drop_points"]:
            out.append(f"{v}: mAP50-95 drop {drop:.2f} points vs {baseline.variant} "
                       f"({result.map50_95:.4f} vs {baseline.map50_95:.4f}) > max {limits['max_drop_points']:.2f}")
        ratio = result.latency_ratio
        if ratio is None:
            ratio = result.latency_ms / baseline.latency_ms if baseline.latency_ms > 0 else math.inf
        if "max_latency_ratio" in limits and ratio > limits["max_latency_ratio"]:
            out.append(f"{v}: latency {ratio:.2f}x {baseline.variant} (paired median; {result.latency_ms:.2f} ms) "
                       f"> max ratio {limits['max_latency_ratio']:.2f}")
    return out
