"""The Open Inference Protocol (app/protocols/open_inference.py), driven by the client most users
have, tritonclient[http], against a real server process: both of its modes (binary
tensor data, and JSON with base64), answers equal to /api/predict's, batches, bad
images, unknown models, the optional `heatmap` of a model that explains (and its
refusal by every other kind); and the docs' tritonclient script, run unchanged."""

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

from app.inference.model import read_info
from app.main import create_app
from tests.corpus.compiled import Corpus
from tests.helpers import CAT, KIND_LEARNERS, ROOT, make_settings
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


def api_heatmap(port: int, data: bytes, query: str) -> bytes:
    """/api/predict's explanation's heatmap, as PNG bytes."""
    body, headers = multipart(data)
    status, answer, _ = request(port, "POST", f"/api/predict?{query}", body, headers)
    assert status == 200, answer
    return base64.b64decode(json.loads(answer)["explanation"]["heatmap"].split(",", 1)[1])


def infer_json(photo: bytes, outputs: list[dict]) -> dict:
    """An inference request's JSON for one photo in base64, asking for `outputs`."""
    data = [base64.b64encode(photo).decode()]
    return {
        "inputs": [{"name": "images", "datatype": "BYTES", "shape": [1], "data": data}],
        "outputs": outputs,
    }


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
    assert meta["outputs"][-1] == {"name": "heatmap", "datatype": "BYTES", "shape": [-1]}
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


def test_the_heatmap_is_the_apis_explanation(
    triton: httpclient.InferenceServerClient, live: Live
) -> None:
    """Asked for by name, `heatmap` is each image's map as a PNG, the very bytes of
    /api/predict?explain=true's heatmap: of the top class, or of the output's
    `explain_class`, in both modes. Not asked for, it is not sent."""
    photos = [path.read_bytes() for path in PHOTOS[:2]]
    for binary, query in ((True, "explain=true"), (False, "explain=true&explain_class=tabby")):
        heatmap = httpclient.InferRequestedOutput("heatmap", binary_data=binary)
        if not binary:
            heatmap._parameters["explain_class"] = "tabby"  # tritonclient has no setter for it
        result = triton.infer("export", [images_input(photos, binary)], outputs=[heatmap])
        pngs = result.as_numpy("heatmap")
        assert pngs.shape == (2,)
        for data, png in zip(photos, pngs, strict=True):
            got = png if binary else base64.b64decode(png)  # base64 in JSON, as mask_png is
            assert got.startswith(b"\x89PNG") and got == api_heatmap(live.port, data, query)
    plain = triton.infer("export", [images_input(photos, True)])
    assert plain.get_output("heatmap") is None and plain.get_output("labels") is not None


def test_a_heatmaps_bad_parameters_are_the_protocols_400(live: Live) -> None:
    cases = [
        ({"explain_class": 7}, "explain_class must be a string"),
        ({"explain_class": "griffin"}, "explain_class 'griffin' is not a label"),
    ]
    for parameters, words in cases:
        body = infer_json(CAT.read_bytes(), [{"name": "heatmap", "parameters": parameters}])
        status, answer, _ = request(
            live.port, "POST", "/v2/models/export/infer", json.dumps(body).encode()
        )
        error = json.loads(answer)
        assert status == 400 and set(error) == {"error"} and words in error["error"], error


@pytest.mark.slow
@pytest.mark.learners(*KIND_LEARNERS.values(), lines=("2.8",))
@pytest.mark.parametrize("kind", list(KIND_LEARNERS))
def test_only_a_model_that_explains_has_a_heatmap(kind: str, corpus: Corpus) -> None:
    """A corpus learner of every other kind: `heatmap` is listed and made (the API's map)
    where the compiled file explains; keypoints and segmentation, and a model whose
    compile refused to explain, neither list it nor make it: a 400 saying why."""
    built = corpus["2.8", KIND_LEARNERS[kind]]
    assert built.compile.returncode == 0, built.compile.stderr
    settings = make_settings(MODEL_PATH=str(built.onnx))
    path, photo = f"/v2/models/{settings.model_name}", CAT.read_bytes()
    refusal = read_info(built.onnx)["explanation"].get("refused")
    with TestClient(create_app(settings)) as client:
        listed = [output["name"] for output in client.get(path).json()["outputs"]]
        asked = client.post(f"{path}/infer", json=infer_json(photo, [{"name": "heatmap"}]))
        api = client.post("/api/predict?explain=true", files={"file": ("cat.jpg", photo)}).json()
        if kind == "multi-label" and refusal is None:  # a label this photo didn't pass
            passed = api["labels"]
            other = next(p["label"] for p in api["predictions"] if p["label"] not in passed)
            wanted = [{"name": "heatmap", "parameters": {"explain_class": other}}]
            refused = client.post(f"{path}/infer", json=infer_json(photo, wanted))
    if refusal is None:
        assert listed[-1] == "heatmap" and asked.status_code == 200, asked.text
        png = base64.b64decode(asked.json()["outputs"][0]["data"][0])
        assert png == base64.b64decode(api["explanation"]["heatmap"].split(",", 1)[1])
    else:
        assert "heatmap" not in listed and asked.status_code == 400
        why = "already a place in the photo" if kind in ("keypoints", "segmentation") else refusal
        assert set(asked.json()) == {"error"} and why in asked.json()["error"], asked.text
    if kind == "multi-label" and refusal is None:
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"].startswith("'images' element 0: explain_class")


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
