"""The default model and the fast prediction path, against fastai's own `learn.predict`."""

import platform
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import skimage.data
import torch
from fastai.learner import Learner, load_learner
from fastai.vision.core import PILImage
from PIL import Image

from app.images import open_image
from app.model import Classifier, ModelLoadError
from tests.conftest import CAT_CLASSES, MODEL, ROOT, encode


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.load(MODEL)


@pytest.fixture(scope="module")
def reference() -> Learner:
    """fastai's own learner, loaded separately so the fast path can't share its state."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_learner(MODEL)


def fast_probs(classifier: Classifier, image: Image.Image) -> torch.Tensor:
    return classifier.predict_batch([classifier.preprocess(image)])[0]


def fastai_probs(reference: Learner, image: Image.Image) -> torch.Tensor:
    _, _, probs = reference.predict(PILImage.create(image))
    return probs


def test_vocab_is_imagenet_in_index_order(classifier: Classifier) -> None:
    labels = classifier.labels
    assert len(labels) == len(set(labels)) == 1000
    assert labels[0] == "tench"
    assert labels[281:286] == ["tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"]
    assert labels[967] == "espresso"
    # The two "crane"s (bird, machine) stay distinct, each at its own index.
    assert "crane" in labels[134] and "crane" in labels[517] and labels[134] != labels[517]


def test_default_model_knows_real_photos(classifier: Classifier, chelsea, coffee) -> None:
    assert classifier.top_k(fast_probs(classifier, chelsea), 1)[0]["label"] in CAT_CLASSES
    assert classifier.top_k(fast_probs(classifier, coffee), 1)[0]["label"] == "espresso"


def rotated_with_exif(image: Image.Image) -> bytes:
    """The photo stored sideways, with the EXIF tag that tells viewers to turn it."""
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    return encode(image.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95, exif=exif)


@pytest.mark.parametrize(
    "name", ["chelsea", "coffee", "astronaut", "rocket", "rotated", "large", "large-served"]
)
def test_fast_path_matches_learn_predict(
    classifier: Classifier, reference: Learner, name: str
) -> None:
    large = Image.fromarray(skimage.data.astronaut()).resize((4000, 3000), Image.BICUBIC)
    if name == "rotated":
        image = open_image(rotated_with_exif(Image.fromarray(skimage.data.chelsea())), 10**8)
    elif name == "large":  # a 12 MP phone-size photo
        image = large
    elif name == "large-served":  # the same as a JPEG, decoded the way the server does
        image = open_image(encode(large, "JPEG"), 10**8, classifier.draft_size)
    else:
        image = Image.fromarray(getattr(skimage.data, name)())
    fast = fast_probs(classifier, image)
    expected = fastai_probs(reference, image)
    assert fast.shape == expected.shape == (1000,)
    assert torch.allclose(fast, expected, atol=1e-4)


def test_batched_equals_one_at_a_time(classifier: Classifier, chelsea, coffee) -> None:
    inputs = [classifier.preprocess(chelsea), classifier.preprocess(coffee)]
    together = classifier.predict_batch(inputs)
    assert torch.allclose(together[0], classifier.predict_batch(inputs[:1])[0], atol=1e-5)
    assert torch.allclose(together[1], classifier.predict_batch(inputs[1:])[0], atol=1e-5)


def test_exif_orientation_is_applied(chelsea) -> None:
    upright = open_image(rotated_with_exif(chelsea), 10**8)
    assert upright.size == chelsea.size


def test_top_k_is_sorted_and_bounded(classifier: Classifier, coffee) -> None:
    probs = fast_probs(classifier, coffee)
    top = classifier.top_k(probs, 5)
    assert len(top) == 5
    assert [p["probability"] for p in top] == sorted((p["probability"] for p in top), reverse=True)
    assert len(classifier.top_k(probs, 5000)) == 1000
    assert abs(float(probs.sum()) - 1) < 1e-4


def test_metadata(classifier: Classifier) -> None:
    meta = classifier.metadata()
    assert meta["class_count"] == 1000 and meta["input_size"] == [224, 224]
    assert meta["normalization"]["mean"] == pytest.approx([127 / 255] * 3, abs=1e-6)
    assert meta["normalization"]["std"] == pytest.approx([128 / 255] * 3, abs=1e-6)
    assert len(meta["sha256"]) == 64 and meta["file"] == "export.pkl"


def test_missing_architecture_module_is_named(tmp_path: Path) -> None:
    """A pickle whose class lives in a module that isn't installed gets a clear error."""
    module = tmp_path / "vanished_arch.py"
    module.write_text("import torch\nclass Net(torch.nn.Module):\n    pass\n")
    script = (
        "import sys, torch; sys.path.insert(0, sys.argv[1]); import vanished_arch; "
        "torch.save(vanished_arch.Net(), sys.argv[2])"
    )
    target = tmp_path / "export.pkl"
    subprocess.run([sys.executable, "-c", script, str(tmp_path), str(target)], check=True)
    module.unlink()
    with pytest.raises(ModelLoadError, match=r"'vanished_arch'.*not installed"):
        Classifier.load(target)


def test_not_a_model_file(tmp_path: Path) -> None:
    bogus = tmp_path / "export.pkl"
    bogus.write_bytes(b"definitely not a pickle")
    with pytest.raises(ModelLoadError, match="not a loadable fastai export"):
        Classifier.load(bogus)


# The Python the committed export.pkl was built with. Pickles of enums differ
# between 3.11 patch releases (3.11.2 stores PIL's Resampling by name, 3.11.7 by
# value), so byte-for-byte equality holds on this version; on others the rebuild
# must still hold the same model.
BUILT_WITH_PYTHON = "3.11.7"


def test_build_script_reproduces_the_committed_model(tmp_path: Path) -> None:
    """`make model` is deterministic: rebuilding gives the committed model."""
    out = tmp_path / "export.pkl"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_default_model.py"), "--out", str(out)],
        check=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
    )
    if platform.python_version() == BUILT_WITH_PYTHON:
        assert out.read_bytes() == MODEL.read_bytes()
    rebuilt, committed = Classifier.load(out), Classifier.load(MODEL)
    assert rebuilt.labels == committed.labels
    ignore = {"sha256", "file"}
    assert {k: v for k, v in rebuilt.metadata().items() if k not in ignore} == {
        k: v for k, v in committed.metadata().items() if k not in ignore
    }
    weights, reference = rebuilt.model.state_dict(), committed.model.state_dict()
    assert weights.keys() == reference.keys()
    assert all(torch.equal(weights[k], reference[k]) for k in weights)


def test_jpeg_draft_decoding_keeps_the_prediction(classifier: Classifier) -> None:
    """A 12 MP JPEG decoded at reduced scale gives (nearly) the full decode's answer."""
    photo = encode(
        Image.fromarray(skimage.data.coffee()).resize((4000, 3000), Image.BICUBIC), "JPEG"
    )
    full = open_image(photo, 10**8)
    drafted = open_image(photo, 10**8, classifier.draft_size)
    assert classifier.draft_size == 448
    assert drafted.size == (1000, 750) and full.size == (4000, 3000)
    full_probs, draft_probs = fast_probs(classifier, full), fast_probs(classifier, drafted)
    assert int(full_probs.argmax()) == int(draft_probs.argmax())
    assert float((full_probs - draft_probs).abs().max()) < 0.02
