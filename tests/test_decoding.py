"""compile --fast-decode: reduced-scale JPEG decoding is opt-in, measured by the compile
against exact decoding, recorded in the compiled file, and shown at /api/model and on
the page; without it, every photo is decoded at full size, as learn.predict does."""

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from app.inference.images import ANY_SIZE
from app.inference.model import Model
from app.main import create_app
from tests.helpers import encode, make_settings, run_cli
from tests.live import request, serve_app

pytestmark = pytest.mark.slow


def _page_and_info(model: Path) -> tuple[str, dict]:
    with serve_app(create_app(make_settings(MODEL_PATH=str(model)))) as port:
        _, page, _ = request(port, "GET", "/")
        _, info, _ = request(port, "GET", "/api/model")
    return page.decode(), json.loads(info)


def test_fast_decode_is_measured_recorded_and_shown(colours_model: Path, tmp_path: Path) -> None:
    from compiler.decoding import MIN_AGREEMENT
    from compiler.parity import PHONE_12MP, phone_photo

    out = tmp_path / "fast.onnx"
    run = run_cli("compile", str(colours_model), "-o", str(out), "--fast-decode")
    assert run.returncode == 0, run.stderr
    said = [line for line in run.stderr.splitlines() if line.startswith("reduced-scale JPEG")]
    assert len(said) == 1 and "answer on 12 of 12 held-out photos (100.0%)" in said[0]

    model = Model.load(out)
    decoding = model.metadata()["decoding"]
    assert decoding["jpeg"] == "reduced" and decoding["draft_size"] == 2 * 48
    assert decoding["min_agreement"] == MIN_AGREEMENT
    assert decoding["holdout"]["images"] == decoding["holdout"]["same_labels"] == 12
    phone = encode(phone_photo(Image.new("RGB", (64, 48), "red"), PHONE_12MP, 1), "JPEG")
    decoded = model.decode(phone, ANY_SIZE)
    assert decoded.size == (500, 375)  # 1/8 scale: the smallest not below 96 px
    assert decoded.info["photo_size"] == PHONE_12MP  # answers still map to the photo's pixels

    page, info = _page_and_info(out)
    assert info["decoding"] == decoding
    assert "JPEGs decoded at reduced scale: the exact answer on 12 of 12 held-out" in page


def test_with_int8_it_is_measured_on_the_int8_graph(
    colours_model: Path, colours_compiled: Path, tmp_path: Path
) -> None:
    """The record describes the file written: measured again on the written INT8 graph, the
    same figures, and not the fp32 graph's. Calibrated and held out on pictures like the
    learner's own, at phone size, so a freshly trained model quantizes and answers clearly
    (calibrated on the default ImageNet photos, one fell below INT8's floor)."""
    from compiler.decoding import reduced_decoding
    from tests.learners import colour_pictures

    calibration, holdout = tmp_path / "calibration", tmp_path / "holdout"
    calibration.mkdir()
    holdout.mkdir()
    for index, (_, png) in enumerate(colour_pictures(16, seed=3)):
        (calibration / f"{index}.png").write_bytes(png)
    for index, (_, png) in enumerate(colour_pictures(6, seed=7)):
        picture = Image.open(io.BytesIO(png)).resize((1632, 1632), Image.BICUBIC)
        (holdout / f"{index}.jpg").write_bytes(encode(picture, "JPEG", quality=90))
    out = tmp_path / "int8-fast.onnx"
    flags = [
        "--int8",
        "--fast-decode",
        "--holdout",
        str(holdout),
        "--calibration",
        str(calibration),
    ]
    run = run_cli("compile", str(colours_model), "-o", str(out), *flags)
    assert run.returncode == 0, run.stderr
    model = Model.load(out)
    recorded = model.metadata()["decoding"]
    assert model.metadata()["precision"] == "int8" and recorded["holdout"]["images"] == 6
    assert reduced_decoding(model, holdout) == recorded
    assert reduced_decoding(Model.load(colours_compiled), holdout) != recorded


def test_without_it_photos_are_decoded_at_full_size(colours_compiled: Path) -> None:
    page, info = _page_and_info(colours_compiled)
    assert info["decoding"] == {"jpeg": "exact"}
    assert "photos decoded at full size, as learn.predict does" in page


def test_a_model_that_takes_images_at_their_own_size_is_refused(tmp_path: Path) -> None:
    """Its input is the photo: a smaller decode would change what it sees."""
    from tests.learners import tiny_learner

    export = tiny_learner(tmp_path, item_tfms=[])
    run = run_cli("compile", str(export), "-o", str(tmp_path / "m.onnx"), "--fast-decode")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot compile") and "--fast-decode needs a model" in last
    assert not (tmp_path / "m.onnx").exists()


def test_held_out_photos_it_does_not_change_or_cannot_read_are_said(
    colours_model: Path, colours_compiled: Path, tmp_path: Path
) -> None:
    """A photo too small to be decoded at reduced scale would count as an agreement it
    is not; a broken one is named. Each is one line (the measurement runs on the served
    model, in-process; the CLI run shows the line and that nothing is written)."""
    from compiler.decoding import reduced_decoding
    from compiler.learner import CompileError

    holdout, out = tmp_path / "holdout", tmp_path / "fast.onnx"
    holdout.mkdir()
    (holdout / "small.png").write_bytes(encode(Image.new("RGB", (640, 480), "red"), "PNG"))
    with pytest.raises(CompileError, match="none of the held-out photos is a JPEG large enough"):
        reduced_decoding(Model.load(colours_compiled), holdout)

    broken = encode(Image.new("RGB", (1600, 1200), "blue"), "JPEG")
    (holdout / "broken.jpg").write_bytes(broken[: len(broken) // 2])
    flags = ["--fast-decode", "--holdout", str(holdout)]
    run = run_cli("compile", str(colours_model), "-o", str(out), *flags)
    assert run.returncode == 1 and "Traceback" not in run.stderr and not out.exists()
    assert "cannot read the held-out photo broken.jpg" in run.stderr.strip().splitlines()[-1]
