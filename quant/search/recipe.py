"""Automatic INT8 recipe: the calibration method, then the fewest float layers that meet a target drop.

Backend-neutral: :func:`search` takes an ``evaluate(method, layers) -> drop in points`` callable;
:func:`auto_quantize` runs it over one FP32 model with a :class:`Candidates` value (ranges by method,
a writer, scorers), so it knows no suite and no backend (:mod:`quant.build.auto_qdq` wires it to ONNX Q/DQ
and the validator). Candidates are scored on *search* images held out from calibration and val; the
benchmark row on val is the confirmation. The drop of a candidate is estimated from its fidelity
(:class:`_Estimate`); it must meet the target minus a margin (default 0.2 points: on a few hundred images the labelled
mAP50-95 of two near-identical models differs by up to ~0.2 points by chance, so the held-out val
needs that room).

1. Recipe: the fully INT8 model (only the variant's base scope float) for each calibration method;
   the method with the smallest drop wins. Done if it already meets the target. Where a candidate's
   refinements are costly (weight rounding: minutes per method on a YOLOv8m), the methods are first
   *screened* on candidates without them, then built refined in the screened order while another
   build of that length still fits in half the time budget (the float-set search needs the rest);
   the best refined one wins. On a small model every method is refined (refinement can reorder
   them); on a big one only the best screened.
2. Float set: layers ranked by layerwise sensitivity (:mod:`quant.search.sensitivity`) on that model;
   the shortest ranked prefix meeting the target is found by doubling (1, 2, 4, ... layers) then
   bisecting between the last miss and the first hit.
3. Prune: each chosen layer goes back to INT8 if the target still holds, the most expensive first
   (the time its INT8 kernel saves on the target, measured, else its multiply-accumulates), so that
   what stays float costs the least latency.

Where the target's kernel times are measured (:mod:`quant.search.layertime`), a layer whose INT8 kernel is no
faster than its float one stays float in every candidate of step 2 and 3: float for free.

It stops when the float set is minimal in that sense, or when the evaluation count or the time
budget runs out; then it returns the best set found so far (fewest float layers among those meeting
the target, else the smallest drop) and says so (``met``, ``stop``).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from quant.model.graph import FloatScope
from quant.search.settings import SearchConfig
from quant.util.progress import Progress


@dataclass(frozen=True)
class Trial:
    method: str
    layers: tuple[str, ...]
    drop: float  # mAP50-95 points below FP32 on the search images (see ``auto_quantize``)
    seconds: float


@dataclass
class SearchResult:
    method: str
    float_layers: tuple[str, ...]
    drop: float
    met: bool
    stop: str
    target: float
    trials: list[Trial] = field(default_factory=list)
    seconds: float = 0.0
    screen: dict[str, float] = field(default_factory=dict)  # method -> drop of its unrefined full INT8 model

    def to_dict(self) -> dict:
        d = asdict(self)
        d["trials"] = [{**asdict(t), "layers": len(t.layers)} for t in self.trials]
        return d


class _Stop(Exception):
    pass


REFINE_SHARE = 0.5  # refined builds of the calibration methods may use this share of the time budget


class _Trials:
    """Every candidate evaluated so far (each at most once), under an evaluation count and a time budget."""

    def __init__(self, evaluate, target: float, max_evals: int, budget_s: float, clock, on_trial=None):
        self.evaluate, self.target, self.max_evals, self.budget_s, self.clock = evaluate, target, max_evals, budget_s, clock
        self.on_trial = on_trial
        self.start = clock()
        self.done: dict[tuple[str, frozenset], Trial] = {}
        self.screen: dict[str, float] = {}

    def run(self, method: str, layers: Sequence[str]) -> Trial:
        key = (method, frozenset(layers))
        if key in self.done:
            return self.done[key]
        if len(self.done) >= self.max_evals:
            raise _Stop(f"evaluation budget spent ({self.max_evals} evaluations)")
        if self.clock() - self.start >= self.budget_s:
            raise _Stop(f"time budget spent ({self.budget_s:.0f} s)")
        t0 = self.clock()
        t = self.done[key] = Trial(method, tuple(layers), float(self.evaluate(method, tuple(layers))), self.clock() - t0)
        if self.on_trial is not None:
            self.on_trial(t, self.ok(t))
        return t

    def ok(self, t: Trial) -> bool:
        return t.drop <= self.target

    def result(self, t: Trial, met: bool, stop: str) -> SearchResult:
        return SearchResult(t.method, t.layers, t.drop, met, stop, self.target, list(self.done.values()),
                            self.clock() - self.start, dict(self.screen))

    def best_so_far(self, why: str) -> SearchResult:
        """Fewest float layers among the candidates meeting the target, else the smallest drop."""
        passing = [t for t in self.done.values() if self.ok(t)]
        if passing:
            return self.result(min(passing, key=lambda t: (len(t.layers), t.drop)), True,
                               f"{why}; best set meeting the target so far")
        if not self.done:
            raise RuntimeError(f"automatic INT8 search could not evaluate anything: {why}")
        return self.result(min(self.done.values(), key=lambda t: t.drop), False, f"{why}; target not met")


def _shortest_prefix(trials: _Trials, method: str, ranked: list[str], floor: int = 0) -> int | None:
    """Length of the shortest ranked prefix, at least ``floor`` long, meeting the target: ``floor`` and then
    doubling (floor + 1, + 2, + 4, ...), then bisecting between the last miss and the first hit; None when
    even the whole ranking misses."""
    lo, hi, step = floor, None, 0  # prefix ranked[:lo] misses, ranked[:hi] meets
    if floor == 0:
        step = 1
    while hi is None:
        k = min(floor + step, len(ranked))
        if trials.ok(trials.run(method, ranked[:k])):
            hi = k
        elif k == len(ranked):
            return None
        else:
            lo, step = k, max(1, 2 * step)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if trials.ok(trials.run(method, ranked[:mid])):
            hi = mid
        else:
            lo = mid
    return hi


def _prune(trials: _Trials, method: str, chosen: list[str], cost, keep: frozenset = frozenset()) -> list[str]:
    """Send each chosen layer but those in ``keep`` back to INT8 if the target still holds: the most
    expensive first when costs are known (what stays float then costs the least latency), else the least
    sensitive first."""
    order = [layer for layer in reversed(chosen) if layer not in keep]
    if cost is not None:
        order.sort(key=lambda layer: -cost(method, layer))
    for layer in order:
        trial = [x for x in chosen if x != layer]
        if trials.ok(trials.run(method, trial)):
            chosen = trial
    return chosen


def within_share(ranked: list[str], method: str, cost, share: float) -> tuple[list[str], bool]:
    """The ranking restricted to layers that fit, in rank order, within ``share`` of the total cost
    (a set at exactly that share fits: 1 - 0.8 is a hair under 0.2 in floating point); and whether
    anything was left out."""
    if cost is None or share >= 1.0:
        return ranked, False
    budget = share * sum(cost(method, layer) for layer in ranked) * (1 + 1e-9)
    kept, spent = [], 0.0
    for layer in ranked:
        c = cost(method, layer)
        if spent + c <= budget:
            kept.append(layer)
            spent += c
    return kept, len(kept) < len(ranked)


def search(evaluate: Callable[[str, tuple[str, ...]], float], methods: Sequence[str],
           ranking: Callable[[str], list[str]], target: float = 0.3, max_evals: int = 24,
           budget_s: float = 1200.0, clock: Callable[[], float] = time.monotonic,
           cost: Callable[[str, str], float] | None = None,
           on_trial: Callable[[Trial, bool], None] | None = None, max_float_share: float = 1.0,
           saving: Callable[[str, str], float | None] | None = None,
           screen: Callable[[str], float] | None = None) -> SearchResult:
    """Smallest float set (and best method) with drop <= ``target``; ``evaluate(method, float_layers)``
    returns the drop in mAP50-95 points. ``cost(method, layer)`` (e.g. multiply-accumulates) orders the
    prune step, and with ``max_float_share`` < 1 bounds the float set: at most that share of the ranked
    layers' total cost may stay float (an INT8 model that is mostly float runs no faster than FP32);
    when the target needs more, the search says so and returns the best set within the bound.
    ``saving(method, layer)``: the time the layer's INT8 kernel saves on the target (None: not measured);
    where measured it orders the prune step instead, and layers it shows no faster in INT8 are float in
    every ranked candidate (within the bound, first). ``screen(method)``: the drop of a cheaper stand-in
    for the method's fully INT8 model; with several methods, they are evaluated in the screened order
    while another evaluation as long as the last still ends within ``REFINE_SHARE`` of ``budget_s``.
    ``on_trial(trial, met)`` hears of every evaluation (progress). See the module doc."""
    trials = _Trials(evaluate, target, max_evals, budget_s, clock, on_trial)
    try:
        if screen is not None and len(methods) > 1:
            for m in methods:
                trials.screen[m] = float(screen(m))
            fulls = {}
            for m in sorted(methods, key=trials.screen.get):
                fulls[m] = trials.run(m, ())
                if clock() - trials.start + fulls[m].seconds > REFINE_SHARE * budget_s:
                    break
        else:
            fulls = {m: trials.run(m, ()) for m in methods}
        method = min(fulls, key=lambda m: fulls[m].drop)
        full = fulls[method]
        if trials.ok(full):
            return trials.result(full, True, "target met with no float layer")
        ranked = list(ranking(method))
        measured = {layer: saving(method, layer) for layer in ranked} if saving is not None else {}
        free, order = [], cost
        if any(v is not None for v in measured.values()):
            free = [layer for layer in ranked if measured[layer] is not None and measured[layer] <= 0]
            ranked = free + [layer for layer in ranked if layer not in free]
            order = lambda m, layer: measured.get(layer) or 0.0  # noqa: E731
        ranked, bounded = within_share(ranked, method, cost, max_float_share)
        free = [layer for layer in free if layer in ranked]
        hi = _shortest_prefix(trials, method, ranked, floor=len(free))
        if hi is None:
            why = (f"target not reachable with at most {100 * max_float_share:.0f} % of the compute float"
                   if bounded else "target not reachable: every ranked layer float still misses it")
            return trials.result(min(trials.done.values(), key=lambda t: t.drop), False, why)
        chosen = _prune(trials, method, list(ranked[:hi]), order, keep=frozenset(free))
        return trials.result(trials.done[(method, frozenset(chosen))], True,
                             "minimal: no chosen layer can go back to INT8")
    except _Stop as e:
        return trials.best_so_far(str(e))


# ---- the recipe: the search over one FP32 model, with whatever writes and scores its candidates -----
@dataclass
class Candidates:
    """What the recipe needs from a target, and nothing else (no suite, no backend):

    - ``ranges(method)``: per-tensor activation ranges of the FP32 model by a calibration method;
    - ``write(path, ranges, float_nodes)``: the INT8 model with those ranges, ``float_nodes`` left float;
      ``write_unrefined``: the same without its costly refinements (weight rounding, bias correction),
      which screens the calibration methods, or None where ``write`` has none;
    - ``fidelity(path)``: mAP50-95 (0-1) against the FP32 model's own detections on the search images;
    - ``labelled(path)``: mAP50-95 against the search images' labels, or None without labels;
    - ``feeds``: model inputs for the layerwise sensitivity analysis;
    - ``output_error(path)``: (box, class-score) noise-to-signal ratios of the model's raw output
      against FP32's on the search images, and ``reference_boxes``: how many boxes FP32 found there
      (see :class:`_Estimate`);
    - ``layer_savings(fp32, int8)``: layer -> the time its INT8 kernel saves on the target, measured
      (:mod:`quant.search.layertime`), or None where the target cannot be timed here (then MACs order the search);
      ``cost_model`` says how.
    """

    ranges: Callable[[str], dict]
    write: Callable[[Path, dict, list[str]], Path]
    fidelity: Callable[[Path], float]
    labelled: Callable[[Path], float] | None
    feeds: list
    output_error: Callable[[Path], tuple[float, float]] | None = None
    reference_boxes: int | None = None
    layer_savings: Callable[[Path, Path], dict[str, float] | None] | None = None
    cost_model: str = "multiply-accumulates"
    write_unrefined: Callable[[Path, dict, list[str]], Path] | None = None


DENSE_BELOW_BOXES = 300  # fewer FP32 boxes than this on the search images: mAP moves in steps; go dense


class _Estimate:
    """A candidate's drop in labelled points, estimated from its fidelity on the search images.

    Paired with FP32 image by image, fidelity falls smoothly as layers go float, where labelled mAP on
    a few hundred images moves by tenths of a point by chance. It is put in labelled points by the ratio
    r = labelled drop / fidelity loss of the fully INT8 model of the same method (so that model's estimate
    is its measured labelled drop): drop = r * (fidelity(FP32) - fidelity(candidate)). Without labels
    r = 1 (fidelity points, stricter).

    When FP32 finds fewer than DENSE_BELOW_BOXES boxes on the search images (a face detector on 32
    street photos: 17 boxes), fidelity moves in steps of several points between near-identical
    candidates (measured: 0.32, 1.24, 0.24, 3.43 points for 4, 8, 16, 32 float layers). The estimate
    then comes from the raw output instead, dense over every anchor: the fully INT8 model's drop scaled
    by the candidate's mean box/class noise-to-signal ratio relative to that model's,
    drop = drop(full) * (box/box(full) + cls/cls(full)) / 2 — the same error the sensitivity ranking uses."""

    def __init__(self, c: Candidates, fp32: Path):
        self.c = c
        self.fp32 = {"fidelity": c.fidelity(fp32), "map": c.labelled(fp32) if c.labelled else None}
        self.dense = (c.output_error is not None and c.reference_boxes is not None
                      and c.reference_boxes < DENSE_BELOW_BOXES)
        self.ratio: dict[str, float] = {}
        self.full: dict[str, tuple[float, tuple[float, float] | None]] = {}  # method -> (drop, output error)
        self.measured: dict = {}

    @property
    def metric(self) -> str:
        base = "labelled drop estimated from fidelity" if self.c.labelled else "fidelity loss (no labels)"
        return base + (f", scaled by the output error ({self.c.reference_boxes} FP32 boxes on the search images)"
                       if self.dense else "")

    def loss(self, path: Path) -> float:
        return 100 * (self.fp32["fidelity"] - self.c.fidelity(path))

    def calibrate(self, method: str, full_int8: Path) -> None:
        """Fix the ratio of ``method`` from its fully INT8 model."""
        loss = self.loss(full_int8)
        drop = 100 * (self.fp32["map"] - self.c.labelled(full_int8)) if self.c.labelled else loss
        self.ratio[method] = max(drop, 0.0) / loss if loss > 0 else 1.0
        error = self.c.output_error(full_int8) if self.dense else None
        self.full[method] = (self.ratio[method] * loss, error)
        self.measured[method] = {"labelled_drop": drop if self.c.labelled else None, "fidelity_loss": loss,
                                 "ratio": self.ratio[method], "output_error": error}

    def drop(self, method: str, path: Path) -> float:
        full_drop, full_error = self.full[method]
        if full_error is None:
            return self.ratio[method] * self.loss(path)
        box, cls = self.c.output_error(path)
        return full_drop * (box / max(full_error[0], 1e-30) + cls / max(full_error[1], 1e-30)) / 2


def auto_quantize(src: Path, work: Path, cfg: SearchConfig, base_float: list[str], c: Candidates, title: str = "auto",
                  presets: tuple[str, ...] = (), search_images: int | None = None):
    """Run the search over the FP32 model ``src`` and write its reports in ``work``. ``cfg``: the search's
    settings; ``search_images``: how many images it scores on (for the record); ``base_float``: nodes float in
    every candidate (the variant's own scope, from ``presets``). Returns (method, float node names, manifest
    info); the float set is saved in ``auto.json`` as a :class:`quant.model.graph.FloatScope` other backends reuse."""
    from quant.search.sensitivity import analyze

    est = _Estimate(c, src)
    # by method: the full INT8 model's path, its Sensitivity, {layer: microseconds its INT8 kernel saves} or None
    full, sens, savings, seconds = {}, {}, {}, {}
    methods = list(cfg.methods)
    screens = len(methods) if c.write_unrefined is not None and len(methods) > 1 else 0
    progress = Progress(f"{title} search", int(cfg.max_evals) + screens, work / "search.log")

    def evaluate(method: str, layers: tuple[str, ...]) -> float:
        nodes = base_float + (sens[method].nodes_of(layers) if layers else [])
        path = c.write(work / (f"full-{method}.onnx" if not layers else "trial.onnx"), c.ranges(method), nodes)
        if not layers:
            full[method] = path
            est.calibrate(method, path)
            return est.full[method][0]
        return est.drop(method, path)

    def screen(method: str) -> float:
        t0 = time.monotonic()
        est.calibrate(method, c.write_unrefined(work / f"screen-{method}.onnx", c.ranges(method), base_float))
        est.measured.setdefault("screened", {})[method] = est.measured[method]  # beside the refined one's
        progress.step(f"{method} screened without refinements: estimated drop {est.full[method][0]:.2f} points "
                      f"in {time.monotonic() - t0:.0f}s")
        return est.full[method][0]

    def ranking(method: str) -> list[str]:
        t0 = time.monotonic()
        sens[method] = analyze(src, full[method], c.feeds, exclude=set(base_float))
        seconds["sensitivity"] = time.monotonic() - t0
        if c.layer_savings is not None:
            t0 = time.monotonic()
            savings[method] = c.layer_savings(src, full[method])
            seconds["layer_times"] = time.monotonic() - t0
        return sens[method].ranking()

    def on_trial(t: Trial, met: bool) -> None:
        progress.step(f"{t.method}, {len(t.layers)} layers float: estimated drop {t.drop:.2f} points "
                      f"({'meets' if met else 'misses'} the target) in {t.seconds:.0f}s")

    # the search images are few: aim under the target by a margin so the held-out val keeps to it
    r = search(evaluate, methods, ranking, cfg.target_drop - cfg.margin,
               cfg.max_evals, cfg.budget_s, cost=lambda method, layer: sens[method].macs(layer),
               on_trial=on_trial, max_float_share=1.0 - cfg.min_int8_macs,
               saving=lambda method, layer: (savings.get(method) or {}).get(layer),
               screen=screen if screens else None)
    float_nodes = list(dict.fromkeys(base_float + (sens[r.method].nodes_of(r.float_layers) if r.float_layers else [])))
    if c.labelled or est.dense:
        _cross_check(c, est, c.write(work / "trial.onnx", c.ranges(r.method), float_nodes))
    for p in list(full.values()) + [work / "trial.onnx"] + list(work.glob("screen-*.onnx")):
        p.unlink(missing_ok=True)
    scope = FloatScope(presets=tuple(presets), names=tuple(n for n in float_nodes if n not in set(base_float)))
    return r.method, float_nodes, _record(work, r, sens.get(r.method), scope, est, cfg, search_images, title, seconds,
                                          (c.cost_model, savings.get(r.method)))


def _cross_check(c: Candidates, est: _Estimate, chosen: Path) -> None:
    """The chosen model measured on the search images, the estimate's cross-check."""
    if c.labelled:
        est.measured["chosen_labelled_drop"] = 100 * (est.fp32["map"] - c.labelled(chosen))
    if est.dense:
        est.measured["chosen_fidelity_loss"] = est.loss(chosen)


