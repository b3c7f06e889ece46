"""Shared fixtures: the real default model behind the real HTTP stack. (What the tests
share that is not a fixture, constants and helpers, is tests/helpers.py's.)

Every test runs under a network guard: a socket may only connect to loopback,
and only `localhost` or IP literals may be resolved, so no test can send a
packet off this machine. Tests that prove a URL is refused use the record the
guard keeps to show no connection was even attempted.

The tiers (pyproject.toml's markers): `unit` tests run in this process with no
server and no torch, and this file holds them to it; `slow` ones train, compile or
start processes; the rest run in this process, with torch or a loopback socket. No
test module imports torch or fastai when it is collected: the fixtures and tests that
need them do (`fastai_vision`), so `pytest -m unit` never loads them.
"""

import ipaddress
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import skimage.data
from PIL import Image
from starlette.testclient import TestClient

from app.main import create_app
from tests import helpers
from tests.cache import Cache
from tests.corpus.compiled import FASTAI_LINES, WAIT_S, Corpus
from tests.helpers import MODEL, ImageServer, encode, make_settings

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
def test_cache() -> Cache:
    """What the tests build, kept between runs under keys of what changes it (tests/cache.py)."""
    return Cache()


@pytest.fixture(scope="session")
def fastai_vision() -> object:
    """`fastai.vision.all`, for the tests that compare with fastai itself."""
    return helpers.fastai_vision()


@pytest.fixture(scope="session")
def fresh_compile(test_cache: Cache) -> Path:
    """export.pkl compiled by this checkout's compiler: the one compile of the default
    network a run makes, kept while neither the compiler nor export.pkl changes."""
    from tests.learners import compiled

    return compiled(test_cache, MODEL)


@pytest.fixture(scope="session")
def colours_model(test_cache: Cache) -> Path:
    """The multi-label fixture learner (tests/learners.py), trained when the cache lacks it."""
    from tests.learners import cached, train_colours

    return cached(test_cache, train_colours)


@pytest.fixture(scope="session")
def colours_compiled(test_cache: Cache, colours_model: Path) -> Path:
    """The multi-label fixture learner, compiled (serving it needs nothing more)."""
    from tests.learners import compiled

    return compiled(test_cache, colours_model)


@pytest.fixture(scope="session")
def corpus(request: pytest.FixtureRequest, test_cache: Cache) -> Corpus:
    """The learner corpus (tests/corpus/) by (fastai line, learner name), each built by
    its line and compiled, made in the background from the start of the session."""
    return request.config.stash.get(CORPUS, None) or request.config.stash.setdefault(
        CORPUS, Corpus(test_cache)
    )


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real server process of the default model, ready, shared by the tests that only
    need one running; it may fetch from the local image server (private URLs allowed)."""
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


# --- the session: the corpus made in the background, the tiers held ------------------

CORPUS = pytest.StashKey[Corpus]()


def learners_of(item: pytest.Item) -> list[tuple[str, str]]:
    """The (line, name)s of the corpus a test uses: its `line` and `name` parameters, or
    `@pytest.mark.learners(name..., lines=(...), int8=...)` (every line unless a parameter
    or `lines` says which)."""
    params = item.callspec.params if hasattr(item, "callspec") else {}
    marker = item.get_closest_marker("learners")
    names = marker.args if marker and marker.args else [params.get("name")]
    if None in names:
        raise pytest.UsageError(f"{item.nodeid} uses the corpus: name its learners (learners)")
    lines = [params["line"]] if "line" in params else FASTAI_LINES
    if marker and "lines" in marker.kwargs:
        lines = marker.kwargs["lines"]
    return [(line, name) for name in names for line in lines]


def _quantized(item: pytest.Item) -> bool:
    """`@pytest.mark.learners(..., int8=True)`: the test compiles them with --int8 too."""
    marker = item.get_closest_marker("learners")
    return bool(marker and marker.kwargs.get("int8"))


def _order(item: pytest.Item) -> int:
    if "corpus" in item.fixturenames:
        return 2
    return 0 if item.get_closest_marker("unit") else 1


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The unit tier runs first (it answers in a minute, and proves it loads no torch
    before anything else has), the tests that use the corpus last, with time to wait for
    it; what they use starts being made now, in the background, while the others run."""
    items.sort(key=_order)
    users = [item for item in items if "corpus" in item.fixturenames]
    for item in users:
        item.add_marker(pytest.mark.timeout(WAIT_S + 300))
    pairs = [pair for item in users for pair in learners_of(item)]
    if pairs and not config.option.collectonly:
        corpus = config.stash.setdefault(CORPUS, Corpus(Cache()))
        corpus.prefetch(pairs)
        quantized = [item for item in users if _quantized(item)]
        corpus.prefetch_int8(pair for item in quantized for pair in learners_of(item))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Collecting (importing the test modules) loads no torch, so the unit tier never does."""
    for item in session.items:
        if item.get_closest_marker("unit") and item.get_closest_marker("slow"):
            raise pytest.UsageError(f"{item.nodeid} is marked both unit and slow")
    only_unit = session.items and all(i.get_closest_marker("unit") for i in session.items)
    if only_unit and "torch" in sys.modules:
        raise pytest.UsageError(
            "collecting the unit tests imported torch: a test module (or what it imports) "
            "does at import time; import it in the fixture or test that needs it"
        )


def pytest_unconfigure(config: pytest.Config) -> None:
    corpus = config.stash.get(CORPUS, None)
    if corpus is not None:
        corpus.close()


@pytest.fixture(autouse=True)
def unit_tests_import_no_torch(request: pytest.FixtureRequest) -> Iterator[None]:
    """A `unit` test may not load torch (nor fastai, which loads it)."""
    loaded = "torch" in sys.modules
    yield
    if request.node.get_closest_marker("unit") and not loaded and "torch" in sys.modules:
        pytest.fail("this unit test loaded torch: mark it for the tier it is in, or don't")
