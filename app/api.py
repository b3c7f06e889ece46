"""The JSON API. Each endpoint's docstring is its OpenAPI description.

`/api/predict` also answers the home page's plain form posts: a browser (which
asks for text/html) gets the result rendered in the page, a program gets JSON.
"""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.datastructures import FormData, UploadFile
from starlette.endpoints import HTTPEndpoint
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.errors import ApiError, wants_html
from app.images import decode_base64
from app.pages import render_page


def _top_k(request: Request) -> int:
    settings = request.app.state.settings
    classes = len(request.app.state.predictor.model.labels)
    raw = request.query_params.get("top_k")
    if raw is None:
        return min(settings.top_k, classes)
    if not raw.isdigit() or not 1 <= int(raw) <= classes:
        raise ApiError(
            422,
            "invalid_top_k",
            f"top_k must be an integer from 1 to {classes}, not {raw[:20]!r}.",
        )
    return int(raw)


async def _json_body(request: Request) -> dict:
    body = await request.body()
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "The JSON body must be an object.")
    return data


async def _form(request: Request, max_files: int) -> FormData:
    try:
        return await request.form(max_files=max_files, max_fields=max_files + 8)
    except HTTPException as exc:  # Starlette's answer to a malformed or oversized form
        raise ApiError(400, "invalid_form", f"The form data was refused: {exc.detail}") from None


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _well_formed(item: object) -> bool:
    """A batch item's shape: one key, url or image, whose value is a string."""
    return (
        isinstance(item, dict)
        and len(item) == 1
        and next(iter(item)) in ("url", "image")
        and isinstance(next(iter(item.values())), str)
    )


def _source_from_json(item: object) -> str | bytes:
    """A JSON object naming one image: {"url": ...} or {"image": <base64>}."""
    if not isinstance(item, dict) or len({"url", "image"} & item.keys()) != 1:
        raise ApiError(400, "no_image", 'Send exactly one of "url" or "image" (base64).')
    if "url" in item:
        if not isinstance(item["url"], str):
            raise ApiError(400, "invalid_url", '"url" must be a string.')
        return item["url"]
    if not isinstance(item["image"], str):
        raise ApiError(400, "invalid_base64", '"image" must be a base64 string.')
    return decode_base64(item["image"])


async def _source_from_form_value(value: str | UploadFile) -> str | bytes:
    if isinstance(value, UploadFile):
        return await value.read()
    return value


async def _single_source(request: Request) -> str | bytes:
    """The one image a predict request names, from whichever body it sent."""
    if request.method == "GET":
        url = request.query_params.get("url")
        if not url:
            raise ApiError(400, "no_image", "Pass the image's address as ?url=...")
        return url
    kind = _content_type(request)
    if kind == "application/json":
        return _source_from_json(await _json_body(request))
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await _form(request, max_files=1)
        upload = form.get("file")
        if isinstance(upload, UploadFile) and (upload.filename or upload.size):
            return await upload.read()
        url = form.get("url")
        if isinstance(url, str) and url.strip():
            return url
        raise ApiError(400, "no_image", 'Send an image file in the "file" field, or a "url".')
    raise ApiError(
        415,
        "unsupported_content_type",
        "Send multipart/form-data (a file), or JSON with a url or a base64 image.",
    )


async def _batch_sources(request: Request) -> list[str | bytes]:
    limit = request.app.state.settings.max_batch_items
    kind = _content_type(request)
    if kind == "application/json":
        items = (await _json_body(request)).get("items")
        if not isinstance(items, list) or not items:
            raise ApiError(
                400,
                "no_image",
                'Send {"items": [{"url": ...} or {"image": ...}, ...]}.',
            )
        if len(items) > limit:
            raise ApiError(413, "too_many_items", f"A batch holds at most {limit} images.")
        if not all(_well_formed(item) for item in items):
            raise ApiError(
                400, "invalid_item", 'Each item must be {"url": "..."} or {"image": "<base64>"}.'
            )
        return list(items)
    if kind == "multipart/form-data":
        form = await _form(request, max_files=limit + 1)
        values = [v for k, v in form.multi_items() if k in ("file", "url")]
        if not values:
            raise ApiError(400, "no_image", 'Send image files in "file" fields, or "url" fields.')
        if len(values) > limit:
            raise ApiError(413, "too_many_items", f"A batch holds at most {limit} images.")
        return values
    raise ApiError(
        415,
        "unsupported_content_type",
        "Send multipart/form-data files, or JSON with items.",
    )


async def _classify(request: Request, source: str | bytes, top_k: int) -> dict:
    state = request.app.state
    data = await state.fetcher.fetch(source) if isinstance(source, str) else source
    probs = await state.predictor.predict(data)
    predictions = state.predictor.model.top_k(probs, top_k)
    return {
        "label": predictions[0]["label"],
        "probability": predictions[0]["probability"],
        "predictions": predictions,
    }


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


