"""Schemathesis generates requests from /openapi.json and checks every answer
against the same document: no undocumented status, no body that breaks its
schema, no 5xx but the documented upstream ones. It does so for a model of every
kind: the default model (single-label), and a learner of the corpus of each other
kind, each through the document its own server serves. What the page tells a
developer of the answer (its code snippet) and what the footer and the metrics say
of the model are held to each kind's real answer and description here too.

Requests go through Starlette's test client (the real app, lifespan running),
under the network guard, so URLs it invents are refused before any packet
leaves; that refusal is the 502 `url_unreachable` the API documents.
"""

import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.testclient import TestClient

from app.http.openapi import document
from app.inference.model import read_info
from app.kinds import kind_of
from app.main import create_app, routes
from tests.corpus.compiled import Corpus
from tests.helpers import CAT, COMPILED, KIND_LEARNERS, make_settings, upload

UPSTREAM_FAILURES = {"url_unreachable", "url_fetch_failed", "url_http_error", "url_timeout"}
EXAMPLES = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
# Fewer for the other kinds: the operations are the same, only the answers differ.
KIND_EXAMPLES = settings(EXAMPLES, max_examples=8)


# The document /openapi.json serves, built from the same route table.
schema = schemathesis.openapi.from_dict(document(routes, kind_of(read_info(COMPILED))))


def httpx_kwargs(case: schemathesis.Case) -> dict:
    """The case as keyword arguments for the test client (httpx), which takes
    raw bodies as `content` and wants every multipart part as bytes."""
    kwargs = case.as_transport_kwargs(base_url="http://testserver")
    kwargs.pop("cookies", None)
    data = kwargs.pop("data", None)
    if isinstance(data, (bytes, str)):
        kwargs["content"] = data
    elif data is not None:
        kwargs["data"] = data
    if kwargs.get("files"):
        parts = []
        for name, value in kwargs["files"]:
            body = value[1] if isinstance(value, tuple) else value
            if not isinstance(body, bytes):
                body = str(body).encode()
            filename = value[0] if isinstance(value, tuple) else None
            parts.append((name, (filename, body, "application/octet-stream")))
        kwargs["files"] = parts
    return kwargs


def conforms(case: schemathesis.Case, client: TestClient) -> None:
    """What the API promises: every status it answers is documented, every body
    matches its schema, and the only 5xx are the documented upstream failures."""
    response = client.request(**httpx_kwargs(case))
    if hasattr(response.request, "read"):
        response.request.read()  # a multipart body streams; schemathesis reads it back
    case.validate_response(
        response,
        checks=[status_code_conformance, content_type_conformance, response_schema_conformance],
    )
    assert response.status_code < 500 or (
        response.status_code in (502, 504) and response.json()["error"]["code"] in UPSTREAM_FAILURES
    ), response.text


@pytest.mark.unit
@schema.parametrize()
@EXAMPLES
def test_api_conforms_to_its_schema(case: schemathesis.Case, client: TestClient) -> None:
    conforms(case, client)


# --- feedback on: the feedback operations, with held answers and the admin token ---------

TOKEN = "schema-admin-token-0123456789"


@pytest.fixture(scope="module")
def feedback_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    folder = tmp_path_factory.mktemp("feedback")
    settings = make_settings(FEEDBACK_DIR=str(folder), ADMIN_TOKEN=TOKEN, FEEDBACK_MAX_MB="1")
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.mark.unit
@schema.include(path_regex="^/api/feedback").parametrize()
@settings(EXAMPLES, max_examples=25)
def test_feedback_conforms_to_its_schema(
    case: schemathesis.Case, feedback_client: TestClient
) -> None:
    """With feedback on: a generated JSON body names a held answer (so it is kept, or
    refused for what else it says), the export and summary get the token, and every
    answer (a zip, the summary, 409, 507 once the store fills...) is as documented."""
    if isinstance(case.body, dict) and isinstance(case.body.get("prediction_id"), str):
        held = feedback_client.post("/api/predict", files=upload(CAT.read_bytes())).json()
        case.body["prediction_id"] = held["prediction_id"]
    if case.method == "GET":
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {TOKEN}"}
    conforms(case, feedback_client)


