"""The OpenAPI document, built by Starlette's SchemaGenerator from the route table.

Each endpoint's docstring holds its operation (YAML); the shared response
shapes live here once, as components.
"""

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.schemas import SchemaGenerator

_prediction = {
    "type": "object",
    "required": ["label", "probability"],
    "properties": {
        "label": {"type": "string"},
        "probability": {"type": "number", "minimum": 0, "maximum": 1},
    },
}
_result = {
    "type": "object",
    "required": ["label", "probability", "predictions"],
    "properties": {
        "label": {"type": "string"},
        "probability": {"type": "number", "minimum": 0, "maximum": 1},
        "predictions": {
            "type": "array",
            "items": {"$ref": "#/components/schemas/Prediction"},
        },
    },
}
_multi_label_result = {
    "type": "object",
    "description": "A multi-label model's answer: every label's own probability (sigmoid), "
    "and the labels whose probability is above the learner's threshold.",
    "required": ["kind", "labels", "threshold", "predictions"],
    "properties": {
        "kind": {"type": "string", "enum": ["multi-label"]},
        "labels": {
            "type": "array",
            "items": {"type": "string"},
            "description": "The labels past the threshold, most probable first; may be empty.",
        },
        "threshold": {"type": "number", "minimum": 0, "maximum": 1},
        "predictions": {
            "type": "array",
            "items": {"$ref": "#/components/schemas/Prediction"},
            "description": "Every label (or top_k of them), most probable first.",
        },
    },
}
_error = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "request_id": {"type": "string"},
            },
        }
    },
}


def _json(description: str, schema: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


COMPONENTS = {
    "parameters": {
        "TopK": {
            "name": "top_k",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 1},
            "description": "How many classes to return (default from TOP_K).",
        }
    },
    "responses": {
        "Prediction": _json("The prediction, classes sorted by probability.", "PredictResponse"),
        "Error": _json("An error.", "Error"),
    },
    "schemas": {
        "Prediction": _prediction,
        "Result": _result,
        "MultiLabelResult": _multi_label_result,
        "Error": _error,
        "ImageSource": {
            "type": "object",
            "description": "Exactly one of `url` or `image`.",
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": False,
            "properties": {
                "url": {
                    "type": "string",
                    "description": "An http(s) address of an image.",
                },
                "image": {
                    "type": "string",
                    "description": "The image file, base64-encoded.",
                },
            },
        },
        "PredictResponse": {
            "description": "A single-label model's answer (Result), or a multi-label one's "
            "(MultiLabelResult, which says `kind`); /api/model says which the model gives.",
            "allOf": [
                {
                    "oneOf": [
                        {"$ref": "#/components/schemas/Result"},
                        {"$ref": "#/components/schemas/MultiLabelResult"},
                    ]
                },
                {
                    "type": "object",
                    "required": ["model", "elapsed_ms"],
                    "properties": {
                        "model": {
                            "type": "string",
                            "description": "The model file's name.",
                        },
                        "elapsed_ms": {"type": "number"},
                    },
                },
            ],
        },
        "BatchResponse": {
            "type": "object",
            "required": ["results", "model", "elapsed_ms"],
            "properties": {
                "results": {
                    "type": "array",
                    "items": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/Result"},
                            {"$ref": "#/components/schemas/MultiLabelResult"},
                            {"$ref": "#/components/schemas/Error"},
                        ]
                    },
                },
                "model": {"type": "string"},
                "elapsed_ms": {"type": "number"},
            },
        },
        "ModelInfo": {
            "type": "object",
            "required": [
                "file",
                "sha256",
                "runtime",
                "kind",
                "precision",
                "class_count",
                "classes",
                "source",
                "parity",
            ],
            "properties": {
                "file": {"type": "string", "description": "The compiled .onnx file served."},
                "sha256": {"type": "string"},
                "runtime": {
                    "type": "object",
                    "description": "What runs the compiled graph.",
                    "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
                },
                "kind": {
                    "type": "string",
                    "enum": ["single-label", "multi-label"],
                    "description": "single-label: the top class is the answer; multi-label: "
                    "every label above `threshold`.",
                },
                "threshold": {"type": "number", "nullable": True},
                "precision": {
                    "type": "string",
                    "enum": ["fp32", "int8"],
                    "description": "int8: statically quantized with `compile --int8`.",
                },
                "quantization": {
                    "type": "object",
                    "nullable": True,
                    "description": "For int8: how it was calibrated, and its agreement with "
                    "fp32 on held-out images.",
                },
                "architecture": {"type": "string"},
                "class_count": {"type": "integer"},
                "classes": {"type": "array", "items": {"type": "string"}},
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
                    "description": "What the graph does around the network: scaling, "
                    "normalisation, activation.",
                },
                "source": {
                    "type": "object",
                    "description": "The fastai export it was compiled from, and the versions "
                    "that compiled it.",
                    "properties": {
                        "file": {"type": "string"},
                        "sha256": {"type": "string"},
                        "fastai_version": {"type": "string"},
                        "torch_version": {"type": "string"},
                    },
                },
                "parity": {
                    "type": "object",
                    "description": "How closely it matched learn.predict when compiled.",
                    "properties": {
                        "images": {"type": "integer"},
                        "tolerance": {"type": "number"},
                        "max_abs_diff": {"type": "number"},
                        "same_labels": {
                            "type": "integer",
                            "description": "Images decoded to the same labels.",
                        },
                    },
                },
            },
        },
    },
}

schemas = SchemaGenerator(
    {
        "openapi": "3.0.3",
        "info": {"title": "Pounce", "version": "1.0.0"},
        "components": COMPONENTS,
    }
)


async def openapi_schema(request: Request) -> JSONResponse:
    return JSONResponse(schemas.get_schema(routes=request.app.routes))
