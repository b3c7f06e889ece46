"""Feedback through the real app (issue 27), in this process with the default model: off
unless FEEDBACK_DIR is set; then answers carry a `prediction_id`, and POST /api/feedback
takes a confirmation or a correction as JSON, a form or multipart (a browser's form post
gets the page back), once each; the export and the summary answer ADMIN_TOKEN only.
Hostile input gets its 4xx (or 507), never a 5xx, and nothing lands outside FEEDBACK_DIR.
"""

import csv
import io
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from app.main import create_app
from tests.helpers import CAT, HTML, assert_error, make_settings, upload

pytestmark = pytest.mark.unit
UNSUPPORTED = "unsupported_content_type"

TOKEN = "feedback-admin-token-1234"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# What FEEDBACK_DIR may hold: the index, and files named by their content or by us.
STORE_FILE = re.compile(
    r"index\.db(-wal|-shm)?|(held|images)/[0-9a-f]{64}\.(jpg|png|gif|webp|bmp|tif|heic|img)"
)


def serve(folder: Path, **env: str) -> TestClient:
    return TestClient(create_app(make_settings(FEEDBACK_DIR=str(folder), **env)))


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of the module's own: FEEDBACK_DIR is its `store`, and nothing else may
    appear in it."""
    return tmp_path_factory.mktemp("feedback")


@pytest.fixture(scope="module")
def kept(place: Path) -> Iterator[TestClient]:
    """Feedback on, with an admin token; only the model's labels."""
    with serve(place / "store", ADMIN_TOKEN=TOKEN) as client:
        yield client


def answer(client: TestClient, photo: bytes | None = None) -> dict:
    response = client.post("/api/predict", files=upload(photo or CAT.read_bytes()))
    assert response.status_code == 200, response.text
    return response.json()


def test_feedback_is_off_unless_asked_for(client: TestClient) -> None:
    assert "prediction_id" not in answer(client)
    assert_error(client.post("/api/feedback", json={"correct": True}), 404, "feedback_off")
    assert_error(client.get("/api/feedback/export", headers=AUTH), 404, "feedback_off")
    assert "held for" not in client.get("/", headers=HTML).text


def test_answers_are_confirmed_or_corrected_once_by_json_form_or_multipart(
    kept: TestClient,
) -> None:
    """Every way a correction arrives, each kept once; the page's form post gets the page
    with a thank-you; the page says what is kept; the counters count each kind."""
    first, second, third = (answer(kept) for _ in range(3))
    ids = [a["prediction_id"] for a in (first, second, third)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids) and len(set(ids)) == 3

    as_json = kept.post("/api/feedback", json={"prediction_id": ids[0], "label": "tiger cat"})
    assert as_json.json() == {"prediction_id": ids[0], "feedback": "corrected"}
    page = kept.post(
        "/api/feedback", data={"prediction_id": ids[1], "correct": "true"}, headers=HTML
    )
    assert page.status_code == 200 and "Thank you" in page.text and "<html" in page.text
    multipart = kept.post(
        "/api/feedback", files={"prediction_id": (None, ids[2]), "label": (None, "lynx")}
    )
    assert multipart.json()["feedback"] == "corrected"
    replay = kept.post("/api/feedback", json={"prediction_id": ids[0], "correct": True})
    assert_error(replay, 409, "already_answered")
    again = kept.post(
        "/api/feedback", data={"prediction_id": ids[0], "label": "lynx"}, headers=HTML
    )
    assert again.status_code == 409 and "already_answered" in again.text  # the page, with why
    assert "held for 30 minutes" in kept.get("/", headers=HTML).text

    metrics = kept.get("/metrics").text
    assert 'pounce_feedback_total{kind="corrected"} 2.0' in metrics
    assert 'pounce_feedback_total{kind="confirmed"} 1.0' in metrics

    summary = kept.get("/api/feedback/summary", headers=AUTH).json()
    assert (summary["confirmed"], summary["corrected"]) == (1, 2)
    pairs = {(p["predicted"], p["corrected"]) for p in summary["confused"]}
    assert pairs == {(first["label"], "tiger cat"), (third["label"], "lynx")}

    export = kept.get("/api/feedback/export", headers=AUTH)
    assert export.headers["content-type"] == "application/zip"
    assert export.headers["content-disposition"].startswith("attachment; filename=")
    with zipfile.ZipFile(io.BytesIO(export.content)) as archive:
        rows = list(csv.DictReader(io.StringIO(archive.read("labels.csv").decode())))
        assert archive.read(rows[0]["fname"]) == CAT.read_bytes()
    assert [r["label"] for r in rows] == ["tiger cat", first["label"], "lynx"][: len(rows)]
    assert len(rows) == 3 and {r["predicted"] for r in rows} == {first["label"]}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"content": b'{"label": "' + b"x" * 70_000 + b'"}'}, 413, "payload_too_large"),
        ({"content": (b"x" * 1000 for _ in range(100))}, 413, "payload_too_large"),  # chunked
        ({"json": {"label": "../../etc/passwd"}}, 422, "invalid_label"),
        ({"json": {"label": "tabby\x00.jpg"}}, 422, "invalid_label"),
        ({"json": {"label": "x" * 10_000}}, 422, "invalid_label"),
        ({"json": {"label": ["tabby"]}}, 422, "invalid_label"),
        ({"json": {"labels": ["tabby"]}}, 422, "invalid_feedback"),  # a multi-label's field
        ({"json": {"label": "tabby", "correct": True}}, 422, "invalid_feedback"),
        ({"json": {"correct": False}}, 422, "invalid_feedback"),
        ({"json": {"correct": "yes"}}, 422, "invalid_feedback"),
        ({"json": {"prediction_id": None, "correct": True}}, 422, "invalid_feedback"),
        ({"json": {"prediction_id": "../index.db", "correct": True}}, 404, "unknown_prediction"),
        ({"json": {"prediction_id": "0" * 32, "correct": True}}, 404, "unknown_prediction"),
        ({"json": {"prediction_id": "A" * 32, "correct": True}}, 404, "unknown_prediction"),
        ({"content": b"{", "headers": {"Content-Type": "application/json"}}, 400, "invalid_json"),
        ({"json": ["correct"]}, 400, "invalid_json"),
        ({"content": b"ok", "headers": {"Content-Type": "text/plain"}}, 415, UNSUPPORTED),
        ({"files": {"file": ("a.jpg", CAT.read_bytes(), "image/jpeg")}}, 400, "invalid_form"),
    ],
)  # fmt: skip
def test_hostile_feedback_gets_its_4xx(
    kept: TestClient, place: Path, body: dict, status: int, code: str
) -> None:
    """Each refused with its code (a held prediction's id added where the body has none),
    and FEEDBACK_DIR holds nothing but its own files afterwards, and nothing else appears."""
    if "json" in body and isinstance(body["json"], dict) and "prediction_id" not in body["json"]:
        body = {"json": {"prediction_id": answer(kept)["prediction_id"], **body["json"]}}
    if "content" in body:
        body = {**body, "headers": {"Content-Type": "application/json", **body.get("headers", {})}}
    assert_error(kept.post("/api/feedback", **body), status, code)
    assert {p.name for p in place.iterdir()} == {"store"}
    store = place / "store"
    for path in store.rglob("*"):
        if path.is_file():
            assert STORE_FILE.fullmatch(str(path.relative_to(store))), path


