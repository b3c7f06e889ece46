"""INT8: ONNX Runtime's static quantization of a compiled graph, checked against fp32.

Static, never dynamic: dynamic quantization measures activation ranges per
request and is known to wreck depthwise networks like the default one. Weights
are quantized per channel to int8, activations per tensor to uint8, as QDQ
pairs that ONNX Runtime fuses into integer kernels; ranges come from running
the calibration photos (MinMax). Only the network is quantized, less its two
ends: the graph's uint8-to-float scaling, normalisation and final activation,
the stem (layers at half the input's resolution or more) and the last layer,
whose 8-bit logits would cost the probabilities their resolution, all stay
float. `reduce_range` (7-bit weights, which ONNX Runtime suggests for CPUs
without VNNI) is off: where the model is unsure it kept half as many answers.
docs/models.md has the measurements behind each choice.

The result is checked on held-out photos, none of them a calibration photo:
each as it is and mirrored, through the server's own decoding and
preprocessing. Compiling refuses below MIN_AGREEMENT of the same answers as
fp32 (the top class, or a multi-label model's passing labels).
"""

import importlib.util
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from PIL import Image

from app.inference.images import ANY_SIZE, FORMAT_NAMES, SUFFIXES
from app.inference.model import Model
from app.kinds import Kind, kind_of
from app.settings import EXAMPLES_DIR
from compiler.learner import CompileError

CALIBRATION = EXAMPLES_DIR  # the default calibration photos: the page's examples
MIN_AGREEMENT = 0.95
NETWORK = "/network/"  # compiler/export.py's name for the learner's model inside the graph


def photos(folder: Path | None) -> list[Path]:
    """The images in `folder` and below, in a stable order; for None, the held-out
    default: the 20 ImageNet validation photos in foolbox's wheel (found, not imported)."""
    if folder is None:
        spec = importlib.util.find_spec("foolbox")
        if spec is None or spec.origin is None:
            raise CompileError("no held-out photos: pass --holdout DIR, or install foolbox")
        return sorted((Path(spec.origin).parent / "data").glob("imagenet_*.jpg"))
    found = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not found:
        raise CompileError(f"{folder} has no images ({FORMAT_NAMES}) in it")
    return found


def _head(proto: onnx.ModelProto) -> set[str]:
    """The network's last layer, whose outputs are the logits: quantized to 8 bits, they
    moved the default model's probabilities by up to 0.48. It is one small layer."""
    consumed_outside = {
        name
        for node in proto.graph.node
        if not node.name.startswith(NETWORK)
        for name in node.input
    }
    return {
        node.name
        for node in proto.graph.node
        if node.name.startswith(NETWORK) and consumed_outside & set(node.output)
    }


def _stem(proto: onnx.ModelProto, size: tuple[int, int] | None) -> set[str]:
    """The convolutions whose output is at half the input's resolution or more: a CNN's
    stem, where maps are large and channels few, and 8-bit activations lose the most.
    They stay float. (Unknown for a model that takes images at their own size.)"""
    if size is None:
        return set()
    shapes = {
        value.name: [dim.dim_value for dim in value.type.tensor_type.shape.dim]
        for value in proto.graph.value_info
    }
    return {
        node.name
        for node in proto.graph.node
        if node.op_type == "Conv"
        and len(shapes.get(node.output[0], [])) == 4
        and shapes[node.output[0]][2] * 2 >= size[1]
    }


def _inputs(model: Model, paths: list[Path], mirrored: bool) -> Iterator[tuple[str, np.ndarray]]:
    """Each photo decoded and preprocessed as the server does (and mirrored too)."""
    for path in paths:
        try:
            image = model.decode(path.read_bytes(), ANY_SIZE)
        except Exception as exc:  # noqa: BLE001 - ApiError and OSError alike: say which file
            raise CompileError(f"cannot read the photo {path}: {exc}") from None
        yield path.name, model.preprocess(image)
        if mirrored:
            mirror = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            yield f"{path.name} mirrored", model.preprocess(mirror)


