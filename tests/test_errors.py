"""One table of error codes (app/error_codes.py): every code the app raises is in
it with its status, every entry is raised somewhere, the docs' table is the table,
and a fault of the server's keeps the contract (a request id, no traceback)."""

import ast
import json
import logging
import re

import pytest
from starlette.exceptions import HTTPException
from starlette.routing import Route
from starlette.testclient import TestClient

from app.error_codes import ERRORS, RETRY_AFTER
from app.http.handlers import _HTTP_CODES
from app.main import create_app
from tests.helpers import ROOT, make_settings
from tests.live import request, serve_app

RAISERS = {"ApiError": 0, "Overloaded": 0, "_refuse": 0}  # call name -> the code's position
API_DOCS = ROOT / "docs" / "api.md"


def raised() -> list[tuple[str, int | None, str]]:
    """(code, explicit status or None, where) for every error the app's code raises."""
    found = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name not in RAISERS or not node.args:
                continue
            code = node.args[RAISERS[name]]
            if not isinstance(code, ast.Constant):  # Starlette's own: from _HTTP_CODES
                assert path.name == "handlers.py", f"{path.name}:{node.lineno}: a literal code"
                continue
            status = next((k.value for k in node.keywords if k.arg == "status"), None)
            explicit = status.value if isinstance(status, ast.Constant) else None
            found.append((code.value, explicit, f"{path.relative_to(ROOT)}:{node.lineno}"))
    return found


@pytest.mark.unit
def test_every_raised_code_is_in_the_table() -> None:
    found = raised()
    assert len(found) > 30
    for code, status, where in found:
        assert code in ERRORS, f"{where} raises {code!r}, which app/error_codes.py lacks"
        assert status is None or status in ERRORS[code].statuses, where
    for code, _, status in _HTTP_CODES.values():  # Starlette's own 400/404/405, renamed
        assert status in ERRORS[code].statuses


@pytest.mark.unit
def test_every_code_in_the_table_is_raised() -> None:
    used = {code for code, _, _ in raised()} | {code for code, _, _ in _HTTP_CODES.values()}
    assert set(ERRORS) - used == set()
    assert used >= RETRY_AFTER


@pytest.mark.unit
def test_the_docs_table_is_the_table() -> None:
    """docs/api.md's error table, row for row: code, status(es), meaning."""
    rows = re.findall(r"^\| `([a-z0-9_]+)` \| ([\d, ]+) \| (.+) \|$", API_DOCS.read_text(), re.M)
    documented = {code: (statuses, meaning) for code, statuses, meaning in rows}
    expected = {
        code: (", ".join(map(str, entry.statuses)), entry.meaning) for code, entry in ERRORS.items()
    }
    assert documented == expected


def boom(request: object) -> None:
    raise RuntimeError("a bug, with a secret in its message: hunter2")


def test_a_server_fault_keeps_the_contract(caplog: pytest.LogCaptureFixture) -> None:
    """Over real HTTP: 500, the request id in the body and the header, the traceback in
    the log with that id, and nothing of it in the answer."""
    app = create_app(make_settings())
    app.router.routes.append(Route("/boom", boom))
    with caplog.at_level(logging.ERROR, logger="app"), serve_app(app) as port:
        status, body, headers = request(port, "GET", "/boom", headers={"X-Request-ID": "trace-7"})
        _, _, fresh = request(port, "GET", "/boom")
    assert status == 500
    error = json.loads(body)["error"]
    assert error == {
        "code": "internal_error",
        "message": "Something went wrong on our side.",
        "request_id": "trace-7",
    }
    assert headers["x-request-id"] == "trace-7" and len(fresh["x-request-id"]) == 32
    assert b"hunter2" not in body and b"Traceback" not in body
    logged = [r for r in caplog.records if r.getMessage().startswith("unhandled error")]
    assert logged[0].request_id == "trace-7" and logged[0].exc_info[0] is RuntimeError
    assert len(logged) == 2  # once each: the app logs it, and nothing raises it on


def unreadable(request: object) -> None:
    raise HTTPException(status_code=401)  # StaticFiles', for a file it may not read


@pytest.mark.unit
def test_starlettes_other_refusals_are_not_bad_requests() -> None:
    """StaticFiles answers 401 for a file the server can't read: for the client that is
    nothing there (404 not_found), not `bad_request`."""
    app = create_app(make_settings())
    app.router.routes.append(Route("/unreadable", unreadable))
    with TestClient(app) as client:
        response = client.get("/unreadable")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
