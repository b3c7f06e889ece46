"""URL input: what is fetched, what is refused, and that refusals send nothing.

The local image server listens on 127.0.0.1, so fetching from it needs
ALLOW_PRIVATE_URLS=true (the `open_client` app). The default app must refuse
the very same URLs, and the network guard's record shows it never connected.
"""

from collections.abc import Iterator
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from app.intake import fetch
from app.main import create_app
from tests import conftest
from tests.helpers import CAT_CLASSES, HTML, ImageServer, assert_error, make_settings


@pytest.fixture(scope="module")
def open_client() -> Iterator[TestClient]:
    settings = make_settings(ALLOW_PRIVATE_URLS="true", URL_TIMEOUT="1", MAX_UPLOAD_MB="1")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def unsafe_urls(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/cat.jpg",
        f"http://localhost:{port}/cat.jpg",
        f"http://[::1]:{port}/cat.jpg",
        f"http://[::ffff:127.0.0.1]:{port}/cat.jpg",
        f"http://0.0.0.0:{port}/cat.jpg",
        f"http://2130706433:{port}/cat.jpg",  # decimal
        f"http://0x7f000001:{port}/cat.jpg",  # hex
        f"http://0177.0.0.1:{port}/cat.jpg",  # octal
        f"http://127.1:{port}/cat.jpg",  # short form
        "http://10.0.0.1/cat.jpg",
        "http://172.16.5.4/cat.jpg",
        "http://192.168.1.1/cat.jpg",
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://[fe80::1]/cat.jpg",  # link-local
        "http://[fc00::1]/cat.jpg",  # unique-local
        "http://224.0.0.1/cat.jpg",  # multicast
        "http://100.64.0.1/cat.jpg",  # carrier-grade NAT
    ]


def test_unsafe_urls_refused_before_any_connection(
    client: TestClient, image_server: ImageServer
) -> None:
    before = list(image_server.requests)
    for url in unsafe_urls(image_server.port):
        conftest.connections.clear()
        response = client.post("/api/predict", json={"url": url})
        assert_error(response, 422, "url_not_allowed")
        assert conftest.connections == [], f"{url} was dialled"
    assert image_server.requests == before


def test_get_with_url_refused_too(client: TestClient, image_server: ImageServer) -> None:
    conftest.connections.clear()
    response = client.get("/api/predict", params={"url": image_server.url("/cat.jpg")})
    assert_error(response, 422, "url_not_allowed")
    assert conftest.connections == []


