"""Quantization sensitivity of a Q/DQ ONNX model against its FP32 source, on CPU with ONNX Runtime.

Two views, per quantized *layer* (a unit: a convolution with its activation tail, e.g. Conv ->
Sigmoid -> Mul = SiLU, or any other node that reads a quantized input):

- graphwise: the layer's output in the fully quantized model against the FP32 model (accumulated
  error: everything before it is quantized too);
- layerwise: the final detections when *only that layer* is quantized, measured separately on the
  box branch (rows 0-3 of the output: xywh pixels) and the class-score branch (rows 4+), because
  box pixels swamp class probabilities in a joint measure.

Errors are reported as SQNR in dB (higher is better; identical tensors give +inf) and PPQ-style
noise-to-signal power ratio NSR (lower is better). Layers are ranked by ``score`` = the layer's
isolated output NSR as a share of the fully quantized model's NSR, box and class shares summed:
the candidates the automatic float-set search (:mod:`quant.search.recipe`) reverts first.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from quant.calibration.activations import session_with_outputs
_ACTIVATIONS = {"Sigmoid", "Relu", "LeakyRelu", "HardSigmoid", "HardSwish", "Clip", "Tanh", "Elu", "Mish"}
_QDQ = ("QuantizeLinear", "DequantizeLinear")


# ---- metrics ----------------------------------------------------------------------------------
def nsr(ref: np.ndarray, x: np.ndarray) -> float:
    """Noise-to-signal power ratio ||x - ref||^2 / ||ref||^2 (0 = identical)."""
    ref, x = np.asarray(ref, np.float64), np.asarray(x, np.float64)
    signal = float(np.sum(ref * ref))
    noise = float(np.sum((x - ref) ** 2))
    if signal == 0.0:
        return 0.0 if noise == 0.0 else math.inf
    return noise / signal


# ---- layers (units of float/INT8 choice) ------------------------------------------------------
def layers(fp32_model) -> dict[str, list[str]]:
    """Unit name -> node names, in graph order. A convolution owns the activation that only it
    feeds (Sigmoid + Mul of SiLU, Relu, ...); every other node is its own unit."""
    consumers: dict[str, list] = {}
    for n in fp32_model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    owned: dict[str, str] = {}
    units: dict[str, list[str]] = {}
    for n in fp32_model.graph.node:
        if n.name in owned:
            continue
        units[n.name] = [n.name]
        if n.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            continue
        y = n.output[0]
        acts = [c for c in consumers.get(y, []) if c.op_type in _ACTIVATIONS]
        tail = list(acts)
        act_outs = {a.output[0] for a in acts}
        tail += [c for c in consumers.get(y, []) if c.op_type == "Mul" and act_outs & set(c.input)]  # x * act(x)
        if {c.name for c in consumers.get(y, [])} <= {t.name for t in tail}:
            for t in tail:
                owned[t.name] = n.name
                units[n.name].append(t.name)
    return units


def quantized_layers(fp32_model, qmodel) -> dict[str, list[str]]:
    """The units of ``layers`` with at least one node that reads a dequantized input in ``qmodel``."""
    producers = {o: n for n in qmodel.graph.node for o in n.output}
    reads_q = {n.name for n in qmodel.graph.node if n.op_type not in _QDQ
               and any(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in n.input)}
    return {u: nodes for u, nodes in layers(fp32_model).items() if reads_q & set(nodes)}


def keep_quantized(qmodel, fp32_model, keep: set[str]):
    """A copy of ``qmodel`` where only the nodes in ``keep`` read quantized inputs; every other node
    reads its FP32 inputs again (weights from ``fp32_model``). Unused Q/DQ are pruned."""
    import onnx

    from quant.model.graph import prune_unused

    m = onnx.ModelProto()
    m.CopyFrom(qmodel)
    fp32_nodes = {n.name: n for n in fp32_model.graph.node}
    fp32_inits = {i.name: i for i in fp32_model.graph.initializer}
    producers = {o: n for n in m.graph.node for o in n.output}
    present = {i.name for i in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type in _QDQ or n.name in keep or n.name not in fp32_nodes:
            continue
        if not any(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in n.input):
            continue
        inputs = []
        for name in fp32_nodes[n.name].input:
            if name in fp32_inits and name in producers:
                # a DequantizeLinear output took the float weight's name (e.g. a bias the exporter shared
                # between convolutions, quantized for the kept one): the float one under an alias
                alias = f"{name}__float"
                if alias not in present:
                    init = onnx.TensorProto()
                    init.CopyFrom(fp32_inits[name])
                    init.name = alias
                    m.graph.initializer.append(init)
                    present.add(alias)
                name = alias
            elif name in fp32_inits and name not in present:
                m.graph.initializer.append(fp32_inits[name])
                present.add(name)
            inputs.append(name)
        del n.input[:]
        n.input.extend(inputs)
    prune_unused(m)
    return m


# ---- running ----------------------------------------------------------------------------------
def _run(sess, feeds: list[dict], names: list[str]) -> list[list[np.ndarray]]:
    return [sess.run(names, f) for f in feeds]


def _branches(out0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A YOLO detect output (batch, 4 + classes, anchors): box rows, class-score rows."""
    return out0[:, :4], out0[:, 4:]


