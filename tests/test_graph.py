import onnx
import pytest

from quant.util.errors import QuantError
from quant.model.graph import FloatScope, conv_layers, decode_nodes, head_nodes, head_scope, qdq_int8_convs


@pytest.fixture(scope="module")
def graph(tiny_onnx):
    return onnx.load(str(tiny_onnx))


def test_decode_is_everything_after_the_last_learned_convs(graph):
    by_name = {n.name: n for n in graph.graph.node}
    decode = decode_nodes(graph)
    ops = {by_name[n].op_type for n in decode}
    assert {"Softmax", "Sigmoid", "Concat"} <= ops  # DFL softmax, class sigmoid, final concat
    assert by_name[decode[0]].output[0] == graph.graph.output[0].name  # starts at the output
    convs = [n for n in decode if by_name[n].op_type == "Conv"]
    assert len(convs) == 1 and "dfl" in convs[0]  # the fixed DFL expectation, no learned conv
    assert not set(decode) & set(conv_layers(graph))


def test_head_found_from_structure(graph):
    assert head_scope(graph) == "model.22"
    head = head_nodes(graph)
    assert set(decode_nodes(graph)) <= set(head)
    assert sum(graph.graph.node[i].op_type == "Conv" for i in range(len(graph.graph.node))
               if graph.graph.node[i].name in set(head)) == 3 * 2 * 3 + 1  # 3 levels x 2 branches x 3 convs + DFL


def test_yolo11_head_is_found_too(tmp_path):
    from quant.model.weights import export_onnx
    from quant.util.offline import ultralytics_yolo

    pt = tmp_path / "y11.pt"
    ultralytics_yolo()("yolo11n.yaml", task="detect").save(str(pt))
    g = onnx.load(str(export_onnx(pt, tmp_path / "y11.onnx", 64)))
    assert head_scope(g) == "model.23"
    assert not set(decode_nodes(g)) & set(conv_layers(g))


def test_float_scope_is_a_value(graph):
    names = [n.name for n in graph.graph.node]
    scope = FloatScope(presets=(), names=(names[0],), patterns=("/model.2/*",), types=("MaxPool",))
    chosen = scope.resolve(graph)
    assert names[0] in chosen
    assert all(n in chosen for n in names if n.startswith("/model.2/"))
    assert any(n.startswith("/model.9/") for n in chosen)  # SPPF's MaxPools by type
    assert FloatScope(presets=("decode",)).resolve(graph) == decode_nodes(graph)
    assert scope.to_dict() == {"names": [names[0]], "patterns": ["/model.2/*"], "types": ["MaxPool"]}


def test_float_scope_rejects_unknown_names(graph):
    with pytest.raises(QuantError, match="not in the model"):
        FloatScope(presets=(), names=("/nope/Conv",)).resolve(graph)
    with pytest.raises(QuantError, match="unknown float-scope preset"):
        FloatScope(presets=("neck",)).resolve(graph)


def test_int8_convs_are_counted_in_the_built_model():
    """A convolution reads INT8 when its weight and its input come from a DequantizeLinear, the input
    possibly through ops that only move values (Split, Concat of quantized inputs); not through an Add."""
    from onnx import helper

    def conv(name, x, quantized_weight=True):
        w = f"{name}.w"
        nodes = [helper.make_node("DequantizeLinear", [f"{w}.q", "s", "z"], [w], name=f"{w}.dq")] if quantized_weight else []
        return nodes + [helper.make_node("Conv", [x, w], [f"{name}.y"], name=name)]

    def qdq(x):
        return [helper.make_node("QuantizeLinear", [x, "s", "z"], [f"{x}.q"], name=f"{x}.qn"),
                helper.make_node("DequantizeLinear", [f"{x}.q", "s", "z"], [f"{x}.dq"], name=f"{x}.dqn")]

    nodes = (qdq("x") + conv("a", "x.dq") + qdq("a.y")
             + [helper.make_node("Split", ["a.y.dq"], ["s0", "s1"], name="split")] + conv("b", "s1")
             + [helper.make_node("Add", ["s0", "a.y.dq"], ["sum"], name="add")] + conv("c", "sum")
             + conv("d", "x.dq", quantized_weight=False)
             + [helper.make_node("Concat", ["s0", "a.y.dq"], ["cat"], name="cat", axis=1)] + conv("e", "cat")
             + [helper.make_node("Concat", ["s0", "sum"], ["cat2"], name="cat2", axis=1)] + conv("f", "cat2"))
    model = helper.make_model(helper.make_graph(nodes, "g", [], []))
    assert qdq_int8_convs(model) == ["a", "b", "e"]