class Predict(HTTPEndpoint):
    """Classify one image; GET takes a URL, POST takes a file, a URL or base64."""

    async def get(self, request: Request) -> Response:
        """
        summary: Classify the image at a URL
        parameters:
          - {name: url, in: query, required: true, schema: {type: string},
             description: The http(s) address of the image.}
          - {$ref: '#/components/parameters/TopK'}
        responses:
          200: {$ref: '#/components/responses/Prediction'}
          default: {$ref: '#/components/responses/Error'}
        """
        return await self._respond(request)

    async def post(self, request: Request) -> Response:
        """
        summary: Classify one image
        description: >
          Send a multipart upload (field `file`), a form or multipart field
          `url`, JSON `{"url": ...}` or JSON `{"image": "<base64>"}`. A browser
          form post (Accept text/html) gets the result rendered in the page.
        parameters:
          - {$ref: '#/components/parameters/TopK'}
        requestBody:
          content:
            multipart/form-data:
              schema:
                type: object
                properties:
                  file: {type: string, format: binary}
                  url: {type: string}
            application/x-www-form-urlencoded:
              schema:
                type: object
                properties:
                  url: {type: string}
            application/json:
              schema: {$ref: '#/components/schemas/ImageSource'}
        responses:
          200: {$ref: '#/components/responses/Prediction'}
          default: {$ref: '#/components/responses/Error'}
        """
        return await self._respond(request)

    async def _respond(self, request: Request) -> Response:
        started = time.perf_counter()
        top_k = _top_k(request)
        async with _admitted(request):
            result = await _classify(request, await _single_source(request), top_k)
        result["model"] = request.app.state.predictor.model.name
        result["elapsed_ms"] = _elapsed_ms(started)
        if wants_html(request):
            return render_page(request, result=result)
        return JSONResponse(result)


async def predict_batch(request: Request) -> JSONResponse:
    """
    summary: Classify several images in one request
    description: >
      Multipart with several `file` (and/or `url`) fields, or JSON
      `{"items": [{"url": ...}, {"image": "<base64>"}]}`. Results come back in
      the same order, each a prediction or an error of its own.
    parameters:
      - {$ref: '#/components/parameters/TopK'}
    requestBody:
      content:
        multipart/form-data:
          schema:
            type: object
            properties:
              file: {type: array, items: {type: string, format: binary}}
              url: {type: array, items: {type: string}}
        application/json:
          schema:
            type: object
            required: [items]
            properties:
              items: {type: array, items: {$ref: '#/components/schemas/ImageSource'}}
    responses:
      200:
        description: One result per item, in order.
        content:
          application/json:
            schema: {$ref: '#/components/schemas/BatchResponse'}
      default: {$ref: '#/components/responses/Error'}
    """
    started = time.perf_counter()
    top_k = _top_k(request)
    async with _admitted(request):
        sources = await _batch_sources(request)
        results = await asyncio.gather(*(_one_of_batch(request, item, top_k) for item in sources))
    return JSONResponse(
        {
            "results": list(results),
            "model": request.app.state.predictor.model.name,
            "elapsed_ms": _elapsed_ms(started),
        }
    )


async def _one_of_batch(request: Request, item: object, top_k: int) -> dict:
    """One batch item's result, or its own error: one bad item fails alone."""
    try:
        if isinstance(item, (str, UploadFile)):
            source = await _source_from_form_value(item)
        else:
            source = _source_from_json(item)
        return await _classify(request, source, top_k)
    except ApiError as exc:
        return exc.body()


@asynccontextmanager
async def _admitted(request: Request) -> AsyncIterator[None]:
    """Hold an admission slot for a prediction request (503 when full)."""
    async with request.app.state.admission.slot() as waited:
        request.app.state.metrics.queue_wait.observe(waited)
        yield


async def model_info(request: Request) -> JSONResponse:
    """
    summary: Describe the served model
    responses:
      200:
        description: Classes, input size, normalisation, file hash and library versions.
        content:
          application/json:
            schema: {$ref: '#/components/schemas/ModelInfo'}
    """
    return JSONResponse(request.app.state.model_info)


async def healthz(request: Request) -> JSONResponse:
    """
    summary: Liveness
    description: Answers at once, even while predictions run.
    responses:
      200:
        description: The process is serving.
        content:
          application/json:
            schema: {type: object, properties: {status: {type: string}}}
    """
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """
    summary: Readiness
    description: >
      200 once the model is loaded and warmed up; 503 before that and while
      shutting down.
    responses:
      200:
        description: Ready to predict.
        content:
          application/json:
            schema: {type: object, properties: {status: {type: string}}}
      503: {$ref: '#/components/responses/Error'}
    """
    if not request.app.state.ready:
        raise ApiError(503, "not_ready", "The model is not loaded, or the server is stopping.")
    return JSONResponse({"status": "ready"})
