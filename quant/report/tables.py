"""The comparison table as text, JSON and Markdown, and the notes and sections around it. Everything here
reads :class:`quant.measure.row.Row` values."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from tabulate import tabulate

from quant.measure.row import Row
from quant.registry import BASELINE, LIGHT_SEARCHES
from quant.util.hardware import describe

COLUMNS = [  # (key in a row, header)
    ("variant", "variant"), ("format", "format"), ("precision", "precision"), ("latency_ms", "ms/img"),
    ("latency_ratio", "× FP32 [95 % CI]"),
    ("preprocess_ms", "pre ms"), ("postprocess_ms", "post ms"), ("box_precision", "P"), ("recall", "R"),
    ("map50", "mAP50"), ("map50_95", "mAP50-95"), ("delta_points", "Δ mAP50-95 [95 % CI]"),
    ("fidelity_map50_95", "fidelity"), ("size_mb", "size MB"),
    ("int8_share", "INT8 convs"), ("vs_peer", "vs best UL INT8"), ("engine", "engine"), ("built_because", "built"),
    ("status", "status"),
]
# the terminal's table (``--wide``: COLUMNS): what a reader decides on, about 110 characters wide
COMPACT = [("variant", "variant"), ("precision", "prec"), ("latency_ms", "ms"), ("latency_ratio", "× FP32 [95 % CI]"),
           ("map50_95", "mAP50-95"), ("delta_points", "Δ [95 % CI]"), ("int8_share", "INT8"), ("status", "status")]


def _fmt(key: str, v):
    if v is None:
        return "-"
    if key in ("latency_ms", "preprocess_ms", "postprocess_ms", "size_mb"):
        return f"{v:.1f}" if key != "size_mb" else f"{v:.2f}"
    if key in ("box_precision", "recall", "map50", "map50_95", "fidelity_map50_95"):
        return f"{v:.1f}"
    if key == "delta_points":
        return f"{v:+.2f}"
    if key == "latency_ratio":
        return f"{v:.2f}"
    if key == "built_because":  # the reason's first words; report.json has the changed modules or inputs
        return v.split(" (")[0]
    if key == "engine":  # {"built": True, "tensorrt": "10.x"} or {"built": False, "reason": ...}
        return f"TensorRT {v.get('tensorrt')}" if v.get("built") else "ONNX only"
    if key == "vs_peer":
        return f"{v['delta_points']:+.2f} pts {v['latency_ratio']:.2f}× {'ahead' if v['ahead'] else 'behind'}"
    return str(v)


def with_deltas(rows: list[Row], baseline: str = BASELINE) -> list[Row]:
    """Each row with its Δ mAP50-95 against the baseline's, in points (and, for unpaired rows of older reports,
    a latency ratio of medians)."""
    base = next((r for r in rows if r.variant == baseline and r.map50_95 is not None), None)
    out = []
    for r in rows:
        if base is not None and r.map50_95 is not None:
            r = replace(r, delta_points=round(r.map50_95 - base.map50_95, 3))
            if r.latency_ratio is None:  # unpaired rows (older reports): ratio of medians
                r = replace(r, latency_ratio=round(r.latency_ms / base.latency_ms, 3) if r.latency_ms else None)
        out.append(r)
    return out


def with_peer_comparison(rows: list[Row]) -> list[Row]:
    """Next to each of our INT8 rows: the best (highest mAP50-95) peer INT8 row, and whether we are
    ahead of it on both accuracy and latency."""
    peers = [r for r in rows if r.peer and r.precision == "int8" and r.map50_95 is not None]
    if not peers:
        return rows
    best = max(peers, key=lambda r: (r.map50_95, -r.latency_ms))
    out = []
    for r in rows:
        if not r.peer and r.precision == "int8" and r.map50_95 is not None:
            d = r.map50_95 - best.map50_95
            ratio = (r.latency_ratio / best.latency_ratio if r.latency_ratio and best.latency_ratio
                     else r.latency_ms / best.latency_ms)  # both paired against the same baseline
            r = replace(r, vs_peer={"peer": best.variant, "peer_map50_95": best.map50_95,
                                    "peer_latency_ms": best.latency_ms, "delta_points": round(d, 3),
                                    "latency_ratio": round(ratio, 3), "ahead": d >= 0 and ratio <= 1})
        out.append(r)
    return out


def table_rows(rows: list[Row], order: list[str], baseline: str = BASELINE) -> list[Row]:
    """Rows in the registry's ``order`` with Δ mAP50-95 vs the baseline and the best-peer comparison."""
    rank = {n: i for i, n in enumerate(order)}
    rows = sorted(rows, key=lambda r: rank.get(r.variant, 1 << 30))
    return with_peer_comparison(with_deltas(rows, baseline))


