"""Any single-label fastai vision classifier works: a tiny digits CNN, trained here.

The model is built from scikit-learn's bundled 8x8 digit images in a few
seconds: greyscale (PILImageBW) inputs, a 10-class vocab, fastai's own
`SimpleCNN`. Served by the same app through MODEL_PATH.
"""

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastai.learner import load_learner
from fastai.vision.core import PILImageBW
from PIL import Image
from sklearn.datasets import load_digits
from starlette.testclient import TestClient

from app.main import create_app
from app.settings import load_settings


def digit_image(pixels: np.ndarray) -> Image.Image:
    """An 8x8 digit (values 0-16) as a 28x28 black-on-white greyscale picture."""
    grey = (255 - pixels.reshape(8, 8) * 15).clip(0, 255).astype(np.uint8)
    return Image.fromarray(grey, "L").resize((28, 28), Image.NEAREST)


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fastai.vision.all import (
        CategoryBlock,
        DataBlock,
        GrandparentSplitter,
        ImageBlock,
        Learner,
        PILImageBW,
        SimpleCNN,
        accuracy,
        get_image_files,
        parent_label,
        set_seed,
    )

    root = tmp_path_factory.mktemp("digits")
    digits = load_digits()
    for index, (pixels, target) in enumerate(zip(digits.data, digits.target, strict=True)):
        split = "valid" if index % 5 == 0 else "train"
        folder = root / split / str(target)
        folder.mkdir(parents=True, exist_ok=True)
        digit_image(pixels).save(folder / f"{index}.png")
    dls = DataBlock(
        blocks=(ImageBlock(cls=PILImageBW), CategoryBlock),
        get_items=get_image_files,
        splitter=GrandparentSplitter(),
        get_y=parent_label,
    ).dataloaders(root, bs=64, num_workers=0)
    set_seed(0, reproducible=True)
    learn = Learner(dls, SimpleCNN([1, 16, 32, 64, 10]), metrics=accuracy, path=root)
    learn.fit_one_cycle(8, 1e-2)
    assert learn.validate()[1] > 0.8
    learn.export("digits.pkl")
    return root / "digits.pkl"


@pytest.fixture(scope="module")
def digits_client(digits_model: Path) -> Iterator[TestClient]:
    settings = load_settings({"MODEL_PATH": str(digits_model), "TOP_K": "3"})
    with TestClient(create_app(settings)) as client:
        yield client


def test_served_by_the_same_app(digits_client: TestClient, digits_model: Path) -> None:
    meta = digits_client.get("/api/model").json()
    assert meta["classes"] == [str(d) for d in range(10)]
    assert meta["image_mode"] == "L" and meta["file"] == "digits.pkl"

    learn = load_learner(digits_model)
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
        _, _, probs = learn.predict(PILImageBW.create(image))
        # The server agrees with fastai, digit by digit, to 1e-4 (a near-tie may pick
        # either of two classes whose probabilities are that close).
        served = {p["label"]: p["probability"] for p in body["predictions"]}
        for label, probability in served.items():
            assert abs(probability - float(probs[learn.dls.vocab.o2i[label]])) < 1e-4
        assert abs(body["probability"] - float(probs.max())) < 1e-4
        correct += body["label"] == str(digits.target[index])
    assert correct / len(samples) > 0.8
