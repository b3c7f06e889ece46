"""Segmentation (`MaskBlock`, `unet_learner`): a class for every pixel of the photo.

The graph gives each class's probability at every pixel of the model's input (the
loss function's softmax over the class axis); the answer's mask takes, for every
pixel of the photo, the most probable class at the model's pixel it maps to
(nearest neighbour, through the preprocessing's frame: app/inference/preprocess.py),
so parts of the photo that Resize cropped away take the class at the nearest edge
of what the model saw. The mask is a palette PNG whose pixel values are the class
ids and whose palette is the classes' colours: one image for programs and people.
It is at the photo's size up to MAX_MASK_MEGAPIXELS, and scaled down (keeping the
aspect ratio) past it, so one request's mask can't take more memory than that.
"""

import base64
import io
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from app.inference.preprocess import Preprocessor, scaled_down
from app.intake.flags import boolean
from app.kinds.base import Kind, Prediction, Tensor
from app.kinds.keypoints import SIZE

MASK, MASK_PNG, AREAS = "mask", "mask_png", "areas"
PALETTE = [
    "#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
]  # fmt: skip
MASK_OPTION = {
    "name": "mask",
    "in": "query",
    "required": False,
    "schema": {"type": "boolean", "default": True},
    "description": "A segmentation model's: false leaves the mask out, when only the areas "
    "are wanted.",
}
CLASSES = {"type": "array", "items": {"type": "string"}, "description": "Class ids' names."}
COLOURS = {
    "type": "array",
    "items": {"type": "string"},
    "description": "Each class's colour in the mask, as #rrggbb.",
}
AGREEMENT = 0.999  # of a mask's pixels: ties between classes aside, the same class