def _err(refs: list[np.ndarray], xs: list[np.ndarray]) -> float:
    return nsr(np.concatenate([r.ravel() for r in refs]), np.concatenate([x.ravel() for x in xs]))


class OutputError:
    """(box, class-score) noise-to-signal ratio of a model's detect output against FP32's on ``feeds``
    (FP32's outputs computed once)."""

    def __init__(self, fp32_path, feeds: list[dict]):
        import onnx

        self.feeds = feeds
        fp32 = onnx.load(str(fp32_path))
        self.out0 = fp32.graph.output[0].name
        self.ref = [_branches(r[0]) for r in _run(session_with_outputs(fp32), feeds, [self.out0])]

    def __call__(self, path) -> tuple[float, float]:
        import onnx

        sess = session_with_outputs(onnx.load(str(path)))
        return self.compare([r[0] for r in _run(sess, self.feeds, [self.out0])])

    def compare(self, outputs: list[np.ndarray]) -> tuple[float, float]:
        """The error of detect outputs computed elsewhere (e.g. by OpenVINO), one per feed, in order."""
        outs = [_branches(o) for o in outputs]
        return (_err([r[0] for r in self.ref], [o[0] for o in outs]),
                _err([r[1] for r in self.ref], [o[1] for o in outs]))


@dataclass
class LayerSensitivity:
    layer: str
    nodes: list[str]
    op: str
    graphwise_nsr: float
    graphwise_sqnr_db: float
    box_nsr: float
    box_sqnr_db: float
    cls_nsr: float
    cls_sqnr_db: float
    score: float = 0.0
    macs: int = 0  # multiply-accumulates per image (convolutions; 0 for data movement): its cost


@dataclass
class Sensitivity:
    images: int
    full_box_nsr: float  # the fully quantized model, for scale
    full_cls_nsr: float
    layers: list[LayerSensitivity] = field(default_factory=list)  # ranked, most sensitive first

    def ranking(self) -> list[str]:
        return [s.layer for s in self.layers]

    def macs(self, name: str) -> int:
        return next((s.macs for s in self.layers if s.layer == name), 0)

    def nodes_of(self, names) -> list[str]:
        by = {s.layer: s.nodes for s in self.layers}
        return [n for u in names for n in by[u]]

    def to_dict(self) -> dict:
        fix = lambda v: v if not isinstance(v, float) or math.isfinite(v) else ("inf" if v > 0 else "-inf")  # noqa: E731
        return {"images": self.images, "full_box_nsr": self.full_box_nsr, "full_cls_nsr": self.full_cls_nsr,
                "layers": [{k: fix(v) for k, v in asdict(s).items()} for s in self.layers]}

    @classmethod
    def from_dict(cls, d: dict) -> "Sensitivity":
        unfix = lambda v: float(v) if v in ("inf", "-inf") else v  # noqa: E731
        return cls(d["images"], d["full_box_nsr"], d["full_cls_nsr"],
                   [LayerSensitivity(**{k: unfix(v) for k, v in s.items()}) for s in d["layers"]])


def analyze(fp32_path, q_path, feeds: list[dict], exclude: set[str] = frozenset()) -> Sensitivity:
    """Graphwise and layerwise sensitivity of every quantized layer of ``q_path`` on ``feeds``."""
    import onnx

    fp32, q = onnx.load(str(fp32_path)), onnx.load(str(q_path))
    units = {u: nodes for u, nodes in quantized_layers(fp32, q).items() if not exclude & set(nodes)}
    node_by = {n.name: n for n in fp32.graph.node}
    out_of = {u: node_by[nodes[-1]].output[0] for u, nodes in units.items()}  # the unit's output tensor
    out0 = fp32.graph.output[0].name
    tensors = list(dict.fromkeys([out0, *out_of.values()]))
    ref = _run(session_with_outputs(fp32, tensors), feeds, tensors)
    full = _run(session_with_outputs(q, tensors), feeds, tensors)
    ref_box, ref_cls = zip(*(_branches(r[0]) for r in ref))
    full_box, full_cls = zip(*(_branches(r[0]) for r in full))
    result = Sensitivity(len(feeds), _err(ref_box, full_box), _err(ref_cls, full_cls))
    dims = {i.name: list(i.dims) for i in fp32.graph.initializer}
    for u, nodes in units.items():
        k = tensors.index(out_of[u])
        g = _err([r[k] for r in ref], [x[k] for x in full])
        w = dims.get(node_by[u].input[1]) if node_by[u].op_type == "Conv" and len(node_by[u].input) > 1 else None
        macs = int(ref[0][k].size * np.prod(w[1:])) if w else 0  # output elements x (C_in/groups x kh x kw)
        alone = _run(session_with_outputs(keep_quantized(q, fp32, set(nodes))), feeds, [out0])
        box, cls = zip(*(_branches(a[0]) for a in alone))
        b, c = _err(ref_box, box), _err(ref_cls, cls)
        score = b / max(result.full_box_nsr, 1e-30) + c / max(result.full_cls_nsr, 1e-30)
        result.layers.append(LayerSensitivity(u, nodes, node_by[u].op_type, g, to_db(g), b, to_db(b), c, to_db(c), score,
                                              macs))
    result.layers.sort(key=lambda s: -s.score)
    return result


