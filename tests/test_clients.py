"""Clients generated from /openapi.json, used against a real server process, as a
frontend developer would: openapi-python-client's Python client makes every call,
the error cases included; a TypeScript module on openapi-typescript's types and
openapi-fetch compiles under `tsc --strict` and runs under node. Both are generated
once, from the default model's server, and then read a model of every other kind
too (a corpus learner of each, served over HTTP in this process): the document is
the same whatever the kind, and describes each kind's /api/model and answers.

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
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.kinds import KINDS
from app.main import create_app
from tests.corpus.compiled import Corpus
from tests.helpers import CAT, CAT_CLASSES, KIND_LEARNERS, ROOT, ImageServer, make_settings
from tests.live import Live, request, serve_app

pytestmark = pytest.mark.slow

GENERATOR = ROOT / ".venv-openapi" / "bin" / "openapi-python-client"
GENERATOR_CONFIG = ROOT / "clients" / "openapi-python-client.yml"  # the export's zip: a File
TYPESCRIPT = ROOT / "clients" / "typescript"


@pytest.fixture(scope="session")
def document(live: Live, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The document the running server serves, as a generator would fetch it."""
    status, body, _ = request(live.port, "GET", "/openapi.json")
    assert status == 200
    path = tmp_path_factory.mktemp("openapi") / "openapi.json"
    path.write_bytes(body)
    return path


