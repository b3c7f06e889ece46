"""Shared fixtures: the real default model behind the real HTTP stack.

Every test runs under a network guard: a socket may only connect to loopback,
and only `localhost` or IP literals may be resolved, so no test can send a
packet off this machine. Tests that prove a URL is refused use the record the
guard keeps to show no connection was even attempted.
"""

import io
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import skimage.data
from PIL import Image
from starlette.testclient import TestClient

from app.main import create_app
from app.settings import Settings, load_settings
from compiler.torchvision_compat import ensure_torchvision

ensure_torchvision()  # before any test module imports fastai (see compiler/torchvision_compat.py)

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "export.pkl"  # what MODEL_PATH names by default
COMPILED = ROOT / "export.onnx"  # what serves it: compiled from it, shipped beside it

# ImageNet-1k's five domestic cat classes.
CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


# --- network guard -------------------------------------------------------------------

connections: list[tuple[str, int]] = []
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _check_destination(address: object) -> None:
    if isinstance(address, tuple):
        host, port = address[0], address[1]
        connections.append((host, port))
        if not ipaddress.ip_address(host.split("%")[0]).is_loopback:
            raise OSError(f"test network guard: refused to connect to {host}:{port}")


def _guarded_connect(self: socket.socket, address: object) -> None:
    _check_destination(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _check_destination(address)
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host: object, *args: object, **kwargs: object) -> list:
    name = host.decode() if isinstance(host, bytes) else host
    if name not in (None, "localhost"):
        try:
            ipaddress.ip_address(str(name))
        except ValueError:
            raise socket.gaierror(f"test network guard: no DNS lookups ({name})") from None
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(autouse=True, scope="session")
def network_guard() -> Iterator[None]:
    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex
    socket.getaddrinfo = _guarded_getaddrinfo
    yield
    socket.socket.connect = _real_connect
    socket.socket.connect_ex = _real_connect_ex
    socket.getaddrinfo = _real_getaddrinfo


# --- photos --------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str = "JPEG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def chelsea() -> Image.Image:
    return Image.fromarray(skimage.data.chelsea())


@pytest.fixture(scope="session")
def coffee() -> Image.Image:
    return Image.fromarray(skimage.data.coffee())


@pytest.fixture(scope="session")
def chelsea_jpeg(chelsea: Image.Image) -> bytes:
    return encode(chelsea, "JPEG", quality=92)


@pytest.fixture(scope="session")
def coffee_png(coffee: Image.Image) -> bytes:
    return encode(coffee, "PNG")


# --- apps ----------------------------------------------------------------------------


@pytest.fixture(autouse=True, scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Models the tests compile go to a cache of their own, not ~/.cache; the server
    processes the tests start inherit it."""
    cache = tmp_path_factory.mktemp("model-cache")
    os.environ["MODEL_CACHE_DIR"] = str(cache)
    return cache


def make_settings(**env: str) -> Settings:
    return load_settings(
        {"MODEL_PATH": str(MODEL), "MODEL_CACHE_DIR": os.environ["MODEL_CACHE_DIR"], **env}
    )


@pytest.fixture(scope="session")
def colours_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The multi-label fixture learner (tests/learners.py), trained once a session."""
    from tests.learners import train_colours

    return train_colours(tmp_path_factory.mktemp("colours"))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real server process for a test module, ready; it may fetch from the local image
    server (private URLs allowed)."""
    from tests.live import serve

    with serve(tmp_path_factory.mktemp("live"), ALLOW_PRIVATE_URLS="true") as server:
        yield server


@pytest.fixture(scope="session")
def client() -> Iterator[TestClient]:
    """The app with default settings, its lifespan run (model loaded and warm)."""
    with TestClient(create_app(make_settings())) as test_client:
        yield test_client


# --- a local image server ------------------------------------------------------------


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hangs up mid-body (the byte-cap tests do) is expected


class ImageServer:
    """Serves photos and misbehaving responses on 127.0.0.1 for the URL tests."""

    def __init__(self, files: dict[str, tuple[str, bytes]]) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                owner.requests.append(self.path)
                url = urlparse(self.path)
                query = parse_qs(url.query)
                if url.path in files:
                    kind, body = files[url.path]
                    self.send_response(200)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif url.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", query["to"][0])
                    self.end_headers()
                elif url.path.startswith("/chain/"):
                    hops = int(url.path.rsplit("/", 1)[1])
                    self.send_response(302)
                    self.send_header("Location", f"/chain/{hops - 1}" if hops > 1 else "/cat.jpg")
                    self.end_headers()
                elif url.path == "/stream":  # no Content-Length: ends when the socket closes
                    size = int(query["bytes"][0])
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.end_headers()
                    chunk = b"\xff" * 65536
                    for _ in range(size // len(chunk)):
                        self.wfile.write(chunk)
                    self.close_connection = True
                elif url.path == "/slow":
                    time.sleep(float(query["seconds"][0]))
                    self.send_response(200)
                    self.send_header("Content-Type", "image/jpeg")
                    self.end_headers()
                elif url.path == "/status":
                    code = int(query["code"][0])
                    self.send_response(code)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self.send_error(404)

        self.requests: list[str] = []
        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def image_server(chelsea_jpeg: bytes, coffee_png: bytes) -> Iterator[ImageServer]:
    server = ImageServer(
        {
            "/cat.jpg": ("image/jpeg", chelsea_jpeg),
            "/coffee.png": ("image/png", coffee_png),
            "/coffee.bin": ("application/octet-stream", coffee_png),
            "/page.html": ("text/html; charset=utf-8", b"<html>not an image</html>"),
            "/fake.jpg": ("image/jpeg", b"this is not a jpeg"),
        }
    )
    yield server
    server.close()
