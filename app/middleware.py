"""ASGI middleware that guards every request before an endpoint sees it."""

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
