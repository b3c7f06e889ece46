"""What the tests share that is not a fixture: the repo's files, photos, settings, request
parts, the error contract, and a local image server. One place for each (conftest.py
holds only fixtures and the network guard)."""

import io
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType
from urllib.parse import parse_qs, urlparse

from PIL import Image

from app.error_codes import ERRORS
from app.settings import EXAMPLES_DIR, ROOT, Settings, load_settings

MODEL = ROOT / "export.pkl"  # what MODEL_PATH names by default
COMPILED = ROOT / "export.onnx"  # what serves it: compiled from it, shipped beside it
EXAMPLES = EXAMPLES_DIR
CAT = EXAMPLES / "cat.jpg"
ARTIFACTS = ROOT / "test-artifacts"
# ImageNet-1k's five domestic cat classes.
CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
# Headless Chromium for the browser tests: no sandbox (root in a container), nothing
# reaching out on its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-features=MediaRouter,OptimizationHints",
]
# A learner of the corpus (built by fastai 2.8) of every kind but single-label, which the
# default model is: the tests that hold each kind to the API's contract serve these.
KIND_LEARNERS = {
    "multi-label": "ch6_multi_label_df",
    "regression": "regression",
    "keypoints": "keypoints",
    "segmentation": "segmentation",
}


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
    environ = Recording({"MODEL_PATH": str(MODEL)})
    load_settings(environ)
    return environ.read


def encode(image: Image.Image, fmt: str = "JPEG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    """`python -m app ARGS` as a user runs it, serving the default model unless `env`
    names another MODEL_PATH."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env={**os.environ, "MODEL_PATH": str(MODEL), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def fastai_vision() -> ModuleType:
    """`fastai.vision.all`, with torchvision made importable beside CPU torch first
    (compiler/torchvision_compat.py): for what runs a test, never for what collects one."""
    from compiler.torchvision_compat import ensure_torchvision

    ensure_torchvision()
    import fastai.vision.all

    return fastai.vision.all


def make_settings(**env: str) -> Settings:
    return load_settings(
        {"MODEL_PATH": str(MODEL), "MODEL_CACHE_DIR": os.environ["MODEL_CACHE_DIR"], **env}
    )


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
