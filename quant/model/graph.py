"""Structure of an exported YOLO ONNX graph, and "what stays float" as a value.

The box decode at the end of the detection head (DFL softmax, box arithmetic, concat with the
class sigmoid) must stay float: quantized, box pixels and class scores share one INT8 scale and
mAP collapses. Both the decode and the head are found from the graph, not from hard-coded names.
"""

from __future__ import annotations

import fnmatch
import re
from collections import defaultdict
from dataclasses import dataclass

from quant.util.errors import QuantError

_PASS_THROUGH = {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten"}


def load_onnx(path):
    """Load and check an ONNX model; one-line QuantError when it is corrupt or invalid."""
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001  (protobuf DecodeError, ValidationError, OSError)
        raise QuantError(f"ONNX model '{path}' is corrupt or invalid ({type(e).__name__}: {e})") from None
    return model


def float_tensors(model, initializers: bool = False) -> list[str]:
    """Names of the FP32 activations of an ONNX model (non-constant graph inputs and node outputs whose
    inferred type is float), in graph order; with ``initializers`` the FP32 initializers too."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in
             list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    inits = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    names += [o for n in model.graph.node for o in n.output if o]
    out = [n for n in dict.fromkeys(names) if types.get(n) == onnx.TensorProto.FLOAT]
    if initializers:
        out += [i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT]
    return out


def _producers(model) -> dict[str, object]:
    return {o: n for n in model.graph.node for o in n.output}


def _is_distribution_conv(node, producers) -> bool:
    """The DFL 'conv' is a fixed expectation over a softmax: its input comes from a Softmax."""
    x = producers.get(node.input[0])
    while x is not None and x.op_type in _PASS_THROUGH:
        x = producers.get(x.input[0])
    return x is not None and x.op_type == "Softmax"


def decode_nodes(model) -> list[str]:
    """Nodes between the head's last learned convolutions and the graph outputs (box decode)."""
    producers = _producers(model)
    seen: dict[str, None] = {}
    stack = [producers[o.name] for o in model.graph.output if o.name in producers]
    while stack:
        node = stack.pop()
        if node.name in seen:
            continue
        if node.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul") and not _is_distribution_conv(node, producers):
            continue  # a learned layer: the decode starts after it
        seen[node.name] = None
        stack.extend(producers[i] for i in node.input if i in producers)
    if not seen:
        raise QuantError("ONNX graph has no nodes between its outputs and the head's convolutions")
    return list(seen)


_SCOPE = re.compile(r"^/?(model\.\d+)/")


def head_scope(model) -> str:
    """Module scope of the detection head, e.g. 'model.22' for YOLOv8, 'model.23' for YOLO11."""
    counts: dict[str, int] = defaultdict(int)
    for name in decode_nodes(model):
        m = _SCOPE.match(name)
        if m:
            counts[m.group(1)] += 1
    if not counts:
        raise QuantError("cannot find the detection head: ONNX node names carry no 'model.N' module scope")
    return max(counts, key=counts.get)


def head_nodes(model) -> list[str]:
    scope = head_scope(model)
    return [n.name for n in model.graph.node if _SCOPE.match(n.name) and _SCOPE.match(n.name).group(1) == scope]


def conv_layers(model) -> list[str]:
    """Learned convolution nodes, in graph order: the units of quantization sensitivity."""
    producers = _producers(model)
    return [n.name for n in model.graph.node if n.op_type == "Conv" and not _is_distribution_conv(n, producers)]


def silu_inputs(model) -> dict[str, str]:
    """Pre-activation tensors of SiLU: {x: SiLU(x)} for every x = Conv(...) read by a Sigmoid and by a
    Mul(x, Sigmoid(x)) (how SiLU is exported to ONNX)."""
    consumers: dict[str, list] = defaultdict(list)
    for n in model.graph.node:
        for i in n.input:
            consumers[i].append(n)
    out = {}
    for n in model.graph.node:
        if n.op_type != "Conv":
            continue
        x = n.output[0]
        sig = [c.output[0] for c in consumers[x] if c.op_type == "Sigmoid"]
        mul = [c for c in consumers[x] if c.op_type == "Mul" and any(s in c.input for s in sig)]
        if sig and mul:
            out[x] = mul[0].output[0]
    return out


def int8_conv_counts(model, int8_convs) -> dict:
    """How many of the model's learned convolutions are among ``int8_convs`` (the rest stay float)."""
    convs = conv_layers(model)
    return {"convs": len(convs), "int8_convs": len(set(convs) & set(int8_convs))}


# ops that move or select a quantized tensor's values without computing new ones (inputs, outputs:
# the same INT8 grid): a convolution behind them reads INT8 (ONNX and OpenVINO op names)
QUANTIZATION_TRANSPARENT = frozenset({"Split", "VariadicSplit", "Concat", "Reshape", "MaxPool", "Transpose", "Slice",
                                      "StridedSlice", "Squeeze", "Unsqueeze", "Flatten", "Cast", "Convert"})


def reads_quantized(node, kind, sources, quantizer: str) -> bool:
    """Whether ``node``'s output holds quantized values: it is a ``quantizer`` op, or a
    :data:`QUANTIZATION_TRANSPARENT` op over such outputs (every input of a Concat, the data input of the
    rest). ``kind(node)`` names an op's type, ``sources(node)`` lists its producers (None: none); the same
    rule for an ONNX graph and an OpenVINO model."""
    if node is None:
        return False
    op = kind(node)
    if op == quantizer:
        return True
    inputs = sources(node) if op == "Concat" else sources(node)[:1]
    return op in QUANTIZATION_TRANSPARENT and all(reads_quantized(n, kind, sources, quantizer) for n in inputs)


def qdq_int8_convs(qmodel) -> list[str]:
    """Convolutions of a Q/DQ model that read INT8: weight and input both from a DequantizeLinear, the
    input possibly through :data:`QUANTIZATION_TRANSPARENT` ops. What the built model does, whatever
    float set it was asked for."""
    producers = _producers(qmodel)

    def quantized(tensor: str) -> bool:
        return reads_quantized(producers.get(tensor), lambda n: n.op_type,
                               lambda n: [producers.get(t) for t in n.input], "DequantizeLinear")

    return [n.name for n in qmodel.graph.node if n.op_type == "Conv" and quantized(n.input[0]) and quantized(n.input[1])]


@dataclass(frozen=True)
class FloatScope:
    """Which nodes stay float in an INT8 model (cf. NNCF's IgnoredScope), as a value.

    ``presets``: 'decode' (box decode) and/or 'head' (the whole detection head), found from the
    graph; ``names``: exact node names; ``patterns``: fnmatch patterns on node names;
    ``types``: op types.
    """

    presets: tuple[str, ...] = ("decode",)
    names: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    types: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {k: list(v) for k, v in self.__dict__.items() if v}

    def resolve(self, model) -> list[str]:
        chosen: dict[str, None] = {}
        for preset in self.presets:
            if preset not in PRESETS:
                raise QuantError(f"unknown float-scope preset '{preset}' (choose from {', '.join(PRESETS)})")
            chosen.update(dict.fromkeys(PRESETS[preset](model)))
        all_names = [n.name for n in model.graph.node]
        missing = [n for n in self.names if n not in set(all_names)]
        if missing:
            raise QuantError(f"float scope names nodes that are not in the model: {', '.join(missing[:3])}")
        chosen.update(dict.fromkeys(self.names))
        for n in model.graph.node:
            if n.op_type in self.types or any(fnmatch.fnmatchcase(n.name, p) for p in self.patterns):
                chosen[n.name] = None
        return list(chosen)


PRESETS = {"decode": decode_nodes, "head": head_nodes}


def remove_qdq_before(model, node_names) -> int:
    """Feed the named nodes the float tensor instead of its Q->DQ copy; drop Q/DQ left unused.

    ``quantize_static`` quantizes a quantized conv's output even when every consumer is excluded,
    so the float decode would start from INT8 logits. Returns the number of rewired inputs.
    """
    targets = set(node_names)
    producers = _producers(model)
    rewired = 0
    for node in model.graph.node:
        if node.name not in targets:
            continue
        for k, name in enumerate(node.input):
            dq = producers.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producers.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear":
                continue  # a quantized initializer, not an activation
            node.input[k] = q.input[0]
            rewired += 1
    prune_unused(model)
    return rewired


def prune_unused(model) -> None:
    """Drop Q/DQ nodes whose outputs nobody reads, then initializers nobody reads (in place)."""
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    while True:
        dead = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in used for o in n.output)]
        if not dead:
            break
        for n in dead:
            model.graph.node.remove(n)
        used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    for init in [i for i in model.graph.initializer if i.name not in used]:  # their scales and zero points
        model.graph.initializer.remove(init)
