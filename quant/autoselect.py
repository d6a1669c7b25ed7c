"""Automatic INT8 recipe: the calibration method, then the fewest float layers that meet a target drop.

The search is generic (:func:`search` takes an ``evaluate(method, layers) -> drop in points``
callable). For ONNX Q/DQ models (:func:`auto_quantize`) every candidate is built and scored by
Ultralytics' validator on the *search* images: calibration-split images after the calibration ones,
so held out from calibration; val stays held out from the whole search and the benchmark row on it
is the confirmation. The drop of a candidate is estimated from its fidelity (see ``auto_quantize``);
it must meet the target minus a margin (default 0.2 points: on a few hundred images the labelled
mAP50-95 of two near-identical models differs by up to ~0.2 points by chance, so the held-out val
needs that room).

1. Recipe: the fully INT8 model (only the variant's base scope float) for each calibration method;
   the method with the smallest drop wins. Done if it already meets the target.
2. Float set: layers ranked by layerwise sensitivity (:mod:`quant.sensitivity`) on that model;
   the shortest ranked prefix meeting the target is found by doubling (1, 2, 4, ... layers) then
   bisecting between the last miss and the first hit.
3. Prune: each chosen layer goes back to INT8 if the target still holds, the most expensive
   (multiply-accumulates) first, so that what stays float costs the least latency.

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

from quant import qdq
from quant.autosettings import DEFAULTS
from quant.calibration import activation_ranges, reader_for
from quant.context import BuildContext
from quant.graph import load_onnx
from quant.preflight import label_path


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

    def to_dict(self) -> dict:
        d = asdict(self)
        d["trials"] = [{**asdict(t), "layers": len(t.layers)} for t in self.trials]
        return d


class _Stop(Exception):
    pass


def search(evaluate: Callable[[str, tuple[str, ...]], float], methods: Sequence[str],
           ranking: Callable[[str], list[str]], target: float = 0.3, max_evals: int = 24,
           budget_s: float = 1200.0, clock: Callable[[], float] = time.monotonic,
           cost: Callable[[str, str], float] | None = None) -> SearchResult:
    """Smallest float set (and best method) with drop <= ``target``; ``evaluate(method, float_layers)``
    returns the drop in mAP50-95 points. ``cost(method, layer)`` (e.g. multiply-accumulates) orders the
    prune step: the most expensive float layers are tried back in INT8 first. See the module doc."""
    start = clock()
    trials: dict[tuple[str, frozenset], Trial] = {}

    def run(method: str, layers: Sequence[str]) -> Trial:
        key = (method, frozenset(layers))
        if key in trials:
            return trials[key]
        if len(trials) >= max_evals:
            raise _Stop(f"evaluation budget spent ({max_evals} evaluations)")
        if clock() - start >= budget_s:
            raise _Stop(f"time budget spent ({budget_s:.0f} s)")
        t0 = clock()
        trials[key] = Trial(method, tuple(layers), float(evaluate(method, tuple(layers))), clock() - t0)
        return trials[key]

    def ok(t: Trial) -> bool:
        return t.drop <= target

    def result(method: str, layers: Sequence[str], met: bool, stop: str) -> SearchResult:
        t = trials[(method, frozenset(layers))]
        return SearchResult(method, tuple(layers), t.drop, met, stop, target, list(trials.values()), clock() - start)

    try:
        for method in methods:
            run(method, ())
        best_method = min(methods, key=lambda m: trials[(m, frozenset())].drop)
        if ok(trials[(best_method, frozenset())]):
            return result(best_method, (), True, "target met with no float layer")
        ranked = list(ranking(best_method))
        lo, hi, k = 0, None, 1  # prefix rank[:lo] misses, rank[:hi] meets
        while hi is None:
            k = min(k, len(ranked))
            if ok(run(best_method, ranked[:k])):
                hi = k
            elif k == len(ranked):
                t = min(trials.values(), key=lambda t: t.drop)
                return result(t.method, t.layers, False, "target not reachable: every ranked layer float still misses it")
            else:
                lo, k = k, 2 * k
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if ok(run(best_method, ranked[:mid])):
                hi = mid
            else:
                lo = mid
        chosen = list(ranked[:hi])
        order = list(reversed(ranked[:hi]))  # least sensitive first ...
        if cost is not None:  # ... unless costs are known: the most expensive first
            order.sort(key=lambda layer: -cost(best_method, layer))
        for layer in order:
            trial = [x for x in chosen if x != layer]
            if ok(run(best_method, trial)):
                chosen = trial
        return result(best_method, chosen, True, "minimal: no chosen layer can go back to INT8")
    except _Stop as e:
        passing = [t for t in trials.values() if ok(t)]
        if passing:
            t = min(passing, key=lambda t: (len(t.layers), t.drop))
            return result(t.method, t.layers, True, f"{e}; best set meeting the target so far")
        if not trials:
            raise RuntimeError(f"automatic INT8 search could not evaluate anything: {e}") from None
        t = min(trials.values(), key=lambda t: t.drop)
        return result(t.method, t.layers, False, f"{e}; target not met")


# ---- ONNX Q/DQ: the search wired to ONNX Runtime, the suite's data and the validator ----------
def build(variant, ctx: BuildContext, out_dir: Path):
    """Search the recipe for ``variant`` (an ONNX Q/DQ INT8 variant), then write it as ``out_dir/model.onnx``."""
    src = ctx.artifact(variant.source)
    base_float = ctx.float_nodes(variant, load_onnx(src))
    method, float_nodes, info = auto_quantize(src, out_dir, variant, ctx, base_float)
    return qdq.quantize_qdq(src, out_dir / "model.onnx", variant, ctx, method=method, float_nodes=float_nodes,
                            info=info)


def search_data(ctx: BuildContext, files: list[Path], work: Path) -> Path | None:
    """A data YAML over ``files`` with their own labels, or None when they have none."""
    if not any(label_path(f).is_file() for f in files):
        return None
    from quant.data import write_data_yaml

    (work / "search.txt").write_text("".join(f"{f.resolve()}\n" for f in files))
    return write_data_yaml(work / "search.yaml", work, (work / "search.txt").resolve(), ctx.names)


def auto_quantize(src: Path, work: Path, variant, ctx: BuildContext, base_float: list[str]):
    """Run the search for an ONNX Q/DQ variant; write its reports in ``work``.

    A candidate's drop is estimated from its *fidelity* on the search images (mAP50-95 against the
    FP32 model's own detections there): paired with FP32 image by image, it falls smoothly as layers
    go float, where labelled mAP on a few hundred images moves by tenths of a point by chance. It is
    put in labelled points by the ratio r = labelled drop / fidelity loss of the fully INT8 model of
    the same method (so that model's estimate is its measured labelled drop):
    drop = r * (fidelity(FP32) - fidelity(candidate)). Without labels r = 1 (fidelity points,
    stricter). Returns (method, float node names, manifest info); the float set is saved
    declaratively in ``auto.json`` as a :class:`quant.graph.FloatScope` value other backends reuse."""
    from quant.evaluate import validate
    from quant.fidelity import pseudo_dataset
    from quant.graph import FloatScope
    from quant.sensitivity import analyze, write_reports

    cfg = {k: variant.setting(k, v) for k, v in DEFAULTS.items()}
    files = ctx.search_files(cfg["auto_images"])
    labelled = search_data(ctx, files, work)
    pseudo = pseudo_dataset(src, files, work / "search-fidelity", ctx.names, ctx.imgsz)  # src: the FP32 model
    runs = ctx.scratch
    score = lambda path, data: validate(path, data, ctx.imgsz, runs, f"{variant.name}-search").map50_95  # noqa: E731
    fp32 = {"fidelity": score(src, pseudo), "map": score(src, labelled) if labelled else None}
    full: dict[str, Path] = {}
    ratio: dict[str, float] = {}
    measured: dict = {}
    sens: dict = {}  # method -> Sensitivity
    seconds: dict = {}

    def ranges(method: str) -> dict:
        return activation_ranges(src, ctx.calibration_files(), ctx.imgsz, method)

    def evaluate(method: str, layers: tuple[str, ...]) -> float:
        nodes = base_float + (sens[method].nodes_of(layers) if layers else [])
        path = work / (f"full-{method}.onnx" if not layers else "trial.onnx")
        qdq.write_qdq(src, path, variant, ranges(method), nodes)
        loss = 100 * (fp32["fidelity"] - score(path, pseudo))
        if not layers:
            full[method] = path
            drop = 100 * (fp32["map"] - score(path, labelled)) if labelled else loss
            ratio[method] = max(drop, 0.0) / loss if loss > 0 else 1.0
            measured[method] = {"labelled_drop": drop if labelled else None, "fidelity_loss": loss,
                                "ratio": ratio[method]}
        return ratio[method] * loss

    def ranking(method: str) -> list[str]:
        feeds = list(reader_for(ctx.calibration_files(), ctx.imgsz, variant_input(src)))[: cfg["auto_sensitivity_images"]]
        t0 = time.monotonic()
        sens[method] = analyze(src, full[method], feeds, exclude=set(base_float))
        seconds["sensitivity"] = time.monotonic() - t0
        return sens[method].ranking()

    # the search images are few: aim under the target by a margin so the held-out val keeps to it
    r = search(evaluate, list(cfg["auto_methods"]), ranking, cfg["auto_target_drop"] - cfg["auto_margin"],
               cfg["auto_max_evals"], cfg["auto_budget_s"], cost=lambda method, layer: sens[method].macs(layer))
    float_nodes = list(dict.fromkeys(base_float + (sens[r.method].nodes_of(r.float_layers) if r.float_layers else [])))
    if labelled:  # the chosen model's labelled drop on the search images, for the record
        qdq.write_qdq(src, work / "trial.onnx", variant, ranges(r.method), float_nodes)
        measured["chosen_labelled_drop"] = 100 * (fp32["map"] - score(work / "trial.onnx", labelled))
    for p in list(full.values()) + [work / "trial.onnx"]:
        p.unlink(missing_ok=True)
    scope = FloatScope(presets=variant.float_scope.presets if variant.float_scope else (),
                       names=tuple(n for n in float_nodes if n not in set(base_float)))
    reports, int8_macs = ["auto.json"], None
    if r.method in sens:  # ranked: its sensitivity reports, and the share of the compute left in INT8
        reports += write_reports(sens[r.method], work, f"{variant.name} ({r.method})", r.float_layers)
        total = sum(x.macs for x in sens[r.method].layers)
        int8_macs = 1 - sum(sens[r.method].macs(x) for x in r.float_layers) / total if total else None
    metric = ("labelled drop estimated from fidelity" if labelled else "fidelity loss (no labels)")
    summary = {"calibration": r.method, "float_scope": scope.to_dict(), "float_layers": list(r.float_layers),
               "int8_macs_share": int8_macs,
               "search_metric": metric, "search_images": len(files), "fp32": fp32, "measured": measured,
               "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
               "sensitivity_seconds": seconds.get("sensitivity"), **r.to_dict()}
    (work / "auto.json").write_text(json.dumps(summary, indent=1))
    info = {"auto": {k: summary[k] for k in ("calibration", "float_layers", "int8_macs_share", "drop", "met", "stop",
                                             "seconds")}
            | {"evaluations": len(r.trials), "search_metric": metric,
               "chosen_labelled_drop": measured.get("chosen_labelled_drop")}, "reports": reports}
    return r.method, float_nodes, info


def variant_input(src: Path) -> str:
    import onnx

    return onnx.load(str(src)).graph.input[0].name
