"""Explaining, at compile time: the head behind an If in the served graph, and its proof.

The served graph gives the last feature map (FEATURES) beside its probabilities; the
head run on each cell alone (compiler/explanation.py's CellScores, exported on its own)
becomes the then-branch of an `If(EXPLAIN)` node, so one file and one session serve
both: ONNX Runtime runs every node of a graph whatever outputs are fetched, but only
the branch an If takes, so a plain prediction doesn't pay for explaining. The branch
reads the feature map and the weights it shares with the network from the outer graph
(by content: fastai's heads export under generated names), so the file grows by a few
KB. INT8 quantizes the graph without the branch (`detach`) and attaches it again after:
the head stays fp32.

The proof: on every parity file, the map the server computes from the compiled graph
(app/inference/explanation.py) equals Recipro-CAM computed with torch on the learner
itself (its own network, with its pooling's input replaced by each masked map, on the
image as fastai loads it), within TOLERANCE, both the raw scores and the normalised map.
"""

import numpy as np
import onnx
import torch
from fastai.learner import Learner
from onnx import TensorProto, helper, numpy_helper

from app.inference.explanation import METHOD, normalised
from app.inference.images import ANY_SIZE
from app.inference.model import CELLS, EXPLAIN, FEATURES, Model
from app.kinds import Kind, kind_of
from compiler.explanation import Split, find_split, recipro_cam_scores
from compiler.learner import CompileError
from compiler.parity import TOLERANCE, parity_files
from compiler.pipeline import Translation

PREFIX = "explain/"  # the branch's own names: none may shadow the outer graph's


def split_of(learn: Learner, kind: Kind, example: torch.Tensor) -> Split | str:
    """Where the network splits, or one line saying why its answers can't be explained."""
    if not kind.explains:
        return f"a {kind.name} model's answer is already a place in the photo"
    return find_split(learn.model, example)


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
    cells = head.output[0]
    shape = [d.dim_param or d.dim_value for d in cells.type.tensor_type.shape.dim]

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


def served_map(model: Model, data: bytes, index: int | None = None) -> tuple[int, np.ndarray]:
    """The target (the kind's default for this image, unless `index`) and its scores
    [rows, columns] as the server computes them from the compiled graph."""
    kind = kind_of(model.info)
    output, cells = model.explain([model.preprocess(model.decode(data, ANY_SIZE))])
    target = kind.explain_target(output[0], {})[0] if index is None else index
    return target, cells[0][..., target]


def check_explanation(
    learn: Learner, translation: Translation, model: Model, split: Split
) -> dict[str, object]:
    """The explanation's record for the compiled `model`; CompileError when its maps
    don't match torch's Recipro-CAM on the learner."""
    activation = getattr(learn.loss_func, "activation", None) or (lambda x: x.softmax(-1))
    raw, normal, worst = 0.0, 0.0, ""
    for probe in parity_files():
        target, served = served_map(model, probe.file.read_bytes())
        image = translation.image_type.create(probe.reference)
        batch = learn.dls.test_dl([image], num_workers=0).one_batch()[0]
        expected = recipro_cam_scores(learn.model, split, batch, target, activation)
        diff = float(np.abs(served - expected).max())
        normal_diff = float(np.abs(normalised(served) - normalised(expected)).max())
        if max(diff, normal_diff) > max(raw, normal):
            worst = probe.name
        raw, normal = max(raw, diff), max(normal, normal_diff)
    if max(raw, normal) > TOLERANCE:
        raise CompileError(
            f"the compiled model's explanations don't match Recipro-CAM computed with torch "
            f"on the learner to {TOLERANCE:g}: largest difference {max(raw, normal):.2g} on "
            f"{worst!r}; compile with --no-explain to serve it without them"
        )
    return {
        "method": METHOD,
        "split": {
            "module": split.name,
            "pooling": type(split.pool).__name__,
            "channels": split.channels,
            "cells": [split.height, split.width],
        },
        "mask": "one cell kept (the authors' code's default)",
        "score": "the served activation's (probabilities, or the values)",
        "parity": {
            "images": len(parity_files()),
            "tolerance": TOLERANCE,
            "max_abs_diff": raw,
            "max_abs_diff_normalised": normal,
            "worst_image": worst,
            "reference": "Recipro-CAM with torch on the learner's own network",
        },
        "int8": None,
    }


def int8_agreement(fp32: Model, int8: Model, files: list) -> dict[str, object]:
    """How closely the INT8 file's maps follow the fp32 file's on held-out photos, each
    for fp32's target: how often the peak cell is the same, and the largest difference
    between the normalised maps."""
    same, worst = 0, 0.0
    for file in files:
        data = file.read_bytes()
        target, theirs = served_map(fp32, data)
        _, ours = served_map(int8, data, target)
        same += int(np.argmax(ours) == np.argmax(theirs))
        worst = max(worst, float(np.abs(normalised(ours) - normalised(theirs)).max()))
    return {"images": len(files), "same_peak": same, "max_abs_diff_normalised": worst}
