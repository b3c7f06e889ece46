"""Exporting the network, with the batch transforms and activation around it, to ONNX.

torch.onnx's TorchScript-based exporter (dynamo=False): with torch 2.13 it
exports fastai's and timm-style networks without extra packages, and the
default network's probabilities come out within 1e-6 of eager torch.
"""

import contextlib
import io
import os
import warnings
from collections.abc import Iterator

import torch
from fastai.learner import Learner

from app.inference.model import CELLS, FEATURES
from compiler.batch import RESIZING, Divide, Normalize, ResampleOwnSize
from compiler.explaining.split import CellScores, Split, replaying
from compiler.learner import CompileError
from compiler.pipeline import Translation

OPSET = 17
INPUT, OUTPUT = "images", "probabilities"
Axes = dict[str, dict[int, str]]  # each input's or output's dynamic axes, by name


class ServedNetwork(torch.nn.Module):
    """uint8 images in (batch, height, width, channels), probabilities out.

    fastai's ToTensor (the layout), the learner's validation batch transforms in
    their order, the network and the loss function's activation. With a `split`
    (compiler/explaining/split.py), the last feature map as well, which explaining reads.
    """

    def __init__(
        self, learn: Learner, translation: Translation, split: Split | None = None
    ) -> None:
        super().__init__()
        width, height = translation.preprocessing["size"] or (None, None)
        channels = _channels(translation)
        size = (height, width)
        ops: list[torch.nn.Module] = []
        for op in translation.batch:
            if op["op"] in RESIZING and size[0] is None:
                ops.append(ResampleOwnSize(op, channels))
                size = tuple(op["size_hw"])
            elif op["op"] in RESIZING:
                ops.append(RESIZING[op["op"]](op, channels, size))
                size = tuple(op["size_hw"] or size)
            else:
                ops.append((Divide if op["op"] == "divide" else Normalize)(op))
        self.batch = torch.nn.Sequential(*ops)
        self.network = learn.model.eval()
        self.activation = getattr(learn.loss_func, "activation", None) or _softmax
        self.split = split

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = self.batch(images.permute(0, 3, 1, 2))
        if self.split is None:
            return self.activation(self.network(x)).float()
        kept: list[torch.Tensor] = []
        handle = self.split.pool.register_forward_pre_hook(lambda mod, args: kept.append(args[0]))
        try:
            probabilities = self.activation(self.network(x)).float()
        finally:
            handle.remove()
        return probabilities, kept[0].float()


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    """For a loss function with no activation, where learn.predict returns raw scores:
    the API promises probabilities. Parity compares against the same softmax."""
    return logits.softmax(dim=-1)


def activation_name(learn: Learner) -> str:
    if getattr(learn.loss_func, "activation", None) is None:
        return "softmax (the loss function has no activation)"
    return f"{type(learn.loss_func).__name__}.activation"


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """The exporter writes its whole IR graph to file descriptor 2 when it fails (from
    C++, so redirect_stderr can't catch it); the error we raise says what matters."""
    saved = os.dup(2)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _channels(translation: Translation) -> int:
    return 3 if translation.preprocessing["mode"] == "RGB" else 1


def _export(
    module: torch.nn.Module, args: tuple, inputs: Axes | None = None, outputs: Axes | None = None
) -> bytes:
    """ONNX bytes, with the inputs and outputs named and their dynamic axes (of any
    length) as given."""
    buffer = io.BytesIO()
    with warnings.catch_warnings(), _quiet_stderr():
        warnings.simplefilter("ignore")  # TracerWarnings about Python-side values
        torch.onnx.export(
            module,
            args,
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=list(inputs) if inputs else None,
            output_names=list(outputs) if outputs else None,
            dynamic_axes={**inputs, **outputs} if inputs and outputs else None,
        )
    return buffer.getvalue()


def _exports(module: torch.nn.Module, args: tuple) -> bool:
    try:
        _export(module, args)
    except Exception:  # noqa: BLE001 - any failure means this layer doesn't export
        return False
    return True


