"""Rendering errors: the exception handlers of the app (and, with its own shape, of the
Open Inference Protocol's routes).

Every failure a client can cause is an `ApiError` (app/errors.py), answered as
`{"error": {"code", "message", "request_id"}}` with its status; a browser (a request
that accepts HTML, like the page's plain form posts) gets the same error rendered in
the page instead. Anything unexpected is logged once with its traceback and request id
and answered with a generic 500 body: never a traceback (`Unexpected`). A client that
went away is not an error at all (499).
"""

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import ApiError
from app.http.pages import render_page, wants_html

logger = logging.getLogger("app")
Render = Callable[[Request, ApiError, dict[str, str]], Response]

# Starlette's own HTTPExceptions: code, message and the status answered. StaticFiles
# raises 401 for a file the server may not read: for the client, there is nothing there.
_HTTP_CODES = {
    400: ("bad_request", "The request is malformed.", 400),
    401: ("not_found", "There is nothing at this path.", 404),
    404: ("not_found", "There is nothing at this path.", 404),
    405: ("method_not_allowed", "This path does not accept that method.", 405),
}
INTERNAL_ERROR = "Something went wrong on our side."
CLIENT_CLOSED_REQUEST = 499  # nginx's status for it; no client ever sees it


def request_id(request: Request) -> str | None:
    """The id RequestContext gave this request."""
    return getattr(request.state, "request_id", None)


def render_api(request: Request, error: ApiError, headers: dict[str, str]) -> Response:
    """The API's error shape, or the page with the error for a browser."""
    if wants_html(request):
        response = render_page(request, error=error, status_code=error.status)
        response.headers.update(headers)
        return response
    return JSONResponse(error.body(request_id(request)), status_code=error.status, headers=headers)


def exception_handlers(
    render: Render,
) -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
    """The handlers every surface needs, around the surface's `render`; with `Unexpected`
    as its innermost middleware."""

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        headers = dict(exc.headers or {})
        if "allow" in request.scope:
            headers["Allow"] = request.scope["allow"]
        return render(request, exc, headers)

    async def http_exception(request: Request, exc: Exception) -> Response:
        """Starlette's own 404/405s, in our shape."""
        assert isinstance(exc, HTTPException)
        if exc.status_code not in _HTTP_CODES:
            raise exc  # not one Starlette raises today: a fault of ours (Unexpected)
        code, message, status = _HTTP_CODES[exc.status_code]
        if exc.headers and "Allow" in exc.headers:
            request.scope["allow"] = exc.headers["Allow"]
            message = f"This path accepts {exc.headers['Allow']}."
        return await api_error(request, ApiError(code, message, status=status))

    async def client_gone(request: Request, exc: Exception) -> Response:
        """The client went away mid-upload, or while its prediction waited or ran.
        Nobody will read an answer; the access log and the metrics record 499, at INFO:
        mobile users abandon uploads all the time, and that is nobody's fault."""
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    return {
        ApiError: api_error,
        ClientDisconnect: client_gone,
        HTTPException: http_exception,
    }


class Unexpected:
    """A fault of ours, answered once: logged with its traceback and the request's id, and
    a generic 500 in the surface's shape, never a traceback. The innermost middleware of
    the app and of /v2's: Starlette's last resort (an `Exception` handler) would re-raise
    it after answering, so uvicorn logged it again, and /v2's mounted app a third time."""

    def __init__(self, app: ASGIApp, render: Render) -> None:
        self.app = app
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            request = Request(scope, receive)
            rid = request_id(request)
            logger.exception(
                "unhandled error on %s %s",
                request.method,
                request.url.path,
                extra={"request_id": rid},
            )
            if started:  # half an answer is out: nothing more can be said
                return
            error = ApiError("internal_error", INTERNAL_ERROR)
            headers = {"X-Request-ID": rid} if rid else {}
            try:
                response = self.render(request, error, headers)
            except Exception:  # the page itself may be what broke: answer in JSON
                logger.exception("the error's page could not be drawn", extra={"request_id": rid})
                response = JSONResponse(error.body(rid), status_code=500, headers=headers)
            await response(scope, receive, send)


EXCEPTION_HANDLERS = exception_handlers(render_api)
