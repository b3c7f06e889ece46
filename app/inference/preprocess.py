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
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image

MODES = ("RGB", "L")
RESIZE_METHODS = ("crop", "pad", "squish")
# fastai's PadMode names, and the numpy.pad mode torchvision uses for each.
PadMode = Literal["constant", "edge", "reflect"]
PAD_MODES: dict[str, PadMode] = {"zeros": "constant", "border": "edge", "reflection": "reflect"}
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
    outside, then resize. The crop's condition mirrors fastai's; fastai also pads by zero
    pixels (a photo cropped to its full height, say), which changes nothing but costs three
    copies of a phone photo, so only a real padding is done."""
    width, height = image.size
    right, bottom = top_left[0] + size[0], top_left[1] + size[1]
    if top_left[0] >= 0 or top_left[1] >= 0 or right <= width or bottom <= height:
        image = image.crop(
            (max(top_left[0], 0), max(top_left[1], 0), min(right, width), min(bottom, height))
        )
    left, top = max(-top_left[0], 0), max(-top_left[1], 0)
    widths = (left, top, max(right - width, 0), max(bottom - height, 0))
    if any(widths):
        image = _pad(image, *widths, pad_mode)
    if resize_to is not None:
        image = image.resize(resize_to, RESAMPLES[resample])
    return image


def _size(value: object) -> Size:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int) and v > 0 for v in value)
    ):
        raise DescriptionError(f"a size must be [width, height] in pixels, not {value!r}")
    return (value[0], value[1])


def _choice(step: dict[str, Any], key: str, options: Collection[str]) -> str:
    value = step.get(key)
    if not isinstance(value, str) or value not in options:
        raise DescriptionError(f"{step.get('op')}: {key} must be one of {list(options)}")
    return value


class Step:
    """One item transform: the region of its input it takes (`top_left` and size, which
    may reach outside the image: padding), resized to `size`."""

    size: Size

    def region(self, size_in: Size) -> tuple[Size, Size]:
        raise NotImplementedError

    def __call__(self, image: Image.Image) -> Image.Image:
        raise NotImplementedError


@dataclass(frozen=True)
class Resize(Step):
    """fastai's `Resize` at validation: the centred crop (or pad) of the target's aspect
    ratio, resized; or the whole image squished."""

    size: Size
    method: str
    pad_mode: str
    resample: str

    def region(self, size_in: Size) -> tuple[Size, Size]:
        width, height = size_in
        if self.method == "squish":
            return (0, 0), (width, height)
        beyond = operator.gt if self.method == "pad" else operator.lt
        ratio_w, ratio_h = width / self.size[0], height / self.size[1]
        scale = ratio_w if beyond(ratio_w, ratio_h) else ratio_h
        region = (int(scale * self.size[0]), int(scale * self.size[1]))
        return (int(0.5 * (width - region[0])), int(0.5 * (height - region[1]))), region

    def __call__(self, image: Image.Image) -> Image.Image:
        top_left, region = self.region(image.size)
        return crop_pad(image, region, top_left, self.pad_mode, self.resample, self.size)


@dataclass(frozen=True)
class CentreCropPad(Step):
    """fastai's `CropPad` (and `RandomCrop` at validation): centred, floor division."""

    size: Size
    pad_mode: str

    def region(self, size_in: Size) -> tuple[Size, Size]:
        return ((size_in[0] - self.size[0]) // 2, (size_in[1] - self.size[1]) // 2), self.size

    def __call__(self, image: Image.Image) -> Image.Image:
        return crop_pad(image, self.size, self.region(image.size)[0], self.pad_mode)


def _step(step: dict[str, Any]) -> Step:
    op = step.get("op")
    if op == "resize":
        return Resize(
            _size(step.get("size")),
            _choice(step, "method", RESIZE_METHODS),
            _choice(step, "pad_mode", PAD_MODES),
            _choice(step, "resample", RESAMPLES),
        )
    if op == "crop_pad":
        return CentreCropPad(_size(step.get("size")), _choice(step, "pad_mode", PAD_MODES))
    raise DescriptionError(f"unknown preprocessing step {op!r}")


@dataclass(frozen=True)
class Frame:
    """Where the model's input lies in the photo, per axis: photo = offset + scale x model,
    in continuous pixel coordinates (pixel edges at whole numbers, fastai's convention
    for points: -1 and 1 are the input's edges). `photo` and `size` are the two sizes."""

    offset: tuple[float, float]
    scale: tuple[float, float]
    photo: Size
    size: Size

    def to_photo(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.offset[0] + self.scale[0] * x, self.offset[1] + self.scale[1] * y

    def to_model(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (x - self.offset[0]) / self.scale[0], (y - self.offset[1]) / self.scale[1]

    def pixel_centres(self, size: Size) -> tuple[np.ndarray, np.ndarray]:
        """Where the centre of each column and each row of an image of `size` laid over
        the photo (a mask, a heatmap) falls in the model's input."""
        x, y = ((np.arange(n) + 0.5) * photo / n for n, photo in zip(size, self.photo, strict=True))
        return self.to_model(x, y)


def scaled_down(size: Size, max_pixels: float) -> Size:
    """`size`, scaled down (keeping its aspect ratio) to at most `max_pixels` pixels: the
    size of an image drawn over a photo within a memory bound (a mask, a heatmap)."""
    width, height = size
    fit = min(1.0, (max_pixels / (width * height)) ** 0.5)
    return max(1, round(width * fit)), max(1, round(height * fit))


class Preprocessor:
    """A decoded image to the uint8 HWC array the compiled graph takes."""

    def __init__(self, description: dict[str, Any]) -> None:
        mode = description.get("mode")
        if not isinstance(mode, str) or mode not in MODES:
            raise DescriptionError(f"image mode must be one of {list(MODES)}")
        self.mode = mode
        steps = description.get("steps") or []
        self._steps = [_step(step) for step in steps]
        # Every step ends at its own size, so the last one fixes the model's input; a
        # learner with no sizing step takes each image at its own size (size None).
        self.size = _size(description["size"]) if steps else None
        if steps and _size(steps[-1]["size"]) != self.size:
            raise DescriptionError(f"the steps don't end at the model's input size {self.size}")

    def frame(self, photo: Size) -> Frame:
        """Where the model's input lies in a photo of this size: the steps' regions, composed."""
        offset, scale, size = (0.0, 0.0), (1.0, 1.0), photo
        for step in self._steps:
            (left, top), (width, height) = step.region(size)
            offset = (offset[0] + scale[0] * left, offset[1] + scale[1] * top)
            scale = (scale[0] * width / step.size[0], scale[1] * height / step.size[1])
            size = step.size
        return Frame(offset, scale, photo, size)

    def __call__(self, image: Image.Image) -> np.ndarray:
        if image.mode != self.mode:
            image = image.convert(self.mode)
        for step in self._steps:
            image = step(image)
        array = np.asarray(image)
        return array if array.ndim == 3 else array[:, :, None]
