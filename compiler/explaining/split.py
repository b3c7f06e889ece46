"""Where a network looks: its split into the body that makes the last spatial feature map
and the head that pools it, the head's run on each cell alone that the compiled graph
carries (`CellScores`), and Recipro-CAM computed with torch on the learner itself, the
reference the served map is proven against (proof.py).

Recipro-CAM (Byun and Lee, 2022; the authors' code, sybyun/ReciproCAM): for each cell of
the feature map, the head is run on a map that keeps only that cell (every other cell
zero); the target's score for that masked map is the cell's value, and the map is
min-max normalised. The score is the served activation's (a softmax for a classifier, the
learner's own activation otherwise), as the authors score with the softmax.

The split is found by running the network once with a pre-hook on every global pooling
module: the last one that runs exactly once, on a 4-D map of more than one cell, starts
the head. Finding it by module type or name alone picks wrong on the default model
(EfficientNet-Lite0's `_swish` is one module called at the stem and at the head).
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

# Pooling modules that reduce a map to one value a channel (fastai's AdaptiveConcatPool2d
# holds two of these, each called once on the same map: the concat module is the split).
POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


@dataclass(frozen=True)
class Split:
    """The module the head starts with, and the feature map it takes for one image."""

    pool: nn.Module
    name: str
    channels: int
    height: int
    width: int


def _global(module: nn.Module) -> bool:
    if isinstance(module, POOLS):
        size = module.output_size
        return size in (1, (1, 1))
    return type(module).__name__ == "AdaptiveConcatPool2d"


def find_split(network: nn.Module, example: torch.Tensor) -> Split | str:
    """The split of `network` on an input like `example` (a batch of one), or, when it
    has none, one line saying why (for the refusal)."""
    calls: dict[str, list[tuple[int, ...]]] = {}
    maps: dict[str, int] = {}  # the storage each pool read its map from
    modules = dict(network.named_modules())
    handles = []
    for name, module in modules.items():
        if _global(module):

            def record(mod: nn.Module, args: tuple, name: str = name) -> None:
                calls.setdefault(name, []).append(tuple(args[0].shape))
                maps[name] = args[0].data_ptr()

            handles.append(module.register_forward_pre_hook(record))
    try:
        with torch.no_grad():
            network.eval()(example)
    finally:
        for handle in handles:
            handle.remove()
    # fastai's AdaptiveConcatPool2d calls its two pools on the map it was given: keep the
    # outermost module of those called on the same map.
    once = [
        (name, shape[0])
        for name, shape in calls.items()
        if len(shape) == 1 and len(shape[0]) == 4 and shape[0][2] * shape[0][3] > 1
    ]
    outer = [(n, s) for n, s in once if not any(n.startswith(o + ".") for o, _ in once if o != n)]
    if not outer:
        return "it has no global pooling of a spatial feature map, where the map could be read"
    name, (_, channels, height, width) = outer[-1]
    twins = [n for n, _ in outer if n != name and maps[n] == maps[name]]
    if twins:  # timm's catavgmax, say: two pools of one map, neither the whole head's start
        return f"it pools its last feature map in two modules ({name}, {twins[0]}), not one"
    return Split(modules[name], name, channels, height, width)


@contextmanager
def _replaced_input(pool: nn.Module, maps: torch.Tensor) -> Iterator[None]:
    """While inside, `pool` takes `maps` instead of what the body gave it."""
    handle = pool.register_forward_pre_hook(lambda mod, args: (maps, *args[1:]))
    try:
        yield
    finally:
        handle.remove()


def masked(features: torch.Tensor) -> torch.Tensor:
    """For one image's map [C, h, w], the h*w maps that each keep one cell: [h*w, C, h, w],
    row-major (cell (i, j) is row i*w + j)."""
    _, height, width = features.shape
    eye = torch.eye(height * width, dtype=features.dtype).reshape(-1, 1, height, width)
    return eye * features.unsqueeze(0)


def recipro_cam_scores(
    network: nn.Module,
    split: Split,
    image: torch.Tensor,
    target: int,
    activation: Callable[[torch.Tensor], torch.Tensor],
) -> np.ndarray:
    """Recipro-CAM's scores [h, w] of `target` for one preprocessed `image` [1, 3, H, W],
    in float64: the learner's network run on the image once per cell, its pooling given
    the map that keeps only that cell. The network's parts that ran before the pooling
    give what they gave for the image (each is deterministic in eval mode), so the body
    isn't run h*w times over."""
    with torch.no_grad(), replaying(network.eval(), split.pool, image) as features:
        maps = masked(features)
        batch = image.expand(len(maps), *image.shape[1:])
        with _replaced_input(split.pool, maps):
            scores = activation(network(batch))[:, target].double().numpy()
    return scores.reshape(maps.shape[2], maps.shape[3])


