"""What the kinds that can be explained share: the `explain` options and the answer's
`explanation` (its map is drawn by app/inference/explanation.py).

Each such kind says which of its outputs a map is of (`Kind.explain_target`): a
single-label model's top class (or `explain_class`), a multi-label model's most
probable label (or `explain_class`, a label that passed), a regression's first value
(or `explain_value`). Keypoints and segmentation answers are already places in the
photo: they refuse `explain` with their own code.
"""

from typing import Any

EXPLAIN: dict[str, Any] = {
    "name": "explain",
    "in": "query",
    "required": False,
    "schema": {"type": "boolean", "default": False},
    "description": "true adds `explanation`: where in the photo the network looked for the "
    "answer (Recipro-CAM), as a heatmap over the photo. Single-, multi-label and regression "
    "models whose network has a last spatial feature map (/api/model's `explanation`).",
}
EXPLAIN_CLASS: dict[str, Any] = {
    "name": "explain_class",
    "in": "query",
    "required": False,
    "schema": {"type": "string"},
    "description": "A classifier's, with explain=true: the class to explain, instead of the "
    "top class (a multi-label model's: one of the labels that passed, instead of the most "
    "probable).",
}
EXPLAIN_VALUE: dict[str, Any] = {
    "name": "explain_value",
    "in": "query",
    "required": False,
    "schema": {"type": "string"},
    "description": "A regression model's, with explain=true: the value to explain, by its "
    "name (or its position from 0 where values have no names), instead of the first.",
}
EXPLANATION: dict[str, dict[str, Any]] = {
    "Explanation": {
        "type": "object",
        "description": "Where the network looked for one output (explain=true).",
        "required": ["method", "target", "heatmap", "heatmap_size"],
        "properties": {
            "method": {"type": "string", "enum": ["recipro-cam"]},
            "target": {"type": "string", "description": "The label or value explained."},
            "heatmap": {
                "type": "string",
                "description": "data:image/png;base64: an 8-bit map over the upright photo "
                "(0: where it looked least, 255: most), relative within the photo; a palette "
                "PNG, so it also shows in colour. Its size is the photo's aspect ratio, at "
                "most MAX_HEATMAP_MEGAPIXELS: stretch it over the photo.",
            },
            "heatmap_size": {
                "type": "object",
                "required": ["width", "height"],
                "properties": {"width": {"type": "integer"}, "height": {"type": "integer"}},
            },
        },
    }
}
EXPLANATION_FIELD = {"explanation": {"$ref": "#/components/schemas/Explanation"}}


def with_explanation(schemas: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A kind's schemas with the optional `explanation` in its answer (the first)."""
    name, answer = next(iter(schemas.items()))
    answer = {**answer, "properties": {**answer["properties"], **EXPLANATION_FIELD}}
    return {name: answer, **{k: v for k, v in schemas.items() if k != name}, **EXPLANATION}
