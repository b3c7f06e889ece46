"""The feedback store under real servers (issue 27): several processes writing at once lose
no acknowledged correction and keep none twice; a `kill -9` mid-stream leaves a store that
opens, exports, and still takes the corrections it was not told. Servers of the tiny
multi-label fixture learner (tests/learners.py), so predicting costs next to nothing."""

import csv
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import time
import zipfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest

from app.feedback.store import FeedbackStore
from tests.helpers import ROOT, run_cli
from tests.learners import colour_pictures
from tests.live import multipart, request, serve

pytestmark = pytest.mark.slow

TOKEN = "live-admin-token-0123456789"
THREADS = 24


def pictures(count: int, seed: int) -> list[tuple[list[str], bytes]]:
    """`count` pictures, no two the same bytes (each correction names its own photo)."""
    unique = {data: names for names, data in colour_pictures(count * 2, seed)}
    assert len(unique) >= count
    return [(names, data) for data, names in list(unique.items())[:count]]


def predict(port: int, data: bytes) -> str:
    body, headers = multipart(data)
    status, payload, _ = request(port, "POST", "/api/predict", body, headers)
    assert status == 200, payload
    return json.loads(payload)["prediction_id"]


def correct(port: int, prediction_id: str, labels: list[str]) -> int:
    body = json.dumps({"prediction_id": prediction_id, "labels": labels}).encode()
    headers = {"Content-Type": "application/json"}
    return request(port, "POST", "/api/feedback", body, headers)[0]


def exported(zip_bytes: bytes) -> list[dict]:
    with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
        rows = list(csv.DictReader(io.StringIO(archive.read("labels.csv").decode())))
        for row in rows:  # each photo is in the zip, whole
            assert hashlib.sha256(archive.read(row["fname"])).hexdigest() in row["fname"]
    return rows


def by_photo(rows: list[dict]) -> Counter:
    """How many rows name each photo (by its sha256), with the labels they say."""
    return Counter((Path(row["fname"]).stem, row["label"]) for row in rows)


def expected(made: list[tuple[list[str], bytes]], indices: set[int]) -> Counter:
    return Counter(
        (hashlib.sha256(made[i][1]).hexdigest(), " ".join(sorted(made[i][0]))) for i in indices
    )


def test_processes_writing_at_once_keep_every_acknowledged_correction_once(
    colours_compiled: Path, tmp_path: Path
) -> None:
    """A server of two processes (WEB_CONCURRENCY=2, two inference workers each) and a
    second server on the same FEEDBACK_DIR: every answer is predicted by one server and
    corrected through the other (so by another process, always), hundreds at once, some
    twice at the same moment; the export holds each acknowledged correction once, and a
    correction sent twice is acknowledged once (409 the other time)."""
    env = {
        "MODEL_PATH": str(colours_compiled),
        "FEEDBACK_DIR": str(tmp_path / "feedback"),
        "ADMIN_TOKEN": TOKEN,
    }
    made = pictures(300, seed=11)
    with ExitStack() as servers:
        pair = servers.enter_context(
            serve(tmp_path, WEB_CONCURRENCY="2", INFERENCE_WORKERS="2", **env)
        )
        single = servers.enter_context(serve(tmp_path, **env))
        ports = [pair.port, single.port]
        with ThreadPoolExecutor(THREADS) as pool:
            held = list(pool.map(lambda i: predict(ports[i % 2], made[i][1]), range(len(made))))
            twice = set(range(0, len(made), 10))  # these are sent twice, at once

            def send(i: int) -> int:
                return correct(ports[(i + 1) % 2], held[i], made[i][0])

            jobs = [*range(len(made)), *twice]
            statuses = list(pool.map(send, jobs))
        answers = Counter(zip(jobs, statuses, strict=True))
        status, body, _ = request(
            single.port, "GET", "/api/feedback/export", headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert status == 200
    assert set(statuses) <= {200, 409} and statuses.count(409) == len(twice)
    acknowledged = {i for (i, status), _ in answers.items() if status == 200}
    assert acknowledged == set(range(len(made)))
    assert all(answers[i, 200] == 1 for i in range(len(made)))
    assert by_photo(exported(body)) == expected(made, acknowledged)


def test_a_killed_server_leaves_a_store_that_opens_and_exports(
    colours_compiled: Path, tmp_path: Path
) -> None:
    """`kill -9` while corrections stream in: every acknowledged one is in the export
    (written by the command line, after a restart), none twice, the index passes SQLite's
    integrity check, and the answers it never acknowledged are still held: corrected
    after the restart, they join the rest."""
    folder = tmp_path / "feedback"
    env = {"MODEL_PATH": str(colours_compiled), "FEEDBACK_DIR": str(folder)}
    made = pictures(200, seed=12)
    statuses: dict[int, int | str] = {}
    with serve(tmp_path, **env) as live:
        with ThreadPoolExecutor(THREADS) as pool:
            held = list(pool.map(lambda item: predict(live.port, item[1]), made))

            def send(i: int) -> None:
                acknowledged = [s for s in statuses.values() if s == 200]
                if len(acknowledged) >= 60 and live.process.poll() is None:
                    live.process.kill()  # kill -9, with corrections in flight
                try:
                    statuses[i] = correct(live.port, held[i], made[i][0])
                except OSError as exc:  # refused, or reset: the server is gone
                    statuses[i] = type(exc).__name__

            list(pool.map(send, range(len(made))))
        assert live.process.wait(timeout=30) == -9
    acknowledged = {i for i, s in statuses.items() if s == 200}
    assert 60 <= len(acknowledged) < len(made)

    with sqlite3.connect(folder / "index.db") as index:
        assert index.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with serve(tmp_path, **env) as restarted:
        retried = {i: correct(restarted.port, held[i], made[i][0]) for i in range(len(made))}
    assert all(retried[i] == 409 for i in acknowledged)  # kept, every one
    # The rest: still held (200 now), or kept just before the kill and never heard (409).
    assert all(retried[i] in (200, 409) for i in range(len(made)))

    out = tmp_path / "out.zip"
    run = subprocess.run(
        [sys.executable, "-m", "app", "feedback", "export", str(out)],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert by_photo(exported(out.read_bytes())) == expected(made, set(range(len(made))))


def test_the_command_lines_export_only_reads(tmp_path: Path) -> None:
    """`python -m app feedback export` beside a running server: its own (here shorter)
    FEEDBACK_HOLD_MINUTES must not sweep the server's holds."""
    from tests.test_feedback_store import CAT, files, photo

    feedback = FeedbackStore(tmp_path, hold_s=3600, hold_bytes=10_000, max_bytes=10**7).open()
    held = feedback.hold(photo(0), CAT)
    feedback.record(feedback.hold(photo(1), CAT), ["tiger cat"])
    feedback.close()
    before = {name for name in files(tmp_path) if name.startswith(("held/", "images/"))}
    time.sleep(0.1)  # older than the command line's FEEDBACK_HOLD_MINUTES below
    run = run_cli(
        "feedback", "export", str(tmp_path / "out.zip"),
        FEEDBACK_DIR=str(tmp_path), FEEDBACK_HOLD_MINUTES="0.001",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert len(before) == 2 and before <= files(tmp_path) and held
