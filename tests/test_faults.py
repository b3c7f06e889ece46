"""The fault suite: slow and vanishing clients against a real server process.

Everything is on 127.0.0.1, bounded in connections and seconds, and stops by
itself. The tests share one server and run in order: its RSS and readiness are
checked at the end, after all of them. Each test records what it measured in
test-artifacts/faults.json; docs/architecture.md's reliability section quotes a run.
"""

import base64
import json
import re
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from app.ops.memory import TRIM_EVERY_S
from tests.helpers import ARTIFACTS, QuietServer, encode
from tests.live import (
    TIMER_SLACK_S,
    Live,
    multipart,
    partial_upload,
    request,
    rss_mb,
    serve,
)

pytestmark = pytest.mark.slow

BODY_TIMEOUT = 4.0
URL_TIMEOUT = 2.0
FLOOD = 1000
ARTIFACT = ARTIFACTS / "faults.json"
figures: dict = {}


def record(name: str, server: Live, **values: object) -> None:
    figures[name] = {**values, "rss_after_mb": round(rss_mb(server.process.pid))}
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(json.dumps(figures, indent=2))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    env = {
        "BODY_TIMEOUT": str(BODY_TIMEOUT),
        "URL_TIMEOUT": str(URL_TIMEOUT),
        "ALLOW_PRIVATE_URLS": "true",  # the tarpit is on loopback
        "MAX_IN_FLIGHT": "4",
    }
    with serve(tmp_path_factory.mktemp("faults"), **env) as live:
        yield live
        assert live.terminate() == 0


@pytest.fixture(scope="module")
def idle(server: Live, chelsea_jpeg: bytes) -> dict:
    """The server before any fault, in its steady state: warmed by concurrent requests
    (ONNX Runtime's arena grows to what its workers use at once, then stays), then its
    latency alone, memory and open files."""
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: predictions(server, chelsea_jpeg, 10), range(8)))
    latencies = predictions(server, chelsea_jpeg, 20)
    return {"p99": max(latencies), "rss": rss_mb(server.process.pid), "fds": open_fds(server)}


def predictions(server: Live, photo: bytes, count: int) -> list[float]:
    """Seconds each of `count` predictions took, one after another; all must succeed."""
    body, headers = multipart(photo)
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        status, payload, _ = request(server.port, "POST", "/api/predict", body, headers)
        assert status == 200, payload
        latencies.append(time.perf_counter() - started)
    return latencies


def open_fds(server: Live) -> int:
    return len(list(Path(f"/proc/{server.process.pid}/fd").iterdir()))


def metrics(server: Live) -> str:
    return request(server.port, "GET", "/metrics")[1].decode()


def requests_by_status(server: Live) -> dict[str, float]:
    counts: dict[str, float] = {}
    for status, value in re.findall(
        r'pounce_http_requests_total\{.*status="(\d+)"\} (\S+)', metrics(server)
    ):
        counts[status] = counts.get(status, 0) + float(value)
    return counts


def test_slow_upload_flood(server: Live, idle: dict, chelsea_jpeg: bytes) -> None:
    """FLOOD connections stall mid-body: real predictions still succeed, as fast as
    when idle (within 2x), and every stalled one is answered 408 or closed within
    BODY_TIMEOUT + 5 s."""
    stalled = []
    for _ in range(FLOOD):
        stalled.append((partial_upload(server.port), time.monotonic()))
    # Taking in FLOOD connections at once is a burst of work for the server; once a
    # health check is answered, it has, and the flood is FLOOD stalled uploads.
    started = time.perf_counter()
    assert request(server.port, "GET", "/healthz")[0] == 200
    intake_s = time.perf_counter() - started
    during = predictions(server, chelsea_jpeg, 20)
    ended = []
    for sock, sent_at in stalled:
        sock.settimeout(max(0.1, sent_at + BODY_TIMEOUT + 5 - time.monotonic()))
        try:
            answer = sock.recv(64)
        except TimeoutError:
            answer = b"(still open)"
        ended.append((answer, time.monotonic() - sent_at))
        sock.close()
    statuses = {answer[:12] for answer, _ in ended}
    assert statuses <= {b"HTTP/1.1 408", b""}, statuses  # 408, or closed
    assert max(seconds for _, seconds in ended) <= BODY_TIMEOUT + 5
    assert max(during) <= 2 * idle["p99"], (during, idle)
    record(
        "slow_upload_flood",
        server,
        connections=FLOOD,
        taking_them_in_s=round(intake_s, 2),
        body_timeout_s=BODY_TIMEOUT,
        answered_408=sum(answer.startswith(b"HTTP/1.1 408") for answer, _ in ended),
        slowest_answer_s=round(max(seconds for _, seconds in ended), 2),
        idle_p99_ms=round(idle["p99"] * 1000, 1),
        during_p99_ms=round(max(during) * 1000, 1),
        during_median_ms=round(statistics.median(during) * 1000, 1),
    )


