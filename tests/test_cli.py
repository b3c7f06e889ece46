"""`python -m app predict`: JSON lines for files, folders and URLs; with --explain, each
photo with its map drawn over it."""

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli import NOT_COMPILED, expand
from app.inference.images import SUFFIXES
from tests.corpus.compiled import Corpus
from tests.helpers import CAT, CAT_CLASSES, COMPILED, MODEL, ImageServer, encode, run_cli


@pytest.mark.slow
def test_predicts_files_and_walks_folders(
    tmp_path: Path, chelsea_jpeg: bytes, coffee_png: bytes
) -> None:
    (tmp_path / "cat.jpg").write_bytes(chelsea_jpeg)
    album = tmp_path / "album"
    (album / "nested").mkdir(parents=True)
    for index in range(12):
        (album / "nested" / f"coffee{index:02}.png").write_bytes(coffee_png)
    (album / "readme.txt").write_text("not an image, and not picked up by the walk")

    run = run_cli("predict", str(tmp_path / "cat.jpg"), str(album), "--top-k", "2")
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert len(lines) == 13
    assert lines[0]["source"].endswith("cat.jpg") and lines[0]["label"] in CAT_CLASSES
    assert all(line["label"] == "espresso" for line in lines[1:])
    assert [line["source"] for line in lines[1:]] == sorted(line["source"] for line in lines[1:])
    assert len(lines[0]["predictions"]) == 2
    assert "13/13" in run.stderr  # the progress bar, on stderr, when there are many


@pytest.mark.slow
def test_failures_are_reported_per_line(tmp_path: Path, image_server: ImageServer) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    run = run_cli(
        "predict",
        str(bad),
        str(tmp_path / "missing.jpg"),
        image_server.url("/coffee.png"),
        ALLOW_PRIVATE_URLS="true",
    )
    assert run.returncode == 1
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert lines[0]["error"]["code"] == "unsupported_media_type"
    assert lines[1]["error"]["code"] == "unreadable"
    assert lines[2]["label"] == "espresso"


@pytest.mark.slow
def test_urls_obey_the_same_safety_rules(image_server: ImageServer) -> None:
    before = list(image_server.requests)
    run = run_cli("predict", image_server.url("/coffee.png"))
    assert run.returncode == 1
    assert json.loads(run.stdout)["error"]["code"] == "url_not_allowed"
    assert image_server.requests == before


@pytest.mark.slow
def test_compile_check_finds_the_shipped_compiled_model(tmp_path: Path) -> None:
    """`make run` asks this before installing anything more: is there a compiled file
    made from this export?"""
    run = run_cli("compile", "--check")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(COMPILED)
    other = tmp_path / "mine.pkl"
    other.write_bytes(MODEL.read_bytes() + b"\0")  # another file: no compiled model made from it
    run = run_cli("compile", "--check", str(other), MODEL_CACHE_DIR=str(tmp_path))
    assert run.returncode == NOT_COMPILED
    assert run.stderr.strip() == f"{other} has no compiled model made from it"


@pytest.mark.slow
def test_top_k_is_checked_as_the_api_checks_it(tmp_path: Path, chelsea_jpeg: bytes) -> None:
    photo = tmp_path / "cat.jpg"
    photo.write_bytes(chelsea_jpeg)
    for bad in ("0", "1001", "two"):
        run = run_cli("predict", str(photo), "--top-k", bad)
        assert run.returncode == 1 and run.stdout == ""
        assert f"top_k must be an integer from 1 to 1000, not {bad!r}" in run.stderr


@pytest.mark.unit
def test_folder_walks_take_every_format_the_server_decodes(tmp_path: Path) -> None:
    for suffix in sorted(SUFFIXES):
        (tmp_path / f"photo{suffix}").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    walked = {Path(p).suffix for p in expand([str(tmp_path)])}
    assert walked == SUFFIXES and {".heic", ".webp", ".tiff"} <= walked