def int8_cell(r: Row) -> str:
    """INT8 convolutions asked (the graph) and run (the runtime, :attr:`Row.executed`): ``47/63``, or ``63→57/63``
    where the runtime runs fewer (or more) of them in INT8 than the graph asks."""
    ran = r.executed.get("convs_int8") if r.executed else None
    if r.int8_share is None:
        if ran:  # a peer's own INT8 graph: only what runs is known
            return f"→{ran}/{ran + r.executed.get('convs_float', 0)}"
        return "-"
    asked, _, total = r.int8_share.partition("/")
    return r.int8_share if ran is None or str(ran) == asked else f"{asked}→{ran}/{total}"


def _cell(key: str, r: Row) -> str:
    if key == "int8_share":
        return int8_cell(r)
    text = _fmt(key, getattr(r, key))
    ci = r.latency_ratio_ci
    if key == "latency_ratio" and ci and r.latency_ratio is not None:
        text += f" [{ci[0]:.2f}-{ci[1]:.2f}]"
    if key == "delta_points" and r.delta_ci and r.delta_points is not None:
        text += f" [{r.delta_ci[0]:+.1f}, {r.delta_ci[1]:+.1f}]"
    return text


def table(rows: list[Row], fmt: str = "simple", wide: bool = True) -> str:
    """The table of ``rows``: every column (``wide``, as in report.md) or the compact :data:`COMPACT` ones."""
    columns = COLUMNS if wide else COMPACT
    body = [[_cell(k, r) for k, _ in columns] for r in rows]
    return tabulate(body, headers=[h for _, h in columns], tablefmt=fmt, disable_numparse=True)


def auto_lines(rows: list[Row]) -> list[str]:
    """One line per variant whose recipe was searched: method, float set, search drop and cost; or whose
    target picked its own float set (which candidate, against the set it reused)."""
    out = []
    for r in rows:
        a = r.auto
        if not a:
            out += choice_line(r)
            continue
        shown = a["float_layers"][:8]
        names = (", ".join(shown) + (f", and {len(a['float_layers']) - len(shown)} more (auto.json)"
                                     if len(a["float_layers"]) > len(shown) else "")) or "none"
        macs = f" ({100 * a['int8_macs_share']:.0f} % of their compute)" if a.get("int8_macs_share") is not None else ""
        images = f" on {a['search_images']} search images" if a.get("search_images") else ""
        confirm = (f", measured drop on val {-r.delta_points:.2f}" if r.delta_points is not None else "")
        full = LIGHT_SEARCHES.get(r.variant) if not a["met"] else None
        hint = (f"; it is {full}'s search made light for a first look (no weight rounding, fewer images, "
                f"evaluations and seconds): {full}, in the standard and full presets, searches with all of them"
                if full else "")
        out.append(f"{r.variant}: {a['calibration']} calibration, INT8 convs {r.int8_share}{macs}, "
                   f"{len(a['float_layers'])} layers float ({names}); estimated drop {a['drop']:.2f} points"
                   f"{images} ({a['search_metric']}){confirm}; target {'met' if a['met'] else 'NOT met'}, "
                   f"{a['evaluations']} evaluations in {a['seconds']:.0f} s ({a['stop']}){hint}")
    return out


def choice_line(r: Row) -> list[str]:
    """The candidate a target kept (:mod:`quant.search.float_choice`) and its output error next to the reused set's."""
    c = r.float_choice or {}
    errors = {x["label"]: x for x in c.get("candidates", [])}
    if c.get("chosen") not in errors or "reused" not in errors:
        return [f"{r.variant}: {c['note']}"] if c.get("note") else []
    kept, reused = errors[c["chosen"]], errors["reused"]
    return [f"{r.variant}: kept '{c['chosen']}' of {len(errors)} candidate builds, closest to FP32 on "
            f"{c.get('images')} search images (class-score error {kept['class_nsr']:.4f}, box {kept['box_nsr']:.2g}; "
            f"the reused set as built: {reused['class_nsr']:.4f}, {reused['box_nsr']:.2g}); INT8 convs "
            f"{r.int8_share}" + (f"; {c['note']}" if c.get("note") else "")]


INTERVAL_NOTE = ("Δ [95 % CI]: paired bootstrap over the val images (both models scored on the same 200 "
                 "seeded resamples); where the interval holds 0, these images cannot tell the variant from the "
                 "baseline, and a goal closer than its width cannot be confirmed on them")