class Segmentation(Kind):
    name = "segmentation"
    draws_on_photo = True
    draws_images = True
    parameters: ClassVar[list[dict[str, Any]]] = [MASK_OPTION]
    schemas: ClassVar[dict[str, dict[str, Any]]] = {
        "SegmentationResult": {
            "type": "object",
            "description": "A segmentation model's answer: a class for every pixel of the "
            "upright photo, as a palette PNG of class ids, and each class's share of it.",
            "required": ["kind", "classes", "palette", "areas", "image", "mask_size"],
            "properties": {
                "kind": {"type": "string", "enum": ["segmentation"]},
                "classes": CLASSES,
                "palette": COLOURS,
                "mask": {
                    "type": "string",
                    "description": "data:image/png;base64: a palette PNG whose pixel values "
                    "are class ids (left out with mask=false).",
                },
                "areas": {
                    "type": "object",
                    "additionalProperties": {"type": "number"},
                    "description": "Each class's fraction of the photo.",
                },
                "image": SIZE,
                "mask_size": {
                    **SIZE,
                    "description": "The mask's size: the photo's, or "
                    "scaled down to MAX_MASK_MEGAPIXELS.",
                },
            },
        }
    }
    example: ClassVar[dict[str, Any]] = {
        "kind": "segmentation",
        "classes": ["background", "disc", "square"],
        "palette": ["#7f7f7f", "#1f77b4", "#ff7f0e"],
        "mask": "data:image/png;base64,iVBORw0KGgo...",
        "areas": {"background": 0.81, "disc": 0.15, "square": 0.04},
        "image": {"width": 320, "height": 240},
        "mask_size": {"width": 320, "height": 240},
    }
    description: ClassVar[dict[str, dict[str, Any]]] = {
        "classes": CLASSES,
        "palette": COLOURS,
    }

    def __init__(self, info: dict[str, Any], defaults: dict[str, Any]) -> None:
        super().__init__(info, defaults)
        self.preprocessor = Preprocessor(info["preprocessing"])
        count = info["output"]["shape"][0]
        self.classes: list[str] = info.get("classes") or [str(i) for i in range(count)]
        self.palette = [PALETTE[i % len(PALETTE)] for i in range(len(self.classes))]

    def options(self, query: Mapping[str, str]) -> dict[str, Any]:
        return {"mask": boolean(query, "mask", True)}

    def decide(self, output: np.ndarray) -> np.ndarray:
        classes: np.ndarray = np.asarray(output).argmax(axis=0)
        return classes

    def from_fastai(self, decoded: np.ndarray, output: np.ndarray) -> np.ndarray:
        """fastai's own mask."""
        return np.asarray(decoded).astype(np.int64)

    def agrees(self, ours: object, theirs: object) -> bool:
        ours, theirs = np.asarray(ours), np.asarray(theirs)
        return ours.shape == theirs.shape and float(np.mean(ours == theirs)) >= AGREEMENT

    def mask(self, prediction: Prediction) -> np.ndarray:
        """The class ids at the photo's size (or scaled down to MAX_MASK_MEGAPIXELS)."""
        ids = self.decide(prediction.output).astype(np.uint8)  # a byte a pixel from here on
        out = scaled_down(prediction.size, self.defaults["max_mask_pixels"])
        # The centre of each mask pixel, in the model's input.
        x, y = self.preprocessor.frame(prediction.decoded).pixel_centres(out)
        columns = np.clip(np.floor(x).astype(int), 0, ids.shape[1] - 1)
        rows = np.clip(np.floor(y).astype(int), 0, ids.shape[0] - 1)
        return ids[np.ix_(rows, columns)]

    def png(self, mask: np.ndarray) -> bytes:
        image = Image.fromarray(mask, "P")
        image.putpalette([int(c[i : i + 2], 16) for c in self.palette for i in (1, 3, 5)])
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return buffer.getvalue()

    def areas(self, mask: np.ndarray) -> list[float]:
        # A class at a time: a byte a pixel (bincount would take 8).
        return [round(np.count_nonzero(mask == c) / mask.size, 6) for c in range(len(self.classes))]

    def answer(self, prediction: Prediction, options: dict[str, Any]) -> dict[str, Any]:
        mask = self.mask(prediction)
        width, height = prediction.size
        answer = {
            "kind": self.name,
            "classes": self.classes,
            "palette": self.palette,
            "areas": dict(zip(self.classes, self.areas(mask), strict=True)),
            "image": {"width": width, "height": height},
            "mask_size": {"width": mask.shape[1], "height": mask.shape[0]},
        }
        if options.get("mask", True):
            answer["mask"] = "data:image/png;base64," + base64.b64encode(self.png(mask)).decode()
        return answer

    def outputs(self) -> list[dict[str, Any]]:
        return [
            {"name": MASK, "datatype": "UINT8", "shape": [-1, -1, -1]},
            {"name": MASK_PNG, "datatype": "BYTES", "shape": [-1]},
            {"name": AREAS, "datatype": "FP32", "shape": [-1, len(self.classes)]},
        ]

    def tensor(
        self, name: str, predictions: list[Prediction], parameters: dict[str, Any]
    ) -> Tensor:
        return self.tensors({name: parameters}, predictions)[0]

    def tensors(
        self, requested: Mapping[str, dict[str, Any]], predictions: list[Prediction]
    ) -> list[Tensor]:
        masks = [self.mask(p) for p in predictions]  # once, for every output asked for
        return [self._tensor(name, masks) for name in requested]

    def _tensor(self, name: str, masks: list[np.ndarray]) -> Tensor:
        if name == MASK_PNG:
            return Tensor(name, "BYTES", [len(masks)], [self.png(m) for m in masks])
        if name == AREAS:
            array = np.array([self.areas(m) for m in masks], dtype="<f4")
            return Tensor(name, "FP32", list(array.shape), array)
        if len({m.shape for m in masks}) > 1:
            raise ValueError(f"the images' masks differ in size: ask for {MASK_PNG!r} instead")
        array = np.stack(masks)
        return Tensor(name, "UINT8", list(array.shape), array)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "classes": self.classes, "palette": self.palette}

    def summary(self) -> str:
        return f"segmentation into {len(self.classes)} classes"

    def metric_labels(self) -> dict[str, str]:
        return {"class_count": str(len(self.classes))}
