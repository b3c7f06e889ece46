"""Shared fixtures: the real default model behind the real HTTP stack. (What the tests
share that is not a fixture, constants and helpers, is tests/helpers.py's.)

Every test runs under a network guard: a socket may only connect to loopback,
and only `localhost` or IP literals may be resolved, so no test can send a
packet off this machine. Tests that prove a URL is refused use the record the
guard keeps to show no connection was even attempted.
"""

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import skimage.data
from PIL import Image
from starlette.testclient import TestClient

from app.main import create_app
from compiler.torchvision_compat import ensure_torchvision
from tests.helpers import ImageServer, encode, make_settings

ensure_torchvision()  # before any test module imports fastai (see compiler/torchvision_compat.py)


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


@pytest.fixture(scope="session")
def colours_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The multi-label fixture learner (tests/learners.py), trained once a session."""
    from tests.learners import train_colours

    return train_colours(tmp_path_factory.mktemp("colours"))


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The learner corpus (tests/corpus/), built by each fastai line and compiled, once a
    session: by (fastai line, learner name)."""
    from tests.corpus.compiled import build

    return build(tmp_path_factory.mktemp("corpus"))


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