def interval_lines(rows: list[Row]) -> list[str]:
    """What the Δ intervals mean, once, when the table shows any."""
    return [INTERVAL_NOTE] if any(r.delta_ci for r in rows) else []


def floor_lines(rows: list[Row], baseline: str = BASELINE) -> list[str]:
    """The fidelity floor (:meth:`quant.run.evaluations.Evaluations.fidelity_floor`), once, where the baseline's
    row has it."""
    from quant.measure.fidelity import PERTURBATION

    base = next((r for r in rows if r.variant == baseline), None)
    loss = base.floor_loss_points if base else None
    if loss is None:
        return []
    return [f"fidelity floor: {baseline} on the same images with {PERTURBATION} scores fidelity "
            f"{base.fidelity_floor:.1f} ({-loss:+.2f}); a variant's fidelity loss within "
            "that is within what an imperceptible change of these images costs FP32 itself"]


SCALE_PAGE = "results/label-free-scale.md"
RATIO_MIN_DROP = 0.3  # labelled losses smaller than this give no ratio (one image more or less moves them as much)


def scale_lines(rows: list[Row], baseline: str = BASELINE) -> list[str]:
    """How fidelity points relate to labelled points, once: with labels, each INT8 row's fidelity loss over its
    labelled loss (where the labelled loss is at least RATIO_MIN_DROP points and its paired interval excludes
    zero: a ratio to a loss the val images cannot tell from none says nothing); label-free, that the figures are
    fidelity points and what that ratio was where labels existed."""
    if any(r.label_free for r in rows):
        return ["Δ is in fidelity points (against the baseline's own detections), not labelled points: where labels "
                "existed, an INT8 row's fidelity loss was 4-7x its labelled loss on a model close to its labels and "
                "far more on models further from theirs; no label-free estimate on the labelled scale met its goal, "
                f"so none is shown ({SCALE_PAGE} in the docs)"]
    base = next((r for r in rows if r.variant == baseline and r.fidelity_map50_95 is not None), None)
    ratios = []
    for r in rows:
        if base is None or r is base or r.precision != "int8" or r.fidelity_map50_95 is None:
            continue
        if (r.delta_points is not None and r.delta_points <= -RATIO_MIN_DROP
                and (r.delta_ci is None or r.delta_ci[1] < 0)):
            ratios.append((r.variant, (base.fidelity_map50_95 - r.fidelity_map50_95) / -r.delta_points))
    if not ratios:
        return []
    return ["fidelity loss / labelled loss: " + ", ".join(f"{v} {x:.1f}x" for v, x in ratios)
            + " (how much fidelity, against the baseline's own detections, overstates this model's labelled loss on "
            "these labels; the factor differs between models)"]


def breach_lines(rows: list[Row]) -> list[str]:
    """Every breached gate of the run, one sentence each."""
    return [f for r in rows for f in r.failures or []]


def build_lines(rows: list[Row]) -> list[str]:
    """Why each row that was not taken from the cache was built (new key, which code or inputs changed)."""
    return [f"built {r.variant}: {r.built_because}" for r in rows if r.built_because and r.built_because != "cached"]


def latency_lines(rows: list[Row], baseline: str = BASELINE) -> list[str]:
    """The A/A control (the baseline timed against a second session of itself) and whether it holds."""
    out = []
    for r in rows:
        if r.variant == baseline and r.latency_ratio_ci:
            lo, hi = r.latency_ratio_ci
            verdict = r.aa_verdict or "holds"
            out.append(f"A/A control: {baseline} vs a second session of itself {r.latency_ratio:.3f}x "
                       f"(95 % interval {lo:.3f}-{hi:.3f}, {r.latency_rounds} rounds): {verdict}")
    return out


def ran_lines(rows: list[Row]) -> list[str]:
    """What the runtime runs, where it is not what the graph asks for (:attr:`Row.executed`): INT8 convolutions that
    run in float, and the OpenVINO reorders around them."""
    out = []
    for r in rows:
        x, asked = r.executed or {}, (r.int8_share or "").partition("/")[0]
        if not x or not asked.isdigit() or x.get("convs_int8") == int(asked):
            continue
        extra = (f", {x['dequantize']} DequantizeLinear and {x['quantize']} QuantizeLinear run as float nodes"
                 if x.get("dequantize") else "") + (f", {x['reorders']} reorders" if x.get("reorders") else "")
        out.append(f"{r.variant}: the graph asks for {asked} INT8 convolutions; the runtime runs {x['convs_int8']} in "
                   f"INT8 and {x['convs_float']} in float{extra}")
    return out


