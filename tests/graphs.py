"""Comparing two compiled graphs the way they can be compared across x86-64 CPUs.

Compiling folds constants with torch's CPU kernels (batch norm into the convolution
before it: a square root, a division, a product and a difference per channel), and
those kernels round differently on different CPUs: torch's square root comes from
MKL, whose code path depends on the processor. Measured on the default model, torch's
square root differs from the correctly rounded one by up to 1 ULP, which moves the
folded weights by up to 2 ULPs (2.4e-7 relative) and the folded biases, where the
difference cancels, by up to 1.6e-7 of the tensor's largest magnitude. So two compiles
of one export have the same graph in every byte but the float constants, and those are
equal within FLOAT_TOLERANCE of each tensor's largest magnitude (about 6x the measured
spread). Everything else (nodes, names, shapes, types, integer constants, opsets) must
be identical.
"""

import numpy as np
import onnx
from onnx import numpy_helper

FLOAT_TOLERANCE = 1e-6  # of each float tensor's largest magnitude


def _float_tensors(proto: onnx.ModelProto) -> list[onnx.TensorProto]:
    """The graph's float constants: initializers and Constant nodes' values."""
    tensors = list(proto.graph.initializer)
    for node in proto.graph.node:
        tensors += [attribute.t for attribute in node.attribute if attribute.HasField("t")]
    return [t for t in tensors if numpy_helper.to_array(t).dtype.kind == "f"]


def _without_floats(proto: onnx.ModelProto) -> tuple[bytes, list[np.ndarray]]:
    """The graph's bytes with every float constant's data cleared, and those constants."""
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    del proto.metadata_props[:]
    values = []
    for tensor in _float_tensors(proto):
        values.append(numpy_helper.to_array(tensor))
        tensor.ClearField("raw_data")
        tensor.ClearField("float_data")
    return proto.SerializeToString(), values


def graph_differences(fresh: onnx.ModelProto, shipped: onnx.ModelProto) -> list[str]:
    """What differs between two graphs beyond float rounding; empty when they agree."""
    fresh_rest, fresh_values = _without_floats(fresh)
    shipped_rest, shipped_values = _without_floats(shipped)
    if fresh_rest != shipped_rest:
        return ["the graphs differ in more than their float constants"]
    differences = []
    for index, (a, b) in enumerate(zip(fresh_values, shipped_values, strict=True)):
        scale = float(np.abs(b).max()) if b.size else 0.0
        worst = float(np.abs(a.astype(np.float64) - b).max()) if b.size else 0.0
        if worst > FLOAT_TOLERANCE * scale:
            differences.append(
                f"float constant {index}: differs by {worst:.3g}, over "
                f"{FLOAT_TOLERANCE:g} of its largest magnitude {scale:.3g}"
            )
    return differences
