"""ASGI middleware: what every request goes through before and after its endpoint."""

import asyncio
import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.budget import UploadBudget
from app.errors import ApiError


class BodyLimits:
    """Bound every request body: in size (413), in time (408) and, across all
    requests, in memory (503, budget.py).

    A declared Content-Length over MAX_UPLOAD_MB fails on the first read; a
    chunked body as soon as the running count passes it. The whole body must
    arrive within BODY_TIMEOUT seconds of the request's headers, or the answer is
    408: a stalled upload holds nothing for long. After any of these errors the
    connection is closed, since the rest of the body is not wanted. Once
    the body is in, reads pass straight through (that is how a disconnect is seen,
    api.py). The errors are raised inside the endpoint's read, so the app's error
    handlers render them like any other (JSON, or the page for a browser).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float, budget: UploadBudget):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.budget = budget

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        reservation = self.budget.reservation()
        scope.setdefault("state", {})["reservation"] = reservation  # fetch.py adds to it
        received, more = 0, True

        async def limited_receive() -> Message:
            if not more:
                return await receive()
            try:
                return await next_part()
            except ApiError as error:  # the rest of the body is not wanted: hang up after
                error.headers = {**(error.headers or {}), "Connection": "close"}
                raise

        async def next_part() -> Message:
            nonlocal received, more
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise self.too_large()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise self.too_slow() from None
            if message["type"] == "http.request":
                chunk = len(message.get("body", b""))
                received += chunk
                if received > self.max_bytes:
                    raise self.too_large()
                reservation.add(chunk)
                more = message.get("more_body", False)
            return message

        try:
            await self.app(scope, limited_receive, send)
        finally:
            reservation.release()

    def too_large(self) -> ApiError:
        return ApiError(
            "payload_too_large",
            f"The request body is larger than {self.max_bytes / 2**20:g} MB.",
        )

    def too_slow(self) -> ApiError:
        return ApiError(
            "request_timeout", f"The request body did not arrive within {self.timeout_s:g} s."
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