@contextmanager
def replaying(network: nn.Module, pool: nn.Module, image: torch.Tensor) -> Iterator[torch.Tensor]:
    """Runs `network` on `image`; while inside, its top-level parts that ran before `pool`
    (not those it is part of) return, call by call, what they gave then, for any batch.
    Gives the map `pool` was given."""
    named = dict(network.named_modules())
    around = {name for name, module in named.items() if any(m is pool for m in module.modules())}
    calls: dict[str, list[torch.Tensor | None]] = {}
    seen: list[torch.Tensor] = []

    def record(name: str) -> Callable[..., None]:
        def hook(part: nn.Module, args: tuple, output: object) -> None:
            before = not seen and isinstance(output, torch.Tensor)
            calls.setdefault(name, []).append(output if before else None)  # type: ignore[arg-type]

        return hook

    handles = [
        named[name].register_forward_hook(record(name)) for name in named if name not in around
    ]
    handles.append(pool.register_forward_pre_hook(lambda mod, args: seen.append(args[0])))
    try:
        network(image)
    finally:
        for handle in handles:
            handle.remove()
    # The outermost of the parts that ran (a ModuleList never runs; its members do).
    parts = [
        named[name]
        for name in calls
        if not any(name.startswith(other + ".") for other in calls if other != name)
    ]
    outputs = {named[name]: calls[name] for name in calls}
    for part in parts:
        part.forward = _replay(part.forward, iter(outputs[part]))  # type: ignore[method-assign]
    try:
        yield seen[0][0]
    finally:
        for part in parts:
            del part.forward


def _replay(
    forward: Callable[..., torch.Tensor], outputs: Iterator[torch.Tensor | None]
) -> Callable[..., torch.Tensor]:
    def replayed(x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        output = next(outputs, None)
        if output is None:
            return forward(x, *args, **kwargs)
        return output.expand(len(x), *output.shape[1:]).contiguous()

    return replayed


class CellScores(nn.Module):
    """The last feature map [B, C, h, w] in, the served activation's scores [B, h, w,
    outputs] of the head run on each cell alone out: Recipro-CAM's masked maps, as one
    batch of B*h*w rows.

    The masked maps are never made: a global pooling of a map that keeps one cell is
    that cell divided by the cells (average), the cell or 0, whichever is larger (max,
    with more than one cell), or both (fastai's concat pooling, max first), so the
    pooling's output is replaced by those rows. The rest of the head is the learner's
    own code, run by calling the network on a batch of zeros with that replacement: the
    body's work on the zeros is unused, and the exporter leaves it out of the graph.
    """

    def __init__(
        self,
        network: nn.Module,
        split: Split,
        activation: Callable[[torch.Tensor], torch.Tensor],
        example: torch.Tensor,
    ) -> None:
        super().__init__()
        self.network = network
        self.split = split
        self.activation = activation
        self.input_shape = tuple(example.shape[1:])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = features.shape
        rows = batch * height * width
        cells = features.flatten(2).transpose(1, 2).reshape(rows, channels, 1, 1)
        pooled = _pooled(self.split.pool, cells, features[0, 0].flatten())
        handle = self.split.pool.register_forward_hook(lambda mod, args, out: pooled)
        try:
            scores = self.activation(self.network(features.new_zeros((rows, *self.input_shape))))
        finally:
            handle.remove()
        return scores.reshape(batch, height, width, -1).float()


def _pooled(pool: nn.Module, cells: torch.Tensor, one_channel: torch.Tensor) -> torch.Tensor:
    """What `pool` gives for each masked map, from its kept cell; `one_channel` (one
    channel's cells) counts the cells in the graph, so a learner that takes images at their
    own size gets the map it has."""
    count = torch.ones_like(one_channel).sum()
    if isinstance(pool, nn.AdaptiveAvgPool2d):
        return cells / count
    # With other cells there, the zeros they became win over a negative cell.
    floor = torch.where(count > 1, torch.zeros_like(count), torch.full_like(count, -torch.inf))
    highest = torch.maximum(cells, floor)
    if isinstance(pool, nn.AdaptiveMaxPool2d):
        return highest
    return torch.cat([highest, cells / count], 1)  # AdaptiveConcatPool2d: max, then average
