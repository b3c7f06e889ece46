"""The one error a client can cause, whichever step finds it.

Every failure a client can cause is raised as `ApiError`, with a stable code from
the table in app/error_codes.py, which gives its status. It is raised where the
fault is found (reading a body, fetching a URL, decoding an image) and rendered by
the surface that was asked: the API and the page (app/http/handlers.py), or the
Open Inference Protocol in its own shape (app/protocols/open_inference.py). This
module imports no web framework, so the inference code can raise it too.
"""

from app.error_codes import ERRORS


class ApiError(Exception):
    """A request the app refuses, with a stable code from app/error_codes.py, which gives
    its status unless the code has several."""

    headers: dict[str, str] | None = None

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status or ERRORS[code].status
        self.code = code
        self.message = message

    def body(self, request_id: str | None = None) -> dict[str, dict[str, str]]:
        error = {"code": self.code, "message": self.message}
        if request_id is not None:
            error["request_id"] = request_id
        return {"error": error}


class Overloaded(ApiError):
    """A 503 that tells the client when to come back (admission and the upload budget)."""

    def __init__(self, code: str, message: str, retry_after_s: int = 1) -> None:
        super().__init__(code, message)
        self.headers = {"Retry-After": str(retry_after_s)}
