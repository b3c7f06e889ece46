"""Hostile input: every malformed, oversized or malicious request gets its
documented 4xx, never a 5xx, and the server stays healthy afterwards."""

import base64
import io
import json

import pytest
from PIL import Image
from starlette.testclient import TestClient

from tests.helpers import ROOT, assert_error, encode, upload

pytestmark = pytest.mark.unit


def boundary_body(parts: list[bytes], boundary: str = "XyZ") -> tuple[bytes, dict]:
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts)
    body += b"--" + boundary.encode() + b"--\r\n"
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def many_frame_gif(frames: int) -> bytes:
    images = [Image.new("P", (16, 16), i % 256) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=10)
    return buffer.getvalue()


BOMB = encode(Image.new("1", (20000, 20000)), "PNG")  # 400 MP in a few tens of KB


@pytest.mark.parametrize(
    ("request_kwargs", "status", "code"),
    [
        ({"content": b""}, 415, "unsupported_content_type"),
        (
            {"content": b"", "headers": {"Content-Type": "multipart/form-data; boundary=XyZ"}},
            400,
            "no_image",
        ),
        ({"files": {"photo": ("a.jpg", b"\xff\xd8", "image/jpeg")}}, 400, "no_image"),
        ({"files": {"file": ("bomb.png", BOMB, "image/png")}}, 413, "image_too_large"),
        ({"json": {"image": base64.b64encode(BOMB).decode()}}, 413, "image_too_large"),
        (
            {"files": {"file": ("a.pdf", b"%PDF-1.7\n%\xe2\xe3\n1 0 obj", "application/pdf")}},
            415,
            "unsupported_media_type",
        ),
        (
            {
                "files": {
                    "file": ("a.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml")
                }
            },
            415,
            "unsupported_media_type",
        ),
        (
            {
                "files": {
                    "file": ("a.html", b"<!doctype html><script>alert(1)</script>", "text/html")
                }
            },
            415,
            "unsupported_media_type",
        ),
        (
            {
                "files": {
                    "file": ("a.exe", b"MZ\x90\x00\x03" + b"\x00" * 200, "application/octet-stream")
                }
            },
            415,
            "unsupported_media_type",
        ),
        (
            {
                "files": {
                    "file": (
                        "a.elf",
                        b"\x7fELF\x02\x01\x01" + b"\x00" * 200,
                        "application/octet-stream",
                    )
                }
            },
            415,
            "unsupported_media_type",
        ),
        (
            {
                "content": b"[" * 100_000 + b"]" * 100_000,
                "headers": {"Content-Type": "application/json"},
            },
            400,
            "invalid_json",
        ),
        (
            {"content": b'{"image": "\xff\xfe"}', "headers": {"Content-Type": "application/json"}},
            400,
            "invalid_json",
        ),
        ({"json": {"url": "http://" + "a" * 5000 + ".example/x.jpg"}}, 400, "invalid_url"),
        ({"json": {"url": "javascript:alert(1)"}}, 400, "invalid_url"),
        ({"json": {"url": "file:///etc/passwd"}}, 400, "invalid_url"),
        ({"json": {"url": "gopher://127.0.0.1:6379/_FLUSHALL"}}, 400, "invalid_url"),
    ],
)
def test_hostile_requests(client: TestClient, request_kwargs: dict, status: int, code: str) -> None:
    assert_error(client.post("/api/predict", **request_kwargs), status, code)
    assert client.get("/healthz").status_code == 200


def test_two_files_where_one_is_expected(client: TestClient, chelsea_jpeg: bytes) -> None:
    files = [("file", ("a.jpg", chelsea_jpeg, "image/jpeg"))] * 2
    assert_error(client.post("/api/predict", files=files), 400, "invalid_form")


def test_huge_multipart_field_name(client: TestClient) -> None:
    name = b"f" * 2_000_000
    body, headers = boundary_body(
        [b'Content-Disposition: form-data; name="' + name + b'"\r\n\r\nvalue']
    )
    response = client.post("/api/predict", content=body, headers=headers)
    assert response.status_code in (400, 413)
    assert response.json()["error"]["code"] in ("invalid_form", "no_image", "payload_too_large")


def test_invalid_utf8_in_form_fields(client: TestClient) -> None:
    body, headers = boundary_body(
        [b'Content-Disposition: form-data; name="url"\r\n\r\n\xff\xfe\xfd']
    )
    response = client.post("/api/predict", content=body, headers=headers)
    assert 400 <= response.status_code < 500
    assert set(response.json()["error"]) >= {"code", "message"}


def test_gif_with_thousands_of_frames(client: TestClient) -> None:
    data = many_frame_gif(3000)
    response = client.post("/api/predict", files=upload(data, "many.gif", "image/gif"))
    assert response.status_code == 200
    assert response.json()["predictions"]


def test_heic_from_a_phone(client: TestClient) -> None:
    """tests/data/cat.heic: skimage's chelsea() saved as HEIC (by pillow-heif)."""
    heic = (ROOT / "tests" / "data" / "cat.heic").read_bytes()
    response = client.post("/api/predict", files=upload(heic, "p.heic", "image/heic"))
    assert response.status_code == 200
    assert response.json()["label"] in {
        "tabby",
        "tiger cat",
        "Egyptian cat",
        "Persian cat",
        "Siamese cat",
        "lynx",
    }


def test_batch_of_hostile_items_isolates_each(client: TestClient, chelsea_jpeg: bytes) -> None:
    items = [
        {"image": base64.b64encode(BOMB).decode()},
        {"image": "!!!"},
        {"url": "http://169.254.169.254/"},
        {"image": base64.b64encode(chelsea_jpeg).decode()},
    ]
    results = client.post("/api/predict/batch", json={"items": items}).json()["results"]
    assert [r.get("error", {}).get("code") for r in results] == [
        "image_too_large",
        "invalid_base64",
        "url_not_allowed",
        None,
    ]


def test_error_bodies_never_carry_a_traceback(client: TestClient) -> None:
    for response in [
        client.post("/api/predict", content=b"{", headers={"Content-Type": "application/json"}),
        client.get("/nope"),
        client.put("/api/predict"),
    ]:
        text = json.dumps(response.json())
        assert "Traceback" not in text and 'File "' not in text
