"""Bounding every request body in size, time and shared memory: ASGI middleware."""

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ApiError
from app.intake.integers import natural
from app.limits.budget import UploadBudget


class BodyLimits:
    """Bound every request body: in size (413), in time (408) and, across all
    requests, in memory (503, app/limits/budget.py).

    A declared Content-Length over MAX_UPLOAD_MB fails on the first read; a
    chunked body as soon as the running count passes it. The whole body must
    arrive within BODY_TIMEOUT seconds of the request's headers, or the answer is
    408: a stalled upload holds nothing for long. After any of these errors the
    connection is closed, since the rest of the body is not wanted. Once
    the body is in, reads pass straight through (that is how a disconnect is seen,
    app/limits/disconnect.py). The errors are raised inside the endpoint's read, so the app's error
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
            if (natural(declared) or 0) > self.max_bytes:
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
