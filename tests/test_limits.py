"""Each connection- and body-level limit, against a real server process with small values.

What a slow, greedy or silent client gets: 408 for a body or headers that take too
long, 431 for headers that are too big, 503 when the upload buffer or the
connection limit is full, and a closed connection when a kept-alive one idles.
"""

import json
import socket
import time
from collections.abc import Iterator

import pytest

from tests.live import TIMER_SLACK_S, Live, multipart, partial_upload, request, serve

pytestmark = pytest.mark.slow

LIMITS = {
    "BODY_TIMEOUT": "1",
    "HEADER_TIMEOUT": "1",
    "KEEP_ALIVE_TIMEOUT": "1",
    "MAX_HEADER_KB": "4",
    "UPLOAD_BUFFER_MB": "0.5",
    "MAX_CONNECTIONS": "20",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with serve(tmp_path_factory.mktemp("limits"), **LIMITS) as live:
        yield live
        assert live.terminate() == 0


def answer(sock: socket.socket, since: float, timeout: float = 5) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and the seconds from
    `since` (taken before sending, so before any server timer starts) until then.
    Closing with part of the body unread makes the kernel reset the connection after the
    answer, which is still read."""
    received = b""
    sock.settimeout(timeout)
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        assert received, "reset before any answer"
    return received, time.monotonic() - since


def error_of(response: bytes) -> tuple[int, str]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["error"]["code"]


def test_a_stalled_body_gets_408_and_the_connection_closes(server: Live) -> None:
    sent_at = time.monotonic()
    with partial_upload(server.port) as sock:
        response, seconds = answer(sock, sent_at)
    assert error_of(response) == (408, "request_timeout")
    assert 1 - TIMER_SLACK_S <= seconds < 2.5


def test_a_full_upload_buffer_gets_503(server: Live, chelsea_jpeg: bytes) -> None:
    """Stalled uploads holding 0.5 MB between them: the next bytes are refused with 503
    and Retry-After; once the stalled ones time out, uploads are taken again."""
    holders = [partial_upload(server.port, sent=200_000, declared=400_000) for _ in range(2)]
    time.sleep(0.2)  # their bytes are in
    with partial_upload(server.port, sent=200_000, declared=400_000) as third:
        response, _ = answer(third, time.monotonic())
    assert error_of(response) == (503, "overloaded") and b"retry-after: 1" in response.lower()
    for sock in holders:
        assert error_of(answer(sock, time.monotonic())[0]) == (408, "request_timeout")
        sock.close()
    body, headers = multipart(chelsea_jpeg)
    assert request(server.port, "POST", "/api/predict", body, headers)[0] == 200


def test_headers_over_the_limit_get_431(server: Live) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8192 + b"\r\n\r\n")
        response, _ = answer(sock, time.monotonic())
    assert error_of(response) == (431, "headers_too_large")
    assert request(server.port, "GET", "/healthz")[0] == 200


@pytest.mark.parametrize("sent", [b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n"])
def test_silent_or_slow_headers_get_408(server: Live, sent: bytes) -> None:
    connected_at = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(sent)
        response, seconds = answer(sock, connected_at)
    assert error_of(response) == (408, "request_timeout")
    assert 1 - TIMER_SLACK_S <= seconds < 2.5


def test_an_idle_kept_alive_connection_is_closed(server: Live) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sent_at = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        response, seconds = answer(sock, sent_at)
    assert response.startswith(b"HTTP/1.1 200") and 1 - TIMER_SLACK_S <= seconds < 2.5


def test_connections_past_the_limit_get_503_at_once(server: Live) -> None:
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
    try:
        time.sleep(0.1)
        started = time.monotonic()
        status, _, _ = request(server.port, "GET", "/healthz")
        assert status == 503 and time.monotonic() - started < 0.5
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.1)
    assert request(server.port, "GET", "/healthz")[0] == 200
