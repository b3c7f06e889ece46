"""Rendering errors: the exception handlers of the app (and, with its own shape, of the
Open Inference Protocol's routes).

Every failure a client can cause is an `ApiError` (app/errors.py), answered as
`{"error": {"code", "message", "request_id"}}` with its status; a browser (a request
that accepts HTML, like the page's plain form posts) gets the same error rendered in
the page instead. Anything unexpected is logged with its traceback and request id
and answered with a generic 500 body: never a traceback. A client that went away is
not an error at all (499).
"""

import logging
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from app.errors import ApiError
from app.http.pages import render_page, wants_html

logger = logging.getLogger("app")
Render = Callable[[Request, ApiError, dict[str, str]], Response]

_HTTP_CODES = {
    400: ("bad_request", "The request is malformed."),
    404: ("not_found", "There is nothing at this path."),
    405: ("method_not_allowed", "This path does not accept that method."),
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


def exception_handlers(render: Render) -> dict:
    """The four handlers every surface needs, around the surface's `render`."""

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        headers = dict(exc.headers or {})
        if "allow" in request.scope:
            headers["Allow"] = request.scope["allow"]
        return render(request, exc, headers)

    async def http_exception(request: Request, exc: Exception) -> Response:
        """Starlette's own 404/405s, in our shape."""
        assert isinstance(exc, HTTPException)
        code, message = _HTTP_CODES.get(exc.status_code, ("bad_request", str(exc.detail)))
        if exc.headers and "Allow" in exc.headers:
            request.scope["allow"] = exc.headers["Allow"]
            message = f"This path accepts {exc.headers['Allow']}."
        return await api_error(request, ApiError(code, message, status=exc.status_code))

    async def client_gone(request: Request, exc: Exception) -> Response:
        """The client went away mid-upload, or while its prediction waited or ran.
        Nobody will read an answer; the access log and the metrics record 499, at INFO:
        mobile users abandon uploads all the time, and that is nobody's fault."""
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    async def unexpected(request: Request, exc: Exception) -> Response:
        """A fault of ours. Starlette runs this outside every middleware, so the request
        id RequestContext gave the request is added here, to the body, the header and
        the log line with the traceback, which stays on the server."""
        rid = request_id(request)
        logger.exception(
            "unhandled error on %s %s", request.method, request.url.path, extra={"request_id": rid}
        )
        error = ApiError("internal_error", INTERNAL_ERROR)
        response = render(request, error, {"X-Request-ID": rid} if rid else {})
        if rid:
            response.headers["X-Request-ID"] = rid
        return response

    return {
        ApiError: api_error,
        ClientDisconnect: client_gone,
        HTTPException: http_exception,
        Exception: unexpected,
    }


EXCEPTION_HANDLERS = exception_handlers(render_api)
