"""The HTTP API through Starlette's TestClient, with the real default model.

Where an endpoint answers both ways, both are tested: JSON for a program, the
rendered page for a browser's form post.
"""

import base64
import io
import re

import pytest
from PIL import Image
from starlette.testclient import TestClient

from tests.helpers import CAT_CLASSES, HTML, assert_error, encode, upload

pytestmark = pytest.mark.unit

# --- predictions -----------------------------------------------------------------------


def test_upload_returns_sorted_predictions(client: TestClient, chelsea_jpeg: bytes) -> None:
    response = client.post("/api/predict", files=upload(chelsea_jpeg))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"label", "probability", "predictions", "model", "elapsed_ms"}
    assert body["label"] in CAT_CLASSES
    assert body["model"] == "export.pkl" and body["elapsed_ms"] > 0
    probabilities = [p["probability"] for p in body["predictions"]]
    assert len(probabilities) == 5 and probabilities == sorted(probabilities, reverse=True)
    assert body["predictions"][0] == {"label": body["label"], "probability": body["probability"]}


def test_base64_json(client: TestClient, coffee_png: bytes) -> None:
    image = base64.b64encode(coffee_png).decode()
    response = client.post("/api/predict?top_k=3", json={"image": image})
    assert response.status_code == 200
    assert response.json()["label"] == "espresso"
    assert len(response.json()["predictions"]) == 3


@pytest.mark.parametrize("top_k", ["0", "1001", "-1", "three", "2.5"])
def test_bad_top_k(client: TestClient, chelsea_jpeg: bytes, top_k: str) -> None:
    response = client.post(f"/api/predict?top_k={top_k}", files=upload(chelsea_jpeg))
    assert_error(response, 422, "invalid_top_k")


def test_top_k_all_classes(client: TestClient, chelsea_jpeg: bytes) -> None:
    response = client.post("/api/predict?top_k=1000", files=upload(chelsea_jpeg))
    assert len(response.json()["predictions"]) == 1000


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"files": upload(b"")}, 400, "empty_file"),
        (
            {"files": upload(b"just some text", "notes.txt", "text/plain")},
            415,
            "unsupported_media_type",
        ),
        ({"files": {"image": ("photo.jpg", b"x", "image/jpeg")}}, 400, "no_image"),
        ({"data": {"caption": "no image here"}}, 400, "no_image"),
        ({"json": {"image": "%%% not base64 %%%"}}, 400, "invalid_base64"),
        ({"json": {"image": 42}}, 400, "invalid_base64"),
        ({"json": {}}, 400, "no_image"),
        ({"json": {"url": "http://a", "image": "AAAA"}}, 400, "no_image"),
        ({"json": ["url"]}, 400, "invalid_json"),
        (
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "invalid_json",
        ),
        (
            {"content": b"raw bytes", "headers": {"Content-Type": "text/plain"}},
            415,
            "unsupported_content_type",
        ),
        ({"content": b"raw bytes"}, 415, "unsupported_content_type"),
        ({"json": {"url": "ftp://example.org/cat.jpg"}}, 400, "invalid_url"),
        ({"json": {"url": "not a url"}}, 400, "invalid_url"),
        ({"json": {"url": 7}}, 400, "invalid_url"),
    ],
)
def test_bad_requests(client: TestClient, kwargs: dict, status: int, code: str) -> None:
    assert_error(client.post("/api/predict", **kwargs), status, code)


def test_truncated_upload(client: TestClient, chelsea_jpeg: bytes) -> None:
    response = client.post("/api/predict", files=upload(chelsea_jpeg[:4000]))
    assert_error(response, 422, "corrupt_image")


def test_body_over_the_cap(client: TestClient) -> None:
    response = client.post("/api/predict", files=upload(b"\xff" * (11 * 2**20)))
    assert_error(response, 413, "payload_too_large")


