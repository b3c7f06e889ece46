"""Keypoints (`PointBlock`): points in the uploaded photo's own pixels.

The network gives each point as fastai's PointScaler scaled it: -1..1 across the
model's input, edges to edges. That input is a region of the photo (Resize's crop,
pad or squish), so a point is mapped back through the preprocessing's frame
(app/inference/preprocess.py: `Frame`), which tests hold to fastai's own forward
mapping, and then from the size the photo was decoded at to its own size.
"""

from typing import Any, ClassVar

import numpy as np

from app.inference.preprocess import Preprocessor
from app.kinds.base import Kind, Prediction, Tensor

POINTS = "points"
SIZE = {
    "type": "object",
    "required": ["width", "height"],
    "properties": {"width": {"type": "integer"}, "height": {"type": "integer"}},
    "description": "The upright photo's size, whose pixels the answer is given in.",
}


class Keypoints(Kind):
    name = "keypoints"
    draws_on_photo = True
    schemas: ClassVar[dict[str, dict[str, Any]]] = {
        "KeypointsResult": {
            "type": "object",
            "description": "A keypoint model's answer: its points, in pixels of the upright "
            "photo (x to the right, y down, from its top left corner).",
            "required": ["kind", "points", "image"],
            "properties": {
                "kind": {"type": "string", "enum": ["keypoints"]},
                "points": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["x", "y"],
                        "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                    },
                },
                "image": SIZE,
            },
        }
    }
    example: ClassVar[dict[str, Any]] = {
        "kind": "keypoints",
        "points": [{"x": 153.5, "y": 46.0}, {"x": 88.25, "y": 120.75}],
        "image": {"width": 320, "height": 240},
    }
    description: ClassVar[dict[str, dict[str, Any]]] = {
        "count": {"type": "integer", "description": "How many points an answer has."}
    }

    def __init__(self, info: dict[str, Any], defaults: dict[str, Any]) -> None:
        super().__init__(info, defaults)
        self.preprocessor = Preprocessor(info["preprocessing"])

    @property
    def count(self) -> int:
        return int(np.prod(self.info["output"]["shape"])) // 2

    def points(self, prediction: Prediction) -> np.ndarray:
        """[points, 2]: x and y in the photo's pixels."""
        frame = self.preprocessor.frame(prediction.decoded)
        scaled = np.asarray(prediction.output, dtype=np.float64).reshape(-1, 2)
        model = (scaled + 1) / 2 * np.array(frame.size)
        x, y = frame.to_photo(model[:, 0], model[:, 1])
        up = np.array(prediction.size) / np.array(prediction.decoded)  # draft decoding
        points: np.ndarray = np.stack([x, y], axis=1) * up
        return points

    def decide(self, output: np.ndarray) -> np.ndarray:
        return np.ravel(output)

    def agrees(self, ours: object, theirs: object) -> bool:
        """The same points, within 2.5% of the model's frame (0.05 of its -1..1; parity holds
        them to 1e-4 besides; this is what INT8's agreement check asks)."""
        return bool(np.abs(np.asarray(ours) - np.asarray(theirs)).max() <= 0.05)

    def answer(self, prediction: Prediction, options: dict[str, Any]) -> dict[str, Any]:
        width, height = prediction.size
        return {
            "kind": self.name,
            "points": [{"x": round(x, 2), "y": round(y, 2)} for x, y in self.points(prediction)],
            "image": {"width": width, "height": height},
        }

    def outputs(self) -> list[dict[str, Any]]:
        return [{"name": POINTS, "datatype": "FP32", "shape": [-1, self.count, 2]}]

    def tensor(
        self, name: str, predictions: list[Prediction], parameters: dict[str, Any]
    ) -> Tensor:
        array = np.stack([self.points(p) for p in predictions]).astype("<f4")
        return Tensor(name, "FP32", list(array.shape), array)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "count": self.count}

    def summary(self) -> str:
        return f"keypoints, {self.count} a picture"

    def metric_labels(self) -> dict[str, str]:
        return {"count": str(self.count)}
