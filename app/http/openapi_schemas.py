"""The OpenAPI document's shapes: the bodies the API takes and gives.

The answers and the models' descriptions are the kinds' (app/kinds/): each kind's answer
schema, joined with the model and the time taken, is one branch of PredictResponse and
of a batch's results; what each kind says of itself, joined with what every compiled file
says (ModelMeta), is one branch of ModelInfo, /api/model's answer. Nothing here names a
kind. app/http/openapi.py puts them in `components` and builds the operations around them.
"""

from typing import Any

from app.error_codes import ERRORS
from app.kinds import KINDS


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))


_url_source = {
    "type": "object",
    "title": "UrlSource",
    "required": ["url"],
    "additionalProperties": False,
    "properties": {"url": {"type": "string", "description": "An http(s) address of an image."}},
}
_base64_source = {
    "type": "object",
    "title": "Base64Source",
    "required": ["image"],
    "additionalProperties": False,
    "properties": {
        "image": {
            "type": "string",
            "minLength": 1,
            "description": "The image file, base64-encoded (a data: URL prefix is accepted).",
        }
    },
}
_model_meta_properties = {
    "name": {
        "type": "string",
        "description": "MODEL_NAME: the model's name in the Open Inference Protocol (/v2).",
    },
    "file": {"type": "string", "description": "The compiled .onnx file served."},
    "sha256": {"type": "string"},
    "runtime": {
        "type": "object",
        "description": "What runs the compiled graph.",
        "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
    },
    "precision": {
        "type": "string",
        "enum": ["fp32", "int8"],
        "description": "int8: statically quantized with `compile --int8`.",
    },
    "quantization": {
        "type": "object",
        "nullable": True,
        "description": "For int8: how it was calibrated, and its agreement with fp32 on "
        "held-out images.",
    },
    "decoding": {
        "type": "object",
        "description": "How a JPEG is decoded: `exact`, at full size as fastai does (the "
        "default); or `reduced`, large JPEGs at reduced scale (`compile --fast-decode`), with "
        "its agreement with exact decoding on held-out phone-size photos.",
        "properties": {"jpeg": {"type": "string", "enum": ["exact", "reduced"]}},
    },
    "architecture": {"type": "string"},
    "input_size": {
        "type": "array",
        "items": {"type": "integer"},
        "nullable": True,
        "description": "(width, height), or null: images keep their own size.",
    },
    "image_mode": {"type": "string"},
    "preprocessing": {
        "type": "object",
        "description": "The steps run with Pillow and numpy before the graph.",
    },
    "graph": {
        "type": "object",
        "description": "What the graph does around the network: scaling, normalisation, "
        "activation.",
    },
    "source": {
        "type": "object",
        "description": "The fastai export it was compiled from, and the versions that compiled it.",
    },
    "parity": {
        "type": "object",
        "description": "How closely it matched learn.predict when compiled.",
    },
    "explanation": {
        "type": "object",
        "nullable": True,
        "description": "Whether explain=true works for this model: how its maps are made "
        "(where the network was split, and their parity with Recipro-CAM computed with torch "
        "on the learner when compiled; for int8, their agreement with fp32's), or `refused`: "
        "why not, in one line.",
        "properties": {
            "method": {"type": "string", "enum": ["recipro-cam"]},
            "refused": {"type": "string"},
        },
    },
}
_prediction_id = {"type": "string", "description": "An answer's `prediction_id`."}


def _feedback(title: str, field: str, schema: dict[str, Any], about: str) -> dict[str, Any]:
    return {
        "type": "object",
        "title": title,
        "description": about,
        "required": ["prediction_id", field],
        "additionalProperties": False,
        "properties": {"prediction_id": _prediction_id, field: schema},
    }