@pytest.fixture(scope="session")
def client_package(document: Path, tmp_path_factory: pytest.TempPathFactory) -> object:
    try:
        subprocess.run([str(GENERATOR), "--version"], capture_output=True, check=True, timeout=60)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("openapi-python-client is not installed here (make test installs it)")
    out = tmp_path_factory.mktemp("generated")
    run = subprocess.run(
        [
            *(str(GENERATOR), "generate", "--path", str(document), "--meta", "none"),
            *("--output-path", str(out / "pounce_client"), "--config", str(GENERATOR_CONFIG)),
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
    from pounce_client.api.predict import predict, predict_batch, predict_url
    from pounce_client.models import (
        Base64Source,
        BatchRequest,
        Error,
        ErrorCode,
        Explanation,
        PredictFilesBody,
        SingleLabelAnswer,
        UrlSource,
    )
    from pounce_client.types import File

    client = Client(base_url=f"http://127.0.0.1:{live.port}", raise_on_unexpected_status=True)
    photo = CAT.read_bytes()
    assert get_health.sync(client=client).status == "ok"
    assert get_readiness.sync(client=client).status == "ready"
    model = get_model.sync(client=client)
    assert model.kind.value == "single-label" and model.class_count == 1000

    upload = predict.sync(
        client=client,
        body=PredictFilesBody(file=File(payload=photo, file_name="cat.jpg")),
        top_k=2,
    )
    assert isinstance(upload, SingleLabelAnswer) and upload.label in CAT_CLASSES
    assert len(upload.predictions) == 2
    as_json = predict.sync(client=client, body=Base64Source(image=base64.b64encode(photo).decode()))
    assert as_json.label == upload.label
    by_url = predict_url.sync(
        client=client, url_query=image_server.url("/cat.jpg")
    )  # its name for ?url=
    assert by_url.label in CAT_CLASSES
    batch = predict_batch.sync(
        client=client,
        body=BatchRequest(
            items=[UrlSource(url=image_server.url("/coffee.png")), UrlSource(url="ftp://x")]
        ),
    )
    assert batch.results[0].label == "espresso" and isinstance(batch.results[1], Error)
    assert batch.results[1].error.code == ErrorCode.INVALID_URL

    # explain=true: the explanation, typed, on every prediction operation.
    upload = predict.sync(
        client=client,
        body=PredictFilesBody(file=File(payload=photo, file_name="cat.jpg")),
        explain=True,
    )
    explanation = upload.explanation
    assert isinstance(explanation, Explanation) and explanation.additional_properties == {}
    assert explanation.target == upload.label and explanation.method.value == "recipro-cam"
    assert explanation.heatmap.startswith("data:image/png;base64,")
    assert (explanation.heatmap_size.width, explanation.heatmap_size.height) == (451, 300)
    chosen = "tabby" if upload.label != "tabby" else "tiger cat"
    by_url = predict_url.sync(
        client=client, url_query=image_server.url("/cat.jpg"), explain=True, explain_class=chosen
    )
    assert by_url.explanation.target == chosen and by_url.label == upload.label
    batch = predict_batch.sync(
        client=client,
        body=BatchRequest(items=[UrlSource(url=image_server.url("/coffee.png"))]),
        explain=True,
    )
    assert batch.results[0].explanation.target == "espresso"
    # What a typed client can't send (a label that isn't one, a non-boolean), sent raw:
    # the errors parse as the document's, with their own codes.
    raw = client.get_httpx_client()
    for query, code in (
        ("explain=true&explain_class=griffin", "invalid_explain_target"),
        ("explain=maybe", "invalid_option"),
    ):
        response = raw.post(f"/api/predict?{query}", json={"image": "x"})
        assert response.status_code == 422
        assert Error.from_dict(response.json()).error.code == ErrorCode(code)

    # The errors: typed, with their codes as the enum, and the request id in the header.
    for response, status, code in [
        (
            predict.sync_detailed(client=client, body=Base64Source(image="bm90")),
            415,
            "unsupported_media_type",
        ),
        (
            predict_url.sync_detailed(client=client, url_query=image_server.url("/page.html")),
            415,
            "url_not_image",
        ),
        (
            predict.sync_detailed(client=client, body=Base64Source(image="x"), top_k=0),
            422,
            "invalid_top_k",
        ),
    ]:
        assert response.status_code == status and isinstance(response.parsed, Error)
        assert response.parsed.error.code == ErrorCode(code)
        assert response.parsed.error.request_id == response.headers["X-Request-ID"]


@pytest.fixture(scope="session")
def frontend(document: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """clients/typescript/frontend.ts on types generated from the document, compiled
    under `tsc --strict`: its folder (build/frontend.js)."""
    if shutil.which("npx") is None or not (TYPESCRIPT / "node_modules").is_dir():
        pytest.skip("node and clients/typescript/node_modules are needed (make test installs them)")
    folder = tmp_path_factory.mktemp("frontend")
    for name in ("frontend.ts", "tsconfig.json", "package.json"):
        shutil.copy(TYPESCRIPT / name, folder / name)
    (folder / "node_modules").symlink_to(TYPESCRIPT / "node_modules")
    npx = shutil.which("npx")
    run(folder, npx, "--no-install", "openapi-typescript", str(document), "-o", "schema.d.ts")
    run(folder, npx, "--no-install", "tsc", "-p", ".")  # strict, per tsconfig.json
    return folder


def run(folder: Path, *command: str) -> str:
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def seen_by_frontend(frontend: Path, port: int) -> dict:
    """What the frontend module saw of the server at `port`, sending it the cat photo."""
    photo = base64.b64encode(CAT.read_bytes()).decode()
    return json.loads(run(frontend, "node", "build/frontend.js", f"http://127.0.0.1:{port}", photo))


def test_typescript_frontend_compiles_strict_and_runs(frontend: Path, live: Live) -> None:
    seen = seen_by_frontend(frontend, live.port)
    assert seen["kind"] == "single-label" and seen["model"] == "single-label, 1000 classes"
    assert seen["label"] in CAT_CLASSES and seen["upload"] == seen["label"]
    assert seen["predictions"] == 2 and seen["batch"] == [seen["label"], "unsupported_media_type"]
    assert seen["error"]["status"] == 422 and seen["error"]["code"] == "invalid_top_k"
    assert len(seen["error"]["requestId"]) == 32 and seen["ready"] == "ready"
    assert seen["explained"] == {"target": seen["label"], "png": True, "size": [451, 300]}
    assert seen["refused"] is None
    assert seen["batchExplained"] == [seen["label"]]
    assert seen["feedback"] == "feedback_off"


TOKEN = "clients-admin-token-0123456789"


@pytest.fixture(scope="module")
def feedback_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A server of the default model keeping feedback, with an admin token."""
    folder = tmp_path_factory.mktemp("feedback")
    settings = make_settings(FEEDBACK_DIR=str(folder), ADMIN_TOKEN=TOKEN)
    with serve_app(create_app(settings)) as port:
        yield port


def test_python_client_gives_feedback_and_exports_it(
    client_package: object, feedback_port: int
) -> None:
    """The answer's prediction_id, a correction, a confirmation, the summary and the zip,
    each through its generated call and type; the token through AuthenticatedClient."""
    import zipfile

    from pounce_client import AuthenticatedClient, Client
    from pounce_client.api.feedback import export_feedback, get_feedback_summary, post_feedback
    from pounce_client.api.predict import predict
    from pounce_client.models import Confirmation, Error, FeedbackKept, LabelFix, PredictFilesBody
    from pounce_client.types import File

    base_url = f"http://127.0.0.1:{feedback_port}"
    client = Client(base_url=base_url, raise_on_unexpected_status=True)
    photo = PredictFilesBody(file=File(payload=CAT.read_bytes(), file_name="cat.jpg"))
    first, second = (predict.sync(client=client, body=photo) for _ in range(2))
    assert first.prediction_id != second.prediction_id and first.additional_properties == {}
    fix = LabelFix(prediction_id=first.prediction_id, label="tiger cat")
    kept = post_feedback.sync(client=client, body=fix)
    assert isinstance(kept, FeedbackKept) and kept.feedback.value == "corrected"
    confirm = post_feedback.sync(
        client=client, body=Confirmation(prediction_id=second.prediction_id, correct=True)
    )
    assert confirm.feedback.value == "confirmed"
    replay = post_feedback.sync_detailed(client=client, body=fix)
    assert replay.status_code == 409 and isinstance(replay.parsed, Error)

    admin = AuthenticatedClient(base_url=base_url, token=TOKEN, raise_on_unexpected_status=True)
    summary = get_feedback_summary.sync(client=admin)
    assert (summary.confirmed, summary.corrected) == (1, 1)
    assert summary.confused[0].corrected == "tiger cat"
    export = export_feedback.sync(client=admin)
    with zipfile.ZipFile(export.payload) as archive:
        assert archive.read("labels.csv").decode().count("\n") == 3
    wrong = AuthenticatedClient(base_url=base_url, token="x" * 30)
    refused = get_feedback_summary.sync_detailed(client=wrong)
    assert refused.status_code == 401 and refused.parsed.error.code.value == "unauthorized"


# --- every other kind: the same clients, a corpus learner's server -----------------------


@pytest.fixture(scope="module", params=list(KIND_LEARNERS), ids=list(KIND_LEARNERS))
def kind_port(request: pytest.FixtureRequest, corpus: Corpus) -> Iterator[int]:
    """The port of a server of a model of the kind (the parameter)."""
    built = corpus["2.8", KIND_LEARNERS[request.param]]
    assert built.compile.returncode == 0, built.compile.stderr
    with serve_app(create_app(make_settings(MODEL_PATH=str(built.onnx)))) as port:
        yield port


@pytest.mark.learners(*KIND_LEARNERS.values(), lines=("2.8",))
def test_python_client_reads_every_kind(
    client_package: object, kind_port: int, request: pytest.FixtureRequest
) -> None:
    """/api/model and the answers parse as the kind's own types, with no field the
    document leaves out (a generated model keeps those in `additional_properties`)."""
    from pounce_client import Client, models
    from pounce_client.api.model import get_model
    from pounce_client.api.predict import predict, predict_batch
    from pounce_client.types import File

    kind = request.node.callspec.params["kind_port"]
    pascal = "".join(part.capitalize() for part in kind.split("-"))
    client = Client(base_url=f"http://127.0.0.1:{kind_port}", raise_on_unexpected_status=True)
    photo = CAT.read_bytes()
    model = get_model.sync(client=client)
    assert isinstance(model, getattr(models, f"{pascal}Model")), model
    assert model.kind.value == kind and model.additional_properties == {}
    upload = predict.sync(
        client=client, body=models.PredictFilesBody(file=File(payload=photo, file_name="cat.jpg"))
    )
    assert isinstance(upload, getattr(models, f"{pascal}Answer")), upload
    assert upload.kind.value == kind and upload.additional_properties == {}
    image = models.Base64Source(image=base64.b64encode(photo).decode())
    items = [image, models.UrlSource(url="ftp://x")]
    batch = predict_batch.sync(client=client, body=models.BatchRequest(items=items))
    answered, refused = batch.results  # a batch's results leave the model and time out
    assert isinstance(answered, getattr(models, KINDS[kind].answer_schema()))
    alone = {k: v for k, v in upload.to_dict().items() if k not in ("model", "elapsed_ms")}
    assert answered.to_dict() == alone and isinstance(refused, models.Error)

    # explain=true: a typed explanation where the model explains; else the code saying why.
    explained = predict.sync_detailed(client=client, body=image, explain=True)
    refusal = (model.to_dict()["explanation"] or {}).get("refused")
    if kind in ("keypoints", "segmentation"):
        assert explained.status_code == 422 and isinstance(explained.parsed, models.Error)
        assert explained.parsed.error.code == models.ErrorCode.EXPLAIN_NOT_APPLICABLE
    elif refusal is not None:
        assert explained.status_code == 422 and isinstance(explained.parsed, models.Error)
        assert explained.parsed.error.code == models.ErrorCode.EXPLAIN_UNAVAILABLE
        assert refusal in explained.parsed.error.message
    else:
        answer = explained.parsed
        assert isinstance(answer, getattr(models, f"{pascal}Answer")), explained.content
        assert isinstance(answer.explanation, models.Explanation)
        assert answer.additional_properties == {} and answer.explanation.target


@pytest.mark.learners(*KIND_LEARNERS.values(), lines=("2.8",))
def test_typescript_frontend_reads_every_kind(
    frontend: Path, kind_port: int, request: pytest.FixtureRequest
) -> None:
    kind = request.node.callspec.params["kind_port"]
    seen = seen_by_frontend(frontend, kind_port)
    assert seen["kind"] == kind and seen["model"].startswith(f"{kind}, "), seen
    assert seen["label"] and seen["upload"] == seen["label"]
    assert seen["batch"] == [seen["label"], "unsupported_media_type"]
    error = ("invalid_top_k", 422) if kind == "multi-label" else ("unsupported_media_type", 415)
    assert (seen["error"]["code"], seen["error"]["status"]) == error and seen["ready"] == "ready"
    if kind in ("keypoints", "segmentation"):
        assert seen["explained"] == seen["batchExplained"] == "explain_not_applicable"
        assert seen["refused"] == f"a {kind} model's answer is already a place in the photo"
    elif seen["refused"] is not None:
        assert seen["explained"] == seen["batchExplained"] == "explain_unavailable"
    else:
        assert seen["explained"]["png"] and seen["batchExplained"] == [seen["explained"]["target"]]
