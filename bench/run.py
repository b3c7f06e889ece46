"""Benchmark this server beside the in-process ceiling, a naive server and LitServe.

Everything runs on this machine in one go, over real HTTP on 127.0.0.1, with the
same images for every server. Load is bounded in requests and in time. Writes
docs/benchmarks.md and docs/benchmarks.png.

    python -m bench.run [--quick]
"""

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import torch

from bench.workload import images

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CONCURRENCY = (1, 4, 16, 64)
LOAD_IMAGE = "2mp"  # the photo every concurrency sweep sends


# --- processes and memory ------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
        stack.extend(_children(current))
    return total / 1024


class PeakSampler:
    """Samples a process tree's RSS in the background and keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_mb(self.pid))
            self._stop.wait(0.1)

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Server:
    name: str
    command: list[str]
    predict_path: str
    ready_path: str
    env: dict = field(default_factory=dict)
    process: subprocess.Popen | None = None
    port: int = 0
    cold_start_s: float = 0.0
    rss_after_load: float = 0.0

    def start(self, port: int) -> None:
        self.port = port
        env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "LOG_LEVEL": "warning"}
        started = time.perf_counter()
        self.process = subprocess.Popen(
            self.command,
            cwd=ROOT,
            env={**env, **self.env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        asyncio.run(self._wait_ready(timeout=180))
        self.cold_start_s = time.perf_counter() - started
        time.sleep(1)  # let start-up allocations settle before reading memory
        self.rss_after_load = tree_rss_mb(self.process.pid)

    async def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                try:
                    async with session.get(self.url(self.ready_path)) as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.name} never became ready")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)


# --- load ----------------------------------------------------------------------------


@dataclass
class LoadResult:
    concurrency: int
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    peak_rss_mb: float = 0.0

    @property
    def throughput(self) -> float:
        return (self.requests - self.errors) / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else 0.0


async def _load(url: str, data: bytes, concurrency: int, total: int, seconds: float) -> LoadResult:
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors, sent
        while sent < total and time.perf_counter() < deadline:
            sent += 1
            form = aiohttp.FormData()
            form.add_field("file", data, filename="photo.jpg", content_type="image/jpeg")
            started = time.perf_counter()
            try:
                async with session.post(url, data=form) as response:
                    await response.read()
                    ok = response.status == 200
            except aiohttp.ClientError:
                ok = False
            if ok:
                latencies.append((time.perf_counter() - started) * 1000)
            else:
                errors += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return LoadResult(concurrency, len(latencies) + errors, errors, elapsed, latencies)


def load(server: Server, data: bytes, concurrency: int, total: int, seconds: float) -> LoadResult:
    assert server.process is not None
    with PeakSampler(server.process.pid) as sampler:
        result = asyncio.run(
            _load(server.url(server.predict_path), data, concurrency, total, seconds)
        )
    result.peak_rss_mb = sampler.peak
    return result


# --- the in-process ceiling ----------------------------------------------------------


def _rate(step: Callable[[], int], seconds: float, streams: int = 1) -> float:
    """Images per second of `step` (which returns how many images it did), run by
    `streams` threads at once."""
    step()  # warm
    counts = [0] * streams
    deadline = time.perf_counter() + seconds

    def run(index: int) -> None:
        while time.perf_counter() < deadline:
            counts[index] += step()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(streams)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def ceiling(photos: dict[str, bytes], seconds: float) -> dict:
    """The model in this process, no HTTP, at its best setting.

    A setting is (parallel streams, torch threads per stream, batch size)."""
    from app.images import open_image
    from app.model import Classifier

    classifier = Classifier.load(ROOT / "export.pkl")
    draft = classifier.draft_size
    data = photos[LOAD_IMAGE]
    tensor = classifier.preprocess(open_image(data, 10**9, draft))
    cores = os.cpu_count() or 1
    settings = [(1, t, b) for t in sorted({1, cores}) for b in (1, 2, 4, 8)]
    settings += [(cores, 1, b) for b in (1, 2, 4, 8)] if cores > 1 else []
    forward = {}
    for streams, threads, batch in settings:
        torch.set_num_threads(threads)
        inputs = [tensor] * batch
        forward[(streams, threads, batch)] = _rate(
            lambda inputs=inputs: len(classifier.predict_batch(inputs)), seconds, streams
        )
    best = max(forward, key=forward.get)
    streams, threads, batch = best
    torch.set_num_threads(threads)

    def with_preprocessing() -> int:
        inputs = [classifier.preprocess(open_image(data, 10**9, draft)) for _ in range(batch)]
        return len(classifier.predict_batch(inputs))

    including = _rate(with_preprocessing, seconds, streams)

    def median_ms(step: Callable[[], object], repeat: int) -> float:
        timings = []
        for _ in range(repeat):
            started = time.perf_counter()
            step()
            timings.append((time.perf_counter() - started) * 1000)
        return statistics.median(timings[2:])

    torch.set_num_threads(1)  # the server's setting: one thread per inference worker
    single = {
        name: median_ms(
            lambda photo=photo: classifier.predict_batch(
                [classifier.preprocess(open_image(photo, 10**9, draft))]
            ),
            15,
        )
        for name, photo in photos.items()
    }
    decode_ms = {
        name: median_ms(
            lambda photo=photo: classifier.preprocess(open_image(photo, 10**9, draft)), 10
        )
        for name, photo in photos.items()
    }
    return {
        "forward": forward,
        "best": best,
        "excluding": forward[best],
        "including": including,
        "single_ms": single,
        "decode_ms": decode_ms,
    }


# --- the report ----------------------------------------------------------------------


def servers() -> list[Server]:
    python = sys.executable
    return [
        Server("pounce", [python, "-m", "app", "serve"], "/api/predict", "/readyz"),
        Server("naive", [python, "-m", "bench.naive_server"], "/predict", "/readyz"),
        Server("litserve", [python, "-m", "bench.litserve_server"], "/predict", "/health"),
    ]


# Alternatives to the defaults, each measured at c=16 to choose them.
SWEEP = [
    ("2 workers x 1 thread, batches of 1", {"MICROBATCH_MAX_SIZE": "1"}),
    (
        "1 worker x 2 torch threads, batches up to 8",
        {"INFERENCE_WORKERS": "1", "TORCH_THREADS": "2", "MICROBATCH_MAX_SIZE": "8"},
    ),
    ("2 workers x 1 thread, batches up to 8", {"MICROBATCH_MAX_SIZE": "8"}),
    (
        "2 workers x 1 thread, batches up to 4, wait 5 ms",
        {"MICROBATCH_MAX_WAIT_MS": "5"},
    ),
    ("3 workers x 1 thread, batches up to 4", {"INFERENCE_WORKERS": "3"}),
    ("2 processes (WEB_CONCURRENCY=2) x 1 worker", {"WEB_CONCURRENCY": "2"}),
]


def sweep(port: int, data: bytes, seconds: float, total: int) -> list[tuple[str, LoadResult]]:
    results = []
    for label, env in SWEEP:
        server = Server(
            "pounce", [sys.executable, "-m", "app", "serve"], "/api/predict", "/readyz", env
        )
        server.start(port)
        try:
            results.append((label, load(server, data, 16, total, seconds)))
        finally:
            server.stop()
        print(f"  {label}: {results[-1][1].throughput:.1f} img/s", flush=True)
    return results


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def report(
    ceil: dict,
    runs: dict[str, dict],
    swept: list[tuple[str, LoadResult]],
    startup: list[dict],
    meta: dict,
    photos: dict[str, bytes],
) -> str:
    ours = runs["pounce"]
    c16 = {name: run["loads"][16] for name, run in runs.items()}
    c1 = ours["loads"][1]
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `make bench` on {meta['when']}: {meta['machine']}. All servers ran on this "
        "machine one after another, over real HTTP on 127.0.0.1, with the same images; the load "
        "generator (aiohttp) ran on the same 2 cores. Concurrency sweeps send the "
        f"{LOAD_IMAGE} photo "
        f"({len(photos[LOAD_IMAGE]) // 1024} KB JPEG).",
        "",
        "## Targets",
        "",
        "| target | measured | |",
        "|---|---|---|",
    ]
    ratio = c16["pounce"].throughput / ceil["including"]
    lines.append(
        f"| throughput at c=16 ≥ 90% of the in-process ceiling (preprocessing included) | "
        f"{c16['pounce'].throughput:.1f} vs {ceil['including']:.1f} img/s = {ratio:.0%} | "
        f"{verdict(ratio >= 0.9)} |"
    )
    ratio = c16["pounce"].throughput / max(c16["naive"].throughput, 1e-9)
    better = c16["pounce"].percentile(99) < c16["naive"].percentile(99)
    lines.append(
        f"| ≥ 3x the naive baseline at c=16, better p99 | {ratio:.1f}x, p99 "
        f"{c16['pounce'].percentile(99):.0f} vs {c16['naive'].percentile(99):.0f} ms | "
        f"{verdict(ratio >= 3 and better)} |"
    )
    ratio = c16["pounce"].throughput / max(c16["litserve"].throughput, 1e-9)
    p99_ok = c16["pounce"].percentile(99) <= c16["litserve"].percentile(99)
    lines.append(
        f"| ≥ 1.2x LitServe at c=16, equal or better p99 | {ratio:.2f}x, p99 "
        f"{c16['pounce'].percentile(99):.0f} vs {c16['litserve'].percentile(99):.0f} ms | "
        f"{verdict(ratio >= 1.2 and p99_ok)} |"
    )
    single = ceil["single_ms"][LOAD_IMAGE]
    p50 = c1.percentile(50)
    lines.append(
        f"| c=1 median within 10% (or 5 ms) of in-process single-image time | {p50:.1f} vs "
        f"{single:.1f} ms | {verdict(p50 <= max(single * 1.1, single + 5))} |"
    )
    lines.append(
        f"| one process ≤ 512 MB RSS after 1,000 requests | {ours['rss_after']:.0f} MB "
        f"(after load {ours['rss_load']:.0f} MB) | {verdict(ours['rss_after'] <= 512)} |"
    )
    lines.append(f"| cold start ≤ 10 s | {ours['cold']:.1f} s | {verdict(ours['cold'] <= 10)} |")
    lines += [
        "",
        "## Throughput and latency by concurrency",
        "",
        "| server | c | img/s | p50 ms | p95 ms | p99 ms | errors | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        for c, result in run["loads"].items():
            lines.append(
                f"| {name} | {c} | {result.throughput:.1f} | {result.percentile(50):.0f} | "
                f"{result.percentile(95):.0f} | {result.percentile(99):.0f} | {result.errors} | "
                f"{result.peak_rss_mb:.0f} |"
            )
    lines += [
        "",
        "![throughput and p99 by concurrency](benchmarks.png)",
        "",
        "## Start-up and memory",
        "",
        "| server | cold start s | RSS after load MB | RSS after all requests MB | requests |",
        "|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        lines.append(
            f"| {name} | {run['cold']:.1f} | {run['rss_load']:.0f} | {run['rss_after']:.0f} | "
            f"{run['requests']} |"
        )
    lines += [
        "",
        "What one process's start-up goes to (measured step by step in a fresh process):",
        "",
        "| step | seconds (cumulative) | RSS MB (cumulative) |",
        "|---|---|---|",
    ]
    lines += [f"| {s['step']} | {s['s']:.1f} | {s['rss_mb']} |" for s in startup]
    streams, threads, batch = ceil["best"]
    lines += [
        "",
        "## In-process ceiling (no HTTP)",
        "",
        f"Best setting: {streams} parallel stream(s) of {threads} torch thread(s), batch {batch}: "
        f"{ceil['excluding']:.1f} img/s for the forward pass alone, {ceil['including']:.1f} img/s "
        f"with each stream also decoding and preprocessing the {LOAD_IMAGE} photo.",
        "",
        "| streams x torch threads | batch 1 | batch 2 | batch 4 | batch 8 |",
        "|---|---|---|---|---|",
    ]
    for s_, t in sorted({(s_, t) for s_, t, _ in ceil["forward"]}):
        row = " | ".join(f"{ceil['forward'][(s_, t, b)]:.1f}" for b in (1, 2, 4, 8))
        lines.append(f"| {s_} x {t} | {row} |")
    lines += [
        "",
        "| image | bytes | decode + preprocess ms | one image in-process ms | server c=1 p50 ms |",
        "|---|---|---|---|---|",
    ]
    for name, photo in photos.items():
        served = ours["single"].get(name)
        lines.append(
            f"| {name} | {len(photo) // 1024} KB | {ceil['decode_ms'][name]:.1f} | "
            f"{ceil['single_ms'][name]:.1f} | {served:.1f} |"
        )
    default = runs["pounce"]["loads"][16]
    lines += [
        "",
        "## Choosing the defaults: workers, threads and batching at c=16",
        "",
        "| setting | img/s | p50 ms | p99 ms | peak RSS MB |",
        "|---|---|---|---|---|",
        f"| **2 workers x 1 thread, batches up to 4 (the defaults)** | {default.throughput:.1f} | "
        f"{default.percentile(50):.0f} | {default.percentile(99):.0f} | "
        f"{default.peak_rss_mb:.0f} |",
    ]
    for label, result in swept:
        lines.append(
            f"| {label} | {result.throughput:.1f} | {result.percentile(50):.0f} | "
            f"{result.percentile(99):.0f} | {result.peak_rss_mb:.0f} |"
        )
    lines += ["", meta["notes"], ""]
    return "\n".join(lines)


def plot(runs: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, run in runs.items():
        cs = list(run["loads"])
        left.plot(cs, [run["loads"][c].throughput for c in cs], marker="o", label=name)
        right.plot(cs, [run["loads"][c].percentile(99) for c in cs], marker="o", label=name)
    for axis, title in ((left, "throughput (images/s)"), (right, "p99 latency (ms)")):
        axis.set_xscale("log", base=2)
        axis.set_xticks(list(CONCURRENCY), [str(c) for c in CONCURRENCY])
        axis.set_xlabel("concurrent clients")
        axis.set_title(title)
        axis.grid(alpha=0.3)
    right.set_yscale("log")
    left.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs, for a smoke test")
    parser.add_argument("--port", type=int, default=18500)
    args = parser.parse_args()
    seconds = 4 if args.quick else 20
    per_run = 60 if args.quick else 400

    photos = images()
    print("measuring start-up...", flush=True)
    startup = json.loads(
        subprocess.run(
            [sys.executable, "-m", "bench.startup"], cwd=ROOT, capture_output=True, text=True
        ).stdout
    )
    print("measuring the in-process ceiling...", flush=True)
    ceil = ceiling(photos, 1 if args.quick else 3)
    print(f"  ceiling {ceil['including']:.1f} img/s (with preprocessing)", flush=True)

    runs: dict[str, dict] = {}
    for offset, server in enumerate(servers()):
        print(f"benchmarking {server.name}...", flush=True)
        server.start(args.port + offset)
        try:
            run: dict = {"cold": server.cold_start_s, "rss_load": server.rss_after_load}
            run["single"] = {}
            for name, photo in photos.items():
                result = load(server, photo, 1, 20, seconds)
                run["single"][name] = result.percentile(50)
            run["loads"] = {}
            requests = 60
            for c in CONCURRENCY:
                total = max(per_run, 8 * c)
                result = load(server, photos[LOAD_IMAGE], c, total, seconds)
                run["loads"][c] = result
                requests += result.requests
                print(
                    f"  c={c:>2}: {result.throughput:6.1f} img/s  p50 {result.percentile(50):6.0f}"
                    f"  p99 {result.percentile(99):6.0f} ms  errors {result.errors}",
                    flush=True,
                )
            if server.name == "pounce" and requests < 1000:
                requests += load(server, photos["small"], 8, 1000 - requests, 120).requests
            run["requests"] = requests
            run["rss_after"] = tree_rss_mb(server.process.pid)
        finally:
            server.stop()
        runs[server.name] = run

    print("choosing the defaults...", flush=True)
    swept = sweep(args.port + 10, photos[LOAD_IMAGE], seconds, per_run)

    meta = {
        "when": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, torch {torch.__version__}",
        "notes": NOTES,
    }
    DOCS.mkdir(exist_ok=True)
    (DOCS / "benchmarks.md").write_text(report(ceil, runs, swept, startup, meta, photos))
    plot(runs, DOCS / "benchmarks.png")
    print(f"wrote {DOCS / 'benchmarks.md'} and {DOCS / 'benchmarks.png'}")


NOTES = """## How to read this

