"""Whatever a client sends, the answer is never a 5xx: hypothesis generates the query
strings, JSON bodies and Open Inference Protocol requests that the hand-written tests
don't think of (digits that aren't ASCII, numbers of thousands of digits, JSON nested
a hundred thousand deep, a `parameters` that is a list), through the real app with the
default model. Each error keeps its surface's shape: the API's `{"error": {"code",
"message", "request_id"}}`, the protocol's `{"error": "..."}`.
"""

import base64
import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image
from starlette.testclient import TestClient

from tests.helpers import encode

pytestmark = pytest.mark.unit

INFER = "/v2/models/export/infer"
PHOTO = base64.b64encode(encode(Image.new("RGB", (8, 8), "orange"), "PNG")).decode()
DEEP = "[" * 100_000 + "]" * 100_000
RUNS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
numbers = st.text(max_size=8) | st.from_regex(r"\A[0-9]{1,6000}\Z") | st.sampled_from(["²", "٣"])


def api_error(response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"code", "message", "request_id"}, error


def protocol_error(response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"} and isinstance(body["error"], str), body


@RUNS
@given(top_k=numbers)
@example(top_k="²")
@example(top_k="7" * 5000)
def test_any_top_k(client: TestClient, top_k: str) -> None:
    api_error(client.post("/api/predict", params={"top_k": top_k}, json={"image": PHOTO}))


@RUNS
@given(explain=numbers | st.sampled_from(["true", "1", "TRUE"]), target=st.text(max_size=20))
def test_any_explain_options(client: TestClient, explain: str, target: str) -> None:
    query = {"explain": explain, "explain_class": target}
    api_error(client.post("/api/predict", params=query, json={"image": PHOTO}))


@RUNS
@given(body=json_values, batch=st.booleans())
def test_any_json_body(client: TestClient, body: object, batch: bool) -> None:
    path = "/api/predict/batch" if batch else "/api/predict"
    api_error(
        client.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"})
    )


def infer_input() -> st.SearchStrategy:
    """An input that is right in some fields and anything at all in others."""
    return st.fixed_dictionaries(
        {},
        optional={
            "name": st.just("images") | json_values,
            "datatype": st.just("BYTES") | json_values,
            "shape": st.just([1]) | st.lists(st.integers(), max_size=3) | json_values,
            "data": st.just([PHOTO]) | st.lists(st.text(max_size=8), max_size=2) | json_values,
            "parameters": st.just({"content_type": "base64"})
            | st.dictionaries(st.sampled_from(["binary_data_size", "content_type"]), json_values)
            | json_values,
        },
    )


def infer_request() -> st.SearchStrategy:
    output = st.fixed_dictionaries(
        {"name": st.sampled_from(["probabilities", "labels", "heatmap"]) | json_values},
        optional={
            "parameters": st.dictionaries(
                st.sampled_from(["binary_data", "classification", "explain_class"]), json_values
            )
            | json_values
        },
    )
    return st.fixed_dictionaries(
        {"inputs": st.lists(infer_input(), max_size=2) | json_values},
        optional={
            "id": st.text(max_size=8) | json_values,
            "parameters": st.dictionaries(st.just("binary_data_output"), json_values) | json_values,
            "outputs": st.lists(output, max_size=2) | json_values,
        },
    )


@RUNS
@given(request=infer_request() | json_values)
def test_any_inference_request(client: TestClient, request: object) -> None:
    protocol_error(client.post(INFER, content=json.dumps(request)))


@RUNS
@given(length=numbers, body=st.binary(max_size=64))
@example(length="²", body=b"{}")
@example(length="9" * 5000, body=b"{}")
@example(length=str(len(DEEP)), body=DEEP.encode())
def test_any_binary_request(client: TestClient, length: str, body: bytes) -> None:
    # As the server reads a header (latin-1), so that '²' arrives as '²'.
    raw = length.encode("latin-1") if max(map(ord, length), default=0) < 256 else length.encode()
    headers = {"Inference-Header-Content-Length": raw}
    protocol_error(client.post(INFER, content=body, headers=headers))


def test_null_parameters_are_no_parameters(client: TestClient) -> None:
    """Clients that serialise their models without dropping None send `null`."""
    body = {
        "inputs": [
            {
                "name": "images",
                "datatype": "BYTES",
                "shape": [1],
                "data": [PHOTO],
                "parameters": None,
            }
        ],
        "parameters": None,
        "outputs": [{"name": "labels", "parameters": None}],
    }
    response = client.post(INFER, json=body)
    assert response.status_code == 200, response.text
    assert [output["name"] for output in response.json()["outputs"]] == ["labels"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (DEEP, "Expected `object`, got `array`"),
        (
            '{"inputs": [], "outputs": [{"name": "labels", "parameters": {"a": ' + DEEP + "}}]}",
            "nested too deeply",
        ),
        ("{not json", "not valid JSON"),
        (
            '{"inputs": [], "parameters": []}',
            "Expected `object | null`, got `array` - at `$.parameters`",
        ),
        (
            '{"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1], "parameters": 7}]}',
            "at `$.inputs[0].parameters`",
        ),
        (
            '{"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1], "data": ["x"]}],'
            ' "outputs": [{"name": "labels", "parameters": "binary"}]}',
            "at `$.outputs[0].parameters`",
        ),
    ],
)
def test_malformed_requests_say_where(client: TestClient, body: str, words: str) -> None:
    response = client.post(INFER, content=body)
    assert response.status_code == 400 and words in response.json()["error"], response.text
