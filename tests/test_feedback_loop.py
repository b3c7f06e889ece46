"""The whole loop (issue 27): a learner served, its answers corrected through the real HTTP
API, the export trained on by fastai with `ImageDataLoaders.from_df` as it is (in a
process of its own: tests/feedback_notebook.py, docs/models.md's lines), the new export
compiled by `python -m app compile` and served. And the export's other shapes (a
single-label model's, a regression model's of two values) read by fastai as the docs say."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import urlencode

import pytest
from PIL import Image

from app.feedback.export import write_export
from app.feedback.store import Answered, FeedbackStore
from tests.helpers import ROOT, encode
from tests.learners import colour_pictures
from tests.live import multipart, request, serve

pytestmark = pytest.mark.slow

TOKEN = "loop-admin-token-0123456789"


def run(*command: str, timeout: int = 300) -> str:
    """`python COMMAND`'s last line of output (fastai prints its progress before it)."""
    done = subprocess.run(
        [sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return (done.stdout.strip().splitlines() or [""])[-1]


def answer(port: int, data: bytes) -> dict:
    body, headers = multipart(data)
    status, payload, _ = request(port, "POST", "/api/predict", body, headers)
    assert status == 200, payload
    return json.loads(payload)


def test_corrections_become_a_dataset_fastai_trains_the_next_model_on(
    colours_model: Path, colours_compiled: Path, tmp_path: Path
) -> None:
    env = {"MODEL_PATH": str(colours_compiled), "FEEDBACK_DIR": str(tmp_path / "feedback")}
    made = colour_pictures(60, seed=21)
    with serve(tmp_path, ADMIN_TOKEN=TOKEN, **env) as live:
        verdicts = []
        for index, (names, data) in enumerate(made):
            prediction_id = answer(live.port, data)["prediction_id"]
            names = [] if index == 7 else names  # "none of these": an empty label in the CSV
            if index % 2:  # as the page's form posts it: a field a label, and an empty one
                fields = [("prediction_id", prediction_id), ("labels", "")]
                body = urlencode(fields + [("labels", name) for name in names]).encode()
                kind = "application/x-www-form-urlencoded"
            else:
                body = json.dumps({"prediction_id": prediction_id, "labels": names}).encode()
                kind = "application/json"
            status, said, _ = request(
                live.port, "POST", "/api/feedback", body, {"Content-Type": kind}
            )
            assert status == 200, said
            verdicts.append(json.loads(said)["feedback"])
        auth = {"Authorization": f"Bearer {TOKEN}"}
        status, zipped, _ = request(live.port, "GET", "/api/feedback/export", headers=auth)
        original = json.loads(request(live.port, "GET", "/api/model")[1])
    assert status == 200 and set(verdicts) <= {"confirmed", "corrected"}
    export = tmp_path / "export.zip"
    export.write_bytes(zipped)

    retrained = tmp_path / "retrained.pkl"
    seen = json.loads(
        run("-m", "tests.feedback_notebook", str(export), str(colours_model), str(retrained))
    )
    assert seen["train"] + seen["valid"] == len(made) and seen["valid"] > 0
    run("-m", "app", "compile", str(retrained), "-o", str(tmp_path / "retrained.onnx"))

    with serve(tmp_path, MODEL_PATH=str(tmp_path / "retrained.onnx")) as served:
        names, data = colour_pictures(1, seed=22)[0]
        answered = answer(served.port, data)
        model = json.loads(request(served.port, "GET", "/api/model")[1])
    assert answered["kind"] == "multi-label" and set(answered["labels"]) <= set(model["classes"])
    assert model["classes"] == original["classes"]
    assert model["source"]["sha256"] != original["source"]["sha256"]


def test_the_other_kinds_exports_are_read_by_fastai_as_the_docs_say(tmp_path: Path) -> None:
    """A single-label model's labels.csv (`label_col="label"`) and a regression model's of
    two values (`label_col` its value columns, RegressionBlock), as the server writes them."""
    pictures = [encode(Image.new("RGB", (40, 30), (i * 20, 90, 140)), "PNG") for i in range(20)]
    for kind, answered, fixes in [
        ("single-label", ["cat"], [["cat"], ["dog"]]),
        ("regression", ["0.5", "0.5"], [["0.25", "0.75"], ["0.1", "0.9"]]),
    ]:
        store = FeedbackStore(tmp_path / f"{kind}-store", 60, 10**8, 10**9).open()
        for index, data in enumerate(pictures):
            held = store.hold(data, Answered(kind, answered, None, "0" * 64))
            store.record(held, fixes[index % 2])
        write_export(store, tmp_path / f"{kind}.zip")
        zipfile.ZipFile(tmp_path / f"{kind}.zip").extractall(tmp_path / "kinds" / kind)
    seen = json.loads(run("-m", "tests.feedback_notebook", "--kinds", str(tmp_path / "kinds")))
    assert seen["vocab"] == ["cat", "dog"] and seen["class_batch"] == [4]
    assert seen["value_batch"] == [4, 2]
    assert set(seen["values"]) <= {0.1, 0.25, 0.75, 0.9}
