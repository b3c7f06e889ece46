"""The shipped compiled model, run as the server runs it, against fastai's own `learn.predict`."""

import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import skimage.data
from PIL import Image, ImageOps

from app.inference.images import ANY_SIZE, decode_image
from app.inference.metadata import metadata_props, sha256_of
from app.inference.model import METADATA_KEY, Model, ModelLoadError
from app.kinds import Kind, kind_of
from tests.helpers import CAT_CLASSES, COMPILED, MODEL, ROOT, encode


@pytest.fixture(scope="module")
def model() -> Model:
    return Model.load(COMPILED)


@pytest.fixture(scope="module")
def kind(model: Model) -> Kind:
    return kind_of(model.info, {"top_k": 5})


@pytest.fixture(scope="module")
def reference(fastai_vision) -> object:
    """export.pkl's learner, to ask learn.predict."""
    from compiler.learner import read_learner

    return read_learner(MODEL)


def served_probs(model: Model, image: Image.Image) -> np.ndarray:
    return model.infer([model.preprocess(image)])[0]


def fastai_probs(reference: object, image: Image.Image | Path) -> np.ndarray:
    """learn.predict's answer on an image, or on a file that fastai opens itself."""
    from fastai.vision.core import PILImage

    with reference.no_bar():
        _, _, probs = reference.predict(PILImage.create(image))
    return probs.numpy()


@pytest.mark.unit
def test_vocab_is_imagenet_in_index_order(kind: Kind) -> None:
    labels = kind.labels
    assert len(labels) == len(set(labels)) == 1000
    assert labels[0] == "tench"
    assert labels[281:286] == ["tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"]
    assert labels[967] == "espresso"
    # The two "crane"s (bird, machine) stay distinct, each at its own index.
    assert "crane" in labels[134] and "crane" in labels[517] and labels[134] != labels[517]


@pytest.mark.unit
def test_default_model_knows_real_photos(model: Model, kind: Kind, chelsea, coffee) -> None:
    assert kind.ranked(served_probs(model, chelsea), 1)[0]["label"] in CAT_CLASSES
    assert kind.ranked(served_probs(model, coffee), 1)[0]["label"] == "espresso"


def rotated_with_exif(image: Image.Image) -> bytes:
    """The photo stored sideways, with the EXIF tag that tells viewers to turn it."""
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    return encode(image.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95, exif=exif)


@pytest.mark.parametrize("name", ["chelsea", "astronaut", "rotated", "phone"])
def test_served_model_matches_learn_predict(
    model: Model, reference: object, name: str, tmp_path: Path
) -> None:
    """Files other than the compiler's own parity set: the server decodes the bytes,
    fastai opens the file. A sideways photo is answered upright: its reference is the
    same pixels, turned, in a lossless file."""
    from compiler.parity import PHONE_12MP, phone_photo

    photo = tmp_path / name
    if name == "rotated":
        photo.write_bytes(rotated_with_exif(Image.fromarray(skimage.data.chelsea())))
    elif name == "phone":  # a 12 MP phone photo, progressive
        astronaut = Image.fromarray(skimage.data.astronaut())
        big = phone_photo(astronaut, PHONE_12MP, seed=7)
        photo.write_bytes(encode(big, "JPEG", quality=92, progressive=True))
    else:
        photo.write_bytes(encode(Image.fromarray(getattr(skimage.data, name)()), "JPEG"))
    file = photo
    if name == "rotated":
        file = tmp_path / "upright.png"
        ImageOps.exif_transpose(Image.open(photo)).save(file)
    image = model.decode(photo.read_bytes(), ANY_SIZE)
    served, expected = served_probs(model, image), fastai_probs(reference, file)
    assert served.shape == expected.shape == (1000,)
    assert np.abs(served - expected).max() < 1e-4
    assert served.argmax() == expected.argmax()


@pytest.mark.unit
def test_batched_equals_one_at_a_time(model: Model, chelsea, coffee) -> None:
    inputs = [model.preprocess(chelsea), model.preprocess(coffee)]
    together = model.infer(inputs)
    assert np.allclose(together[0], model.infer(inputs[:1])[0], atol=1e-5)
    assert np.allclose(together[1], model.infer(inputs[1:])[0], atol=1e-5)


@pytest.mark.unit
def test_exif_orientation_is_applied(chelsea) -> None:
    upright = decode_image(rotated_with_exif(chelsea), ANY_SIZE)
    assert upright.size == chelsea.size


@pytest.mark.unit
def test_top_k_is_sorted_and_bounded(model: Model, kind: Kind, coffee) -> None:
    probs = served_probs(model, coffee)
    top = kind.ranked(probs, 5)
    assert len(top) == 5
    assert [p["probability"] for p in top] == sorted((p["probability"] for p in top), reverse=True)
    assert len(kind.ranked(probs, 5000)) == 1000
    assert abs(float(probs.sum()) - 1) < 1e-4