class _Calibration(CalibrationDataReader):
    def __init__(self, input_name: str, inputs: list[np.ndarray]) -> None:
        self._feeds = iter([{input_name: x[np.newaxis]} for x in inputs])

    def get_next(self) -> dict | None:
        return next(self._feeds, None)


def agreement_of(kind: Kind, pairs: Iterable[tuple[str, np.ndarray, np.ndarray]]) -> dict:
    """How often each (name, expected, got) pair gives the same decoded answer, as `kind`
    compares them, and the largest difference: INT8 against fp32, reduced-scale decoding
    against exact (compiler/decoding.py)."""
    same, worst, names, changed = 0, (0.0, ""), [], []
    for name, expected, got in pairs:
        names.append(name)
        worst = max(worst, (float(np.abs(expected - got).max()), name))
        if kind.agrees(kind.decide(expected), kind.decide(got)):
            same += 1
        else:
            changed.append(name)
    return {
        "images": len(names),
        "same_labels": same,
        "agreement": same / len(names),
        "max_abs_diff": worst[0],
        "worst_image": worst[1],
        "changed": changed,
        "set": names,
    }


def agreement(fp32: Model, int8: Model, holdout: list[Path]) -> dict:
    """How often the INT8 model gives fp32's answer on the held-out photos."""
    pairs = (
        (name, fp32.infer([x])[0], int8.infer([x])[0])
        for name, x in _inputs(fp32, holdout, mirrored=True)
    )
    return agreement_of(kind_of(fp32.info), pairs)


def quantize(
    fp32_path: Path,
    calibration: Path,
    holdout: Path | None,
    load: Callable[[bytes], Model],
) -> tuple[bytes, dict]:
    """The INT8 graph for the compiled fp32 file, and its quantization figures.
    `load` turns graph bytes into a Model carrying the same metadata."""
    fp32 = Model.load(fp32_path)
    calibration_photos, holdout_photos = photos(calibration), photos(holdout)
    overlap = {p.resolve() for p in calibration_photos} & {p.resolve() for p in holdout_photos}
    if overlap:
        raise CompileError(
            f"the held-out photos must not be calibration photos: {sorted(p.name for p in overlap)}"
        )
    inputs = [x for _, x in _inputs(fp32, calibration_photos, mirrored=False)]
    with tempfile.TemporaryDirectory() as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32_path), str(prepared))
        proto = onnx.load(prepared)
        kept_float = _stem(proto, fp32.input_size) | _head(proto)
        network = [n.name for n in proto.graph.node if n.name.startswith(NETWORK)]
        quantize_static(
            str(prepared),
            str(quantized),
            _Calibration(fp32.session.get_inputs()[0].name, inputs),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=False,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_quantize=[name for name in network if name not in kept_float],
        )
        graph = quantized.read_bytes()
    figures = agreement(fp32, load(graph), holdout_photos)
    report = {
        "method": "static, QDQ, per-channel int8 weights, uint8 activations, MinMax "
        "(ONNX Runtime); graph pre/post-processing and the stem stay float",
        "float_layers": sorted(kept_float),
        "calibration": {"folder": calibration.name, "images": len(inputs)},
        "holdout": {"folder": holdout.name if holdout else "foolbox ImageNet samples", **figures},
        "min_agreement": MIN_AGREEMENT,
    }
    if figures["agreement"] < MIN_AGREEMENT:
        raise CompileError(
            f"the INT8 model gives fp32's answer on {figures['same_labels']} of "
            f"{figures['images']} held-out images ({figures['agreement']:.0%}), below the "
            f"{MIN_AGREEMENT:.0%} required (changed: {', '.join(figures['changed'])}). "
            "Calibrate with more of your own photos (--calibration DIR), or serve fp32"
        )
    return graph, report
