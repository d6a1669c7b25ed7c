"""FP32 ONNX -> FP16 ONNX with a float32 island (what TensorRT 11 builds as a strongly typed FP16
engine; ModelOpt's AutoCast does the same job).

Every node outside ``keep_fp32`` computes in FP16: its float initializers are stored as FP16 and
Cast nodes are inserted wherever a tensor crosses between the FP16 and FP32 regions. Graph inputs
and outputs stay FP32, so callers feed and read the same tensors as the FP32 model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from quant.build.context import BuildContext
from quant.model.graph import decode_nodes, float_tensors

# (op type, input index) that the ONNX spec requires to stay float32 whatever the data type is
_FP32_INPUTS = {("Resize", 1), ("Resize", 2), ("Upsample", 1)}
# ops whose float outputs are not computed from their inputs' data type (left in FP32)
_FP32_OPS = {"Constant", "ConstantOfShape", "Shape", "Size", "RandomNormal", "RandomUniform", "Range"}


def build(variant, ctx: BuildContext, out_dir: Path):
    """The FP16 ONNX of the variant's source as ``out_dir/model.onnx``, the box decode kept FP32."""
    model = onnx.load(str(ctx.artifact(variant.source)))
    keep = decode_nodes(model)
    out = out_dir / "model.onnx"
    onnx.save(convert_to_fp16(model, keep_fp32=keep), str(out))
    return out, {"fp32_nodes": keep}


QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def mixed(variant, ctx: BuildContext, path: Path) -> tuple[Path, dict]:
    """The Q/DQ INT8 ONNX at ``path`` with everything outside its Q/DQ pairs in FP16, the box decode of the
    variant's source kept FP32: what TensorRT's INT8 engines run (:func:`mixed_int8_fp16`)."""
    keep = decode_nodes(onnx.load(str(ctx.artifact(variant.source))))
    return path, mixed_int8_fp16(path, keep)


def mixed_int8_fp16(path: Path, keep_fp32=()) -> dict:
    """Rewrite a Q/DQ INT8 ONNX in place so that everything outside the Q/DQ pairs computes in FP16 (what
    TensorRT runs fast), ``keep_fp32`` (the box decode) excepted. Opset 13 defines QuantizeLinear and
    DequantizeLinear on FP32 only, so they stay FP32 with Casts around them."""
    model = onnx.load(str(path))
    for i, n in enumerate(model.graph.node):  # Q/DQ nodes are kept by name: every one needs one
        n.name = n.name or f"{n.op_type}_{i}"
    qdq = [n.name for n in model.graph.node if n.op_type in QDQ_OPS]
    mixed = convert_to_fp16(model, keep_fp32=list(keep_fp32) + qdq)
    onnx.save(mixed, str(path))
    return {"fp32_nodes": list(keep_fp32), "float_precision": "fp16"}


def convert_to_fp16(model: onnx.ModelProto, keep_fp32=()) -> onnx.ModelProto:
    model = onnx.ModelProto.FromString(model.SerializeToString())  # work on a copy
    floats = set(float_tensors(model, initializers=True))
    keep = set(keep_fp32)
    half_nodes = {n.name for n in model.graph.node if n.name not in keep and n.op_type not in _FP32_OPS}
    inits = {i.name: i for i in model.graph.initializer}
    # which tensors are produced in FP16
    half_tensors = {o for n in model.graph.node if n.name in half_nodes for o in n.output if o in floats}

    def wants_half(node, k, name) -> bool:
        return node.name in half_nodes and name in floats and (node.op_type, k) not in _FP32_INPUTS

    # initializers read only as FP16 become FP16; mixed readers get a cast copy below
    readers: dict[str, set[bool]] = {}
    for n in model.graph.node:
        for k, name in enumerate(n.input):
            if name in inits and name in floats:
                readers.setdefault(name, set()).add(wants_half(n, k, name))
    for name, modes in readers.items():
        if modes == {True}:
            arr = numpy_helper.to_array(inits[name]).astype(np.float16)
            inits[name].CopyFrom(numpy_helper.from_array(arr, name))
            half_tensors.add(name)

    casts: dict[tuple[str, int], str] = {}
    new_nodes = []

    def cast(name: str, to: int) -> str:
        key = (name, to)
        if key not in casts:
            out = f"{name}__to_{'fp16' if to == TensorProto.FLOAT16 else 'fp32'}"
            new_nodes.append(helper.make_node("Cast", [name], [out], to=to, name=f"{out}__cast"))
            casts[key] = out
        return casts[key]

    for n in model.graph.node:
        for k, name in enumerate(n.input):
            if not name or name not in floats:
                continue
            want, have = wants_half(n, k, name), name in half_tensors
            if want != have:
                n.input[k] = cast(name, TensorProto.FLOAT16 if want else TensorProto.FLOAT)
        new_nodes.append(n)
    for out in model.graph.output:  # outputs stay FP32
        if out.name in half_tensors:
            src = out.name + "__fp16"
            for n in new_nodes:
                n.output[:] = [src if o == out.name else o for o in n.output]
                n.input[:] = [src if i == out.name else i for i in n.input]
            new_nodes.append(helper.make_node("Cast", [src], [out.name], to=TensorProto.FLOAT, name=f"{out.name}__cast"))
    # a node must come after the casts it reads: topological order by construction below
    del model.graph.node[:]
    model.graph.node.extend(_toposort(new_nodes, {i.name for i in model.graph.input} | set(inits)))
    del model.graph.value_info[:]  # stale FP32 types; recomputed by shape inference
    return onnx.shape_inference.infer_shapes(model)


def _toposort(nodes, available: set[str]):
    ready, out = set(available) | {""}, []
    pending = list(nodes)
    while pending:
        progressed = []
        for n in pending:
            if all(i in ready for i in n.input):
                out.append(n)
                ready.update(n.output)
                progressed.append(id(n))
        if not progressed:
            raise ValueError("FP16 conversion produced a graph with a cycle or a missing input")
        pending = [n for n in pending if id(n) not in set(progressed)]
    return out