# --- every other kind: a corpus learner's model, served in this process ------------------


@pytest.fixture(scope="module", params=list(KIND_LEARNERS), ids=list(KIND_LEARNERS))
def served_model(request: pytest.FixtureRequest, corpus: Corpus) -> Path:
    """The compiled model of the kind (the parameter)."""
    built = corpus["2.8", KIND_LEARNERS[request.param]]
    assert built.compile.returncode == 0, built.compile.stderr
    assert read_info(built.onnx)["kind"] == request.param
    return built.onnx


@pytest.fixture(scope="module")
def served(served_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app serving it, lifespan run, keeping feedback (so its operations answer as
    they do for the kind: held answers, or 422 for a kind that takes none)."""
    folder = tmp_path_factory.mktemp("feedback")
    settings = make_settings(MODEL_PATH=str(served_model), FEEDBACK_DIR=str(folder))
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.mark.slow
@pytest.mark.learners(*KIND_LEARNERS.values(), lines=("2.8",))
def test_every_kind_conforms_to_its_schema(served: TestClient) -> None:
    """Each operation of the document the kind's server serves, in turn (schemathesis's
    `from_fixture`, which would parametrize this, fails under pytest 9); its example
    answer is the kind's."""
    served_document = served.get("/openapi.json").json()
    answered = served_document["paths"]["/api/predict"]["post"]["responses"]["200"]
    kind = served.get("/api/model").json()["kind"]
    assert answered["content"]["application/json"]["example"]["kind"] == kind
    for operation in schemathesis.openapi.from_dict(served_document).get_all_operations():

        @given(case=operation.ok().as_strategy())
        @KIND_EXAMPLES
        def check(case: schemathesis.Case) -> None:
            conforms(case, served)

        check()


@pytest.mark.slow
@pytest.mark.learners(*KIND_LEARNERS.values(), lines=("2.8",))
def test_each_kind_takes_its_own_feedback_or_none(served: TestClient) -> None:
    """A classifier's or a regression model's answer carries a prediction_id, and its
    kind's correction (`labels`, `values`) is kept; a keypoints or segmentation model's
    answer carries none, and feedback is refused before anything is read: 422."""
    answer = served.post("/api/predict", files=upload(CAT.read_bytes())).json()
    model = served.get("/api/model").json()
    fixes = {"multi-label": ("labels", model.get("classes", [])[:1])}
    fixes["regression"] = ("values", [0.5] * model.get("count", 0))
    if model["kind"] in fixes:
        field, value = fixes[model["kind"]]
        said = {"prediction_id": answer["prediction_id"], field: value}
        kept = served.post("/api/feedback", json=said).json()
        assert kept["feedback"] in ("confirmed", "corrected")  # said what it said, or not
    else:
        assert "prediction_id" not in answer
        refused = served.post("/api/feedback", json={"prediction_id": "0" * 32, "correct": True})
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "feedback_not_applicable"


@pytest.mark.slow
@pytest.mark.learners(*KIND_LEARNERS.values(), lines=("2.8",))
def test_the_page_and_the_metrics_say_what_each_kind_answers(
    served: TestClient, served_model: Path
) -> None:
    """The page's code snippet reads the fields the kind's answer has, and names the
    kind; the footer and the metrics describe the model as its kind does."""
    answer = served.post("/api/predict", files=upload(CAT.read_bytes())).json()
    kind = kind_of(read_info(served_model), {"top_k": 5, "max_mask_pixels": 1e6})
    page = unescape(served.get("/").text)
    snippet = re.search(
        r"const \{([^}]*)\} = await response\.json\(\);(?:  // a (\S+) answer)?", page
    )
    assert snippet, page
    fields = [field.strip() for field in snippet.group(1).split(",")]
    assert fields and set(fields) <= set(answer), (fields, answer)
    assert snippet.group(2) == kind.name
    assert f"</code> · {kind.summary()} · " in page.split('<footer class="site">', 1)[1]
    info = next(
        line for line in served.get("/metrics").text.splitlines() if "pounce_model_info{" in line
    )
    for label, value in {"kind": kind.name, **kind.metric_labels()}.items():
        assert f'{label}="{value}"' in info, info
