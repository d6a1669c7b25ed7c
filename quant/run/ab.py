"""A/B against a commit: this run's code and a reference checkout's, each in a timing worker process of its own
(:mod:`quant.run.abworker`), timed interleaved round by round (:func:`quant.measure.latency.interleaved`) on the
same machine, in the same minutes. Between two runs the INT8/FP32 ratios of identical code drifted by up to
1.20x on a shared 2-core machine; side by side, within one run, that drift divides out.

The reference's artifacts come from the same code-aware cache: where its builders are unchanged, its keys are
this run's and nothing is rebuilt; where they changed (or were never built), its worker builds them, and the
comparison says so. Accuracy is deterministic, so the reference's cached evaluations are compared as they are.
A failing row explains itself (:mod:`quant.run.explain`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from quant.gate.thresholds import HISTORY_DEFAULTS
from quant.measure.latency import Paired, interleaved
from quant.run.reference import ROOT, Checkout
from quant.util.errors import QuantError

WORKER = Path(__file__).resolve().with_name("abworker.py")
# options that set what is built and scored (the same in both workers); the rest (report, gates, timing) do not
NOT_PASSED = {"report_dir", "thresholds", "device_profile", "compare_to", "compare_force", "preset", "wide",
              "progress", "latency_rounds", "latency_calls", "latency_warmup", "revalidate", "verify_cache"}


class Worker:
    """One checkout's timing worker: a process with ``root``'s ``quant`` first on its path."""

    def __init__(self, root: Path, label: str, log: Path) -> None:
        self.label, self.log = label, log
        env = {**os.environ, "PYTHONPATH": str(root), "OMP_WAIT_POLICY": "PASSIVE"}
        env.pop("PYTEST_XDIST_WORKER", None)
        self.proc = subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(log, "w"), env=env, cwd=tempfile.gettempdir(), text=True)

    def send(self, cmd: str, **kw) -> None:
        try:
            self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the answer says it

    def answer(self) -> dict:
        try:
            line = self.proc.stdout.readline()
        except OSError:
            line = ""
        if not line:
            raise QuantError(f"the {self.label} timing worker stopped (its log: {self.log})")
        reply = json.loads(line)
        if "error" in reply:
            raise QuantError(f"the {self.label} timing worker: {reply['error']} (its log: {self.log})")
        return reply

    def ask(self, cmd: str, **kw) -> dict:
        self.send(cmd, **kw)
        return self.answer()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask("quit")
            except QuantError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@dataclass
class ABRow:
    variant: str
    latency: Paired | None = None  # new / ref, interleaved
    ref_map50_95: float | None = None
    new_map50_95: float | None = None
    ref_built: bool = False  # the reference's artifact was not in the cache: its worker built it
    ref_artifact: str | None = None
    new_artifact: str | None = None
    failures: list[str] = field(default_factory=list)
    explanation: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        lat = self.latency
        return {"variant": self.variant, "ratio": lat.ratio if lat else None, "ci": list(lat.ci) if lat else None,
                "ratios": list(lat.ratios) if lat else None, "ref_ms": lat.baseline_ms if lat else None,
                "new_ms": lat.variant_ms if lat else None, "ref_map50_95": self.ref_map50_95,
                "new_map50_95": self.new_map50_95, "ref_built": self.ref_built, "failures": self.failures,
                "explanation": self.explanation}


@dataclass
class ABResult:
    reference: Checkout
    rows: list[ABRow]
    notes: list[str]

    @property
    def regressions(self) -> list[str]:
        return [f for r in self.rows for f in r.failures]

    def to_dict(self) -> dict:
        return {"reference": self.reference.name, "commit": self.reference.commit, "rows": [r.to_dict() for r in self.rows],
                "notes": self.notes}


def worker_options(options) -> dict:
    """The options both workers open their session with: what decides the builds and their scores."""
    return {k: v for k, v in vars(options).items() if k not in NOT_PASSED and not k.startswith("_")
            and isinstance(v, (str, int, float, bool, type(None)))}


def _verdict(row: ABRow, name: str, limits: dict) -> None:
    limit = limits.get("max_ab_latency_regression", HISTORY_DEFAULTS["max_ab_latency_regression"])
    lat = row.latency
    # over the limit, and the interval clear of half of it: a wide interval that barely leaves 1.00 is noise
    if lat is not None and lat.ratio > 1 + limit and lat.ci[0] > 1 + limit / 2:
        row.failures.append(f"{row.variant}: latency rose {lat.ratio:.2f}x against {name} (A/B in this run, 95 % "
                            f"interval {lat.ci[0]:.2f}-{lat.ci[1]:.2f}; {lat.baseline_ms:.2f} -> {lat.variant_ms:.2f} ms) "
                            f"> max +{100 * limit:.0f} %")
    map_limit = limits.get("max_map_regression_points", HISTORY_DEFAULTS["max_map_regression_points"])
    if row.ref_map50_95 is not None and row.new_map50_95 is not None and \
            row.ref_map50_95 - row.new_map50_95 > map_limit:
        row.failures.append(f"{row.variant}: mAP50-95 fell {row.ref_map50_95 - row.new_map50_95:.2f} points against "
                            f"{name} ({row.ref_map50_95:.2f} -> {row.new_map50_95:.2f}) > max {map_limit:.2f}")


def run_ab(options, reference: Checkout, variants: list[str], new_maps: dict[str, float], limits_for,
           rounds: int = 15, calls: int = 2, warmup: int = 3, log_dir: Path | None = None,
           say=lambda line: None, candidate: Path = ROOT) -> ABResult:
    """Time every variant of ``variants`` A/B: the ``candidate`` checkout's build (default: this one) against
    ``reference``'s, interleaved. ``new_maps``: this run's mAP50-95 per variant; ``limits_for(variant)``: its limits."""
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="quant-ab-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    opts = worker_options(options)
    ref = Worker(reference.root, "reference", log_dir / "ab-reference.log")
    new = Worker(candidate, "candidate", log_dir / "ab-candidate.log")
    notes: list[str] = []
    try:
        for w in (ref, new):  # both start (imports, session checks) at once
            w.send("open", options=opts)
        for w in (ref, new):
            w.answer()
        say(f"A/B against {reference.name}: the reference's builds ({len(variants)} variants)")
        prepared = ref.ask("prepare", variants=variants)
        mine = new.ask("prepare", variants=[v for v in variants if v not in prepared["unknown"]])["rows"]
        if prepared["unknown"]:
            notes.append(f"not in {reference.name}, not compared: {', '.join(prepared['unknown'])}")
        rows = []
        for i, name in enumerate(v for v in variants if v in prepared["rows"]):
            info = prepared["rows"][name]
            row = ABRow(name, ref_map50_95=info["map50_95"], new_map50_95=new_maps.get(name, mine[name]["map50_95"]),
                        ref_built=not info["cached"], ref_artifact=info["artifact"],
                        new_artifact=mine[name]["artifact"])
            if row.ref_built:
                notes.append(f"{name}: the reference's artifact was not in the cache; built it")
            say(f"A/B against {reference.name}: timing {name} ({i + 1}/{len(prepared['rows'])})")
            for w in (ref, new):
                w.ask("load", variant=name)
            row.latency = interleaved(lambda n: ref.ask("time", variant=name, calls=n)["times"],
                                      lambda n: new.ask("time", variant=name, calls=n)["times"],
                                      rounds, calls, warmup, seed=sum(map(ord, name)))
            _verdict(row, reference.name, limits_for(name))
            rows.append(row)
        return ABResult(reference, rows, notes)
    finally:
        for w in (ref, new):
            w.close()


def explain(result: ABResult, fp32_artifact, feeds: list[dict], threads: int | None = None,
            runtime_config=lambda variant: None) -> None:
    """Each failing row's explanation (:mod:`quant.run.explain`): the layers whose quantization error grew most
    for an accuracy loss, the kernels that added the most time for a slowdown."""
    from quant.run import explain as why

    for r in result.rows:
        if any("mAP50-95 fell" in f for f in r.failures):
            r.explanation += why.accuracy_lines(fp32_artifact, r.ref_artifact, r.new_artifact, feeds)
        if any("latency rose" in f for f in r.failures):
            r.explanation += why.latency_lines(r.ref_artifact, r.new_artifact, feeds[0], threads,
                                               config=runtime_config(r.variant),
                                               added_ms=r.latency.variant_ms - r.latency.baseline_ms)


def ab_table(result: ABResult, fmt: str = "simple") -> str:
    from tabulate import tabulate

    body = []
    for r in result.rows:
        lat = r.latency
        body.append([r.variant, f"{lat.baseline_ms:.1f}" if lat else "-", f"{lat.variant_ms:.1f}" if lat else "-",
                     f"{lat.ratio:.3f} [{lat.ci[0]:.3f}-{lat.ci[1]:.3f}]" if lat else "-",
                     "-" if r.ref_map50_95 is None else f"{r.ref_map50_95:.2f}",
                     "-" if r.new_map50_95 is None else f"{r.new_map50_95:.2f}",
                     "FAIL" if r.failures else "ok" + (" (reference built)" if r.ref_built else "")])
    return tabulate(body, headers=["variant", "ref ms", "new ms", "new/ref [95 % CI]", "ref mAP50-95",
                                   "new mAP50-95", "verdict"], tablefmt=fmt, disable_numparse=True)


def ab_markdown(result: ABResult) -> str:
    ref = result.reference
    what = f"`{ref.name}`" + (f" ({ref.commit[:12]})" if ref.commit else "")
    lines = [f"## A/B against {what}: interleaved in this run", "",
             "Each variant's reference build and this build, each run by its own code in a worker process, timed "
             "in alternating rounds (seeded order); new/ref = median of the per-round ratios with its 95 % "
             "interval. Accuracy: the reference's cached evaluation (evaluation is deterministic).", "",
             ab_table(result, "github"), ""]
    lines += [f"- {n}" for n in result.notes]
    for r in result.rows:
        if r.failures:
            lines += ["", f"### {r.variant}", *[f"- **{f}**" for f in r.failures], *[f"  - {e}" for e in r.explanation]]
    return "\n".join(lines) + "\n"
