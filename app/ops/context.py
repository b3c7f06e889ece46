"""Request context: every request's id, access-log line and request metrics (ASGI middleware)."""

import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.ops.metrics import Metrics

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

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

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
            route = route_of(scope)
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(elapsed)
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


def route_of(scope: Scope) -> str:
    """The route template that answered, with the path of the Mount it is in (the Open
    Inference Protocol's routes are mounted at /v2), or "unmatched"."""
    route = scope.get("route")
    if route is None or isinstance(route, Mount):
        return "unmatched"
    mounted: str = scope.get("root_path", "")[len(scope.get("app_root_path", "")) :]
    return mounted + str(route.path)
