"""A single-label classifier (`CategoryBlock`): the top class is the answer."""

from typing import Any, ClassVar

import numpy as np

from app.kinds.base import Prediction
from app.kinds.classes import NEW_LABEL, PREDICTION, Classifier
from app.kinds.explanation import with_explanation


class SingleLabel(Classifier):
    name = "single-label"
    corrected_by = "label"
    schemas: ClassVar[dict[str, dict[str, Any]]] = with_explanation({
        "Result": {
            "type": "object",
            "description": "A single-label model's answer: its top class, then the top_k classes.",
            "required": ["label", "probability", "predictions"],
            "properties": {
                "label": {"type": "string"},
                "probability": PREDICTION["properties"]["probability"],
                "predictions": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/Prediction"},
                },
            },
        },
        "Prediction": PREDICTION,
    })  # fmt: skip
    example: ClassVar[dict[str, Any]] = {
        "label": "espresso",
        "probability": 0.944298,
        "predictions": [
            {"label": "espresso", "probability": 0.944298},
            {"label": "cup", "probability": 0.01487},
        ],
    }

    def decide(self, output: np.ndarray) -> frozenset[int]:
        return frozenset({int(output.argmax())})

    def answer(self, prediction: Prediction, options: dict[str, Any]) -> dict[str, Any]:
        output = prediction.output
        predictions = self.ranked(output, options["top_k"])
        return {**predictions[0], "predictions": predictions}

    def explain_target(self, output: np.ndarray, options: dict[str, Any]) -> tuple[int, str]:
        index = options.get("explain_class", int(output.argmax()))
        return index, self.labels[index]

    def predicted(self, answer: dict[str, Any]) -> tuple[list[str], float | None]:
        return [answer["label"]], answer["probability"]

    def correction(self, value: object, new_labels: bool) -> list[str]:
        return [self.checked_label(value, new_labels, NEW_LABEL)]