@pytest.mark.slow
def test_a_bad_model_is_one_line_not_a_traceback(tmp_path: Path, chelsea_jpeg: bytes) -> None:
    """As serve and compile say it: one line naming the file and what is wrong."""
    (tmp_path / "cat.jpg").write_bytes(chelsea_jpeg)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file at all")
    run = run_cli("predict", str(tmp_path / "cat.jpg"), MODEL_PATH=str(broken))
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines() == [f"error: {broken} is not an ONNX model"]


def heat_over(photo: Image.Image, heatmap: str) -> np.ndarray:
    """An answer's heatmap's values (0..255), stretched over the photo."""
    png = Image.open(io.BytesIO(base64.b64decode(heatmap.split(",", 1)[1])))
    return np.asarray(Image.fromarray(np.asarray(png)).resize(photo.size, Image.BILINEAR))


@pytest.mark.slow
def test_explain_writes_each_photo_upright_with_its_map_over_it(
    tmp_path: Path, chelsea: Image.Image, coffee_png: bytes
) -> None:
    """--explain DIR adds the API's `explanation` (the top class's, or --explain-class's)
    and writes each photo, upright and at its size, with the map drawn over it: changed
    most where the map is hottest. The cat is stored sideways, with EXIF orientation 6."""
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter to the left: shown turned back
    sideways = chelsea.transpose(Image.Transpose.ROTATE_90)
    (tmp_path / "cat.jpg").write_bytes(encode(sideways, "JPEG", quality=95, exif=exif))
    (tmp_path / "coffee.png").write_bytes(coffee_png)
    out = tmp_path / "explained"

    run = run_cli("predict", str(tmp_path), "--explain", str(out))
    assert run.returncode == 0, run.stderr
    cat, coffee = [json.loads(line) for line in run.stdout.splitlines()]
    assert cat["label"] in CAT_CLASSES and cat["explanation"]["target"] == cat["label"]
    assert coffee["explanation"]["target"] == coffee["label"] == "espresso"
    assert sorted(p.name for p in out.iterdir()) == ["cat.explained.jpg", "coffee.explained.jpg"]
    assert cat["written"] == str(out / "cat.explained.jpg")
    drawn = Image.open(cat["written"])
    assert drawn.format == "JPEG" and drawn.size == chelsea.size  # upright: 451 x 300
    change = np.abs(np.asarray(drawn, float) - np.asarray(chelsea, float)).mean(axis=2)
    heat = heat_over(chelsea, cat["explanation"]["heatmap"])
    assert change[heat >= 192].mean() > 1.5 * change[heat <= 64].mean()  # JPEG noise in both

    chosen = "tabby" if cat["label"] != "tabby" else "tiger cat"
    other = run_cli(
        "predict", str(tmp_path / "cat.jpg"), "--explain", str(out), "--explain-class", chosen
    )
    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout)["explanation"]["target"] == chosen
    assert Image.open(out / "cat.explained.jpg").tobytes() != drawn.tobytes()


@pytest.mark.slow
def test_explain_options_are_checked_as_the_api_checks_them(tmp_path: Path) -> None:
    out = tmp_path / "explained"
    run = run_cli("predict", str(CAT), "--explain-class", "tabby")
    assert run.returncode == 1 and run.stdout == ""
    assert run.stderr.strip() == "error: --explain-class and --explain-value go with --explain DIR"
    run = run_cli("predict", str(CAT), "--explain", str(out), "--explain-class", "griffin")
    assert run.returncode == 1 and run.stdout == "" and not out.exists()
    assert run.stderr.strip() == "error: explain_class 'griffin' is not a label."


@pytest.mark.slow
@pytest.mark.learners("keypoints", lines=("2.8",))
def test_explain_is_refused_in_one_line_for_a_model_that_cant(
    tmp_path: Path, corpus: Corpus
) -> None:
    built = corpus["2.8", "keypoints"]
    out = tmp_path / "explained"
    run = run_cli("predict", str(CAT), "--explain", str(out), MODEL_PATH=str(built.onnx))
    assert run.returncode == 1 and run.stdout == "" and not out.exists()
    assert run.stderr.strip().splitlines() == [
        "error: A keypoints model's answer is already a place in the photo: explain is for "
        "classifiers and regression."
    ]
