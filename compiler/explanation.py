"""Where a network looks: its split into the body that makes the last spatial feature map
and the head that pools it, and Recipro-CAM computed with torch on the learner itself, the
reference a served map is to be proven against (issue 26; groundwork, not yet served).

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
    modules = dict(network.named_modules())
    handles = []
    for name, module in modules.items():
        if _global(module):

            def record(mod: nn.Module, args: tuple, name: str = name) -> None:
                calls.setdefault(name, []).append(tuple(args[0].shape))

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


def recipro_cam(
    network: nn.Module,
    split: Split,
    image: torch.Tensor,
    target: int,
    activation: Callable[[torch.Tensor], torch.Tensor],
) -> np.ndarray:
    """The Recipro-CAM map [h, w] of `target` for one preprocessed `image` [1, 3, H, W],
    min-max normalised (a flat map is all zeros), in float64."""
    captured: list[torch.Tensor] = []
    handle = split.pool.register_forward_pre_hook(lambda mod, args: captured.append(args[0]))
    try:
        with torch.no_grad():
            network.eval()(image)
    finally:
        handle.remove()
    maps = masked(captured[0][0])
    batch = image.expand(len(maps), *image.shape[1:])  # the body runs again; its output is replaced
    with torch.no_grad(), _replaced_input(split.pool, maps):
        scores = activation(network(batch))[:, target].double().numpy()
    low, high = scores.min(), scores.max()
    normalised = (scores - low) / (high - low) if high > low else np.zeros_like(scores)
    return normalised.reshape(split.height, split.width)
