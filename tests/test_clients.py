"""Clients generated from /openapi.json, used against a real server process, as a
frontend developer would: openapi-python-client's Python client makes every call,
the error cases included; a TypeScript module on openapi-typescript's types and
openapi-fetch compiles under `tsc --strict` and runs under node.

`make test` installs both generators at pinned versions (.venv-openapi from
clients/openapi-python-client.txt; clients/typescript's package-lock.json). The
dev container has neither, so there these tests are skipped, with the reason.
"""

import base64
import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import CAT, CAT_CLASSES, ROOT, ImageServer
from tests.live import Live, request

pytestmark = pytest.mark.slow

GENERATOR = ROOT / ".venv-openapi" / "bin" / "openapi-python-client"
TYPESCRIPT = ROOT / "clients" / "typescript"


@pytest.fixture(scope="module")
def document(live: Live, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The document the running server serves, as a generator would fetch it."""
    status, body, _ = request(live.port, "GET", "/openapi.json")
    assert status == 200
    path = tmp_path_factory.mktemp("openapi") / "openapi.json"
    path.write_bytes(body)
    return path


@pytest.fixture(scope="module")
def client_package(document: Path, tmp_path_factory: pytest.TempPathFactory) -> object:
    try:
        subprocess.run([str(GENERATOR), "--version"], capture_output=True, check=True, timeout=60)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("openapi-python-client is not installed here (make test installs it)")
    out = tmp_path_factory.mktemp("generated")
    run = subprocess.run(
        [
            *(str(GENERATOR), "generate", "--path", str(document), "--meta", "none"),
            *("--output-path", str(out / "pounce_client")),
        ],
        env={**os.environ, "PATH": f"{GENERATOR.parent}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Warning" not in run.stdout + run.stderr, run.stdout + run.stderr  # nothing left out
    sys.path.insert(0, str(out))
    try:
        return importlib.import_module("pounce_client")
    finally:
        sys.path.remove(str(out))


def test_python_client_makes_every_call(
    client_package: object, live: Live, image_server: ImageServer
) -> None:
    from pounce_client import Client
    from pounce_client.api.health import get_health, get_readiness
    from pounce_client.api.model import get_model
    from pounce_client.api.predict import classify, classify_batch, classify_url
    from pounce_client.models import (
        Base64Source,
        BatchRequest,
        ClassifyFilesBody,
        Error,
        ErrorCode,
        SingleLabelAnswer,
        UrlSource,
    )
    from pounce_client.types import File

    client = Client(base_url=f"http://127.0.0.1:{live.port}", raise_on_unexpected_status=True)
    photo = CAT.read_bytes()
    assert get_health.sync(client=client).status == "ok"
    assert get_readiness.sync(client=client).status == "ready"
    assert get_model.sync(client=client).class_count == 1000

    upload = classify.sync(
        client=client,
        body=ClassifyFilesBody(file=File(payload=photo, file_name="cat.jpg")),
        top_k=2,
    )
    assert isinstance(upload, SingleLabelAnswer) and upload.label in CAT_CLASSES
    assert len(upload.predictions) == 2
    as_json = classify.sync(
        client=client, body=Base64Source(image=base64.b64encode(photo).decode())
    )
    assert as_json.label == upload.label
    by_url = classify_url.sync(
        client=client, url_query=image_server.url("/cat.jpg")
    )  # its name for ?url=
    assert by_url.label in CAT_CLASSES
    batch = classify_batch.sync(
        client=client,
        body=BatchRequest(
            items=[UrlSource(url=image_server.url("/coffee.png")), UrlSource(url="ftp://x")]
        ),
    )
    assert batch.results[0].label == "espresso" and isinstance(batch.results[1], Error)
    assert batch.results[1].error.code == ErrorCode.INVALID_URL

    # The errors: typed, with their codes as the enum, and the request id in the header.
    for response, status, code in [
        (
            classify.sync_detailed(client=client, body=Base64Source(image="bm90")),
            415,
            "unsupported_media_type",
        ),
        (
            classify_url.sync_detailed(client=client, url_query=image_server.url("/page.html")),
            415,
            "url_not_image",
        ),
        (
            classify.sync_detailed(client=client, body=Base64Source(image="x"), top_k=0),
            422,
            "invalid_top_k",
        ),
    ]:
        assert response.status_code == status and isinstance(response.parsed, Error)
        assert response.parsed.error.code == ErrorCode(code)
        assert response.parsed.error.request_id == response.headers["X-Request-ID"]


def test_typescript_frontend_compiles_strict_and_runs(
    document: Path, live: Live, tmp_path: Path
) -> None:
    npx = shutil.which("npx")
    if npx is None or not (TYPESCRIPT / "node_modules").is_dir():
        pytest.skip("node and clients/typescript/node_modules are needed (make test installs them)")
    for name in ("frontend.ts", "tsconfig.json", "package.json"):
        shutil.copy(TYPESCRIPT / name, tmp_path / name)
    (tmp_path / "node_modules").symlink_to(TYPESCRIPT / "node_modules")

    def run(*command: str) -> str:
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    run(npx, "--no-install", "openapi-typescript", str(document), "-o", "schema.d.ts")
    run(npx, "--no-install", "tsc", "-p", ".")  # strict, per tsconfig.json
    photo = base64.b64encode(CAT.read_bytes()).decode()
    seen = json.loads(run("node", "build/frontend.js", f"http://127.0.0.1:{live.port}", photo))
    assert seen["kind"] == "single-label" and seen["classes"] == 1000
    assert seen["label"] in CAT_CLASSES and seen["upload"] == seen["label"]
    assert seen["predictions"] == 3 and seen["batch"] == [seen["label"], "unsupported_media_type"]
    assert seen["error"]["status"] == 422 and seen["error"]["code"] == "invalid_top_k"
    assert len(seen["error"]["requestId"]) == 32 and seen["ready"] == "ready"
