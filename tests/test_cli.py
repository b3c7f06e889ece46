"""`python -m app predict`: JSON lines for files, folders and URLs."""

import json
from pathlib import Path

import pytest

from app.cli import NOT_COMPILED, expand
from app.inference.images import SUFFIXES
from tests.helpers import CAT_CLASSES, COMPILED, MODEL, ImageServer, run_cli


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
