"""The explaining head behind an If in the served graph (compiling's part of issue 26).

The served graph gives the last feature map (FEATURES) beside its probabilities; the
head run on each cell alone (split.py's CellScores, exported on its own) becomes the
then-branch of an `If(EXPLAIN)` node, so one file and one session serve both: ONNX
Runtime runs every node of a graph whatever outputs are fetched (onnxruntime #16483), but
only the branch an If takes, so a plain prediction doesn't pay for explaining. The branch
reads the feature map and the weights it shares with the network from the outer graph
(by content: fastai's heads export under generated names), so the file grows by a few
KB. INT8 quantizes the graph without the branch (`detach`) and attaches it again after:
the head stays fp32.
"""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from app.inference.model import CELLS, EXPLAIN, FEATURES

PREFIX = "explain/"  # the branch's own names: none may shadow the outer graph's


def _key(tensor: TensorProto) -> tuple[int, tuple[int, ...], bytes]:
    return tensor.data_type, tuple(tensor.dims), numpy_helper.to_array(tensor).tobytes()


def _prefixed(head: onnx.GraphProto) -> onnx.GraphProto:
    """The head's graph with every name but its input and output under PREFIX."""
    keep = {FEATURES, CELLS, ""}

    def name(value: str) -> str:
        return value if value in keep or value.startswith(PREFIX) else PREFIX + value

    for node in head.node:
        node.name = name(node.name or node.output[0])
        node.input[:] = [name(value) for value in node.input]
        node.output[:] = [name(value) for value in node.output]
    for initializer in head.initializer:
        initializer.name = name(initializer.name)
    return head


def attach(graph: bytes, head: onnx.GraphProto) -> bytes:
    """`graph` (with FEATURES as an output) with `head` (FEATURES in, CELLS out) behind
    If(EXPLAIN); the head's initializers equal to the graph's are read from it."""
    proto = onnx.load_from_string(graph)
    head = _prefixed(head)
    outer = {_key(init): init.name for init in proto.graph.initializer}
    renamed, own = {}, []
    for init in head.initializer:
        found = outer.get(_key(init))
        if found is None:
            own.append(init)
        else:
            renamed[init.name] = found
    nodes = list(head.node)
    for node in nodes:
        node.input[:] = [renamed.get(value, value) for value in node.input]
    shape = ["batch", "rows", "columns", "outputs"]

    def branch(name: str, branch_nodes: list[onnx.NodeProto], inits: list) -> onnx.GraphProto:
        out = helper.make_tensor_value_info(f"{PREFIX}{name}", TensorProto.FLOAT, shape)
        return helper.make_graph(branch_nodes, f"{PREFIX}{name}", [], [out], inits)

    for node in nodes:
        node.output[:] = [f"{PREFIX}then" if v == CELLS else v for v in node.output]
    empty = numpy_helper.from_array(np.zeros((0, 0, 0, 0), np.float32))
    nothing = helper.make_node("Constant", [], [f"{PREFIX}else"], value=empty)
    proto.graph.node.append(
        helper.make_node(
            "If",
            [EXPLAIN],
            [CELLS],
            name=f"{PREFIX}if",
            then_branch=branch("then", nodes, own),
            else_branch=branch("else", [nothing], []),
        )
    )
    proto.graph.input.append(helper.make_tensor_value_info(EXPLAIN, TensorProto.BOOL, []))
    outputs = [out for out in proto.graph.output if out.name != FEATURES]
    outputs.append(helper.make_tensor_value_info(CELLS, TensorProto.FLOAT, shape))
    del proto.graph.output[:]
    proto.graph.output.extend(outputs)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def detach(graph: bytes) -> tuple[bytes, onnx.GraphProto | None]:
    """`attach` undone: the graph with FEATURES as an output and no If, and the head as a
    graph of its own (with its own copies of the weights it read from the outer graph);
    None for a graph that doesn't explain."""
    proto = onnx.load_from_string(graph)
    found = [node for node in proto.graph.node if node.op_type == "If" and node.input[0] == EXPLAIN]
    if not found:
        return graph, None
    node = found[0]
    then = next(attr.g for attr in node.attribute if attr.name == "then_branch")
    outer = {init.name: init for init in proto.graph.initializer}
    used = {value for n in then.node for value in n.input}
    nodes = list(then.node)
    for n in nodes:
        n.output[:] = [CELLS if v == then.output[0].name else v for v in n.output]
    inits = list(then.initializer) + [outer[name] for name in sorted(used) if name in outer]
    features = helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, None)
    cells = helper.make_tensor_value_info(CELLS, TensorProto.FLOAT, None)
    head = helper.make_graph(nodes, "head", [features], [cells], inits)
    proto.graph.node.remove(node)
    inputs = [value for value in proto.graph.input if value.name != EXPLAIN]
    del proto.graph.input[:]
    proto.graph.input.extend(inputs)
    outputs = [value for value in proto.graph.output if value.name != CELLS]
    outputs.append(helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, None))
    del proto.graph.output[:]
    proto.graph.output.extend(outputs)
    return proto.SerializeToString(), head