class Tarpit(BaseHTTPRequestHandler):
    """An image server that sends one byte a second, for at most 10 s."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        for _ in range(10):
            try:
                self.wfile.write(b"\xff")
                self.wfile.flush()
            except OSError:
                return
            time.sleep(1)


def test_slow_url(server: Live, chelsea_jpeg: bytes) -> None:
    """Predictions of a URL that trickles a byte a second end in 504 url_timeout at
    URL_TIMEOUT, while uploads keep being answered."""
    tarpit = QuietServer(("127.0.0.1", 0), Tarpit)
    threading.Thread(target=tarpit.serve_forever, daemon=True).start()
    url = json.dumps({"url": f"http://127.0.0.1:{tarpit.server_address[1]}/slow.jpg"}).encode()

    def slow() -> tuple[int, str, float]:
        started = time.perf_counter()
        status, payload, _ = request(
            server.port, "POST", "/api/predict", url, {"Content-Type": "application/json"}
        )
        return status, json.loads(payload)["error"]["code"], time.perf_counter() - started

    try:
        with ThreadPoolExecutor(8) as pool:
            slow_ones = [pool.submit(slow) for _ in range(8)]
            during = predictions(server, chelsea_jpeg, 10)
            outcomes = [future.result() for future in slow_ones]
    finally:
        tarpit.shutdown()
        tarpit.server_close()
    assert {(status, code) for status, code, _ in outcomes} == {(504, "url_timeout")}
    waited = [seconds for _, _, seconds in outcomes]
    assert all(URL_TIMEOUT - TIMER_SLACK_S <= seconds < URL_TIMEOUT + 1.5 for seconds in waited)
    record(
        "slow_url",
        server,
        concurrent=len(outcomes),
        url_timeout_s=URL_TIMEOUT,
        answered_504_after_s=round(max(seconds for _, _, seconds in outcomes), 2),
        uploads_meanwhile=len(during),
        uploads_p99_ms=round(max(during) * 1000, 1),
    )


def full_upload_then_leave(
    port: int, body: bytes, headers: dict, path: str = "/api/predict"
) -> None:
    """Send a whole prediction request, then hang up before the answer."""
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    sock.close()


def test_disconnects(server: Live, idle: dict, chelsea) -> None:
    """200 clients hang up mid-upload and 50 while their prediction is queued or
    running: no 5xx, no ERROR line, the gauges back to 0 and the open files back to
    where they were."""
    before = requests_by_status(server)
    for _ in range(200):
        partial_upload(server.port, sent=50_000, declared=300_000).close()
    body, headers = multipart(encode(chelsea.resize((2000, 1400)), "JPEG", quality=90))
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda _: full_upload_then_leave(server.port, body, headers), range(50)))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        text = metrics(server)
        settled = (
            "pounce_predictions_in_flight 0.0" in text and "pounce_predictions_queued 0.0" in text
        )
        if settled and open_fds(server) <= idle["fds"]:
            break
        time.sleep(0.1)
    after = requests_by_status(server)
    counted = {status: n - before.get(status, 0) for status, n in after.items()}
    gone = counted.get("499", 0)
    server_errors = {status: n for status, n in counted.items() if status.startswith("5") and n}
    log = [json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")]
    errors = [line for line in log if line["level"] in ("ERROR", "CRITICAL")]
    assert not server_errors and not errors, (server_errors, errors[:3])
    assert settled and open_fds(server) <= idle["fds"]
    assert gone >= 200
    record(
        "disconnects",
        server,
        mid_upload=200,
        while_queued_or_running=50,
        counted_499=int(gone),
        responses_5xx=0,
        error_log_lines=0,
        open_fds_before=idle["fds"],
        open_fds_after=open_fds(server),
    )


def test_open_inference_clients_that_hang_up_give_back_their_slot(server: Live, chelsea) -> None:
    """As for the API: an Open Inference Protocol request whose client hangs up while it
    waits for a slot or runs is cancelled, counted as 499, and holds nothing after."""
    photo = base64.b64encode(encode(chelsea.resize((2000, 1400)), "JPEG", quality=90)).decode()
    inputs = [{"name": "images", "datatype": "BYTES", "shape": [4], "data": [photo] * 4}]
    body = json.dumps({"inputs": inputs}).encode()
    path = "/v2/models/export/infer"
    route = 'route="/v2/models/{name}/infer",status="499"'
    before = metrics(server).count(route)
    with ThreadPoolExecutor(10) as pool:
        sent = {"Content-Type": "application/json"}
        list(pool.map(lambda _: full_upload_then_leave(server.port, body, sent, path), range(20)))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = metrics(server)
        gone = re.search(re.escape(route) + r"\} (\S+)", text)
        if "pounce_predictions_queued 0.0" in text and "pounce_predictions_in_flight 0.0" in text:
            break
        time.sleep(0.1)
    assert "pounce_predictions_queued 0.0" in text and "pounce_predictions_in_flight 0.0" in text
    assert before == 0 and gone is not None and float(gone.group(1)) >= 10


def test_recovery(server: Live, idle: dict, chelsea_jpeg: bytes) -> None:
    """After all of the above: ready, and within a trim of memory.py's, RSS back within
    15% of before."""
    assert request(server.port, "GET", "/readyz")[0] == 200
    assert predictions(server, chelsea_jpeg, 5)
    deadline = time.monotonic() + TRIM_EVERY_S + 2
    while (rss := rss_mb(server.process.pid)) > idle["rss"] * 1.15 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert rss <= idle["rss"] * 1.15, (idle["rss"], rss)
    record("recovery", server, rss_before_mb=round(idle["rss"]), ready=True)