- **pounce** is this app with its defaults: one process; two inference workers of one
  torch thread each, each taking up to 4 queued images as a batch; a decode pool beside
  them; JPEG draft
  decoding; the network as a frozen TorchScript trace in channels-last layout.
- **naive** is `bench/naive_server.py`: `learn.predict` called inside the async handler,
  the way the anchor apps serve. Requests queue behind each other on the event loop.
- **litserve** is `bench/litserve_server.py`: LitServe 0.2 serving the same network with the
  same preprocessing code, `max_batch_size=8, batch_timeout=0.01` (its documented batching
  settings), one CPU worker.
- The ceiling is the same model in this process with no HTTP: the forward pass alone at its
  best thread and batch setting, and with decoding and preprocessing done serially in front
  of it, in as many streams as the best setting has.

## What limits the missed targets

- **Throughput against the ceiling.** The ceiling keeps both cores on decoding and
  inference. The server also parses HTTP and multipart bodies on its event loop, hops
  each image between threads, and shares the two cores with the load generator; on 2
  cores those costs are a fixed share of every image, about a quarter at the 2 MP size.
  More cores (or `WEB_CONCURRENCY` on a bigger box) shrink that share; on this box it is
  what is left between the server and the ceiling.
- **The naive baseline.** On 2 cores the naive server still uses both cores for its
  forward pass (torch's own threads), so it is not as far behind as on a bigger box; the
  ratio comes from draft decoding, two single-threaded workers and TorchScript.
- **c=1 latency.** The gap to the in-process time is the upload (a 325 KB body through
  the client and the multipart parser) and two thread hand-offs; it is a few
  milliseconds for the small image and grows with the body.
- **Memory.** Most of a process's memory is imports, before the model: torch, then
  torchvision and fastai's own imports (pandas, matplotlib, scipy and scikit-learn
  for its metrics), as the start-up table shows; a fastai export can't be unpickled
  without them. The rest is the model, the TorchScript trace and per-thread allocator
  arenas, which grow in the first requests and then stay flat (the soak test holds
  RSS after 2,000 requests within 10% of RSS after 200). One process does not fit a
  512 MB Heroku dyno with this stack: use a 1 GB dyno.
"""


if __name__ == "__main__":
    main()
