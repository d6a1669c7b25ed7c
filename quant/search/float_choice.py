"""A target's own pick of what stays float, among sets that all keep the INT8 bound.

The searched recipe (:mod:`quant.search.recipe`) chooses its float set on ONNX Runtime's Q/DQ models.
Another tool reusing it (NNCF for OpenVINO) places its quantizers and corrects its biases around
what it leaves float, so the set best for one is not always best for the other, and more float is
not always closer to FP32 (measured on two real models: docs/results/real-models-record.md, "the trade-off"). Here the target
builds a few candidates itself — the reused set, and prefixes of the same sensitivity ranking that
keep at least the search's share of the convolution compute in INT8, and a little more — and keeps
the one whose raw output is closest to FP32's on the search images (box and class-score
noise-to-signal, relative to the reused set's: the dense error the ranking itself uses, smooth where
mAP on a few dozen images moves in steps). Candidates never have less compute in INT8 than the bound,
so the pick can only be as fast or faster.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

STEPS = (0.0, 0.05, 0.10)  # prefixes keeping the search's INT8 share, and 5 and 10 points more of the compute
IMAGES = 64  # search images the output error is measured on (inputs held in memory)


def prefix_within(sens, share: float) -> list[str]:
    """Layers of ``sens``'s ranking taken float in rank order while their compute fits within 1 - ``share``
    of the ranked layers' total (layers without compute always fit): the search's own bound."""
    from quant.search.recipe import within_share

    return within_share(sens.ranking(), None, lambda method, layer: sens.macs(layer), 1.0 - share)[0]


def candidates(reused: list[str], base: list[str], sens, bound: float, steps=STEPS) -> dict[str, list[str]]:
    """``{label: float nodes}``: the reused set first, then each distinct ranking prefix at ``bound`` + step."""
    out = {"reused": list(reused)}
    seen = {frozenset(reused)}
    for step in steps:
        share = min(1.0, bound + step)
        nodes = list(dict.fromkeys(base + sens.nodes_of(prefix_within(sens, share))))
        if frozenset(nodes) not in seen:
            seen.add(frozenset(nodes))
            out[f"ranked, {100 * share:.0f} % INT8"] = nodes
    return out


def _score(errors: tuple[float, float], ref: tuple[float, float]) -> float:
    """(box, class) output error as the sum of both relative to the first candidate's ``ref``."""
    return sum(e / max(r, 1e-30) for e, r in zip(errors, ref))


def _candidate(label: str, nodes: list[str], errors: tuple[float, float], score: float) -> dict:
    """One candidate's entry in ``float_choice.json``."""
    return {"label": label, "float_nodes": len(nodes), "box_nsr": errors[0], "class_nsr": errors[1], "score": score}


def choose(sets: dict[str, list[str]], build: Callable[[str, list[str]], Path],
           error: Callable[[Path], tuple[float, float]]) -> tuple[str, dict[str, Path], dict]:
    """Build every set, measure each one's (box, class) output error; the label of the closest to FP32
    (sum of both errors relative to the first set's), the built paths, and the record."""
    built, errors = {}, {}
    for label, nodes in sets.items():
        built[label] = build(label, nodes)
        errors[label] = tuple(float(e) for e in error(built[label]))
    ref = errors[next(iter(sets))]
    score = {k: _score(v, ref) for k, v in errors.items()}
    best = min(score, key=score.get)  # ties keep the earlier (the reused set first)
    record = {"chosen": best, "candidates": [_candidate(k, sets[k], errors[k], score[k]) for k in sets]}
    return best, built, record


