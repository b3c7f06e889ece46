"""`explain=true` on the JSON API (issue 26): every way /api/predict and the batch endpoint
take an image, the target each kind explains, and each refusal with its own code."""

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from app.main import create_app
from tests.corpus.compiled import Corpus
from tests.helpers import CAT_CLASSES, KIND_LEARNERS, ImageServer, assert_error, make_settings
from tests.learners import colour_pictures


def heatmap(answer: dict) -> np.ndarray:
    """The explanation's map, checked to be what the answer says it is."""
    explanation = answer["explanation"]
    assert explanation["method"] == "recipro-cam"
    prefix, data = explanation["heatmap"].split(",", 1)
    assert prefix == "data:image/png;base64"
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    assert image.mode == "P" and image.format == "PNG"
    size = explanation["heatmap_size"]
    assert image.size == (size["width"], size["height"])
    return np.asarray(image)


@pytest.fixture(scope="module")
def default_client() -> Iterator[TestClient]:
    settings = make_settings(ALLOW_PRIVATE_URLS="true", MAX_HEATMAP_MEGAPIXELS="0.01")
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.mark.unit
def test_every_way_in_explains_the_top_class(
    default_client: TestClient, chelsea_jpeg: bytes, image_server: ImageServer
) -> None:
    cat = {"file": ("cat.jpg", chelsea_jpeg, "image/jpeg")}
    encoded = base64.b64encode(chelsea_jpeg).decode()
    answers = [
        default_client.get(
            "/api/predict", params={"url": image_server.url("/cat.jpg"), "explain": "true"}
        ),
        default_client.post("/api/predict?explain=true", files=cat),
        default_client.post("/api/predict?explain=1", json={"image": encoded}),
    ]
    for response in answers:
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["label"] in CAT_CLASSES and answer["explanation"]["target"] == answer["label"]
        heat = heatmap(answer)
        # Chelsea is 451 x 300: the map keeps the photo's shape, at MAX_HEATMAP_MEGAPIXELS.
        assert heat.shape == (82, 123) and heat.max() > 240 and heat.min() < 64
    batch = default_client.post(
        "/api/predict/batch?explain=true", json={"items": [{"image": encoded}, {"url": "nope"}]}
    )
    first, second = batch.json()["results"]
    assert first["explanation"]["target"] == first["label"] and heatmap(first).size
    assert second["error"]["code"] == "invalid_url"
    plain = default_client.post("/api/predict", files=cat).json()
    assert "explanation" not in plain and plain["label"] == answers[1].json()["label"]


@pytest.mark.unit
def test_a_chosen_class_is_explained_and_a_bad_choice_refused(
    default_client: TestClient, chelsea_jpeg: bytes
) -> None:
    cat = {"file": ("cat.jpg", chelsea_jpeg, "image/jpeg")}
    tabby = default_client.post("/api/predict?explain=true&explain_class=tabby", files=cat)
    top = default_client.post("/api/predict?explain=true", files=cat)
    assert tabby.json()["explanation"]["target"] == "tabby" != top.json()["label"]
    assert not np.array_equal(heatmap(tabby.json()), heatmap(top.json()))
    response = default_client.post("/api/predict?explain=true&explain_class=puma", files=cat)
    assert_error(response, 422, "invalid_explain_target")
    assert_error(default_client.post("/api/predict?explain=yes", files=cat), 422, "invalid_option")


@pytest.mark.slow
def test_a_multi_label_model_explains_a_label_that_passed(colours_compiled: Path) -> None:
    picture = next(data for names, data in colour_pictures(8, seed=5) if len(names) == 2)
    photo = {"file": ("p.png", picture, "image/png")}
    with TestClient(create_app(make_settings(MODEL_PATH=str(colours_compiled)))) as client:
        answer = client.post("/api/predict?explain=true", files=photo).json()
        assert answer["explanation"]["target"] == answer["predictions"][0]["label"]
        passed, failed = answer["labels"][-1], answer["predictions"][-1]["label"]
        chosen = client.post(f"/api/predict?explain=true&explain_class={passed}", files=photo)
        assert chosen.json()["explanation"]["target"] == passed
        refused = client.post(f"/api/predict?explain=true&explain_class={failed}", files=photo)
        assert_error(refused, 422, "invalid_explain_target")
        assert "did not pass the threshold" in refused.json()["error"]["message"]


@pytest.mark.slow
@pytest.mark.learners(*KIND_LEARNERS.values(), lines=("2.8",))
def test_each_other_kind_explains_or_refuses_with_its_own_code(
    corpus: Corpus, chelsea_jpeg: bytes
) -> None:
    cat = {"file": ("cat.jpg", chelsea_jpeg, "image/jpeg")}
    for kind, name in KIND_LEARNERS.items():
        built = corpus["2.8", name]
        with TestClient(create_app(make_settings(MODEL_PATH=str(built.onnx)))) as client:
            response = client.post("/api/predict?explain=true&explain_value=disc_x", files=cat)
            if kind == "regression":
                assert response.json()["explanation"]["target"] == "disc_x"
                first = client.post("/api/predict?explain=true", files=cat).json()
                assert first["explanation"]["target"] == "brightness"
                wrong = client.post("/api/predict?explain=true&explain_value=x", files=cat)
                assert_error(wrong, 422, "invalid_explain_target")
            elif kind == "multi-label":
                assert response.status_code == 200, response.text
            else:
                assert_error(response, 422, "explain_not_applicable")
                assert (
                    client.get("/api/model")
                    .json()["explanation"]["refused"]
                    .startswith(f"a {kind} model's answer is already a place in the photo")
                )
