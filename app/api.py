"""The JSON API's endpoints. Their OpenAPI description is app/openapi.py's.

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
    async with admitted(request):
        return await _predict(request, data, top_k)


def elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


class Predict(HTTPEndpoint):
    """Classify one image; GET takes a URL, POST takes a file, a URL or base64."""

    async def get(self, request: Request) -> Response:
        """The image at `?url=`."""
        return await self._respond(request)

    async def post(self, request: Request) -> Response:
        """One image: a multipart file or url, a form url, or JSON url or base64."""
        return await self._respond(request)

    async def _respond(self, request: Request) -> Response:
        started = time.perf_counter()
        top_k = _top_k(request)
        source = await single_source(request)
        result = await until_disconnect(request, _classify(request, source, top_k))
        result["model"] = request.app.state.classifier.model.name
        result["elapsed_ms"] = elapsed_ms(started)
        if wants_html(request):
            return render_page(request, result=result)
        return JSONResponse(result)


async def predict_batch(request: Request) -> JSONResponse:
    """Several images in one request; each result, or error, in its place."""
    started = time.perf_counter()
    top_k = _top_k(request)
    items = await batch_sources(request)
    results = await until_disconnect(request, _classify_batch(request, items, top_k))
    return JSONResponse(
        {
            "results": results,
            "model": request.app.state.classifier.model.name,
            "elapsed_ms": elapsed_ms(started),
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
    async with admitted(request):
        return list(await asyncio.gather(*(predict(data) for data in loaded)))


@asynccontextmanager
async def admitted(request: Request) -> AsyncIterator[None]:
    """Hold an admission slot for a prediction request (503 when full)."""
    async with request.app.state.admission.slot() as waited:
        request.app.state.metrics.queue_wait.observe(waited)
        yield


async def model_info(request: Request) -> JSONResponse:
    """What /api/model says: the served model and where it came from."""
    return JSONResponse(request.app.state.model_info)


async def healthz(request: Request) -> JSONResponse:
    """Liveness: answers at once, even while predictions run."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Readiness: 200 once the model is loaded and warm; 503 before and while stopping."""
    if not request.app.state.ready:
        raise ApiError("not_ready", "The model is not loaded, or the server is stopping.")
    return JSONResponse({"status": "ready"})
