"""Drive wrk: a fixed number of connections, bounded in time and in requests.

wrk (Debian's package) keeps `concurrency` connections busy, each sending its next
request as soon as the last answer is in (a closed loop), with bench/multipart.lua's
multipart body, and reports latency percentiles and counts as one JSON line. wrk runs
on the same cores as the server, so its own CPU time is measured too
(getrusage(RUSAGE_CHILDREN) around it: the servers, the bench's other children, are
only reaped when stopped).
"""

import json
import math
import os
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.servers import PeakSampler, Server

SCRIPT = Path(__file__).with_name("multipart.lua")
TIMEOUT_S = 30  # a response slower than this counts as an error (wrk's --timeout)


@dataclass
class LoadResult:
    """One wrk run's counts, latencies and costs."""

    ok: int  # responses with a status below 400
    errors: int  # status >= 400, socket errors and timeouts
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    wrk_cpu_s: float
    wrk_wall_s: float
    peak_rss_mb: float = 0.0

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    @property
    def wrk_core_pct(self) -> float:
        """wrk's CPU time as a share of one core over its run."""
        return 100 * self.wrk_cpu_s / self.wrk_wall_s if self.wrk_wall_s else 0.0

    @property
    def wrk_machine_pct(self) -> float:
        return self.wrk_core_pct / (os.cpu_count() or 1)


def wrk_path() -> str:
    """wrk's executable, or exit saying how to install it."""
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit(
            "error: the benchmark's load generator, wrk, is not installed: "
            "`apt-get install -y wrk` (Debian/Ubuntu), then run it again"
        )
    return path


def wrk_version() -> str:
    """As `wrk -v` says it, e.g. debian/4.1.0-3+b2."""
    done = subprocess.run([wrk_path(), "-v"], capture_output=True, text=True, check=False)
    return done.stdout.split()[1]


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(url: str, image: Path, concurrency: int, seconds: int, max_requests: int) -> LoadResult:
    """One wrk run: `concurrency` connections for at most `seconds` and about
    `max_requests` responses (each thread stops the run at its share)."""
    threads = 2 if concurrency >= 64 else 1
    command = [
        wrk_path(),
        f"--threads={threads}",
        f"--connections={concurrency}",
        f"--duration={seconds}s",
        f"--timeout={TIMEOUT_S}s",
        f"--script={SCRIPT}",
        url,
        "--",
        str(image),
        str(math.ceil(max_requests / threads)),
    ]
    cpu_before, started = _children_cpu_s(), time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + TIMEOUT_S + 30, check=False
    )
    wall, cpu = time.perf_counter() - started, _children_cpu_s() - cpu_before
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}{done.stderr}")
    report = json.loads(lines[-1])
    return LoadResult(
        ok=report["requests"] - report["status_errors"],
        errors=report["status_errors"] + report["socket_errors"] + report["timeouts"],
        seconds=report["duration_us"] / 1e6,
        p50_ms=report["p50_us"] / 1000,
        p95_ms=report["p95_us"] / 1000,
        p99_ms=report["p99_us"] / 1000,
        wrk_cpu_s=cpu,
        wrk_wall_s=wall,
    )


def load(
    server: Server,
    image: Path,
    concurrency: int,
    seconds: int,
    max_requests: int,
    query: str = "",
) -> LoadResult:
    """Load a running server's predict path (with `query`, e.g. "explain=true"), sampling
    its peak memory meanwhile; returns once the server has finished what wrk left in flight."""
    url = server.url(server.predict_path + (f"?{query}" if query else ""))
    with PeakSampler(server.session) as sampler:
        result = run_wrk(url, image, concurrency, seconds, max_requests)
    result.peak_rss_mb = sampler.peak
    server.settle()
    return result