def test_an_expired_id_is_unknown(kept: TestClient) -> None:
    """Past FEEDBACK_HOLD_MINUTES (the store's clock moved, not waited for)."""
    prediction_id = answer(kept)["prediction_id"]
    store = kept.app_state["services"].feedback
    real = store.clock
    store.clock = lambda: real() + 31 * 60
    try:
        refused = kept.post("/api/feedback", json={"prediction_id": prediction_id, "correct": True})
    finally:
        store.clock = real
    assert_error(refused, 404, "unknown_prediction")


def test_the_export_and_summary_want_the_token(kept: TestClient, tmp_path: Path) -> None:
    for path in ("/api/feedback/export", "/api/feedback/summary"):
        for headers in (
            {},
            {"Authorization": TOKEN},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": f"Bearer {TOKEN[:-1]}"},
            {"Authorization": f"Bearer {TOKEN}x"},
            {"Authorization": "Bearer " + "x" * 10_000},
        ):
            refused = kept.get(path, headers=headers)
            assert_error(refused, 401, "unauthorized")
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert kept.get(path, headers=AUTH).status_code == 200
    with serve(tmp_path / "store") as untokened:  # no ADMIN_TOKEN: off
        assert_error(untokened.get("/api/feedback/summary", headers=AUTH), 403, "admin_off")


def test_new_labels_when_allowed_and_a_full_store(tmp_path: Path, chelsea_jpeg: bytes) -> None:
    """FEEDBACK_NEW_LABELS lets a well-formed new label in, never a path, a NUL or 10,000
    characters; past FEEDBACK_MAX_MB a correction is 507 and nothing of it is written,
    while one whose photo is kept already still fits."""
    env = {"FEEDBACK_NEW_LABELS": "true", "FEEDBACK_MAX_MB": "0.09"}
    with serve(tmp_path / "store", **env) as client:
        held = answer(client)["prediction_id"]
        for bad in ("a/b", "..\\x", "tabby\x00", "x" * 10_000, " ", "-rf", "=cmd()"):
            refused = client.post("/api/feedback", json={"prediction_id": held, "label": bad})
            assert_error(refused, 422, "invalid_label")
        new = client.post("/api/feedback", json={"prediction_id": held, "label": "snow leopard"})
        assert new.json()["feedback"] == "corrected"

        images = tmp_path / "store" / "images"
        before = sorted(images.iterdir())
        other = answer(client, chelsea_jpeg)["prediction_id"]
        full = client.post("/api/feedback", json={"prediction_id": other, "label": "lynx"})
        assert_error(full, 507, "feedback_store_full")
        assert sorted(images.iterdir()) == before
        again = answer(client)  # the kept photo, answered again
        confirm = {"prediction_id": again["prediction_id"], "correct": True}
        assert client.post("/api/feedback", json=confirm).status_code == 200
        store = client.app_state["services"].feedback
        assert [r.label for r in store.records()] == [["snow leopard"], [again["label"]]]
