"""A real uvicorn process on 127.0.0.1, spoken to over sockets: `python -m app serve`.

Load here is bounded in requests and time, and talks to 127.0.0.1 only.
"""

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.helpers import CAT_CLASSES, MODEL, ROOT, encode
from tests.live import Live, multipart, request, rss_mb, serve

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with serve(tmp_path_factory.mktemp("server")) as live:
        yield live
        assert live.terminate() == 0


@pytest.mark.smoke  # one of the container test's sample of the slow tier
def test_predicts_over_a_socket(server: Live, chelsea_jpeg: bytes) -> None:
    body, headers = multipart(chelsea_jpeg)
    status, payload, response_headers = request(server.port, "POST", "/api/predict", body, headers)
    assert status == 200
    assert json.loads(payload)["label"] in CAT_CLASSES
    assert response_headers["x-request-id"]


def test_errors_are_json_over_a_socket(server: Live) -> None:
    status, payload, _ = request(server.port, "GET", "/nowhere")
    assert status == 404 and json.loads(payload)["error"]["code"] == "not_found"


def test_access_log_is_json_lines(server: Live) -> None:
    request(server.port, "GET", "/healthz", headers={"X-Request-ID": "log-check-1"})
    time.sleep(0.2)
    lines = [
        json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")
    ]
    access = [line for line in lines if line.get("request_id") == "log-check-1"]
    assert len(access) == 1
    assert access[0]["route"] == "/healthz" and access[0]["status"] == 200


def test_healthz_answers_while_predictions_run(server: Live, chelsea) -> None:
    """Inference runs off the event loop: liveness answers in the middle of big batches."""
    big = encode(chelsea.resize((2400, 1600)), "JPEG", quality=90)
    body, headers = multipart(big, count=16)
    results: list = []

    def batch() -> None:
        results.append(request(server.port, "POST", "/api/predict/batch", body, headers))

    workers = [threading.Thread(target=batch) for _ in range(4)]  # 64 photos to decode and run
    for worker in workers:
        worker.start()
    time.sleep(0.1)  # let the batches get going
    answered_during = []
    while any(worker.is_alive() for worker in workers):
        status, _, _ = request(server.port, "GET", "/healthz")
        answered_during.append(status == 200 and any(worker.is_alive() for worker in workers))
    for worker in workers:
        worker.join()
    assert [status for status, _, _ in results] == [200] * 4
    assert all(len(json.loads(payload)["results"]) == 16 for _, payload, _ in results)
    assert any(answered_during), "healthz never answered while the batches ran"


def test_soak_memory_is_stable(server: Live, chelsea_jpeg: bytes) -> None:
    """2,000 requests: RSS after them stays within 10% of RSS after the first 200."""
    body, headers = multipart(chelsea_jpeg)

    def one(_: int) -> int:
        return request(server.port, "POST", "/api/predict", body, headers)[0]

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(one, range(200))) == {200}
        after_200 = rss_mb(server.process.pid)
        assert set(pool.map(one, range(1800))) == {200}
    after_2000 = rss_mb(server.process.pid)
    assert after_2000 <= after_200 * 1.10, (after_200, after_2000)


def test_overload_sheds_with_503_and_recovers(tmp_path, chelsea_jpeg: bytes) -> None:
    """Several times capacity for a bounded time: only 200s and 503s (with
    Retry-After), accepted requests finish in bounded time, health stays fast."""
    body, headers = multipart(chelsea_jpeg)
    with serve(tmp_path, MAX_IN_FLIGHT="2", MAX_QUEUE="4", QUEUE_TIMEOUT="2") as live:
        outcomes: list[tuple[int, float, dict]] = []
        health: list[float] = []
        deadline = time.monotonic() + 6

        def client() -> None:
            while time.monotonic() < deadline:
                started = time.monotonic()
                status, _, response_headers = request(
                    live.port, "POST", "/api/predict", body, headers
                )
                outcomes.append((status, time.monotonic() - started, response_headers))

        def prober() -> None:
            while time.monotonic() < deadline:
                started = time.monotonic()
                assert request(live.port, "GET", "/healthz")[0] == 200
                health.append(time.monotonic() - started)
                time.sleep(0.1)

        threads = [threading.Thread(target=client) for _ in range(32)]
        threads.append(threading.Thread(target=prober))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        statuses = {status for status, _, _ in outcomes}
        assert statuses <= {200, 503} and statuses == {200, 503}, statuses
        shed = [h for status, _, h in outcomes if status == 503]
        assert all(h.get("retry-after") == "1" for h in shed)
        accepted = sorted(seconds for status, seconds, _ in outcomes if status == 200)
        assert accepted[int(len(accepted) * 0.99) - 1] < 2 + 2  # queue limit + one prediction
        assert max(health) < 1.0
        assert request(live.port, "GET", "/readyz")[0] == 200
        assert request(live.port, "POST", "/api/predict", body, headers)[0] == 200
        assert live.terminate() == 0


def test_sigterm_drains_in_flight_requests(tmp_path, chelsea) -> None:
    """SIGTERM under load: no accepted request is lost, and the exit code is 0."""
    photo = encode(chelsea.resize((2000, 1400)), "JPEG", quality=90)
    body, headers = multipart(photo, count=6)
    with serve(tmp_path) as live:
        results: list = []

        def client() -> None:
            try:
                results.append(request(live.port, "POST", "/api/predict/batch", body, headers)[0])
            except OSError as exc:  # a dropped connection would be a lost request
                results.append(type(exc).__name__)

        threads = [threading.Thread(target=client) for _ in range(6)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)  # requests in flight
        live.process.send_signal(15)
        for thread in threads:
            thread.join()
        assert live.process.wait(timeout=30) == 0
        assert results == [200] * 6  # every request accepted before SIGTERM completed


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


def test_every_worker_process_has_the_malloc_settings(tmp_path) -> None:
    """With WEB_CONCURRENCY=2 uvicorn starts fresh interpreters: the allocator's settings
    (app/ops/memory.py) reach them through their environment, where glibc reads them."""
    from app.ops.memory import SETTINGS

    with serve(tmp_path, WEB_CONCURRENCY="2") as live:
        children = Path(f"/proc/{live.process.pid}/task/{live.process.pid}/children")
        workers = [int(pid) for pid in children.read_text().split()]
        environs = [Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") for pid in workers]
        assert len(workers) >= 2
        for variable, value in SETTINGS.values():
            assert all(f"{variable}={value}".encode() in environ for environ in environs)
        assert live.terminate() == 0
