"""What the two classifier kinds share: labels, the top_k option, ranking, and their
Open Inference Protocol outputs (`probabilities`, and the top k `labels`)."""

import re
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from app.errors import ApiError
from app.intake.integers import natural
from app.kinds.base import Kind, Prediction, Tensor
from app.kinds.explanation import EXPLAIN, EXPLAIN_CLASS

PROBABILITIES, LABELS = "probabilities", "labels"
PREDICTION: dict[str, Any] = {
    "type": "object",
    "required": ["label", "probability"],
    "properties": {
        "label": {"type": "string"},
        "probability": {"type": "number", "minimum": 0, "maximum": 1},
    },
}
TOP_K: dict[str, Any] = {
    "name": "top_k",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1},  # the maximum is the model's classes
    "description": "A classifier's: how many classes to list, from 1 to the model's number "
    "of classes. When left out: the server's TOP_K (5 unless configured) for a single-label "
    "model, every label for a multi-label one.",
}

# A label a correction may add when FEEDBACK_NEW_LABELS allows: short, starting with a
# letter or digit, then letters, digits, spaces, - and _ (never a path, a NUL or a formula).
NEW_LABEL = re.compile(r"[^\W_][\w -]{0,39}")
NEW_LABEL_NO_SPACE = re.compile(r"[^\W_][\w-]{0,39}")  # a multi-label one: space separates


class Classifier(Kind):
    """A model whose output is one probability per label."""

    parameters: ClassVar[list[dict[str, Any]]] = [TOP_K, EXPLAIN, EXPLAIN_CLASS]
    explains = True
    description: ClassVar[dict[str, dict[str, Any]]] = {
        "threshold": {
            "type": "number",
            "nullable": True,
            "description": "A multi-label model's: the probability a label must pass; null "
            "for a single-label one, whose top class is the answer.",
        },
        "class_count": {"type": "integer"},
        "classes": {"type": "array", "items": {"type": "string"}},
    }

    def __init__(self, info: dict[str, Any], defaults: Mapping[str, float]) -> None:
        super().__init__(info, defaults)
        self.labels: list[str] = info["labels"]

    def checked_label(self, value: object, new_labels: bool, pattern: re.Pattern[str]) -> str:
        """A label a correction names: one of the model's, or (with `new_labels`) a new one
        `pattern` allows."""
        if not isinstance(value, str):
            raise ApiError("invalid_label", "A label is a string.")
        if value in self.labels:
            return value
        if new_labels and pattern.fullmatch(value.strip()):
            return value.strip()
        rule = (
            "; a new one is up to 40 letters, digits, spaces, - and _"
            if new_labels
            else " (FEEDBACK_NEW_LABELS is off)"
        )
        raise ApiError("invalid_label", f"{value[:40]!r} is not one of the model's labels{rule}.")

    def default_top_k(self) -> int:
        """How many classes an answer lists when the request doesn't say."""
        return min(int(self.defaults["top_k"]), len(self.labels))

    def bound_parameters(self) -> list[dict[str, Any]]:
        # explain_class stays a string: an enum of the labels would be a thousand names
        # in a generated client, and labels that differ only in case ("cardigan", the
        # sweater; "Cardigan", the corgi) are one name there, which breaks the generator.
        top_k = {**TOP_K, "schema": {**TOP_K["schema"], "maximum": len(self.labels)}}
        return [top_k, EXPLAIN, EXPLAIN_CLASS]  # the classes are /api/model's

    def options(self, query: Mapping[str, str]) -> dict[str, Any]:
        options: dict[str, Any] = {"top_k": self.default_top_k()}
        chosen = query.get("explain_class")
        if chosen is not None:
            if chosen not in self.labels:
                raise ApiError(
                    "invalid_explain_target", f"explain_class {chosen[:40]!r} is not a label."
                )
            options["explain_class"] = self.labels.index(chosen)
        raw = query.get("top_k")
        if raw is None:
            return options
        classes, k = len(self.labels), natural(raw)
        if k is None or not 1 <= k <= classes:
            raise ApiError(
                "invalid_top_k", f"top_k must be an integer from 1 to {classes}, not {raw[:20]!r}."
            )
        return {**options, "top_k": k}

    def ranked(self, probs: np.ndarray, k: int) -> list[dict[str, Any]]:
        """The k most probable labels, most probable first."""
        order = np.argsort(-probs, kind="stable")[: min(k, len(self.labels))]
        return [{"label": self.labels[i], "probability": round(float(probs[i]), 6)} for i in order]

    def outputs(self) -> list[dict[str, Any]]:
        return [
            {"name": PROBABILITIES, "datatype": "FP32", "shape": [-1, len(self.labels)]},
            {"name": LABELS, "datatype": "BYTES", "shape": [-1, -1]},
        ]

    def tensor(
        self, name: str, predictions: list[Prediction], parameters: dict[str, Any]
    ) -> Tensor:
        rows = [prediction.output for prediction in predictions]
        if name == PROBABILITIES:
            array = np.stack(rows).astype("<f4")
            return Tensor(name, "FP32", list(array.shape), array)
        k = parameters.get("classification", self.default_top_k())
        if type(k) is not int or not 1 <= k <= len(self.labels):  # not a bool either
            raise ValueError(f"classification must be an integer from 1 to {len(self.labels)}.")
        labels = [[p["label"] for p in self.ranked(row, k)] for row in rows]
        return Tensor(name, "BYTES", [len(rows), k], [label for row in labels for label in row])

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "threshold": self.info.get("threshold"),
            "class_count": len(self.labels),
            "classes": self.labels,
        }

    def summary(self) -> str:
        threshold = self.info.get("threshold")
        at = "" if threshold is None else f", threshold {threshold:g}"
        return f"{self.name} with {len(self.labels)} classes{at}"

    def metric_labels(self) -> dict[str, str]:
        return {"class_count": str(len(self.labels))}