def failing_layer(network: torch.nn.Module, example: torch.Tensor) -> str | None:
    """The deepest layer that fails to export on its own, found by exporting layers
    with the inputs they received in one forward pass, going down from the top."""
    inputs: dict[torch.nn.Module, tuple] = {}
    hooks = [
        module.register_forward_pre_hook(lambda m, args: inputs.setdefault(m, args))
        for module in network.modules()
    ]
    try:
        with torch.no_grad():
            network(example)
    except Exception:  # noqa: BLE001 - then no layer can be singled out
        return None
    finally:
        for hook in hooks:
            hook.remove()
    names = {module: name for name, module in network.named_modules()}
    current = None
    children = list(network.children())
    while children:
        failing = next((c for c in children if c in inputs and not _exports(c, inputs[c])), None)
        if failing is None:
            break
        current, children = failing, list(failing.children())
    return None if current is None else f"`{names[current]}` ({type(current).__name__})"


def _example(translation: Translation) -> torch.Tensor:
    width, height = translation.preprocessing["size"] or (64, 48)
    return torch.zeros((2, height, width, _channels(translation)), dtype=torch.uint8)


def output_shape(learn: Learner, translation: Translation) -> list[int]:
    """The shape of one image's output (classes, values, 2 x points, or classes x height x
    width), from one forward pass of the served network."""
    with torch.no_grad():
        return list(ServedNetwork(learn, translation).eval()(_example(translation)).shape[1:])


def network_input(learn: Learner, translation: Translation) -> torch.Tensor:
    """An input of the learner's network, as the served graph gives it one image."""
    with torch.no_grad():
        return (
            ServedNetwork(learn, translation)
            .eval()
            .batch(_example(translation)[:1].permute(0, 3, 1, 2))
        )


def _spatial(translation: Translation, first: int) -> dict[int, str]:
    """Height and width axes from `first`, for a learner that takes images at their own size."""
    return {} if translation.preprocessing["size"] else {first: "height", first + 1: "width"}


def export_graph(learn: Learner, translation: Translation, split: Split | None = None) -> bytes:
    """The served network as ONNX bytes, with a dynamic batch axis (and dynamic height
    and width for a learner that takes images at their own size); with a `split`, the
    last feature map is an output too (FEATURES)."""
    example = _example(translation)
    served = ServedNetwork(learn, translation, split).eval()
    outputs = {OUTPUT: {0: "batch"}}
    if split is not None:
        outputs[FEATURES] = {0: "batch", **_spatial(translation, 2)}
    try:
        with torch.no_grad():
            return _export(
                served, (example,), {INPUT: {0: "batch", **_spatial(translation, 1)}}, outputs
            )
    except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        layer = failing_layer(served.network, served.batch(example.permute(0, 3, 1, 2)))
        where = f" The layer that fails is {layer}." if layer else ""
        raise CompileError(
            f"the network does not export to ONNX: {first_line}.{where} Give it an ONNX "
            "form in the module that defines it (standard torch operations, or a "
            "torch.autograd.Function with a symbolic() method) and compile again; "
            "see docs/models.md, 'A model that won't compile'"
        ) from None


def export_head(learn: Learner, translation: Translation, split: Split) -> bytes:
    """The head run on each cell of the feature map alone (compiler/explaining/split.py's
    CellScores) as ONNX bytes: FEATURES in, CELLS out."""
    served = ServedNetwork(learn, translation).eval()
    example = network_input(learn, translation)
    # A one-pixel stand-in for the body's input: the graph makes it only for its shape
    # (the default network reads its batch size from it), never runs the body on it.
    stand_in = example[..., :1, :1]
    head = CellScores(served.network, split, served.activation, stand_in).eval()
    features = torch.zeros((2, split.channels, split.height, split.width))
    inputs = {FEATURES: {0: "batch", **_spatial(translation, 2)}}
    outputs = {CELLS: {0: "batch", 1: "rows", 2: "columns"}}
    # The body's parts give what they gave for the example: tracing runs the head alone.
    with torch.no_grad(), replaying(served.network, split.pool, example):
        return _export(head, (features,), inputs, outputs)
