"""The OpenAPI document, written for client generators: every operation named and
tagged, request bodies required, every status an operation can answer listed with
the error codes it can carry (from app/error_codes.py) and the headers that come
with it. Operations are matched to the route table, which a test holds both ways.
"""

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.error_codes import (
    ADMIN,
    ANY,
    BATCH,
    BODY,
    ERRORS,
    FEEDBACK,
    IMAGE,
    PREDICT,
    READY,
    RETRY_AFTER,
    URL,
)
from app.http.openapi_schemas import SCHEMAS, ref
from app.kinds import KINDS, Kind

DESCRIPTION = (
    "Predictions of a fastai vision model compiled to ONNX. The answers are the served "
    f"model's kind's ({', '.join(KINDS)}): /api/model says which."
)
# What the example of an answer adds to the kind's own (the served kind's, else the first's).
EXAMPLE_META = {"model": "export.pkl", "elapsed_ms": 46.1}
HEADERS = {
    "X-Request-ID": {
        "description": "The request's id: yours, echoed, when you send a sane one (letters, "
        "digits and ._:-, up to 128), else a new one. Error bodies repeat it.",
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer"},
    },
    "WWW-Authenticate": {
        "description": "The scheme to authenticate with: Bearer (ADMIN_TOKEN).",
        "schema": {"type": "string"},
    },
}
SECURITY = {
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The server's ADMIN_TOKEN; unset there, the feedback's export and "
        "summary are off (403).",
    }
}
IMAGE_FORM = {
    "type": "object",
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "The image file."},
        "url": {"type": "string", "description": "Or an http(s) address of an image."},
    },
}
BATCH_FORM = {
    "type": "object",
    "description": "At least one `file` or `url` field.",
    "minProperties": 1,
    "properties": {
        "file": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"}},
        "url": {"type": "array", "minItems": 1, "items": {"type": "string"}},
    },
}


def _json(
    schema: dict[str, Any], description: str, example: dict[str, Any] | None = None
) -> dict[str, Any]:
    content = {"schema": schema} | ({"example": example} if example else {})
    return {
        "description": description,
        "headers": {"X-Request-ID": ref_header("X-Request-ID")},
        "content": {"application/json": content},
    }


