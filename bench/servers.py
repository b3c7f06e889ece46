"""Start, watch and stop the servers, one at a time; read their memory and CPU from /proc.

Each server starts in a session of its own, so every process it spawns (uvicorn
workers, LitServe's API servers and inference workers, multiprocessing's resource
tracker) carries the server's session id: that is how its memory and CPU time are
summed, and how `stop` proves nothing of it is left before the next server starts.
"""

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from app.settings import VARIABLES

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def clean_env() -> dict[str, str]:
    """This process's environment less the app's settings: every server starts from the
    app's defaults (plus what it is given), whatever the calling shell exports."""
    return {k: v for k, v in os.environ.items() if k not in VARIABLES}


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat's fields after the command name: state, ppid, pgrp, session, ..."""
    return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()


def session_members(session: int) -> list[int]:
    """Live (not zombie) processes of a session."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = _stat(int(entry.name))
            except (OSError, IndexError):
                continue
            if int(stat[3]) == session and stat[0] != "Z":
                members.append(int(entry.name))
    return members


def rss_mb(session: int) -> float:
    """Resident memory of every process of a session, summed."""
    total_kb = 0
    for pid in session_members(session):
        try:
            status = (Path("/proc") / str(pid) / "status").read_text()
        except OSError:
            continue
        total_kb += next(
            (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0
        )
    return total_kb / 1024


def cpu_seconds(session: int) -> float:
    """User plus system CPU time of a session's live processes."""
    total = 0
    for pid in session_members(session):
        try:
            stat = _stat(pid)
        except (OSError, IndexError):
            continue
        total += int(stat[11]) + int(stat[12])
    return total / TICKS


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:port (as uvicorn binds, SO_REUSEADDR)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class PeakSampler:
    """Samples a session's RSS in the background while load runs, keeping the peak."""

    def __init__(self, session: int) -> None:
        self.session, self.peak = session, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mb(self.session))
            self._stop.wait(0.2)

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb(self.session))


@dataclass
class Server:
    """One server command line, its URLs, and the settings it runs with."""

    name: str
    command: list[str]
    predict_path: str
    ready_path: str
    env: dict[str, str] = field(default_factory=dict)
    setting: str = ""  # its settings in words, for the report
    port: int = 0
    cold_start_s: float = 0.0
    rss_ready_mb: float = 0.0
    idle_share: float = 0.0  # cores it uses at rest
    process: subprocess.Popen | None = None
    _log: Path | None = None  # its output

    @property
    def session(self) -> int:
        assert self.process is not None, "the server is not running"
        return self.process.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self, port: int, timeout: float = 180) -> None:
        """Start it and wait for its readiness path: the time to that first 200 is its
        cold start. Its output goes to a temporary log, shown if it never gets ready."""
        if not port_is_free(port):
            raise RuntimeError(f"port {port} is in use: stop whatever listens there first")
        self.port = port
        env = clean_env() | {
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "LOG_LEVEL": "warning",
            **self.env,
        }
        handle, log = tempfile.mkstemp(prefix=f"bench-{self.name}-", suffix=".log")
        self._log = Path(log)
        started = time.perf_counter()
        with os.fdopen(handle, "wb") as output:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        while not self._ready():
            if self.process.poll() is not None or time.perf_counter() - started > timeout:
                tail = "\n".join(self._log.read_text(errors="replace").splitlines()[-30:])
                self.stop()
                raise RuntimeError(f"{self.name} never became ready; its last output:\n{tail}")
            time.sleep(0.01)
        self.cold_start_s = time.perf_counter() - started
        self._measure_idle()  # start-up work done before memory is read
        self.rss_ready_mb = rss_mb(self.session)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url(self.ready_path), timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def cpu_share(self, window: float = 0.5) -> float:
        """The server's CPU use over `window` seconds, in cores."""
        before = cpu_seconds(self.session)
        time.sleep(window)
        return (cpu_seconds(self.session) - before) / window

    def _measure_idle(self, tries: int = 20) -> None:
        """Its CPU use at rest, once steady: none for uvicorn, a fifth of a core for
        LitServe's workers, which poll their queues."""
        previous = self.cpu_share()
        for _ in range(tries):
            self.idle_share = self.cpu_share()
            if abs(self.idle_share - previous) < 0.05:
                return
            previous = self.idle_share

    def settle(self, timeout: float = 30) -> None:
        """Wait until the server is back to its idle CPU use (within a tenth of a core):
        requests a load generator abandoned at its deadline are finished before the next
        measurement starts."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.cpu_share() > self.idle_share + 0.1:
            pass

    def stop(self) -> None:
        """SIGTERM the whole session, SIGKILL what is left after 15 s, then check that no
        process of it remains and the port is free; raise if not."""
        if self.process is None:
            return
        session = self.session
        for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(session, sig)  # its process group, then any that left it
            for pid in session_members(session):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                self.process.poll()  # reap the leader; its children go to init
                if not session_members(session):
                    break
                time.sleep(0.1)
        left = session_members(session)
        self.process.wait(timeout=5)
        self.process = None
        if self._log is not None:
            self._log.unlink(missing_ok=True)
        deadline = time.monotonic() + 10
        while not port_is_free(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        if left or not port_is_free(self.port):
            raise RuntimeError(f"{self.name} left processes {left} or port {self.port} in use")
