"""The feedback endpoints (docs/api.md, "Was it right?"): a confirmation or a correction of
an answer, the export of what people said as a dataset, and its summary. Their OpenAPI
description is app/http/openapi.py's; the work is app/feedback/'s, in a thread (disk).

`/api/feedback` also answers the page: a browser's plain form post (Accept text/html)
gets the page back with a thank-you (or the error), a program gets JSON.
"""

import logging
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from app.errors import ApiError
from app.feedback.admin import bearer, token_matches
from app.feedback.correction import applicable, read_correction
from app.feedback.export import write_export
from app.feedback.store import Answered, FeedbackStore
from app.feedback.summary import summarize
from app.http.pages import render_page, wants_html
from app.intake.request import fields
from app.services import Services

logger = logging.getLogger("app")
CHUNK = 1024 * 1024  # an export is sent in pieces of this size
THANKS = {
    "confirmed": "Thank you: that answer is marked right.",
    "corrected": "Thank you: the correction is kept, with the photo, to train the model on.",
}


def _store(services: Services) -> FeedbackStore:
    if services.feedback is None:
        raise ApiError("feedback_off", "Feedback is off on this server (no FEEDBACK_DIR).")
    return services.feedback


async def hold(services: Services, data: bytes, answer: dict[str, Any]) -> None:
    """Give `answer` a `prediction_id` and hold its photo for a correction to name, when
    feedback is on and the kind takes it. A store that can't hold it (a full disk)
    costs the answer its id, never the answer."""
    kind = services.pipeline.kind
    if services.feedback is None or kind.corrected_by is None:
        return
    predicted, probability = kind.predicted(answer)
    answered = Answered(kind.name, predicted, probability, services.model_info["sha256"])
    try:
        prediction_id = await anyio.to_thread.run_sync(services.feedback.hold, data, answered)
    except (OSError, sqlite3.Error):
        logger.warning("the answered photo could not be held for feedback", exc_info=True)
        return
    services.metrics.feedback_holds.labels("held" if prediction_id else "too_large").inc()
    if prediction_id:
        answer["prediction_id"] = prediction_id


async def feedback(request: Request) -> Response:
    """Confirm a held answer, or correct it."""
    services: Services = request.state.services
    store = _store(services)
    kind = services.pipeline.kind
    applicable(kind)  # before reading the body: nothing it says changes this
    said = read_correction(await fields(request), kind, services.settings.feedback_new_labels)
    model = services.model_info["sha256"]
    record = await anyio.to_thread.run_sync(store.record, said.prediction_id, said.label, model)
    services.metrics.feedback.labels(record.verdict).inc()
    if wants_html(request):
        return render_page(request, notice=THANKS[record.verdict])
    return JSONResponse({"prediction_id": record.prediction_id, "feedback": record.verdict})


def _admin(request: Request) -> FeedbackStore:
    """The store, for a request bearing ADMIN_TOKEN."""
    services: Services = request.state.services
    store = _store(services)
    token = services.settings.admin_token
    if not token:
        raise ApiError("admin_off", "No ADMIN_TOKEN is set here: the export and summary are off.")
    if not token_matches(bearer(request.headers.get("authorization")), token):
        error = ApiError("unauthorized", "Send `Authorization: Bearer <ADMIN_TOKEN>`.")
        error.headers = {"WWW-Authenticate": 'Bearer realm="feedback"'}
        raise error
    return store


async def export(request: Request) -> Response:
    """The dataset: a zip of the kept photos and labels.csv, written in a thread to a
    temporary file (the store's tmp/) that is removed as soon as it is open, then sent."""
    store = _admin(request)
    out = store.tmp / f"{secrets.token_hex(8)}.zip"
    try:
        await anyio.to_thread.run_sync(write_export, store, out)
        file = await anyio.to_thread.run_sync(out.open, "rb")
    finally:
        out.unlink(missing_ok=True)  # the open file is read to its end all the same

    async def chunks() -> AsyncIterator[bytes]:
        try:
            while chunk := await anyio.to_thread.run_sync(file.read, CHUNK):
                yield chunk
        finally:
            file.close()

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    headers = {
        "Content-Length": str(os.fstat(file.fileno()).st_size),
        "Content-Disposition": f'attachment; filename="feedback-{stamp}.zip"',
    }
    return StreamingResponse(chunks(), media_type="application/zip", headers=headers)


async def summary(request: Request) -> JSONResponse:
    """Per class, confirmed and corrected; the most frequent (predicted, corrected) pairs."""
    store = _admin(request)
    records = await anyio.to_thread.run_sync(store.records)
    return JSONResponse(summarize(records))
