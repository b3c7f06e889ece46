"""Shared helpers for tests that call the app: request parts and the error contract."""

from app.error_codes import ERRORS
from app.settings import load_settings

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


def upload(data: bytes, name: str = "photo.jpg", kind: str = "image/jpeg") -> dict:
    return {"file": (name, data, kind)}


def assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["error"]["request_id"] == response.headers["X-Request-ID"]
    assert response.status_code in ERRORS[code].statuses  # the table says so too


class Recording(dict):
    """An environment that remembers which variables were looked up."""

    def __init__(self, values: dict) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def __contains__(self, key: object) -> bool:
        self.read.add(str(key))
        return super().__contains__(key)

    def get(self, key: str, default: object = None) -> object:
        self.read.add(key)
        return super().get(key, default)


def settings_read() -> set[str]:
    """The environment variables the app reads: its settings."""
    from tests.conftest import MODEL

    environ = Recording({"MODEL_PATH": str(MODEL)})
    load_settings(environ)
    return environ.read