def _record(work: Path, r: SearchResult, sens, scope: FloatScope, est: _Estimate, cfg: SearchConfig,
            search_images: int | None, title: str, seconds: dict, measured_cost: tuple[str, dict | None]) -> dict:
    """Write auto.json (and the sensitivity reports when layers were ranked); the manifest's info.
    ``measured_cost``: how the layers' cost was measured, and each layer's INT8 saving (None: MACs)."""
    from quant.search.sensitivity import write_reports

    reports, int8_macs = ["auto.json", "search.log"], None
    trials = r.to_dict()["trials"]
    if sens is not None:  # ranked: its sensitivity reports, and the share of the compute left in INT8
        reports += write_reports(sens, work, f"{title} ({r.method})", r.float_layers)
        total = sum(x.macs for x in sens.layers)
        share = lambda layers: 1 - sum(sens.macs(x) for x in layers) / total if total else None  # noqa: E731
        int8_macs = share(r.float_layers)
        for d, t in zip(trials, r.trials):  # the trade-off: estimated drop against the compute left in INT8
            d["int8_macs_share"] = share(t.layers) if t.method == r.method else 1.0
    metric = est.metric
    settings = cfg.to_dict()
    saved = measured_cost[1] or {}
    cost = {"model": measured_cost[0] if saved else "multiply-accumulates", "int8_saving_us": measured_cost[1],
            "seconds": seconds.get("layer_times"),
            "float_for_free": [x for x in r.float_layers if x in saved and saved[x] <= 0]}
    summary = {"calibration": r.method, "float_scope": scope.to_dict(), "float_layers": list(r.float_layers),
               "int8_macs_share": int8_macs, "search_metric": metric, "search_images": search_images,
               "cost": cost,
               "fp32": est.fp32, "measured": est.measured, "settings": settings,
               "sensitivity_seconds": seconds.get("sensitivity"), **r.to_dict(), "trials": trials}
    (work / "auto.json").write_text(json.dumps(summary, indent=1))
    info = {k: summary[k] for k in ("calibration", "float_layers", "int8_macs_share", "drop", "met", "stop", "seconds")}
    info |= {"evaluations": len(r.trials), "search_metric": metric, "search_images": search_images,
             "cost_model": cost["model"], "float_for_free": len(cost["float_for_free"]),
             "chosen_labelled_drop": est.measured.get("chosen_labelled_drop"),
             "chosen_fidelity_loss": est.measured.get("chosen_fidelity_loss")}
    return {"auto": info, "reports": reports}
