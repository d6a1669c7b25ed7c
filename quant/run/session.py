"""One ``pytest benchmarks/`` process: measure a variant (build, accuracy, fidelity, paired latency) into
its :class:`quant.measure.row.Row`, and gate it against the same run's baseline.

The parts it drives: the suite (inputs, builder, evaluations: :mod:`quant.run.suite`), the timing with its
A/A control (:mod:`quant.run.timing`) and the thresholds (:mod:`quant.gate.thresholds`). Writing the report
is the report package's (:func:`quant.report.write.write_report`).
"""

from __future__ import annotations

import datetime as _dt
import platform
import time
from dataclasses import dataclass, field

from quant.gate.thresholds import Thresholds, check_row
from quant.measure.latency import Paired
from quant.measure.row import ACCURACY_UNIT, FIDELITY_LABELS, Row
from quant.registry import BASELINE
from quant.run.cache import artifact_size, library_versions
from quant.run.suite import Suite
from quant.run.timing import Timing
from quant.util import progress
from quant.util.hardware import machine_info


@dataclass
class BenchSession:
    suite: Suite
    thresholds: Thresholds
    timing: Timing
    embedded: bool
    profile: str | None = None
    fidelity: bool = True
    rows: dict[str, Row] = field(default_factory=dict)
    variant_times: dict[str, tuple] = field(default_factory=dict)  # each timed call of a variant, s (its history)
    ab_reference: object = None  # --compare-to a commit: its checkout (quant.run.reference.Checkout), timed A/B
    _baseline_stats: object = field(default=None, repr=False)  # its per-image statistics, resampled once

    @classmethod
    def create(cls, suite: Suite, thresholds: Thresholds, embedded: bool, rounds: int = 15, calls: int = 2,
               warmup: int = 3, timing_lock=None, **kw) -> "BenchSession":
        """A session whose timing runs the suite's variants on its sample input."""
        timing = Timing(suite.builder.runner, suite.inputs.sample_input, rounds, calls, warmup, timing_lock)
        return cls(suite, thresholds, timing, embedded, **kw)

    def skip_reason(self, name: str) -> str | None:
        reason = self.suite.builder.variants[name].unavailable()
        return f"{name}: {reason}" if reason else None

    # ---- rows ---------------------------------------------------------------------------------
    def measure(self, name: str) -> Row:
        """Build (or reuse) the artifact, evaluate it (or reuse the result), time it paired; the row."""
        builder, evals = self.suite.builder, self.suite.evaluations
        seconds = {}
        t0 = time.monotonic()
        builder.artifact(name)
        m = builder.manifest(name)
        seconds["build"] = round(time.monotonic() - t0 if m.cached else m.build_seconds, 2)
        t0 = time.monotonic()
        progress.stage("validating", name)
        acc = evals.accuracy(name)
        pair = self._stats_pair(name)  # loaded once for both
        delta_ci, class_losses = _interval(pair), self._class_losses(pair)
        seconds["validate"] = round(time.monotonic() - t0, 2)
        t0 = time.monotonic()
        if self.fidelity:
            progress.stage("fidelity", name)
        fid = evals.fidelity(name) if self.fidelity else None
        floor = evals.fidelity_floor() if fid and name == BASELINE else None
        seconds["fidelity"] = round(time.monotonic() - t0, 2)
        t0 = time.monotonic()
        progress.stage("timing", name)
        lat, timing = self.timing.time(name)
        seconds["time"] = round(time.monotonic() - t0, 2)
        return self._row(name, acc, fid, lat, timing, seconds, delta_ci, floor, class_losses)

    def delta_interval(self, name: str) -> list | None:
        """How far the variant's Δ mAP50-95 against the baseline can be trusted on these val images: the
        95 % paired bootstrap interval in points (:func:`quant.measure.imagestats.delta_interval`); None for the
        baseline itself or where per-image statistics are missing."""
        return _interval(self._stats_pair(name))

    def _class_losses(self, pair) -> list | None:
        """The classes that cost the variant most against the baseline
        (:func:`quant.measure.classloss.class_shares`), from :meth:`_stats_pair`."""
        from quant.measure.classloss import class_shares

        return None if pair is None else class_shares(*pair, self.suite.inputs.names)

    def _stats_pair(self, name: str):
        """(the variant's, the baseline's) per-image statistics on the same val images, or None (the
        baseline itself, or statistics missing)."""
        if name == BASELINE:
            return None
        evals = self.suite.evaluations
        if self._baseline_stats is None:
            evals.accuracy(BASELINE)
            self._baseline_stats = evals.image_stats("accuracy", BASELINE)
        new, old = evals.image_stats("accuracy", name), self._baseline_stats
        if new is None or old is None or new.images != old.images or not new.images:
            return None
        return new, old

    def _row(self, name, acc, fid, lat: Paired, timing: dict, seconds: dict, delta_ci=None, floor=None,
             class_losses=None) -> Row:
        builder, inputs = self.suite.builder, self.suite.inputs
        v, m, path = builder.variants[name], builder.manifest(name), builder.artifact(name)
        row = Row(
            variant=name, backend=v.backend.name, format="onnx" if path.suffix == ".onnx" else v.format.value,
            precision=v.precision.value, peer=v.peer, config=v.config(),
            box_precision=100 * acc.precision, recall=100 * acc.recall, map50=100 * acc.map50,
            map50_95=100 * acc.map50_95, fidelity_map50=100 * fid.map50 if fid else None,
            fidelity_map50_95=100 * fid.map50_95 if fid else None,
            fidelity_floor=100 * floor.map50_95 if floor else None, delta_ci=delta_ci, class_losses=class_losses,
            evaluation=self.suite.evaluations.status.get(("accuracy", name)), preprocess_ms=acc.preprocess_ms,
            postprocess_ms=acc.postprocess_ms, val_inference_ms=acc.inference_ms,
            latency_ms=lat.variant_ms, baseline_ms=lat.baseline_ms, latency_ratio=lat.ratio,
            latency_ratio_ci=list(lat.ci), latency_ratio_rounds=list(lat.ratios), latency_rounds=lat.rounds,
            latency_calls=lat.calls, timing=timing, runs_as=self.timing.runs_as.get(name), threads=builder.threads,
            executed=self.timing.executed.get(name),
            time_split=self.timing.time_split.get(name),
            engine_gpu_ms=self.timing.engine_gpu_ms.get(name),
            size_mb=artifact_size(path) / 1e6, artifact=str(path),
            artifact_dir=str(builder.cache.folder(name, m.key)), reports=m.reports,
            cached=m.cached, built_because=m.built_because, seconds=seconds,
            int8_share=m.int8_share, float_nodes=m.float_nodes, engine=m.info.get("engine"), auto=m.info.get("auto"),
            float_choice=m.info.get("float_choice"), cache_notices=list(builder.cache.notices),
            label_free=inputs.label_free,
            fidelity_labels=FIDELITY_LABELS if fid or inputs.label_free else None)
        if name == BASELINE:  # its latency is the A/A control: say whether latency can be judged in this run
            row.aa_verdict = self.timing.noisy() or "holds"
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
        r, v = self.rows[name], self.suite.builder.variants[name]
        if v.peer:  # a yardstick: measured and shown, only "did not crash" is checked
            r.status = "peer"
            return []
        b = self.baseline()
        limits = self.thresholds.for_variant(name, embedded=self.embedded, profile=self.profile)
        proxy = r.engine_missing  # a TensorRT row measured on its CPU stand-in
        noisy = self.timing.noisy()
        if proxy or noisy:  # the CPU stand-in for an engine, or a machine too noisy: no latency verdict
            limits = {k: val for k, val in limits.items() if not k.startswith("max_latency")}
        failures = check_row(r, limits, b)
        r.limits = limits
        r.failures = failures
        r.status = ("FAIL" if failures else "pass (accuracy; no engine)" if proxy
                    else "pass (latency inconclusive)" if noisy else "pass")
        return failures

    # ---- the report's header --------------------------------------------------------------------
    def machine(self) -> dict:
        """The machine the rows were measured on (:func:`quant.util.hardware.machine_info`) and the threads used."""
        return {**machine_info(), "threads_used": self.suite.builder.threads}

    def header(self) -> dict:
        inputs, t = self.suite.inputs, self.timing
        aa = t._aa
        return {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "weights": str(inputs.weights), "data": str(inputs.data.yaml), "imgsz": inputs.imgsz,
                "calibration_images": inputs.calib_images, "baseline": BASELINE, "thresholds": self.thresholds.path,
                "accuracy_unit": ACCURACY_UNIT, "weights_sha256": inputs.weights_sha256,
                "device_profile": self.profile, "machine": self.machine(),
                "accuracy": ("label-free: mAP against onnx-fp32's own detections on the val images (= fidelity)"
                             if inputs.label_free else "mAP against the val labels"),
                "latency_protocol": {"rounds": t.rounds, "calls": t.calls, "warmup": t.warmup},
                "aa_control": aa.to_dict() if aa else None, "cache": str(self.suite.builder.cache.root),
                "cache_notices": list(self.suite.builder.cache.notices), "data_notes": list(inputs.notes),
                "skipped_images": sorted(str(p) for p in inputs.skip_images),
                "python": platform.python_version(), "versions": library_versions()}


def _interval(pair) -> list | None:
    """The 95 % paired bootstrap interval of Δ mAP50-95 in points for a (variant, baseline) statistics pair
    (:func:`quant.measure.imagestats.delta_interval`), None without one."""
    from quant.measure.imagestats import delta_interval

    return None if pair is None else [round(100 * d, 3) for d in delta_interval(*pair)]
