"""Helpers for tests that start a real `python -m app serve` on 127.0.0.1."""

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import MODEL, ROOT

# uvloop's timers count from the loop's time, cached at the start of each iteration, so a
# server's 1 s timeout can end a few milliseconds short of 1 s of the client's clock.
TIMER_SLACK_S = 0.05


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request(
    port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None
) -> tuple[int, bytes, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, response.read(), headers
    finally:
        connection.close()


def multipart(data: bytes, count: int = 1) -> tuple[bytes, dict]:
    boundary = uuid.uuid4().hex
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="p.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    body = (part + data + b"\r\n") * count + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def multipart_files(photos: list[bytes]) -> tuple[bytes, dict]:
    """A multipart body of several files, each in a `file` field (a batch)."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{i}.png"\r\n'
        "Content-Type: image/png\r\n\r\n".encode()
        + photo
        + b"\r\n"
        for i, photo in enumerate(photos)
    ]
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def partial_upload(port: int, sent: int = 100, declared: int = 200_000) -> socket.socket:
    """A connection that sent its headers and `sent` bytes of a `declared`-byte body."""
    head = (
        f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {declared}\r\n"
        "Content-Type: multipart/form-data; boundary=XyZ\r\n\r\n"
    ).encode()
    part = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(head + (part + b"\xff" * sent)[:sent])
    return sock


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@dataclass
class Live:
    process: subprocess.Popen
    port: int
    log: Path

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


@contextmanager
def serve(tmp: Path, **env: str) -> Iterator[Live]:
    """A server process, ready (its /readyz answered 200), stopped afterwards."""
    port = free_port()
    log = tmp / f"server-{port}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve"],
        cwd=ROOT,
        env={**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "MODEL_PATH": str(MODEL), **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    live = Live(process, port, log)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if request(port, "GET", "/readyz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"server never became ready:\n{log.read_text()}")
        yield live
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@contextmanager
def serve_app(app: object) -> Iterator[int]:
    """An app object served by uvicorn in a thread of this process, over real HTTP on
    127.0.0.1, for tests that change the app (a route that raises, say): its port."""
    import threading

    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_config=None)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the server never started")
            time.sleep(0.05)
        yield server.config.port
    finally:
        server.should_exit = True
        thread.join(timeout=30)