def time_lines(rows: list[Row]) -> list[str]:
    """Where each row's time goes by precision (:attr:`Row.time_split`, the runtime's own profile), one line each."""
    from quant.measure.profile import line

    return [f"{r.variant}: {text}" for r in rows if (text := line(r.time_split))]


TIME_INTRO = ("Each timed row profiled by its runtime after its timing (a few runs, the same threads): its kernels' "
              "time summed by what they compute in. INT8 convolutions that run fast next to much time in "
              "quantize/dequantize, reorders or float element-wise ops say where an INT8 model's speed goes.")


def time_section(rows: list[Row]) -> str:
    return _section("Where the time goes", TIME_INTRO, time_lines(rows))


def breach_section(rows: list[Row]) -> str:
    return _section("Gate breaches", "", breach_lines(rows))


def _section(title: str, intro: str, lines: list[str]) -> str:
    """A report.md section: its title, an introducing paragraph (if any) and one bullet per line; "" without lines."""
    if not lines:
        return ""
    return f"\n## {title}\n\n" + (f"{intro}\n\n" if intro else "") + "".join(f"- {ln}\n" for ln in lines)


def auto_section(rows: list[Row]) -> str:
    return _section("Searched INT8 recipes", "Float layers are ONNX node names (a convolution stands for its "
                    "activation too); the sensitivity chart and auto.json are in each variant's folder.",
                    auto_lines(rows))


def loss_section(rows: list[Row]) -> str:
    """The classes that cost each row most, for the rows whose loss their interval confirms."""
    from quant.measure.classloss import line

    return _section("Where accuracy was lost", "Rows whose Δ interval lies below 0: the classes that cost each "
                    "most, with each one's share of its Δ in points (mAP50-95 is the mean over classes, so all "
                    "classes' shares add up to the Δ, and a class with few labels weighs as much as one with many).",
                    [ln for ln in map(line, rows) if ln])


def front_lines(rows: list[Row]) -> list[str]:
    """The rows no other row beats on both mAP50-95 and paired latency (``report.png``'s Pareto front),
    fastest first, one line each; rows whose latency is not their target's are left out
    (:func:`quant.report.plot.on_target`)."""
    from quant.report.plot import on_target, pareto_front, plottable

    timed = {r.variant: r for r in plottable(rows, "map50_95") if on_target(r)}
    return [_front_line(timed[n]) for n in pareto_front([(n, r.latency_ratio, r.map50_95)
                                                          for n, r in timed.items()])]


def _front_line(r: Row) -> str:
    ci = r.latency_ratio_ci
    text = (f"{r.variant}{' (Ultralytics)' if r.peer else ''}: {r.latency_ratio:.2f}×"
            + (f" [{ci[0]:.2f}-{ci[1]:.2f}]" if ci else "") + f", mAP50-95 {r.map50_95:.1f}")
    if r.delta_points is not None:
        text += f" (Δ {_cell('delta_points', r)})"
    if r.int8_share:
        text += f", INT8 convs {r.int8_share}"
    return text + (", fails a gate" if r.status == "FAIL" else "")


def front_section(rows: list[Row]) -> str:
    return _section("Trade-offs", "The rows no other row beats on both mAP50-95 and paired latency against the "
                    "baseline (the Pareto front of report.png), fastest first. Where two rows' intervals overlap, "
                    "these images and timing rounds cannot order them.", front_lines(rows))


def write(rows: list[Row], out_dir: str | os.PathLike, header: dict) -> tuple[Path, Path]:
    """report.json (everything) and report.md (the table), written atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    notes = (interval_lines(rows) + floor_lines(rows) + scale_lines(rows)
             + [f"what ran: {ln}" for ln in ran_lines(rows)])
    files = {out / "report.json": json.dumps({**header, "rows": [r.to_dict() for r in rows]}, indent=1, default=str) + "\n",
             out / "report.md": "# YOLO quantization benchmark\n\n"
             + "".join(f"- {k}: {v}\n" for k, v in header.items() if not isinstance(v, (dict, list)))
             + (f"- machine: {describe(header['machine'])}\n" if "machine" in header else "")
             + "\nmAP in %, Δ in mAP50-95 points vs the baseline, ms/img = median model call at batch 1.\n\n"
             + table(rows, "github") + "\n" + "".join(f"\n{ln}\n" for ln in notes)
             + breach_section(rows) + front_section(rows) + time_section(rows) + loss_section(rows)
             + auto_section(rows)}
    for path, text in files.items():
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return out / "report.json", out / "report.md"
