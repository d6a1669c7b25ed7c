"""State of one ``pytest benchmarks/`` session: measured rows, the baseline, gates, the report."""

from __future__ import annotations

import datetime as _dt
import platform
from dataclasses import dataclass, field
from pathlib import Path

from quant import backends, gates, report
from quant.cache import artifact_size, library_versions
from quant.latency import measure
from quant.suite import Suite
from quant.variants import BASELINE, REGISTRY


@dataclass
class BenchSession:
    suite: Suite
    thresholds: gates.Thresholds
    embedded: bool
    profile: str | None = None
    rounds: int = 50
    warmup: int = 5
    fidelity: bool = True
    rows: dict[str, dict] = field(default_factory=dict)

    def skip_reason(self, name: str) -> str | None:
        reason = backends.get(REGISTRY[name].backend).unavailable(REGISTRY[name])
        return f"{name}: {reason}" if reason else None

    def row(self, name: str, latency_ms: float, rounds: int, extra: dict | None = None) -> dict:
        """Build (or reuse) the artifact, validate it, and record the row."""
        v = REGISTRY[name]
        path = self.suite.artifact(name)
        acc = self.suite.accuracy(name)
        fid = self.suite.fidelity(name) if self.fidelity else None
        m = self.suite.manifest(name)
        convs, int8 = m.get("convs"), m.get("int8_convs")
        fmt = "onnx" if path.suffix == ".onnx" else v.format  # e.g. a TensorRT variant without an engine here
        row = {"variant": name, "backend": v.backend, "format": fmt, "precision": v.precision,
               "latency_ms": latency_ms, "latency_rounds": rounds,
               "preprocess_ms": acc.preprocess_ms, "postprocess_ms": acc.postprocess_ms,
               "val_inference_ms": acc.inference_ms,
               "precision_P": acc.precision, "recall": acc.recall, "map50": acc.map50, "map50_95": acc.map50_95,
               "fidelity_map50": fid.map50 if fid else None, "fidelity_map50_95": fid.map50_95 if fid else None,
               "size_mb": artifact_size(path) / 1e6, "artifact": str(path), "cached": m["cached"],
               "int8_share": f"{int8}/{convs}" if convs else None, "float_nodes": m.get("float_nodes"),
               "engine": m.get("engine"), "auto": m.get("auto"), "config": v.config(), "peer": v.peer, "status": "measured", **(extra or {})}
        self.rows[name] = row
        return row

    def baseline(self) -> dict:
        """The same-run baseline row; measured here (own timer) if its test was not selected."""
        if BASELINE not in self.rows:
            lat = measure(self.suite.runner(BASELINE), self.suite.sample_input(), self.rounds, self.warmup)
            self.row(BASELINE, lat.median_ms, lat.rounds)["status"] = "baseline only"
        return self.rows[BASELINE]

    def gate(self, name: str) -> list[str]:
        r = self.rows[name]
        v = REGISTRY[name]
        if v.peer:  # a yardstick: measured and shown, only "did not crash" is checked
            r["status"] = "peer"
            return []
        b = self.baseline()
        as_result = lambda row: gates.Result(row["variant"], row["map50"], row["map50_95"], row["latency_ms"],  # noqa: E731
                                             row.get("fidelity_map50_95"))
        limits = self.thresholds.for_variant(name, embedded=self.embedded, profile=self.profile)
        proxy = str(r.get("engine") or "").startswith("not built")
        if proxy:  # timed on the CPU stand-in for the engine: accuracy is gated, latency is not
            limits = {k: val for k, val in limits.items() if not k.startswith("max_latency")}
        failures = gates.check(as_result(r), limits, as_result(b))
        r["limits"] = limits
        r["status"] = "FAIL" if failures else "pass (accuracy; no engine)" if proxy else "pass"
        return failures

    def table_rows(self) -> list[dict]:
        order = {n: i for i, n in enumerate(REGISTRY)}
        rows = sorted(self.rows.values(), key=lambda r: order.get(r["variant"], 1 << 30))
        return report.with_peer_comparison(report.with_deltas(rows, BASELINE))

    def header(self) -> dict:
        s = self.suite
        return {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "weights": str(s.weights), "data": str(s.data.yaml), "imgsz": s.imgsz,
                "calibration_images": s.calib_images, "baseline": BASELINE, "thresholds": self.thresholds.path,
                "device_profile": self.profile, "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                "python": platform.python_version(), "versions": library_versions()}

    def write_report(self, out_dir: Path, **header) -> tuple[Path, Path]:
        """report.json / report.md, and each variant's own reports (e.g. PPQ's error analysis) beside them."""
        import shutil

        for name, row in self.rows.items():
            m = self.suite.manifest(name)
            for f in m.get("reports", []):
                src = self.suite.cache.folder(name, m["key"]) / f
                (Path(out_dir) / name).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, Path(out_dir) / name / f)
        return report.write(self.table_rows(), out_dir, {**self.header(), **header})