def ref_header(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/headers/{name}"}


def errors(*scopes: str) -> dict[str, Any]:
    """Every status the scopes' codes answer with, each listing its codes."""
    by_status: dict[int, list[str]] = {}
    for code, entry in ERRORS.items():
        if set(entry.scopes) & {ANY, *scopes}:
            for status in entry.statuses:
                by_status.setdefault(status, []).append(code)
    responses = {}
    for status, codes in sorted(by_status.items()):
        response = _json(ref("Error"), "An error, with one of these codes: " + ", ".join(codes))
        if RETRY_AFTER & set(codes):
            response["headers"]["Retry-After"] = ref_header("Retry-After")
        if "unauthorized" in codes:
            response["headers"]["WWW-Authenticate"] = ref_header("WWW-Authenticate")
        responses[str(status)] = response
    return responses


def _body(**content: dict[str, Any]) -> dict[str, Any]:
    kinds = {
        "multipart": "multipart/form-data",
        "form": "application/x-www-form-urlencoded",
        "json": "application/json",
    }
    return {"required": True, "content": {kinds[k]: {"schema": v} for k, v in content.items()}}


PREDICTION = _json(ref("PredictResponse"), "The answer, as the model's kind gives it.")
# Each kind's query options (top_k), each a parameter of every prediction operation.
PARAMETERS = {
    "".join(w.capitalize() for w in p["name"].split("_")): p
    for kind in KINDS.values()
    for p in kind.parameters
}
OPTIONS = [{"$ref": f"#/components/parameters/{name}"} for name in PARAMETERS]
OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/api/predict"): {
        "operationId": "predictUrl",
        "tags": ["predict"],
        "summary": "Predict for the image at a URL",
        "parameters": [
            {
                "name": "url",
                "in": "query",
                "required": True,
                "schema": {"type": "string"},
                "description": "The http(s) address of the image.",
            },
            *OPTIONS,
        ],
        "responses": {"200": PREDICTION, **errors(URL, IMAGE, PREDICT)},
    },
    ("POST", "/api/predict"): {
        "operationId": "predict",
        "tags": ["predict"],
        "summary": "Predict for one image",
        "description": "A multipart upload (field `file`), a form or multipart field `url`, "
        'JSON `{"url": ...}` or JSON `{"image": "<base64>"}`. A browser form post (Accept '
        "text/html) gets the answer rendered in the page instead.",
        "parameters": OPTIONS,
        "requestBody": _body(multipart=IMAGE_FORM, form=IMAGE_FORM, json=ref("ImageSource")),
        "responses": {"200": PREDICTION, **errors(BODY, URL, IMAGE, PREDICT)},
    },
    ("POST", "/api/predict/batch"): {
        "operationId": "predictBatch",
        "tags": ["predict"],
        "summary": "Predict for several images in one request",
        "description": "Multipart with several `file` (and/or `url`) fields, or JSON "
        '`{"items": [...]}`. Results come back in order, each an answer or that item\'s error.',
        "parameters": OPTIONS,
        "requestBody": _body(multipart=BATCH_FORM, json=ref("BatchRequest")),
        "responses": {
            "200": _json(ref("BatchResponse"), "One result per item, in order."),
            **errors(BODY, BATCH, URL, IMAGE, PREDICT),
        },
    },
    ("GET", "/api/model"): {
        "operationId": "getModel",
        "tags": ["model"],
        "summary": "Describe the served model",
        "responses": {
            "200": _json(ref("ModelInfo"), "Its kind and the kind's own, input, origin, parity."),
            **errors(),
        },
    },
    ("POST", "/api/feedback"): {
        "operationId": "postFeedback",
        "tags": ["feedback"],
        "summary": "Say whether an answer was right, or what the photo is",
        "description": "With FEEDBACK_DIR set, each /api/predict answer carries a "
        "`prediction_id`, and its photo is held for FEEDBACK_HOLD_MINUTES. Name it here with "
        "`correct: true`, or with what the photo is: `label` for a single-label model, "
        "`labels` for a multi-label one, `values` for regression (the model's labels, or new "
        "ones where FEEDBACK_NEW_LABELS allows). The photo is then kept, with what was said. "
        "One answer per prediction. The page's form posts the same fields as a form "
        "(`labels` and `values` repeated, `correct=true`), and a browser's post (Accept "
        "text/html) gets the page back; this document describes the JSON, which generated "
        "clients send.",
        "requestBody": _body(json=ref("Feedback")),
        "responses": {
            "200": _json(ref("FeedbackKept"), "Kept: the photo and what was said of it."),
            **errors(BODY, FEEDBACK),
        },
    },
    ("GET", "/api/feedback/export"): {
        "operationId": "exportFeedback",
        "tags": ["feedback"],
        "summary": "The feedback as a dataset fastai reads: a zip",
        "description": "`images/<sha256>.<ext>` and `labels.csv` (fname, label, is_valid, "
        "predicted, probability, model_sha256, created), for `ImageDataLoaders.from_df(df, "
        'path, fn_col="fname", label_col="label", valid_col="is_valid")`.',
        "security": [{"adminToken": []}],
        "responses": {
            "200": {
                "description": "The zip.",
                "headers": {"X-Request-ID": ref_header("X-Request-ID")},
                "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            },
            **errors(ADMIN),
        },
    },
    ("GET", "/api/feedback/summary"): {
        "operationId": "getFeedbackSummary",
        "tags": ["feedback"],
        "summary": "What the corrections say: per class, and the most frequent mix-ups",
        "security": [{"adminToken": []}],
        "responses": {
            "200": _json(ref("FeedbackSummary"), "Counts, per class, and (predicted, corrected)."),
            **errors(ADMIN),
        },
    },
    ("GET", "/healthz"): {
        "operationId": "getHealth",
        "tags": ["health"],
        "summary": "Liveness: answers at once, even while predictions run",
        "responses": {"200": _json(ref("Status"), "The process is serving."), **errors()},
    },
    ("GET", "/readyz"): {
        "operationId": "getReadiness",
        "tags": ["health"],
        "summary": "Readiness: 200 once the model is loaded and warm",
        "responses": {"200": _json(ref("Status"), "Ready to predict."), **errors(READY)},
    },
}
TAGS = [
    {
        "name": "predict",
        "description": "The served model's answers for images, as its kind gives them.",
    },
    {"name": "model", "description": "The served model."},
    {
        "name": "feedback",
        "description": "Answers confirmed or corrected, kept as a dataset (FEEDBACK_DIR).",
    },
    {"name": "health", "description": "For load balancers and orchestrators."},
]


def document(routes: list[Any], kind: Kind | None = None) -> dict[str, Any]:
    """The document for this route table; the served `kind`, when a model is loaded,
    bounds its options (top_k's maximum is the model's classes) and gives the example."""
    example = {**(kind or next(iter(KINDS.values()))).example, **EXAMPLE_META}
    answer = _json(ref("PredictResponse"), PREDICTION["description"], example)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route) or not route.include_in_schema:
            continue
        methods = route.methods or {
            m.upper() for m in ("get", "post") if hasattr(route.endpoint, m)
        }
        for method in sorted(methods - {"HEAD"}):
            operation = OPERATIONS[(method, route.path)]
            if operation["responses"]["200"] is PREDICTION:
                operation = {**operation, "responses": {**operation["responses"], "200": answer}}
            paths.setdefault(route.path, {})[method.lower()] = operation
    served = {p["name"]: p for p in kind.bound_parameters()} if kind else {}
    parameters = {name: served.get(p["name"], p) for name, p in PARAMETERS.items()}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Pounce", "version": "1.0.0", "description": DESCRIPTION},
        "servers": [{"url": "/", "description": "This server"}],
        "security": [],
        "tags": TAGS,
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "headers": HEADERS,
            "parameters": parameters,
            "securitySchemes": SECURITY,
        },
    }


async def openapi_schema(request: Request) -> JSONResponse:
    return JSONResponse(document(request.app.routes, request.state.services.pipeline.kind))