def test_redirect_to_a_private_address_is_refused(
    image_server: ImageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With loopback standing in for a public server, its redirect to the metadata
    address is checked like the first URL, and refused before connecting."""
    real = fetch.is_public
    monkeypatch.setattr(fetch, "is_public", lambda a: a.startswith("127.") or real(a))
    with TestClient(create_app(make_settings())) as test_client:
        assert (
            test_client.post("/api/predict", json={"url": image_server.url("/cat.jpg")}).json()[
                "label"
            ]
            in CAT_CLASSES
        )
        conftest.connections.clear()
        target = "http://169.254.169.254/latest/meta-data/"
        response = test_client.post(
            "/api/predict", json={"url": image_server.url(f"/redirect?to={target}")}
        )
        assert_error(response, 422, "url_not_allowed")
        assert all(host == "127.0.0.1" for host, _ in conftest.connections)


def test_fetches_a_photo(open_client: TestClient, image_server: ImageServer) -> None:
    conftest.connections.clear()
    response = open_client.post("/api/predict", json={"url": image_server.url("/cat.jpg")})
    assert response.status_code == 200
    assert response.json()["label"] in CAT_CLASSES
    assert ("127.0.0.1", image_server.port) in conftest.connections


def test_get_convenience(open_client: TestClient, image_server: ImageServer) -> None:
    response = open_client.get("/api/predict", params={"url": image_server.url("/coffee.png")})
    assert response.json()["label"] == "espresso"


def test_octet_stream_and_redirects(open_client: TestClient, image_server: ImageServer) -> None:
    for path in ["/coffee.bin", "/redirect?to=/coffee.png", "/chain/3"]:
        response = open_client.post("/api/predict", json={"url": image_server.url(path)})
        assert response.status_code == 200, path
    assert_error(
        open_client.post("/api/predict", json={"url": image_server.url("/chain/4")}),
        422,
        "too_many_redirects",
    )


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/page.html", 415, "url_not_image"),
        ("/fake.jpg", 415, "unsupported_media_type"),
        ("/status?code=404", 422, "url_http_error"),
        ("/status?code=503", 502, "url_http_error"),
        ("/stream?bytes=2097152", 413, "payload_too_large"),
        ("/slow?seconds=3", 504, "url_timeout"),
    ],
)
def test_remote_failures(
    open_client: TestClient, image_server: ImageServer, path: str, status: int, code: str
) -> None:
    response = open_client.post("/api/predict", json={"url": image_server.url(path)})
    assert_error(response, status, code)


@pytest.mark.parametrize("location", ["http://[::1", "http://example.com:99999/cat.jpg"])
def test_a_malformed_redirect_is_the_urls_fault(
    open_client: TestClient, image_server: ImageServer, location: str
) -> None:
    """yarl refuses these Locations with a ValueError; it is the URL's 400, and in a batch
    the other images still answer."""
    bad = image_server.url(f"/redirect?to={quote(location)}")
    assert_error(open_client.post("/api/predict", json={"url": bad}), 400, "invalid_url")
    files = [("url", (None, bad)), ("url", (None, image_server.url("/cat.jpg")))]
    results = open_client.post("/api/predict/batch", files=files).json()["results"]
    assert results[0]["error"]["code"] == "invalid_url"
    assert results[1]["label"] in CAT_CLASSES


def test_unreachable_host(open_client: TestClient) -> None:
    response = open_client.post("/api/predict", json={"url": "http://127.0.0.1:9/cat.jpg"})
    assert_error(response, 502, "url_unreachable")


def test_url_form_post_from_the_page(open_client: TestClient, image_server: ImageServer) -> None:
    response = open_client.post(
        "/api/predict", data={"url": image_server.url("/coffee.png")}, headers=HTML
    )
    assert response.status_code == 200 and 'class="top-label">espresso<' in response.text


def test_batch_of_urls(open_client: TestClient, image_server: ImageServer) -> None:
    files = [
        ("url", (None, image_server.url("/cat.jpg"))),
        ("url", (None, image_server.url("/status?code=404"))),
    ]
    results = open_client.post("/api/predict/batch", files=files).json()["results"]
    assert results[0]["label"] in CAT_CLASSES
    assert results[1]["error"]["code"] == "url_http_error"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("::ffff:10.0.0.1", False),
        ("2002:7f00:1::", False),  # 6to4 wrapping 127.0.0.1
        ("2002:808:808::", True),  # 6to4 wrapping 8.8.8.8
        ("64:ff9b::7f00:1", False),  # NAT64 wrapping 127.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 wrapping the metadata address
        ("64:ff9b::808:808", True),  # NAT64 wrapping 8.8.8.8
        ("::a00:1", False),  # IPv4-compatible 10.0.0.1
        ("::7f00:1", False),  # IPv4-compatible 127.0.0.1
        ("64:ff9b:1::a00:1", False),  # NAT64's local-use prefix, here carrying 10.0.0.1
        ("::ffff:0:a00:1", False),  # SIIT's IPv4-translated 10.0.0.1
        ("::ffff:0:808:808", True),  # SIIT's 8.8.8.8
        ("::", False),
        ("fe80::1%eth0", False),
        ("0.0.0.0", False),
        ("255.255.255.255", False),
    ],
)
def test_address_policy(address: str, public: bool) -> None:
    assert fetch.is_public(address) is public
