"""Multi-label learners: every label's probability, and the labels past the threshold.

The fixture (tests/learners.py) is trained here in seconds on pictures carrying two
or three coloured squares, exported as a user would, compiled (parity with
learn.predict included) and served through MODEL_PATH, and answers with the labels
fastai's `learn.predict` decodes.
"""

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from app.main import create_app
from tests.helpers import make_settings, run_cli
from tests.learners import COLOURS, colour_pictures

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def colours_client(colours_compiled: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(MODEL_PATH=str(colours_compiled)))) as client:
        yield client


def upload(client: TestClient, data: bytes, **params: str) -> dict:
    response = client.post("/api/predict", params=params, files={"file": ("p.png", data)})
    assert response.status_code == 200, response.text
    return response.json()


def test_model_says_it_is_multi_label(colours_client: TestClient) -> None:
    meta = colours_client.get("/api/model").json()
    assert meta["kind"] == "multi-label" and meta["threshold"] == 0.5
    assert meta["classes"] == sorted(COLOURS) and meta["precision"] == "fp32"
    parity = meta["parity"]
    assert parity["same_labels"] == parity["images"] >= 20 and parity["max_abs_diff"] <= 1e-4


def test_served_labels_are_learn_predicts(
    colours_client: TestClient, colours_model: Path, fastai_vision
) -> None:
    from compiler.learner import read_learner

    learn = read_learner(colours_model)
    right = 0
    made = colour_pictures(30)
    for names, data in made:
        body = upload(colours_client, data)
        with learn.no_bar():
            decoded, _, probs = learn.predict(fastai_vision.PILImage.create(io.BytesIO(data)))
        index = learn.dls.vocab.o2i
        assert set(body["labels"]) == set(decoded)  # ordered by the served probabilities
        served = {p["label"]: p["probability"] for p in body["predictions"]}
        assert set(served) == set(COLOURS)  # every label, by default
        for label, probability in served.items():
            assert abs(probability - float(probs[index[label]])) < 1e-4
        right += sorted(body["labels"]) == names
    assert right / len(made) > 0.9  # and the learner learned: most pictures exactly right


def test_answer_shape(colours_client: TestClient) -> None:
    ((_, data),) = colour_pictures(1, seed=7)
    body = upload(colours_client, data)
    assert body["kind"] == "multi-label" and body["threshold"] == 0.5
    assert "label" not in body and body["model"] == "colours.pkl"
    probabilities = [p["probability"] for p in body["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True)
    passing = [p["label"] for p in body["predictions"] if p["probability"] > 0.5]
    assert body["labels"] == passing
    # top_k trims the list of probabilities, never the labels that pass.
    trimmed = upload(colours_client, data, top_k="1")
    assert len(trimmed["predictions"]) == 1 and trimmed["labels"] == body["labels"]
    assert (
        colours_client.post("/api/predict?top_k=6", files={"file": ("p.png", data)}).json()[
            "error"
        ]["code"]
        == "invalid_top_k"
    )


def test_batch_answers_are_multi_label(colours_client: TestClient) -> None:
    made = colour_pictures(3, seed=3)
    response = colours_client.post(
        "/api/predict/batch",
        files=[("file", (f"{i}.png", data)) for i, (_, data) in enumerate(made)]
        + [("file", ("bad.png", b"not an image"))],
    )
    results = response.json()["results"]
    assert [r.get("kind") for r in results[:3]] == ["multi-label"] * 3
    assert results[3]["error"]["code"] == "unsupported_media_type"


def test_page_shows_passing_labels_then_bars_with_the_threshold(
    colours_client: TestClient,
) -> None:
    """The no-JavaScript form post: the server renders what static/app.js draws."""
    ((_, data),) = colour_pictures(1, seed=5)
    response = colours_client.post(
        "/api/predict", files={"file": ("p.png", data)}, headers={"Accept": "text/html"}
    )
    assert response.status_code == 200
    html = response.text
    body = upload(colours_client, data)
    chips = html[html.index('class="passing"') : html.index("</h2>", html.index('class="passing"'))]
    assert [label in chips for label in body["labels"]] == [True] * len(body["labels"])
    assert 'class="bars multi-label" style="--threshold: 50.0%"' in html
    assert html.count('<li class="pass">') == len(body["labels"])
    assert html.count('class="bar-label"') == len(COLOURS)


def test_cli_prints_the_same_answers(
    colours_client: TestClient, colours_compiled: Path, tmp_path: Path
) -> None:
    made = colour_pictures(2, seed=11)
    for index, (_, data) in enumerate(made):
        (tmp_path / f"{index}.png").write_bytes(data)
    run = run_cli("predict", str(tmp_path), MODEL_PATH=str(colours_compiled))
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    for line, (_, data) in zip(lines, made, strict=True):
        assert line["kind"] == "multi-label" and len(line["predictions"]) == len(COLOURS)
        assert line["labels"] == upload(colours_client, data)["labels"]


def test_openapi_describes_every_kind(colours_client: TestClient) -> None:
    schemas = colours_client.get("/openapi.json").json()["components"]["schemas"]
    kinds = schemas["PredictResponse"]["oneOf"]
    assert {k["$ref"].rsplit("/", 1)[1] for k in kinds} == {
        "SingleLabelAnswer",
        "MultiLabelAnswer",
        "RegressionAnswer",
        "KeypointsAnswer",
        "SegmentationAnswer",
    }
    assert schemas["MultiLabelAnswer"]["allOf"][0] == {
        "$ref": "#/components/schemas/MultiLabelResult"
    }
    multi = schemas["MultiLabelResult"]
    assert set(multi["required"]) == {"kind", "labels", "threshold", "predictions"}
    batch_items = schemas["BatchResponse"]["properties"]["results"]["items"]["oneOf"]
    assert {"$ref": "#/components/schemas/MultiLabelResult"} in batch_items
    assert schemas["ModelInfo"]["oneOf"] == [
        {"$ref": f"#/components/schemas/{name}Model"}
        for name in ("SingleLabel", "MultiLabel", "Regression", "Keypoints", "Segmentation")
    ]
    assert schemas["MultiLabelModel"]["allOf"][0]["properties"]["kind"]["enum"] == ["multi-label"]
