"""ASGI middleware: what every request goes through before and after its endpoint."""

import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ApiError


class BodySizeLimit:
    """Refuse request bodies over `max_bytes` with 413, without reading past the cap.

    A declared Content-Length over the cap fails on the first read; a chunked
    body (no Content-Length) fails as soon as the running count passes it. The
    error is raised inside the endpoint's read, so the app's error handlers
    render it like any other (JSON, or the page for a browser).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise self.too_large()
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self.too_large()
            return message

        await self.app(scope, limited_receive, send)

    def too_large(self) -> ApiError:
        return ApiError(
            413,
            "payload_too_large",
            f"The request body is larger than {self.max_bytes / 2**20:g} MB.",
        )


REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
access_log = logging.getLogger("app.access")


class RequestContext:
    """Gives every request an id, and records it once it is answered.

    The id is the client's X-Request-ID when it is sane (letters, digits and
    ._:- up to 128 characters), else a new one; it goes back in the response's
    X-Request-ID and in every error body. Each request then counts in the
    metrics and writes one JSON access-log line: id, method, route template,
    status, duration. Never the query string (a URL there may hold
    credentials), never a body.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = supplied if REQUEST_ID.match(supplied) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            metrics = scope["app"].state.metrics
            metrics.requests.labels(route, scope["method"], str(status)).inc()
            metrics.latency.labels(route).observe(elapsed)
            access_log.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope["method"],
                    "route": route,
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 1),
                },
            )
