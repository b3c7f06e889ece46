"""One error shape for the whole app, and the handlers that render it.

Every failure a client can cause is raised as `ApiError` and answered as
`{"error": {"code", "message"}}` with its status. A browser (a request that
accepts HTML, like the page's plain form posts) gets the same error rendered in
the page instead. Anything unexpected is logged and answered with a generic 500
body: never a traceback. A client that went away is not an error at all (499).
"""

import logging

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from app.error_codes import ERRORS

logger = logging.getLogger("app")


class ApiError(Exception):
    """A request the app refuses, with a stable code from the table in
    app/error_codes.py, which gives its status unless the code has several."""

    headers: dict[str, str] | None = None

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status or ERRORS[code].status
        self.code = code
        self.message = message

    def body(self, request_id: str | None = None) -> dict:
        error = {"code": self.code, "message": self.message}
        if request_id is not None:
            error["request_id"] = request_id
        return {"error": error}


_HTTP_CODES = {
    400: ("bad_request", "The request is malformed."),
    404: ("not_found", "There is nothing at this path."),
    405: ("method_not_allowed", "This path does not accept that method."),
}
INTERNAL_ERROR = "Something went wrong on our side."


def wants_html(request: Request) -> bool:
    """True for browsers: their form posts and page loads ask for text/html."""
    return "text/html" in request.headers.get("accept", "")


def request_id(request: Request) -> str | None:
    """The id RequestContext gave this request."""
    return getattr(request.state, "request_id", None)


OPEN_INFERENCE = "/v2"  # app/open_inference.py's paths, whose errors the protocol shapes


def render(request: Request, error: ApiError) -> Response:
    headers = dict(error.headers or {})
    if "allow" in request.scope:
        headers["Allow"] = request.scope["allow"]
    if request.url.path == OPEN_INFERENCE or request.url.path.startswith(OPEN_INFERENCE + "/"):
        return JSONResponse({"error": error.message}, status_code=error.status, headers=headers)
    if wants_html(request):
        from app.pages import render_page  # the page module renders; this one decides

        response = render_page(request, error=error, status_code=error.status)
        response.headers.update(headers)
        return response
    return JSONResponse(error.body(request_id(request)), status_code=error.status, headers=headers)


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return render(request, exc)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405s, in our shape."""
    assert isinstance(exc, HTTPException)
    code, message = _HTTP_CODES.get(exc.status_code, ("bad_request", str(exc.detail)))
    if exc.headers and "Allow" in exc.headers:
        request.scope["allow"] = exc.headers["Allow"]
        message = f"This path accepts {exc.headers['Allow']}."
    return render(request, ApiError(code, message, status=exc.status_code))


CLIENT_CLOSED_REQUEST = 499  # nginx's status for it; no client ever sees it


async def handle_client_gone(request: Request, exc: Exception) -> Response:
    """The client went away mid-upload, or while its prediction waited or ran.
    Nobody will read an answer; the access log and the metrics record 499, at
    INFO: mobile users abandon uploads all the time, and that is nobody's fault."""
    return Response(status_code=CLIENT_CLOSED_REQUEST)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    """A fault of ours. Starlette runs this outside every middleware, so the request id
    RequestContext gave the request is added here, to the body, the header and the log
    line with the traceback, which stays on the server."""
    rid = request_id(request)
    logger.exception(
        "unhandled error on %s %s", request.method, request.url.path, extra={"request_id": rid}
    )
    error = ApiError("internal_error", INTERNAL_ERROR)
    return JSONResponse(
        error.body(rid), status_code=error.status, headers={"X-Request-ID": rid} if rid else None
    )


EXCEPTION_HANDLERS = {
    ApiError: handle_api_error,
    ClientDisconnect: handle_client_gone,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
