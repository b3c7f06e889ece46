"""The JSON API's endpoints. Their OpenAPI description is app/http/openapi.py's.

`/api/predict` also answers the home page: a browser's plain form post (which asks
for text/html) gets the result rendered in the page, and the page's script gets the
result's fragment (app/http/pages.py); a program gets JSON.
"""

import asyncio
import time
from typing import Any

from starlette.datastructures import UploadFile
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.errors import ApiError
from app.http.feedback import hold
from app.http.pages import page_options, page_photo, render_page, wants_html
from app.intake.request import batch_sources, single_source, source_from_form, source_from_json
from app.limits.admission import all_finished
from app.limits.disconnect import until_disconnect
from app.services import Services


def elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


class Predict(HTTPEndpoint):
    """One image's answer; GET takes a URL, POST takes a file, a URL or base64."""

    async def get(self, request: Request) -> Response:
        """The image at `?url=`."""
        return await self._respond(request)

    async def post(self, request: Request) -> Response:
        """One image: a multipart file or url, a form url, or JSON url or base64."""
        return await self._respond(request)

    async def _respond(self, request: Request) -> Response:
        started = time.perf_counter()
        services: Services = request.state.services
        pipeline = services.pipeline
        html = wants_html(request)
        query = request.query_params
        options = page_options(pipeline, query) if html else pipeline.options(query)
        source = await single_source(request)

        async def answer() -> tuple[dict[str, Any], str | None, bytes]:
            data = await pipeline.fetch(source, request.state.reservation)
            async with services.admission.admit():  # decoding, inference, drawing
                if html:
                    result, photo = await all_finished(
                        pipeline.answer(data, options), page_photo(services, data, options)
                    )
                    return result, photo, data
                return await pipeline.answer(data, options), None, data

        result, photo, data = await until_disconnect(request, answer())
        await hold(services, data, result)  # for feedback to name it, when that is on
        result["model"] = pipeline.model.name
        result["elapsed_ms"] = elapsed_ms(started)
        if html:
            return render_page(request, result=result, photo=photo)
        return JSONResponse(result)


async def predict_batch(request: Request) -> JSONResponse:
    """Several images in one request; each result, or error, in its place."""
    started = time.perf_counter()
    services: Services = request.state.services
    options = services.pipeline.options(request.query_params)
    items = await batch_sources(request, services.settings.max_batch_items)
    results = await until_disconnect(request, _answer_batch(request, items, options))
    return JSONResponse(
        {
            "results": results,
            "model": services.pipeline.model.name,
            "elapsed_ms": elapsed_ms(started),
        }
    )


async def _answer_batch(
    request: Request, items: list[object], options: dict[str, Any]
) -> list[dict[str, Any]]:
    """Every item's bytes first (fetched at once, no slot held), then every prediction,
    holding a slot for each image (app/limits/admission.py). Each item fails alone, with
    its own error."""
    services: Services = request.state.services
    pipeline = services.pipeline

    async def fetch(item: object) -> bytes | ApiError:
        try:
            if isinstance(item, str | UploadFile):
                source = await source_from_form(item)
            else:
                source = source_from_json(item)
            return await pipeline.fetch(source, request.state.reservation)
        except ApiError as exc:
            return exc

    async def answer(data: bytes) -> dict[str, Any]:
        try:
            return await pipeline.answer(data, options)
        except ApiError as exc:
            return exc.body()

    fetched = await asyncio.gather(*(fetch(item) for item in items))
    images = [data for data in fetched if isinstance(data, bytes)]
    answers = []
    if images:
        async with services.admission.admit(len(images)) as slots:
            answers = await slots.map(answer, images)
    ordered = iter(answers)
    return [data.body() if isinstance(data, ApiError) else next(ordered) for data in fetched]


async def model_info(request: Request) -> JSONResponse:
    """What /api/model says: the served model and where it came from."""
    return JSONResponse(request.state.services.model_info)


async def healthz(request: Request) -> JSONResponse:
    """Liveness: answers at once, even while predictions run."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Readiness: 200 once the model is loaded and warm; 503 while stopping."""
    if not request.state.services.ready:
        raise ApiError("not_ready", "The model is not loaded, or the server is stopping.")
    return JSONResponse({"status": "ready"})
