"""The JSON API. Each endpoint's docstring is its OpenAPI description.

`/api/predict` also answers the home page's plain form posts: a browser (which
asks for text/html) gets the result rendered in the page, a program gets JSON.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.datastructures import UploadFile
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.disconnect import until_disconnect
from app.errors import ApiError, wants_html
from app.intake import batch_sources, single_source, source_from_form_value, source_from_json
from app.pages import render_page


def _top_k(request: Request) -> int:
    return request.app.state.classifier.top_k(request.query_params.get("top_k"))


async def _image_bytes(request: Request, source: str | bytes) -> bytes:
    """The image itself, its bytes counted against the request's share of the upload
    budget. No prediction slot is held meanwhile."""
    return await request.app.state.classifier.image_bytes(source, request.state.reservation)


async def _predict(request: Request, data: bytes, top_k: int) -> dict:
    """Decode and classify: the CPU work, which runs only inside a prediction slot."""
    return await request.app.state.classifier.classify(data, top_k)


async def _classify(request: Request, source: str | bytes, top_k: int) -> dict:
    data = await _image_bytes(request, source)
    async with _admitted(request):
        return await _predict(request, data, top_k)


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
        source = await single_source(request)
        result = await until_disconnect(request, _classify(request, source, top_k))
        result["model"] = request.app.state.classifier.model.name
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
    items = await batch_sources(request)
    results = await until_disconnect(request, _classify_batch(request, items, top_k))
    return JSONResponse(
        {
            "results": results,
            "model": request.app.state.classifier.model.name,
            "elapsed_ms": _elapsed_ms(started),
        }
    )


async def _classify_batch(request: Request, items: list, top_k: int) -> list[dict]:
    """Every item's bytes first (fetched at once, no slot held), then every prediction
    under one slot. Each item fails alone, with its own error."""

    async def load(item: object) -> bytes | ApiError:
        try:
            if isinstance(item, str | UploadFile):
                return await _image_bytes(request, await source_from_form_value(item))
            return await _image_bytes(request, source_from_json(item))
        except ApiError as exc:
            return exc

    async def predict(data: bytes | ApiError) -> dict:
        try:
            if isinstance(data, ApiError):
                raise data
            return await _predict(request, data, top_k)
        except ApiError as exc:
            return exc.body()

    loaded = await asyncio.gather(*(load(item) for item in items))
    async with _admitted(request):
        return list(await asyncio.gather(*(predict(data) for data in loaded)))


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
        raise ApiError("not_ready", "The model is not loaded, or the server is stopping.")
    return JSONResponse({"status": "ready"})
