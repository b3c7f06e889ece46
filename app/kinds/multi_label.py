"""A multi-label classifier (`MultiCategoryBlock`, `BCEWithLogitsLossFlat`): every label
whose probability (a sigmoid) is above the learner's threshold, as fastai decodes."""

from typing import Any, ClassVar

import numpy as np

from app.errors import ApiError
from app.kinds.base import Prediction
from app.kinds.classes import NEW_LABEL_NO_SPACE, PREDICTION, Classifier
from app.kinds.explanation import with_explanation


class MultiLabel(Classifier):
    name = "multi-label"
    corrected_by = "labels"
    schemas: ClassVar[dict[str, dict[str, Any]]] = with_explanation({
        "MultiLabelResult": {
            "type": "object",
            "description": "A multi-label model's answer: every label's own probability "
            "(sigmoid), and the labels whose probability is above the learner's threshold.",
            "required": ["kind", "labels", "threshold", "predictions"],
            "properties": {
                "kind": {"type": "string", "enum": ["multi-label"]},
                "labels": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "The labels past the threshold, most probable first; may "
                    "be empty.",
                },
                "threshold": PREDICTION["properties"]["probability"],
                "predictions": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/Prediction"},
                    "description": "Every label (or top_k of them), most probable first.",
                },
            },
        },
        "Prediction": PREDICTION,
    })  # fmt: skip
    example: ClassVar[dict[str, Any]] = {
        "kind": "multi-label",
        "labels": ["red", "blue"],
        "threshold": 0.5,
        "predictions": [
            {"label": "red", "probability": 0.97},
            {"label": "blue", "probability": 0.91},
            {"label": "green", "probability": 0.03},
        ],
    }

    @property
    def threshold(self) -> float:
        return float(self.info["threshold"])

    def default_top_k(self) -> int:
        """Every label: each is a question of its own."""
        return len(self.labels)

    def passing(self, output: np.ndarray) -> list[int]:
        """The labels past the threshold (strictly, as fastai compares), most probable first."""
        indices = np.flatnonzero(output > self.threshold)
        return [int(i) for i in indices[np.argsort(-output[indices], kind="stable")]]

    def decide(self, output: np.ndarray) -> frozenset[int]:
        return frozenset(self.passing(output))

    def from_fastai(self, decoded: np.ndarray, output: np.ndarray) -> frozenset[int]:
        """fastai's own thresholding: the labels its decoded one-hot row marks."""
        return frozenset(int(i) for i in np.flatnonzero(decoded))

    def answer(self, prediction: Prediction, options: dict[str, Any]) -> dict[str, Any]:
        output = prediction.output
        return {
            "kind": self.name,
            "labels": [self.labels[i] for i in self.passing(output)],
            "threshold": self.threshold,
            "predictions": self.ranked(output, options["top_k"]),
        }

    def explain_target(self, output: np.ndarray, options: dict[str, Any]) -> tuple[int, str]:
        """The most probable label (passing or not: an answer with no label passing is
        explained too), or the chosen one, which must have passed."""
        index = options.get("explain_class", int(output.argmax()))
        if "explain_class" in options and index not in self.passing(output):
            raise ApiError(
                "invalid_explain_target",
                f"explain_class {self.labels[index]!r} did not pass the threshold: a "
                "multi-label answer is explained for a label it gives.",
            )
        return index, self.labels[index]

    def predicted(self, answer: dict[str, Any]) -> tuple[list[str], float | None]:
        """The labels past the threshold, sorted (a set: the export writes them space-separated)."""
        return sorted(answer["labels"]), None

    def correction(self, value: object, new_labels: bool) -> list[str]:
        """Every label the photo has (none is an answer too), each the model's or a new one
        with no space in it."""
        if not isinstance(value, list) or len(value) > len(self.labels) + 20:
            raise ApiError("invalid_label", "`labels` is a list of the photo's labels.")
        return sorted({self.checked_label(item, new_labels, NEW_LABEL_NO_SPACE) for item in value})
