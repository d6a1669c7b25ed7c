"""One ``pytest benchmarks/`` process: measure a variant (build, accuracy, fidelity, paired latency),
gate it, and turn the rows into the report.

Latency is paired (:func:`quant.measure.latency.paired`): each variant is timed against the baseline in the
same process, in alternating rounds, and its ratio is the median of the per-round ratios with a 95 %
interval. An A/A control (the baseline against a second session of the same model) runs once per
process; when its interval misses 1.0 the machine was too noisy to trust a latency verdict, and the
latency gates say "inconclusive" instead of passing or failing. Timing holds a machine-wide lock,
so parallel workers (``-n 2``) build and validate side by side but never time at once.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

from quant import backends
from quant.gate import thresholds as gates
from quant.report import tables as report
from quant.run.cache import artifact_size, file_lock, library_versions
from quant.util.hardware import machine_info
from quant.measure.latency import Paired, paired
from quant.measure.row import FIDELITY_LABELS, Row
from quant.run.suite import Suite
from quant.registry import BASELINE, REGISTRY


@dataclass
class BenchSession:
    suite: Suite
    thresholds: gates.Thresholds
    embedded: bool
    profile: str | None = None
    rounds: int = 15  # paired rounds per variant
    calls: int = 2  # calls of each model per round
    warmup: int = 3
    fidelity: bool = True
    timing_lock: Path | None = None  # machine-wide lock file held while timing
    rows: dict[str, Row] = field(default_factory=dict)
    variant_times: dict[str, tuple] = field(default_factory=dict)  # each timed call, s (for pytest-benchmark)
    runs_as: dict[str, dict | None] = field(default_factory=dict)  # precision and threads the runtime reports
    engine_gpu_ms: dict[str, float] = field(default_factory=dict)  # TensorRT: median CUDA-event ms, timed calls
    _baseline_run: object = field(default=None, repr=False)
    _aa: Paired | None = field(default=None, repr=False)
    _aa_timing: dict | None = field(default=None, repr=False)
    _baseline_stats: object = field(default=None, repr=False)  # its per-image statistics, resampled once

    def skip_reason(self, name: str) -> str | None:
        reason = backends.get(REGISTRY[name].backend).unavailable(REGISTRY[name])
        return f"{name}: {reason}" if reason else None

    # ---- latency ------------------------------------------------------------------------------
    def _lock(self, log: list):
        @contextlib.contextmanager
        def held():
            with file_lock(self.timing_lock) if self.timing_lock else contextlib.nullcontext():
                t0 = time.time()
                try:
                    yield
                finally:
                    log.append({"start": t0, "end": time.time(), "pid": os.getpid()})
        return held

    def _paired(self, run, seed: int) -> tuple[Paired, dict]:
        if self._baseline_run is None:
            self._baseline_run = self.suite.runner(BASELINE)
        gc.collect()  # sessions a build left behind must not compete for the cores while timing
        log: list = []
        p = paired(run, self._baseline_run, self.suite.sample_input(), self.rounds, self.calls, self.warmup,
                   seed=seed, lock=self._lock(log))
        return p, log[0]

    def aa_control(self) -> Paired:
        """The baseline against a second session of the same model: its interval should contain 1.0."""
        if self._aa is None:
            run = self.suite.runner(BASELINE)
            self.runs_as[BASELINE] = getattr(run, "runs_as", None)
            self._aa, self._aa_timing = self._paired(run, seed=0)
        return self._aa

    def noisy(self) -> str | None:
        """Why latency verdicts are inconclusive in this process (None when the A/A control holds:
        :meth:`quant.measure.latency.Paired.aa_noise`)."""
        return self.aa_control().aa_noise()

    def time_variant(self, name: str) -> tuple[Paired, dict]:
        if name == BASELINE:
            return self.aa_control(), self._aa_timing
        run = self.suite.runner(name)
        self.runs_as[name] = getattr(run, "runs_as", None)
        result = self._paired(run, seed=sum(map(ord, name)))
        if getattr(run, "gpu_ms", None):  # a TensorRT engine: CUDA-event time of the execution alone
            import statistics

            self.engine_gpu_ms[name] = statistics.median(run.gpu_ms[self.warmup:] or run.gpu_ms)  # no warm-up
        return result

    # ---- rows ---------------------------------------------------------------------------------
    def measure(self, name: str) -> Row:
        """Build (or reuse) the artifact, evaluate it (or reuse the result), time it paired; the row."""
        seconds = {}
        t0 = time.monotonic()
        path = self.suite.artifact(name)
        m = self.suite.manifest(name)
        seconds["build"] = round(time.monotonic() - t0 if m["cached"] else m.get("build_seconds", 0.0), 2)
        t0 = time.monotonic()
        acc = self.suite.accuracy(name)
        pair = self._stats_pair(name)  # loaded once for both
        delta_ci, class_losses = _interval(pair), self._class_losses(pair)
        seconds["validate"] = round(time.monotonic() - t0, 2)
        t0 = time.monotonic()
        fid = self.suite.fidelity(name) if self.fidelity else None
        floor = self.suite.fidelity_floor() if fid and name == BASELINE else None
        seconds["fidelity"] = round(time.monotonic() - t0, 2)
        t0 = time.monotonic()
        lat, timing = self.time_variant(name)
        seconds["time"] = round(time.monotonic() - t0, 2)
        return self._row(name, path, acc, fid, lat, timing, seconds, delta_ci, floor, class_losses)

    def delta_interval(self, name: str) -> list | None:
        """How far the variant's Δ mAP50-95 against the baseline can be trusted on these val images: the
        95 % paired bootstrap interval in points (:func:`quant.measure.imagestats.delta_interval`); None for the
        baseline itself or where per-image statistics are missing."""
        return _interval(self._stats_pair(name))

    def _class_losses(self, pair) -> list | None:
        """The classes that cost the variant most against the baseline (:func:`quant.measure.classloss.class_shares`),
        from :meth:`_stats_pair`."""
        from quant.measure.classloss import class_shares

        return None if pair is None else class_shares(*pair, self.suite.names)

    def _stats_pair(self, name: str):
        """(the variant's, the baseline's) per-image statistics on the same val images, or None (the
        baseline itself, or statistics missing)."""
        if name == BASELINE:
            return None
        if self._baseline_stats is None:
            self.suite.accuracy(BASELINE)
            self._baseline_stats = self.suite.image_stats("accuracy", BASELINE)
        new, old = self.suite.image_stats("accuracy", name), self._baseline_stats
        if new is None or old is None or new.images != old.images or not new.images:
            return None
        return new, old

    def _row(self, name, path, acc, fid, lat: Paired, timing: dict, seconds: dict, delta_ci=None, floor=None,
             class_losses=None) -> Row:
        v, m = REGISTRY[name], self.suite.manifest(name)
        convs, int8 = m.get("convs"), m.get("int8_convs")
        row = Row(
            variant=name, backend=v.backend, format="onnx" if path.suffix == ".onnx" else v.format,
            precision=v.precision, peer=v.peer, config=v.config(),
            box_precision=acc.precision, recall=acc.recall, map50=acc.map50, map50_95=acc.map50_95,
            fidelity_map50=fid.map50 if fid else None, fidelity_map50_95=fid.map50_95 if fid else None,
            fidelity_floor=floor.map50_95 if floor else None, delta_ci=delta_ci, class_losses=class_losses,
            evaluation=self.suite.evaluations.get(("accuracy", name)), preprocess_ms=acc.preprocess_ms,
            postprocess_ms=acc.postprocess_ms, val_inference_ms=acc.inference_ms,
            latency_ms=lat.variant_ms, baseline_ms=lat.baseline_ms, latency_ratio=lat.ratio,
            latency_ratio_ci=list(lat.ci), latency_ratio_rounds=list(lat.ratios), latency_rounds=lat.rounds,
            latency_calls=lat.calls, timing=timing, runs_as=self.runs_as.get(name), threads=self.suite.threads,
            engine_gpu_ms=self.engine_gpu_ms.get(name),
            size_mb=artifact_size(path) / 1e6, artifact=str(path),
            artifact_dir=str(self.suite.cache.folder(name, m["key"])), reports=m.get("reports", []),
            cached=m["cached"], built_because=m.get("built_because"), seconds=seconds,
            int8_share=f"{int8}/{convs}" if convs else None, float_nodes=m.get("float_nodes"),
            engine=m.get("engine"), auto=m.get("auto"), float_choice=m.get("float_choice"),
            cache_notices=list(self.suite.cache.notices),
            label_free=self.suite.label_free,
            fidelity_labels=FIDELITY_LABELS if fid or self.suite.label_free else None)
        if name == BASELINE:  # its latency is the A/A control: say whether latency can be judged in this run
            row.aa_verdict = self.noisy() or "holds"
        self.rows[name] = row
        self.variant_times[name] = lat.variant_times
        return row

    def baseline(self) -> Row:
        """The same-run baseline row; measured here if its test was not selected (or runs elsewhere)."""
        if BASELINE not in self.rows:
            self.measure(BASELINE).status = "baseline only"
        return self.rows[BASELINE]

    # ---- gates --------------------------------------------------------------------------------
    def gate(self, name: str) -> list[str]:
        """Check the row against its limits; set its status; return one line per breach."""
        r, v = self.rows[name], REGISTRY[name]
        if v.peer:  # a yardstick: measured and shown, only "did not crash" is checked
            r.status = "peer"
            return []
        b = self.baseline()
        limits = self.thresholds.for_variant(name, embedded=self.embedded, profile=self.profile)
        proxy = r.engine_missing  # a TensorRT row measured on its CPU stand-in
        noisy = self.noisy()
        if proxy or noisy:  # the CPU stand-in for an engine, or a machine too noisy: no latency verdict
            limits = {k: val for k, val in limits.items() if not k.startswith("max_latency")}
        failures = gates.check_row(r.to_dict(), limits, b.to_dict())
        r.limits = limits
        r.failures = failures
        r.status = ("FAIL" if failures else "pass (accuracy; no engine)" if proxy
                       else "pass (latency inconclusive)" if noisy else "pass")
        return failures

    # ---- report -------------------------------------------------------------------------------
    def machine(self) -> dict:
        """The machine the rows were measured on (:func:`quant.util.hardware.machine_info`) and the threads used."""
        return {**machine_info(), "threads_used": self.suite.threads}

    def header(self) -> dict:
        s = self.suite
        aa = self._aa
        return {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "weights": str(s.weights), "data": str(s.data.yaml), "imgsz": s.imgsz,
                "calibration_images": s.calib_images, "baseline": BASELINE, "thresholds": self.thresholds.path,
                "device_profile": self.profile, "machine": self.machine(),
                "accuracy": ("label-free: mAP against onnx-fp32's own detections on the val images (= fidelity)"
                             if s.label_free else "mAP against the val labels"),
                "latency_protocol": {"rounds": self.rounds, "calls": self.calls, "warmup": self.warmup},
                "aa_control": aa.to_dict() if aa else None, "cache": str(s.cache.root),
                "cache_notices": list(s.cache.notices), "data_notes": list(s.notes),
                "skipped_images": sorted(str(p) for p in s.skip_images),
                "python": platform.python_version(), "versions": library_versions()}


def _interval(pair) -> list | None:
    """The 95 % paired bootstrap interval of Δ mAP50-95 in points for a (variant, baseline) statistics pair
    (:func:`quant.measure.imagestats.delta_interval`), None without one."""
    from quant.measure.imagestats import delta_interval

    return None if pair is None else [round(100 * d, 3) for d in delta_interval(*pair)]


def table_rows(rows: list[dict]) -> list[dict]:
    """Rows in registry order with Δ mAP50-95 vs the baseline and the best-peer comparison."""
    order = {n: i for i, n in enumerate(REGISTRY)}
    rows = sorted(rows, key=lambda r: order.get(r["variant"], 1 << 30))
    return report.with_peer_comparison(report.with_deltas(rows, BASELINE))


def write_report(rows: list[dict], out_dir: Path, header: dict) -> dict[str, Path]:
    """report.json / .md / .png, the github-action-benchmark files, and each variant's own reports
    (e.g. PPQ's error analysis, the auto search's sensitivity chart) in ``<out_dir>/<variant>/``."""
    import shutil

    out_dir = Path(out_dir)
    for row in rows:
        for f in row.get("reports") or []:
            (out_dir / row["variant"]).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(row["artifact_dir"]) / f, out_dir / row["variant"] / f)
    rows = table_rows(rows)
    paths = dict(zip(("json", "md"), report.write(rows, out_dir, header)))
    from quant.report.gab import write_gab
    from quant.report.plot import write_plot

    paths["png"] = write_plot(rows, out_dir / "report.png", baseline=BASELINE)
    paths["gab_smaller"], paths["gab_bigger"] = write_gab(rows, out_dir)
    return paths
