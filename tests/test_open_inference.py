"""The Open Inference Protocol (app/protocols/open_inference.py), driven by the client most users
have, tritonclient[http], against a real server process: both of its modes (binary
tensor data, and JSON with base64), answers equal to /api/predict's, batches, bad
images, unknown models; and the docs' tritonclient script, run unchanged."""

import base64
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tritonclient.http as httpclient
from starlette.testclient import TestClient
from tritonclient.utils import InferenceServerException

from app.main import create_app
from tests.helpers import ROOT, make_settings
from tests.live import Live, multipart, request

pytestmark = pytest.mark.slow

PHOTOS = [ROOT / "static" / "examples" / f"{name}.jpg" for name in ("cat", "coffee", "rocket")]


@pytest.fixture(scope="module")
def triton(live: Live) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(url=f"127.0.0.1:{live.port}")


def api_answer(port: int, data: bytes, k: int) -> dict:
    body, headers = multipart(data)
    status, answer, _ = request(port, "POST", f"/api/predict?top_k={k}", body, headers)
    assert status == 200
    return json.loads(answer)


def images_input(photos: list[bytes], binary: bool) -> httpclient.InferInput:
    images = httpclient.InferInput("images", [len(photos)], "BYTES")
    if binary:
        images.set_data_from_numpy(np.array(photos, dtype=object), binary_data=True)
    else:
        encoded = np.array([base64.b64encode(p) for p in photos], dtype=object)
        images.set_data_from_numpy(encoded, binary_data=False)
        images._parameters["content_type"] = "base64"  # tritonclient has no setter for it
    return images


def test_health_and_metadata(triton: httpclient.InferenceServerClient, live: Live) -> None:
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready("export")
    assert triton.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    meta = triton.get_model_metadata("export")
    assert meta["inputs"] == [{"name": "images", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"][0] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, 1000]}
    status, body, _ = request(live.port, "GET", "/api/model")
    assert status == 200 and json.loads(body)["name"] == "export"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json-base64"])
def test_batches_answer_as_the_api_does(
    triton: httpclient.InferenceServerClient, live: Live, binary: bool
) -> None:
    photos = [path.read_bytes() for path in PHOTOS]
    wanted = [
        httpclient.InferRequestedOutput("probabilities", binary_data=binary),
        httpclient.InferRequestedOutput("labels", binary_data=binary, class_count=3),
    ]
    result = triton.infer("export", [images_input(photos, binary)], outputs=wanted)
    probabilities, labels = result.as_numpy("probabilities"), result.as_numpy("labels")
    assert probabilities.shape == (3, 1000) and probabilities.dtype == np.float32
    assert labels.shape == (3, 3)
    for data, row, names in zip(photos, probabilities, labels, strict=True):
        answer = api_answer(live.port, data, 3)
        expected = [p["label"] for p in answer["predictions"]]
        assert [n.decode() if isinstance(n, bytes) else n for n in names] == expected
        for prediction in answer["predictions"]:
            index = int(np.flatnonzero(np.isclose(row, prediction["probability"], atol=1e-6))[0])
            assert abs(row[index] - prediction["probability"]) < 1e-6
        assert abs(float(row.sum()) - 1) < 1e-4


def test_bad_images_and_unknown_models(triton: httpclient.InferenceServerClient) -> None:
    photos = [PHOTOS[0].read_bytes(), b"not an image"]
    with pytest.raises(InferenceServerException, match=r"\[400\] 'images' element 1: This is not"):
        triton.infer("export", [images_input(photos, binary=True)])
    with pytest.raises(InferenceServerException, match=r"\[404\] No model 'cougar' here"):
        triton.infer("cougar", [images_input(photos[:1], binary=True)])
    with pytest.raises(InferenceServerException, match="404"):
        triton.get_model_metadata("cougar")


def test_protocol_errors_have_the_protocol_shape(live: Live) -> None:
    cases = [
        (b"{not json", 400, "not valid JSON"),
        (
            b'{"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1], "data": [0]}]}',
            400,
            "one input",
        ),
        (
            b'{"inputs": [{"name": "images", "datatype": "BYTES", "shape": [2], '
            b'"data": ["aGk="]}]}',
            400,
            "shape [2]",
        ),
    ]
    for body, status, words in cases:
        got, answer, headers = request(live.port, "POST", "/v2/models/export/infer", body)
        error = json.loads(answer)
        assert got == status and set(error) == {"error"} and words in error["error"]
        assert headers["x-request-id"]


def test_model_name_is_a_setting() -> None:
    with TestClient(create_app(make_settings(MODEL_NAME="cougar"))) as client:
        assert client.get("/v2/models/cougar/ready").json() == {"name": "cougar", "ready": True}
        assert client.get("/v2/models/export").status_code == 404
        assert client.get("/api/model").json()["name"] == "cougar"


def test_the_docs_script_runs_unchanged(live: Live) -> None:
    docs = (ROOT / "docs" / "api.md").read_text()
    section = docs.split("## The Open Inference Protocol", 1)[1]
    script = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "POUNCE": f"127.0.0.1:{live.port}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "b'Egyptian cat'" in run.stdout and "(2, 1000)" in run.stdout


def test_a_fault_of_ours_keeps_the_protocols_shape(
    chelsea_jpeg: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """A 500 on /v2 is the protocol's `{"error": ...}`, with the request id, no traceback;
    logged once, and not raised on to the server (which would log it again)."""

    def broken(inputs: list) -> None:
        raise RuntimeError("the model broke")

    body = {
        "inputs": [
            {
                "name": "images",
                "datatype": "BYTES",
                "shape": [1],
                "data": [base64.b64encode(chelsea_jpeg).decode()],
            }
        ]
    }
    with TestClient(create_app(make_settings())) as client:  # raises what the app raises
        client.app_state["services"].pipeline.model.infer = broken
        caplog.clear()
        response = client.post("/v2/models/export/infer", json=body)
        logged = [r for r in caplog.records if r.levelname == "ERROR"]
        api = client.post("/api/predict", files={"file": ("cat.jpg", chelsea_jpeg)})
    assert response.status_code == 500
    assert response.json() == {"error": "Something went wrong on our side."}
    assert len(response.headers["X-Request-ID"]) == 32
    assert len(logged) == 1 and logged[0].request_id == response.headers["X-Request-ID"]
    assert api.status_code == 500 and api.json()["error"]["code"] == "internal_error"
