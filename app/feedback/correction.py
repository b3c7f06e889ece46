"""What a feedback request says, checked against the served model's kind: which held
prediction, and either that its answer was right or what the photo is."""

import re
from collections.abc import Mapping
from dataclasses import dataclass

from app.errors import ApiError
from app.kinds import Kind

PREDICTION_ID = re.compile(r"[0-9a-f]{32}")  # 128 random bits, as the store gives them
FIELDS = ("label", "labels", "values")  # the kinds' `corrected_by`


@dataclass(frozen=True)
class Correction:
    prediction_id: str
    label: list[str] | None  # what the photo is (Kind.correction's form); None: "right"


def applicable(kind: Kind) -> str:
    """The field that corrects a `kind` model's answer; ApiError for a kind whose
    answers are not corrected here (keypoints, segmentation)."""
    if kind.corrected_by is None:
        raise ApiError(
            "feedback_not_applicable",
            f"A {kind.name} model's answers are places in the photo: feedback takes "
            "classifiers' and regression models' answers.",
        )
    return kind.corrected_by


def read_correction(fields: Mapping[str, object], kind: Kind, new_labels: bool) -> Correction:
    """`fields` (a JSON object, or a form's fields) as a confirmation or a correction of
    a `kind` model's answer; ApiError when it is neither."""
    field = applicable(kind)
    prediction_id = fields.get("prediction_id")
    if not isinstance(prediction_id, str):
        raise ApiError("invalid_feedback", "Name the answer by its `prediction_id`.")
    if not PREDICTION_ID.fullmatch(prediction_id):
        raise ApiError("unknown_prediction", "That is not a prediction id this server gives.")
    named = [name for name in FIELDS if name in fields]
    correct = fields.get("correct")
    if correct is True and not named:
        return Correction(prediction_id, None)
    shape = f"`correct: true`, or `{field}` (a {kind.name} model's correction)"
    if correct not in (None, False) or named != [field]:
        raise ApiError("invalid_feedback", f"Send `prediction_id` with {shape}.")
    return Correction(prediction_id, kind.correction(fields[field], new_labels))
