"""Image regression (`RegressionBlock`): the values the network gives, as learn.predict
gives them (a y_range's sigmoid is part of the network), named where the learner's
targets were read from named columns."""

import contextlib
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from app.errors import ApiError
from app.kinds.base import Kind, Prediction, Tensor
from app.kinds.explanation import EXPLAIN, EXPLAIN_VALUE, with_explanation

VALUES = "values"
NAMES = {
    "type": "array",
    "items": {"type": "string"},
    "nullable": True,
    "description": "Each value's name, where the learner has them.",
}


class Regression(Kind):
    name = "regression"
    corrected_by = "values"
    corrected_by_numbers = True
    explains = True
    parameters: ClassVar[list[dict[str, Any]]] = [EXPLAIN, EXPLAIN_VALUE]
    schemas: ClassVar[dict[str, dict[str, Any]]] = with_explanation({
        "RegressionResult": {
            "type": "object",
            "description": "An image regression model's answer: its values, in order.",
            "required": ["kind", "values", "names"],
            "properties": {
                "kind": {"type": "string", "enum": ["regression"]},
                "values": {"type": "array", "items": {"type": "number"}},
                "names": NAMES,
            },
        }
    })  # fmt: skip
    example: ClassVar[dict[str, Any]] = {
        "kind": "regression",
        "values": [0.73, 0.12],
        "names": ["brightness", "disc_x"],
    }
    description: ClassVar[dict[str, dict[str, Any]]] = {
        "names": NAMES,
        "count": {"type": "integer", "description": "How many values an answer has."},
    }

    @property
    def count(self) -> int:
        return int(np.prod(self.info["output"]["shape"]))

    def decide(self, output: np.ndarray) -> np.ndarray:
        return np.ravel(output)

    def agrees(self, ours: object, theirs: object) -> bool:
        """The same values, within 2% (parity holds them to 1e-4 besides; this is what
        INT8's agreement check asks)."""
        a, b = np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float)
        return bool(np.allclose(a, b, rtol=0.02, atol=0.02))

    def answer(self, prediction: Prediction, options: dict[str, Any]) -> dict[str, Any]:
        values = [round(float(v), 6) for v in np.ravel(prediction.output)]
        return {"kind": self.name, "values": values, "names": self.info.get("names")}

    def value_names(self) -> list[str]:
        """Each value's name: the learner's, or its position."""
        names = self.info.get("names")
        return [str(name) for name in names] if names else [str(i) for i in range(self.count)]

    def options(self, query: Mapping[str, str]) -> dict[str, Any]:
        chosen = query.get("explain_value")
        if chosen is None:
            return {}
        names = self.value_names()
        if chosen not in names:
            raise ApiError(
                "invalid_explain_target",
                f"explain_value {chosen[:40]!r} is not one of the values: {', '.join(names)}.",
            )
        return {"explain_value": names.index(chosen)}

    def explain_target(self, output: np.ndarray, options: dict[str, Any]) -> tuple[int, str]:
        index = options.get("explain_value", 0)
        return index, self.value_names()[index]

    def outputs(self) -> list[dict[str, Any]]:
        return [{"name": VALUES, "datatype": "FP32", "shape": [-1, self.count]}]

    def tensor(
        self, name: str, predictions: list[Prediction], parameters: dict[str, Any]
    ) -> Tensor:
        array = np.stack([np.ravel(p.output) for p in predictions]).astype("<f4")
        return Tensor(name, "FP32", list(array.shape), array)

    def predicted(self, answer: dict[str, Any]) -> tuple[list[str], float | None]:
        return [repr(float(v)) for v in answer["values"]], None

    def correction(self, value: object, new_labels: bool) -> list[str]:
        """The photo's values: the model's count of finite numbers (a form's as text)."""
        if not isinstance(value, list) or len(value) != self.count:
            raise ApiError("invalid_label", f"`values` is a list of {self.count} number(s).")
        return [repr(_finite(item)) for item in value]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "names": self.info.get("names"), "count": self.count}

    def summary(self) -> str:
        return f"regression of {self.count} value(s)"

    def metric_labels(self) -> dict[str, str]:
        return {"count": str(self.count)}


def _finite(item: object) -> float:
    """A number a correction gives: JSON's, or a form's text (up to 40 characters); finite."""
    number = math.nan
    if isinstance(item, float) or (isinstance(item, int) and not isinstance(item, bool)):
        number = float(item) if abs(item) < 1e300 else math.nan
    elif isinstance(item, str) and len(item) <= 40:
        with contextlib.suppress(ValueError):
            number = float(item)
    if not math.isfinite(number):
        raise ApiError("invalid_label", f"{str(item)[:40]!r} is not a finite number.")
    return number