def test_chunked_body_over_the_cap(client: TestClient) -> None:
    """No Content-Length: the cap is enforced on the bytes as they arrive."""

    def chunks():
        for _ in range(200):
            yield b"\xff" * 65536

    response = client.post(
        "/api/predict", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_error(response, 413, "payload_too_large")


def test_get_needs_a_url(client: TestClient) -> None:
    assert_error(client.get("/api/predict"), 400, "no_image")


# --- batch -----------------------------------------------------------------------------


def test_batch_multipart_keeps_order_and_isolates_errors(
    client: TestClient, chelsea_jpeg: bytes, coffee_png: bytes
) -> None:
    files = [
        ("file", ("cat.jpg", chelsea_jpeg, "image/jpeg")),
        ("file", ("notes.txt", b"hello", "text/plain")),
        ("file", ("coffee.png", coffee_png, "image/png")),
    ]
    response = client.post("/api/predict/batch?top_k=2", files=files)
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 3
    assert results[0]["label"] in CAT_CLASSES and len(results[0]["predictions"]) == 2
    assert results[1]["error"]["code"] == "unsupported_media_type"
    assert results[2]["label"] == "espresso"


def test_batch_json(client: TestClient, coffee_png: bytes) -> None:
    image = base64.b64encode(coffee_png).decode()
    items = [{"image": image}, {"url": "gopher://x"}, {"image": "@@@"}]
    response = client.post("/api/predict/batch", json={"items": items})
    results = response.json()["results"]
    assert results[0]["label"] == "espresso"
    assert results[1]["error"]["code"] == "invalid_url"
    assert results[2]["error"]["code"] == "invalid_base64"


@pytest.mark.parametrize("item", [{"nothing": 1}, {"url": 7}, {"url": "a", "image": "b"}, "x"])
def test_batch_json_items_must_be_well_formed(client: TestClient, item: object) -> None:
    response = client.post("/api/predict/batch", json={"items": [{"url": "http://x"}, item]})
    assert_error(response, 400, "invalid_item")


def test_batch_limits(client: TestClient, coffee_png: bytes) -> None:
    assert_error(client.post("/api/predict/batch", json={"items": []}), 400, "no_image")
    too_many = {"items": [{"url": "http://x"}] * 17}
    assert_error(client.post("/api/predict/batch", json=too_many), 413, "too_many_items")
    assert_error(client.get("/api/predict/batch"), 405, "method_not_allowed")


# --- the other endpoints ---------------------------------------------------------------


def test_model_metadata(client: TestClient) -> None:
    body = client.get("/api/model").json()
    assert body["class_count"] == len(body["classes"]) == 1000
    assert body["input_size"] == [224, 224]
    assert body["architecture"] == "EfficientNet"
    assert body["runtime"]["name"] == "onnxruntime" and body["file"] == "export.onnx"
    assert body["source"]["file"] == "export.pkl" and len(body["source"]["sha256"]) == 64
    assert {"fastai_version", "torch_version"} <= set(body["source"])
    assert body["parity"]["max_abs_diff"] <= body["parity"]["tolerance"] == 1e-4
    assert body["preprocessing"]["steps"][0]["op"] == "resize"


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_not_found_and_method_not_allowed(client: TestClient) -> None:
    assert_error(client.get("/no/such/page"), 404, "not_found")
    response = client.delete("/api/predict")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]


