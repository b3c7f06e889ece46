"""The model's preprocessing, run with Pillow and numpy from the compiled file's description.

The compiler (compiler/pipeline.py) reads a learner's validation item
transforms and writes them down as steps; this module replays those steps
with the same Pillow calls and the same integer arithmetic fastai uses
(fastai/vision/augment.py: Resize, CropPad, RandomResizedCrop, crop_pad), so
the array the network sees is the one `learn.predict` would give it. The
compiler proves that on every compile (compiler/parity.py).

A description looks like this (a learner with no sizing step has "size": null
and no steps: each image reaches the network at its own size):

    {"mode": "RGB", "size": [224, 224],
     "steps": [{"op": "resize", "size": [224, 224], "method": "crop",
                "pad_mode": "reflection", "resample": "bilinear"}]}

Sizes are (width, height), Pillow's order. Everything else (uint8 to float,
scaling, normalisation, the activation) is in the ONNX graph.
"""

import operator
from collections.abc import Callable

import numpy as np
from PIL import Image

MODES = ("RGB", "L")
RESIZE_METHODS = ("crop", "pad", "squish")
# fastai's PadMode names, and the numpy.pad mode torchvision uses for each.
PAD_MODES = {"zeros": "constant", "border": "edge", "reflection": "reflect"}
RESAMPLES = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}

Size = tuple[int, int]


class DescriptionError(ValueError):
    """A preprocessing description this server can't run."""


def _pad(
    image: Image.Image, left: int, top: int, right: int, bottom: int, mode: str
) -> Image.Image:
    """torchvision's PIL pad (which fastai calls), for RGB and L images: numpy.pad."""
    array = np.asarray(image)
    widths = ((top, bottom), (left, right)) + (((0, 0),) if array.ndim == 3 else ())
    return Image.fromarray(np.pad(array, widths, mode=PAD_MODES[mode]))


def crop_pad(
    image: Image.Image,
    size: Size,
    top_left: Size,
    pad_mode: str = "zeros",
    resample: str = "bilinear",
    resize_to: Size | None = None,
) -> Image.Image:
    """fastai's `_do_crop_pad` for a PIL image: crop what lies inside, pad what lies
    outside, then resize. The conditions mirror fastai's, padding of zero width included."""
    width, height = image.size
    right, bottom = top_left[0] + size[0], top_left[1] + size[1]
    if top_left[0] >= 0 or top_left[1] >= 0 or right <= width or bottom <= height:
        image = image.crop(
            (max(top_left[0], 0), max(top_left[1], 0), min(right, width), min(bottom, height))
        )
    if top_left[0] < 0 or top_left[1] < 0 or right >= width or bottom >= height:
        image = _pad(
            image,
            max(-top_left[0], 0),
            max(-top_left[1], 0),
            max(right - width, 0),
            max(bottom - height, 0),
            pad_mode,
        )
    if resize_to is not None:
        image = image.resize(resize_to, RESAMPLES[resample])
    return image


def resize(
    image: Image.Image, size: Size, method: str, pad_mode: str, resample: str
) -> Image.Image:
    """fastai's `Resize` at validation: the centred crop (or pad) of the target's aspect
    ratio, resized; or the whole image squished."""
    width, height = image.size
    if method == "squish":
        return crop_pad(image, (width, height), (0, 0), pad_mode, resample, resize_to=size)
    beyond = operator.gt if method == "pad" else operator.lt
    scale = width / size[0] if beyond(width / size[0], height / size[1]) else height / size[1]
    region = (int(scale * size[0]), int(scale * size[1]))
    top_left = (int(0.5 * (width - region[0])), int(0.5 * (height - region[1])))
    return crop_pad(image, region, top_left, pad_mode, resample, resize_to=size)


def centre_crop_pad(image: Image.Image, size: Size, pad_mode: str) -> Image.Image:
    """fastai's `CropPad` (and `RandomCrop` at validation): centred, floor division."""
    width, height = image.size
    top_left = ((width - size[0]) // 2, (height - size[1]) // 2)
    return crop_pad(image, size, top_left, pad_mode)


def _size(value: object) -> Size:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int) and v > 0 for v in value)
    ):
        raise DescriptionError(f"a size must be [width, height] in pixels, not {value!r}")
    return (value[0], value[1])


def _choice(step: dict, key: str, options: object) -> str:
    value = step.get(key)
    if value not in options:
        raise DescriptionError(f"{step.get('op')}: {key} must be one of {list(options)}")
    return value


Step = Callable[[Image.Image], Image.Image]


def _step(step: dict) -> Step:
    op = step.get("op")
    if op == "resize":
        size = _size(step.get("size"))
        method = _choice(step, "method", RESIZE_METHODS)
        pad_mode = _choice(step, "pad_mode", PAD_MODES)
        resample = _choice(step, "resample", RESAMPLES)
        return lambda image: resize(image, size, method, pad_mode, resample)
    if op == "crop_pad":
        size = _size(step.get("size"))
        pad_mode = _choice(step, "pad_mode", PAD_MODES)
        return lambda image: centre_crop_pad(image, size, pad_mode)
    raise DescriptionError(f"unknown preprocessing step {op!r}")


class Preprocessor:
    """A decoded image to the uint8 HWC array the compiled graph takes."""

    def __init__(self, description: dict) -> None:
        self.mode: str = description.get("mode")
        if self.mode not in MODES:
            raise DescriptionError(f"image mode must be one of {list(MODES)}")
        steps = description.get("steps") or []
        self._steps = [_step(step) for step in steps]
        # Every step ends at its own size, so the last one fixes the model's input; a
        # learner with no sizing step takes each image at its own size (size None).
        self.size = _size(description["size"]) if steps else None
        if steps and _size(steps[-1]["size"]) != self.size:
            raise DescriptionError(f"the steps don't end at the model's input size {self.size}")
        # Smallest side worth decoding a JPEG at: twice the model's input (images.py).
        # Without a fixed input size the model sees the full decode, as learn.predict does.
        self.draft_size = 2 * max(self.size) if self.size else None

    def __call__(self, image: Image.Image) -> np.ndarray:
        if image.mode != self.mode:
            image = image.convert(self.mode)
        for step in self._steps:
            image = step(image)
        array = np.asarray(image)
        return array if array.ndim == 3 else array[:, :, None]