def pick(choice, scope, ctx, src: Path, graph, reused: list[str], out_dir: Path, final: Path,
         build: Callable[[list[str], float | None, Path], Path], error: Callable[[Path, object], tuple[float, float]],
         refine: tuple[str, Callable[[list[str], float | None, Path], Path]] | None = None):
    """A target's pick (``choice``: its ``float_set_from``, ``choose_float_set`` and ``smooth_quant_alpha``, e.g.
    :class:`quant.build.nncf_ir.NncfConfig`; ``scope``: the variant's own float scope): the reused set and
    the ranking's prefixes (:func:`candidates`), each also with SmoothQuant when ``smooth_quant_alpha`` is set,
    built by ``build(float nodes, SmoothQuant alpha or None, folder) -> artifact inside folder`` and measured
    by ``error(artifact, OutputError on the search images)``; the closest to FP32 ends up at ``final``
    (``out_dir/float_choice.json`` records the candidates). Returns (its float nodes, info for the manifest).
    ``refine``: (label, builder like ``build``): the kept candidate is built once more by that builder and measured
    the same way; the closer of the two is kept (its label "<kept>, <label>").
    Without ``choose_float_set`` it builds ``reused`` alone, with ``smooth_quant_alpha`` if set (and no refinement:
    nothing is measured there)."""
    from quant.calibration.readers import reader_for
    from quant.search.sensitivity import OutputError

    if not (choice.choose_float_set and choice.float_set_from):
        build(reused, choice.smooth_quant_alpha, out_dir)
        return reused, {}
    found = source_search(ctx.artifact(choice.float_set_from).parent)
    if found is None:  # the search ranked nothing: its set is the decode alone
        build(reused, None, out_dir)
        return reused, {"float_choice": {"chosen": "reused", "why": "the search ranked no layer"}}
    sens, settings = found
    bound = float(settings.get("min_int8_macs", 0.0))
    base = scope.resolve(graph) if scope else []
    sets = candidates(reused, base, sens, bound)
    alpha = choice.smooth_quant_alpha
    smooth = {f"{k}, SmoothQuant {alpha}": v for k, v in sets.items()} if alpha is not None else {}
    sets |= smooth
    files = ctx.search_files(settings["images"])[:IMAGES]  # the search's own images
    oe = OutputError(src, list(reader_for(files, ctx.imgsz, graph.graph.input[0].name)))

    def build_one(label: str, nodes: list[str]) -> Path:
        folder = out_dir / f".candidate-{list(sets).index(label)}"
        folder.mkdir()
        return build(nodes, alpha if label in smooth else None, folder)

    best, built, record = choose(sets, build_one, lambda artifact: error(artifact, oe))
    if refine is not None:
        best = _refined(best, sets, smooth, built, record, refine, out_dir, alpha, lambda artifact: error(artifact, oe))
    built[best].rename(final)
    for artifact in built.values():
        shutil.rmtree(artifact.parent, ignore_errors=True)
    record |= {"bound": bound, "images": len(files), "float_nodes": sets[best],
               "smooth_quant": alpha if best in smooth else None}
    (out_dir / "float_choice.json").write_text(json.dumps(record, indent=1))
    return sets[best], {"float_choice": {k: record[k] for k in ("chosen", "candidates", "images", "smooth_quant")},
                        "reports": ["float_choice.json"]}


def _refined(best: str, sets: dict, smooth: dict, built: dict, record: dict, refine, out_dir: Path, alpha,
             error: Callable[[Path], tuple[float, float]]) -> str:
    """Build ``best`` once more with ``refine``'s builder, add it to ``sets``, ``built`` and ``record`` (scored
    like :func:`choose`: relative to the first candidate); the label of the closer of the two."""
    label, builder = refine
    name = f"{best}, {label}"
    sets[name] = sets[best]
    if best in smooth:
        smooth[name] = sets[best]
    folder = out_dir / f".candidate-{len(built)}"
    folder.mkdir()
    built[name] = builder(sets[best], alpha if best in smooth else None, folder)
    errors = tuple(float(e) for e in error(built[name]))
    ref = record["candidates"][0]
    score = _score(errors, (ref["box_nsr"], ref["class_nsr"]))
    record["candidates"].append(_candidate(name, sets[name], errors, score))
    kept = next(c for c in record["candidates"] if c["label"] == best)
    if score < kept["score"]:
        record["chosen"] = best = name
    return best


def source_search(folder: Path):
    """The sensitivity ranking and the settings of the search whose artifact lies in ``folder``, or None
    when it ranked nothing (its fully INT8 model met the target)."""
    from quant.search.sensitivity import Sensitivity

    sens_file, auto_file = folder / "sensitivity.json", folder / "auto.json"
    if not sens_file.is_file() or not auto_file.is_file():
        return None
    return Sensitivity.from_dict(json.loads(sens_file.read_text())), json.loads(auto_file.read_text())["settings"]