# POST /api/feedback's JSON bodies: one for a confirmation, one for each kind's correction.
_feedback_schemas = {
    "Feedback": {
        "description": "A confirmation, or the correction the served model's kind takes.",
        "oneOf": [ref(name) for name in ("Confirmation", "LabelFix", "LabelsFix", "ValuesFix")],
    },
    "Confirmation": _feedback(
        "Confirmation", "correct", {"type": "boolean", "enum": [True]}, "The answer was right."
    ),
    "LabelFix": _feedback(
        "LabelFix", "label", {"type": "string"}, "A single-label model's: the photo's class."
    ),
    "LabelsFix": _feedback(
        "LabelsFix",
        "labels",
        {"type": "array", "items": {"type": "string"}},
        "A multi-label model's: every label the photo has (none is an answer too).",
    ),
    "ValuesFix": _feedback(
        "ValuesFix",
        "values",
        {"type": "array", "items": {"type": "number"}},
        "A regression model's: the photo's values, as many as the model gives.",
    ),
    "FeedbackKept": {
        "type": "object",
        "required": ["prediction_id", "feedback"],
        "properties": {
            "prediction_id": _prediction_id,
            "feedback": {
                "type": "string",
                "enum": ["confirmed", "corrected"],
                "description": "A correction that says what the answer said is a confirmation.",
            },
        },
    },
    "FeedbackSummary": {
        "type": "object",
        "required": ["total", "confirmed", "corrected", "classes", "confused"],
        "properties": {
            "total": {"type": "integer"},
            "confirmed": {"type": "integer"},
            "corrected": {"type": "integer"},
            "classes": {
                "type": "array",
                "description": "Each class the model answered, most corrected first: how often "
                "people confirmed that answer, and how often they corrected it (a multi-label "
                "answer counts for each of its labels; regression has none).",
                "items": {
                    "type": "object",
                    "required": ["label", "confirmed", "corrected"],
                    "properties": {
                        "label": {"type": "string"},
                        "confirmed": {"type": "integer"},
                        "corrected": {"type": "integer"},
                    },
                },
            },
            "confused": {
                "type": "array",
                "description": "The most frequent (predicted, corrected) pairs, as fastai's "
                "most_confused (a multi-label answer's labels space-separated), up to 20.",
                "items": {
                    "type": "object",
                    "required": ["predicted", "corrected", "count"],
                    "properties": {
                        "predicted": {"type": "string"},
                        "corrected": {"type": "string"},
                        "count": {"type": "integer"},
                    },
                },
            },
        },
    },
}

SCHEMAS = {
    "ErrorCode": {
        "type": "string",
        "enum": list(ERRORS),
        "description": "Stable error codes (docs/api.md has the table): "
        + "; ".join(f"`{code}`: {entry.meaning}" for code, entry in ERRORS.items()),
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "example": {
            "error": {
                "code": "unsupported_media_type",
                "message": "This is not an image we can read (JPEG, PNG, WebP, GIF, BMP, TIFF "
                "or HEIC).",
                "request_id": "4f1c0e6b2a9d4e0f8c7b6a5d4e3f2a1b",
            }
        },
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": ref("ErrorCode"),
                    "message": {"type": "string", "description": "For people; may change."},
                    "request_id": {"type": "string", "description": "As in X-Request-ID."},
                },
            }
        },
    },
    "UrlSource": _url_source,
    "Base64Source": _base64_source,
    "ImageSource": {
        "description": "An image named by URL, or sent as base64.",
        "oneOf": [ref("UrlSource"), ref("Base64Source")],
    },
    "AnswerMeta": {
        "type": "object",
        "required": ["model", "elapsed_ms"],
        "properties": {
            "model": {"type": "string", "description": "The model's name."},
            "elapsed_ms": {"type": "number"},
            "prediction_id": {
                "type": "string",
                "description": "With FEEDBACK_DIR set (and a model whose answers take "
                "feedback): this answer's id, for POST /api/feedback within "
                "FEEDBACK_HOLD_MINUTES.",
            },
        },
    },
    "PredictResponse": {
        "description": "The served model's kind of answer (/api/model says which kind), with "
        "the model and the time taken.",
        "oneOf": [ref(f"{_pascal(name)}Answer") for name in KINDS],
    },
    "BatchRequest": {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": ref("ImageSource"), "minItems": 1}},
    },
    "BatchResponse": {
        "type": "object",
        "required": ["results", "model", "elapsed_ms"],
        "properties": {
            "results": {
                "type": "array",
                "description": "One per item, in order: an answer, or that item's error.",
                "items": {
                    "oneOf": [*(ref(k.answer_schema()) for k in KINDS.values()), ref("Error")]
                },
            },
            "model": {"type": "string"},
            "elapsed_ms": {"type": "number"},
        },
    },
    "ModelInfo": {
        "description": "The served model: what its compiled file records (ModelMeta), and "
        "what its kind says of it (`kind` says which).",
        "oneOf": [ref(f"{_pascal(name)}Model") for name in KINDS],
    },
    "ModelMeta": {
        "type": "object",
        "required": [
            "name",
            "file",
            "sha256",
            "runtime",
            "precision",
            "decoding",
            "source",
            "parity",
            "explanation",
        ],
        "properties": _model_meta_properties,
    },
    **_feedback_schemas,
    "Status": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}},
    },
}

for _name, _kind in KINDS.items():
    SCHEMAS |= _kind.schemas
    SCHEMAS[f"{_pascal(_name)}Answer"] = {"allOf": [ref(_kind.answer_schema()), ref("AnswerMeta")]}
    SCHEMAS[f"{_pascal(_name)}Model"] = {"allOf": [_kind.model_schema(), ref("ModelMeta")]}