def test_docs_page_served_offline(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and "/openapi.json" in page.text
    assert "//cdn" not in page.text and "https://" not in page.text
    bundle = client.get("/docs/static/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.content) > 100_000


# --- the page, and the same endpoint answering a browser --------------------------------


def test_home_page_has_both_forms(client: TestClient) -> None:
    page = client.get("/", headers=HTML)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'enctype="multipart/form-data"' in page.text
    assert 'name="file"' in page.text and 'name="url"' in page.text
    assert 'action="/api/predict"' in page.text
    assert client.get("/static/style.css").status_code == 200


def test_pages_name_paths_not_the_servers_scheme(client: TestClient, coffee_png: bytes) -> None:
    """What the page, the result page and /docs load, post to and link to are paths, so
    behind a proxy that ends TLS the browser fetches them over its own https (the
    browser itself is tests/test_proxy.py)."""
    result = client.post(
        "/api/predict", files=upload(coffee_png, "c.png", "image/png"), headers=HTML
    )
    for page in (client.get("/", headers=HTML), result, client.get("/docs")):
        urls = re.findall(r'(?:href|src|action|url)(?:=|: )"([^"]*)"', page.text)
        assert len(urls) >= 3
        assert all(url.startswith(("/", "data:")) and url[1:2] != "/" for url in urls), urls


def test_form_post_renders_result_page(client: TestClient, coffee_png: bytes) -> None:
    response = client.post(
        "/api/predict", files=upload(coffee_png, "c.png", "image/png"), headers=HTML
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert 'class="top-label">espresso</strong>' in response.text
    assert response.text.count('class="bar-label"') == 5


def data_images(html: str, media: str) -> list[Image.Image]:
    """The images of a page's `src="data:<media>;base64,..."` attributes."""
    found = re.findall(rf'src="data:{media};base64,([^"]+)"', html)
    return [Image.open(io.BytesIO(base64.b64decode(data))) for data in found]


def test_the_page_shows_where_the_model_looked_over_the_upright_photo(
    client: TestClient, chelsea: Image.Image
) -> None:
    """The page explains the answer of a model that can, with no option asked: the map
    over the page's copy of a photo stored sideways (EXIF), upright as the map is;
    `explain=false` leaves both out, and JSON only explains when asked."""
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter: viewers turn it back upright
    sideways = encode(chelsea.transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif)
    page = client.post("/api/predict", files=upload(sideways), headers=HTML).text
    (photo,) = data_images(page, "image/jpeg")
    (heatmap,) = data_images(page, "image/png")
    assert photo.width > photo.height and heatmap.mode == "P"
    assert abs(heatmap.width / heatmap.height - chelsea.width / chelsea.height) < 0.01
    assert "Where did it look?" in page and 'class="heatmap"' in page
    plain = client.post("/api/predict?explain=false", files=upload(sideways), headers=HTML)
    assert plain.status_code == 200 and "data:image" not in plain.text
    assert "explanation" not in client.post("/api/predict", files=upload(sideways)).json()


def test_form_post_error_renders_in_page(client: TestClient) -> None:
    response = client.post(
        "/api/predict", files=upload(b"plain text", "a.txt", "text/plain"), headers=HTML
    )
    assert response.status_code == 415
    assert response.headers["content-type"].startswith("text/html")
    assert 'role="alert"' in response.text and "unsupported_media_type" in response.text


def test_url_form_post_refused_in_page(client: TestClient) -> None:
    response = client.post("/api/predict", data={"url": "http://10.0.0.1/cat.jpg"}, headers=HTML)
    assert response.status_code == 422 and "url_not_allowed" in response.text


def test_browser_404_is_a_page(client: TestClient) -> None:
    response = client.get("/missing", headers=HTML)
    assert response.status_code == 404 and "not_found" in response.text


# --- CORS ------------------------------------------------------------------------------


def test_cors_is_off_by_default(client: TestClient) -> None:
    response = client.get("/api/model", headers={"Origin": "https://frontend.example"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_allows_configured_origins() -> None:
    from app.main import create_app
    from tests.helpers import make_settings

    settings = make_settings(CORS_ORIGINS="https://frontend.example")
    with TestClient(create_app(settings)) as cors_client:
        preflight = cors_client.options(
            "/api/predict",
            headers={
                "Origin": "https://frontend.example",
                "Access-Control-Request-Method": "POST",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://frontend.example"
        other = cors_client.get("/api/model", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        # Browser code on the frontend's origin may read the request id and Retry-After.
        answer = cors_client.get("/api/model", headers={"Origin": "https://frontend.example"})
        exposed = answer.headers["access-control-expose-headers"].lower().split(", ")
        assert set(exposed) == {"x-request-id", "retry-after"}