def layer_errors(fp32_path, q_path, feeds: list[dict]) -> dict[str, float]:
    """Each quantized layer's output error (NSR against FP32's, on ``feeds``) inside the whole quantized model:
    the graphwise part of :func:`analyze`, without its layer-alone runs (cheap enough to explain a comparison)."""
    import onnx

    fp32, q = onnx.load(str(fp32_path)), onnx.load(str(q_path))
    units = quantized_layers(fp32, q)
    node_by = {n.name: n for n in fp32.graph.node}
    out_of = {u: node_by[nodes[-1]].output[0] for u, nodes in units.items()}
    tensors = list(dict.fromkeys(out_of.values()))
    if not tensors:
        return {}
    ref = _run(session_with_outputs(fp32, tensors), feeds, tensors)
    got = _run(session_with_outputs(q, tensors), feeds, tensors)
    return {u: _err([r[tensors.index(t)] for r in ref], [x[tensors.index(t)] for x in got]) for u, t in out_of.items()}


def to_db(r: float) -> float:
    """An NSR as signal-to-quantization-noise ratio in dB, 10 log10(1 / NSR): +inf for identical tensors."""
    return math.inf if r == 0 else (-10.0 * math.log10(r) if math.isfinite(r) else -math.inf)


# ---- reports ----------------------------------------------------------------------------------
def write_reports(s: Sensitivity, out_dir: Path, title: str, float_layers=(), top: int = 30) -> list[str]:
    """``sensitivity.json``, ``sensitivity.md`` and ``sensitivity.png`` (ranked bar chart) in ``out_dir``."""
    out_dir = Path(out_dir)
    (out_dir / "sensitivity.json").write_text(json.dumps(s.to_dict(), indent=1))
    chosen = set(float_layers)
    f = lambda v: f"{v:.1f}" if math.isfinite(v) else ("inf" if v > 0 else "-inf")  # noqa: E731
    lines = [f"# Quantization sensitivity: {title}", "",
             f"{s.images} images. Fully quantized model: box SQNR {f(to_db(s.full_box_nsr))} dB, class-score "
             f"SQNR {f(to_db(s.full_cls_nsr))} dB. Graphwise = the layer's output with the whole network quantized; "
             "layerwise = the detections with only that layer quantized (box / class branch). score = the layer's "
             "layerwise NSR as a share of the full model's, box + class. Ranked by score; (float) = left float.", "",
             "| rank | layer | op | graphwise SQNR dB | graphwise NSR | box SQNR dB | class SQNR dB | score |",
             "|---|---|---|---|---|---|---|---|"]
    for i, x in enumerate(s.layers, 1):
        mark = " (float)" if x.layer in chosen else ""
        lines.append(f"| {i} | {x.layer}{mark} | {x.op} | {f(x.graphwise_sqnr_db)} | {x.graphwise_nsr:.3g} | "
                     f"{f(x.box_sqnr_db)} | {f(x.cls_sqnr_db)} | {x.score:.3f} |")
    (out_dir / "sensitivity.md").write_text("\n".join(lines) + "\n")
    _chart(s, out_dir / "sensitivity.png", title, chosen, top)
    return ["sensitivity.json", "sensitivity.md", "sensitivity.png"]


def _chart(s: Sensitivity, path: Path, title: str, chosen: set, top: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = s.layers[:top]
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(rows) + 1.6))
    y = np.arange(len(rows))
    box = [x.box_nsr / max(s.full_box_nsr, 1e-30) for x in rows]
    cls = [x.cls_nsr / max(s.full_cls_nsr, 1e-30) for x in rows]
    ax.barh(y, box, color="#4c72b0", label="box branch")
    ax.barh(y, cls, left=box, color="#dd8452", label="class-score branch")
    ax.set_yticks(y, [x.layer + (" [float]" if x.layer in chosen else "") for x in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("output NSR with only this layer INT8, as a share of the fully INT8 model's (box + class)")
    ax.set_title(f"{title}: top {len(rows)} of {len(s.layers)} layers ([float] = left float)", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
