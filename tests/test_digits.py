"""Any single-label fastai vision classifier works: a tiny greyscale digits CNN.

Trained here in seconds (tests/learners.py), exported as a user would, compiled,
and served by the same app through MODEL_PATH; its answers are learn.predict's.
(How the server compiles an export it is given in a child process, and serves the
compiled file from then on, is tests/test_boundary.py's.)
"""

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from starlette.testclient import TestClient

from app.main import create_app
from tests.cache import Cache
from tests.helpers import make_settings
from tests.learners import cached, compiled, digit_image, train_digits

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits_model(test_cache: Cache) -> Path:
    return cached(test_cache, train_digits)


@pytest.fixture(scope="module")
def digits_client(digits_model: Path, test_cache: Cache) -> Iterator[TestClient]:
    served = compiled(test_cache, digits_model)
    with TestClient(create_app(make_settings(MODEL_PATH=str(served), TOP_K="3"))) as client:
        yield client


def test_served_by_the_same_app(
    digits_client: TestClient, digits_model: Path, fastai_vision
) -> None:
    meta = digits_client.get("/api/model").json()
    assert meta["classes"] == [str(d) for d in range(10)]
    assert meta["image_mode"] == "L" and meta["source"]["file"] == "digits.pkl"
    assert meta["parity"]["max_abs_diff"] <= 1e-4

    from compiler.learner import read_learner

    learn = read_learner(digits_model)
    digits = load_digits()
    correct = 0
    samples = range(1, 200, 5)
    for index in samples:
        image = digit_image(digits.data[index])
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, "PNG")
        response = digits_client.post(
            "/api/predict", files={"file": ("d.png", buffer.getvalue(), "image/png")}
        )
        assert response.status_code == 200
        body = response.json()
        assert len(body["predictions"]) == 3
        with learn.no_bar():
            _, _, probs = learn.predict(fastai_vision.PILImageBW.create(image))
        # The server agrees with fastai, digit by digit, to 1e-4.
        served = {p["label"]: p["probability"] for p in body["predictions"]}
        for label, probability in served.items():
            assert abs(probability - float(probs[learn.dls.vocab.o2i[label]])) < 1e-4
        assert body["label"] == learn.dls.vocab[int(np.argmax(probs))]
        correct += body["label"] == str(digits.target[index])
    assert correct / len(samples) > 0.8
