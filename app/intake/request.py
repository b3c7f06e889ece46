"""Receiving: what a prediction request names, one image or several, as bytes or URLs.

The body is read here, before any prediction slot is taken (app/limits/admission.py),
under app/limits/body.py's bounds on size, time and memory. A client that goes away
mid-upload surfaces as Starlette's ClientDisconnect (app/http/handlers.py: 499).
"""

import base64
import binascii
import json
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Message

from app.errors import ApiError
from app.intake.flags import FALSE, TRUE
from app.intake.integers import natural

SMALL_BODY = 64 * 1024  # a feedback request's body, at most: a few fields
MAX_FIELDS = 4096  # and its form fields (a multi-label form repeats `labels`)


def decode_base64(text: str) -> bytes:
    """Bytes from base64, with or without a `data:image/...;base64,` prefix."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError("invalid_base64", "The `image` field is not valid base64.") from None


def _json_object(body: bytes) -> dict[str, Any]:
    """A JSON body that must be an object: the predictions' and the feedback's."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise ApiError("invalid_json", "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError("invalid_json", "The JSON body must be an object.")
    return data


async def _json_body(request: Request) -> dict[str, Any]:
    return _json_object(await request.body())


async def _form(request: Request, max_files: int, max_fields: int | None = None) -> FormData:
    try:
        fields = max_files + 8 if max_fields is None else max_fields
        return await request.form(max_files=max_files, max_fields=fields)
    except HTTPException as exc:  # Starlette's answer to a malformed or oversized form
        raise ApiError("invalid_form", f"The form data was refused: {exc.detail}") from None


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


def source_from_json(item: object) -> str | bytes:
    """A JSON object naming one image: {"url": ...} or {"image": <base64>}."""
    if not isinstance(item, dict) or len({"url", "image"} & item.keys()) != 1:
        raise ApiError("no_image", 'Send exactly one of "url" or "image" (base64).')
    if "url" in item:
        if not isinstance(item["url"], str):
            raise ApiError("invalid_url", '"url" must be a string.')
        return item["url"]
    if not isinstance(item["image"], str):
        raise ApiError("invalid_base64", '"image" must be a base64 string.')
    return decode_base64(item["image"])


async def source_from_form(value: str | UploadFile) -> str | bytes:
    """A form field naming one image: a file's bytes, or a URL."""
    if isinstance(value, UploadFile):
        return await value.read()
    return value


async def single_source(request: Request) -> str | bytes:
    """The one image a predict request names, from whichever body it sent."""
    if request.method == "GET":
        url = request.query_params.get("url")
        if not url:
            raise ApiError("no_image", "Pass the image's address as ?url=...")
        return url
    kind = _content_type(request)
    if kind == "application/json":
        return source_from_json(await _json_body(request))
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        form = await _form(request, max_files=1)
        upload = form.get("file")
        if isinstance(upload, UploadFile) and (upload.filename or upload.size):
            return await upload.read()
        named = form.get("url")
        if isinstance(named, str) and named.strip():
            return named
        raise ApiError("no_image", 'Send an image file in the "file" field, or a "url".')
    raise ApiError(
        "unsupported_content_type",
        "Send multipart/form-data (a file), or JSON with a url or a base64 image.",
    )


async def batch_sources(request: Request, limit: int) -> list[object]:
    """The items a batch names (at most `limit`): JSON objects or form values, each read
    into a source later, where it fails alone."""
    kind = _content_type(request)
    if kind == "application/json":
        items = (await _json_body(request)).get("items")
        if not isinstance(items, list) or not items:
            raise ApiError(
                "no_image",
                'Send {"items": [{"url": ...} or {"image": ...}, ...]}.',
            )
        if len(items) > limit:
            raise ApiError("too_many_items", f"A batch holds at most {limit} images.")
        if not all(_well_formed(item) for item in items):
            raise ApiError(
                "invalid_item", 'Each item must be {"url": "..."} or {"image": "<base64>"}.'
            )
        return list(items)
    if kind == "multipart/form-data":
        form = await _form(request, max_files=limit + 1)
        values: list[object] = [v for k, v in form.multi_items() if k in ("file", "url")]
        if not values:
            raise ApiError("no_image", 'Send image files in "file" fields, or "url" fields.')
        if len(values) > limit:
            raise ApiError("too_many_items", f"A batch holds at most {limit} images.")
        return values
    raise ApiError(
        "unsupported_content_type",
        "Send multipart/form-data files, or JSON with items.",
    )


async def small_body(request: Request, limit: int = SMALL_BODY) -> bytes:
    """A body that is a few fields, read up to `limit` bytes (413 past it, the connection
    closed: the rest is not wanted)."""
    declared, size, parts = natural(request.headers.get("content-length", "")) or 0, 0, []
    if declared <= limit:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                break
            parts.append(chunk)
    if declared > limit or size > limit:
        error = ApiError("payload_too_large", f"This body is over {limit // 1024} KB.")
        error.headers = {"Connection": "close"}
        raise error
    return b"".join(parts)


async def fields(request: Request) -> dict[str, object]:
    """A small body's fields: a JSON object as it is, or a form's (`labels` and `values`
    repeat; an empty one is left out, so a form says "no labels" with one empty field;
    `correct` is true or false), for app/feedback/correction.py to check."""
    body = await small_body(request)
    kind = _content_type(request)
    if kind == "application/json":
        return _json_object(body)
    if kind not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise ApiError("unsupported_content_type", "Send JSON, or a form's fields.")

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    form = await _form(Request(request.scope, replay), max_files=0, max_fields=MAX_FIELDS)
    found: dict[str, object] = {
        name: [v for v in form.getlist(name) if isinstance(v, str) and v]
        for name in ("labels", "values")
        if name in form
    }
    for name in ("prediction_id", "label", "correct"):
        value = form.get(name)
        if isinstance(value, str):
            found[name] = value
    correct = str(found.get("correct", "")).lower()
    if correct in TRUE + FALSE:
        found["correct"] = correct in TRUE
    return found