@pytest.mark.unit
def test_metadata_says_runtime_source_and_parity(model: Model, kind: Kind) -> None:
    meta = {**model.metadata(), **kind.describe()}
    assert meta["class_count"] == 1000 and meta["input_size"] == [224, 224]
    assert meta["kind"] == "single-label" and meta["threshold"] is None
    assert meta["precision"] == "fp32" and meta["quantization"] is None  # the default
    assert meta["runtime"]["name"] == "onnxruntime"
    divide, normalize = meta["graph"]["batch_transforms"]
    assert divide == {"op": "divide", "by": 255.0}
    assert np.ravel(normalize["mean"]) == pytest.approx([127 / 255] * 3, abs=1e-6)
    assert np.ravel(normalize["std"]) == pytest.approx([128 / 255] * 3, abs=1e-6)
    assert meta["file"] == "export.onnx" and model.name == "export.pkl"
    assert meta["source"]["sha256"] == sha256_of(MODEL)
    assert meta["source"]["fastai_version"] == "2.8.12"
    assert meta["parity"]["images"] >= 19 and meta["parity"]["max_abs_diff"] <= 1e-4


@pytest.mark.unit
def test_not_a_model_file(tmp_path: Path) -> None:
    bogus = tmp_path / "model.onnx"
    bogus.write_bytes(b"definitely not a graph")
    with pytest.raises(ModelLoadError, match="is not an ONNX model"):
        Model.load(bogus)


@pytest.mark.unit
def test_metadata_is_read_without_loading_the_graph() -> None:
    """app/inference/metadata.py reads what the onnx package reads, with no session."""
    expected = {entry.key: entry.value for entry in onnx.load(COMPILED).metadata_props}
    assert metadata_props(COMPILED) == expected and METADATA_KEY in expected


@pytest.mark.unit
@pytest.mark.parametrize("damaged", ["{not json", "[1, 2]", '"format"'])
def test_damaged_metadata_is_a_one_line_load_error(tmp_path: Path, damaged: str) -> None:
    proto = onnx.load(COMPILED)
    next(e for e in proto.metadata_props if e.key == METADATA_KEY).value = damaged
    broken = tmp_path / "broken.onnx"
    onnx.save(proto, broken)
    with pytest.raises(ModelLoadError, match=r"metadata is damaged.*compile the export.pkl"):
        Model.load(broken)


def test_a_failed_write_leaves_no_partial_file(tmp_path: Path) -> None:
    """compiler/main.py writes through a temporary file; when the last step fails (here
    the destination is a folder), the temporary file goes too."""
    from compiler.main import _write

    (tmp_path / "export.onnx").mkdir()
    with pytest.raises(OSError):
        _write(tmp_path / "export.onnx", b"graph")
    assert [p.name for p in tmp_path.iterdir()] == ["export.onnx"]


def test_an_onnx_file_not_compiled_by_pounce(tmp_path: Path) -> None:
    import torch

    plain = tmp_path / "plain.onnx"
    torch.onnx.export(torch.nn.ReLU(), (torch.zeros(1, 3),), str(plain), dynamo=False)
    with pytest.raises(ModelLoadError, match=r"no Pounce metadata.*python -m app compile"):
        Model.load(plain)


@pytest.mark.unit
def test_jpegs_are_decoded_at_full_size_by_default(model: Model) -> None:
    """As fastai decodes them: reduced-scale decoding is compile --fast-decode's, opt-in."""
    photo = encode(
        Image.fromarray(skimage.data.coffee()).resize((4000, 3000), Image.BICUBIC), "JPEG"
    )
    assert model.draft_size is None and model.metadata()["decoding"] == {"jpeg": "exact"}
    assert model.decode(photo, ANY_SIZE).size == (4000, 3000)


# The Python the committed export.pkl was built with. Pickles of enums differ
# between 3.11 patch releases (3.11.2 stores PIL's Resampling by name, 3.11.7 by
# value), so byte-for-byte equality holds on this version; on others the rebuild
# must still hold the same model.
BUILT_WITH_PYTHON = "3.11.7"


@pytest.mark.slow
def test_build_script_reproduces_the_committed_model(tmp_path: Path, reference: object) -> None:
    """`make model` is deterministic: rebuilding gives the committed export."""
    import torch

    from compiler.learner import read_learner

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
    rebuilt = read_learner(out)
    assert list(rebuilt.dls.vocab) == list(reference.dls.vocab)
    assert repr(rebuilt.dls.valid.after_item) == repr(reference.dls.valid.after_item)
    assert repr(rebuilt.dls.valid.after_batch) == repr(reference.dls.valid.after_batch)
    weights, committed = rebuilt.model.state_dict(), reference.model.state_dict()
    assert weights.keys() == committed.keys()
    assert all(torch.equal(weights[k], committed[k]) for k in weights)


@pytest.mark.unit
def test_an_unreadable_file_says_so(tmp_path: Path) -> None:
    """What ONNX Runtime would call "system error number 13" (or 21) gets its name."""
    with pytest.raises(ModelLoadError, match=r"cannot read .*: Is a directory"):
        Model.load(tmp_path)
