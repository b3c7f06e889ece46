"""A real uvicorn process on 127.0.0.1, spoken to over a socket: `python -m app serve`."""

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import CAT_CLASSES, MODEL, ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def multipart(data: bytes, count: int = 1) -> tuple[bytes, dict]:
    boundary = uuid.uuid4().hex
    parts = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="p.jpg"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n".encode()
        + data
        + b"\r\n"
        for _ in range(count)
    )
    body = parts + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "MODEL_PATH": str(MODEL)}
    log = tmp_path_factory.mktemp("server") / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if request(port, "GET", "/readyz")[0] == 200:
                break
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail(f"server never became ready:\n{log.read_text()}")
    yield port
    process.terminate()
    assert process.wait(timeout=20) == 0


def test_predicts_over_a_socket(server: int, chelsea_jpeg: bytes) -> None:
    body, headers = multipart(chelsea_jpeg)
    status, payload = request(server, "POST", "/api/predict", body, headers)
    assert status == 200
    assert json.loads(payload)["label"] in CAT_CLASSES


def test_errors_are_json_over_a_socket(server: int) -> None:
    status, payload = request(server, "GET", "/nowhere")
    assert status == 404 and json.loads(payload)["error"]["code"] == "not_found"


def test_healthz_answers_while_predictions_run(server: int, chelsea: object) -> None:
    """Inference runs off the event loop: liveness answers in the middle of a big batch."""
    from tests.conftest import encode

    big = encode(chelsea.resize((2400, 1600)), "JPEG", quality=90)
    body, headers = multipart(big, count=16)
    done = threading.Event()
    results: list = []

    def batch() -> None:
        results.append(request(server, "POST", "/api/predict/batch", body, headers))
        done.set()

    worker = threading.Thread(target=batch)
    worker.start()
    time.sleep(0.3)  # let the batch get going
    answered_during = []
    while not done.is_set():
        status, _ = request(server, "GET", "/healthz")
        answered_during.append(status == 200 and not done.is_set())
    worker.join()
    assert results[0][0] == 200
    assert len(json.loads(results[0][1])["results"]) == 16
    assert any(answered_during), "healthz never answered while the batch ran"


def test_bad_setting_stops_startup_with_one_line() -> None:
    env = {**os.environ, "PORT": "eighty", "MODEL_PATH": str(MODEL)}
    run = subprocess.run(
        [sys.executable, "-m", "app", "serve"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert run.returncode != 0
    assert run.stderr.strip().splitlines() == [
        "error: PORT='eighty' is not valid: expected an integer between 1 and 65535"
    ]


def test_missing_model_stops_startup_with_one_line(tmp_path) -> None:
    env = {**os.environ, "MODEL_PATH": str(tmp_path / "nope.pkl")}
    run = subprocess.run(
        [sys.executable, "-m", "app", "serve"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: MODEL_PATH=")
