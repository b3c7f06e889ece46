"""Benchmark Pounce beside its ONNX in-process ceiling, the TorchScript baseline, a naive
server and LitServe serving the same ONNX model.

Every server runs alone, one after another, over real HTTP on 127.0.0.1, loaded by wrk
with the same photos; each load is bounded in time and in requests. Writes
docs/benchmarks.md and docs/benchmarks.png.

    python -m bench.run [--quick]

One section alone, printed instead of written: python -m bench.explanations [--quick].
"""

import argparse
import json
import os
import pickle
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

from app.inference.loading import compile_in_child, compiled_model_path
from app.inference.model import read_info
from app.settings import load_settings
from bench import ceiling, decoding, explanations
from bench.contenders import (
    EXPORT,
    PYTHON,
    Setting,
    describe,
    litserve,
    litserve_settings,
    naive,
    pounce,
    pounce_int8,
    pounce_variants,
    torchscript,
)
from bench.kinds import KINDS
from bench.load import load, wrk_path, wrk_version
from bench.report import write
from bench.results import (
    CONCURRENCY,
    FULL,
    LOAD_PHOTO,
    QUICK,
    SOAK_REQUESTS,
    TUNING_CONCURRENCY,
    Budget,
    Results,
    ServerRun,
    Variant,
    fastest,
)
from bench.servers import ROOT, Server, clean_env, rss_mb
from bench.workload import images

SOAK_SECONDS = 180  # the most the top-up to SOAK_REQUESTS may take
# The last run's Results, so that the page can be written again (--rewrite) without
# measuring again, when only its wording changed.
SAVED = ROOT / "test-artifacts" / "bench-results.pickle"
INT8_MODEL = ROOT / "test-artifacts" / "export-int8.onnx"  # compiled afresh on every run


def benchmark(server: Server, photos: dict[str, Path], budget: Budget, port: int) -> ServerRun:
    """Start a server, measure c=1 per photo and every concurrency, stop it. Pounce gets
    extra requests up to SOAK_REQUESTS before its memory is read."""
    print(f"benchmarking {server.name} ({server.setting})...", flush=True)
    server.start(port)
    try:
        run = ServerRun(server.name, server.setting, server.cold_start_s, server.rss_ready_mb)
        print(f"  ready in {run.cold_start_s:.2f} s, {run.rss_ready_mb:.0f} MB", flush=True)
        for name, path in photos.items():
            run.single[name] = load(server, path, 1, budget.single_seconds, budget.single_requests)
            if not run.single[name].ok:  # a broken server, not a slow one: stop here
                raise SystemExit(f"{server.name} answered none of its requests for {name}")
        for c in CONCURRENCY:
            result = load(server, photos[LOAD_PHOTO], c, budget.seconds, budget.requests)
            run.loads[c] = result
            print(
                f"  c={c:>2}: {result.throughput:6.1f} img/s  p50 {result.p50_ms:6.0f}  "
                f"p99 {result.p99_ms:6.0f} ms  errors {result.errors}  "
                f"wrk {result.wrk_core_pct:.0f}% of a core",
                flush=True,
            )
        run.requests = sum(r.ok for r in (*run.single.values(), *run.loads.values()))
        if server.name.startswith("pounce") and run.requests < SOAK_REQUESTS:
            extra = SOAK_REQUESTS - run.requests
            run.requests += load(server, photos[LOAD_PHOTO], 4, SOAK_SECONDS, extra).ok
        run.rss_after_mb = rss_mb(server.session)
    finally:
        server.stop()
    return run


def other_kinds(photo: Path, budget: Budget, port: int) -> dict[str, ServerRun]:
    """A model of each other kind (bench/kinds.py), compiled, served by Pounce's defaults
    and measured at TUNING_CONCURRENCY with the load photo: throughput, latency, memory."""
    runs = {}
    with tempfile.TemporaryDirectory(prefix="bench-kinds-") as folder:
        subprocess.run([PYTHON, "-m", "bench.kinds", folder], cwd=ROOT, check=True)
        for kind in KINDS:
            onnx = Path(folder) / f"{kind}.onnx"
            compile_in_child(Path(folder) / f"{kind}.pkl", onnx, say=print)
            server = pounce({"MODEL_PATH": str(onnx)}, name=f"pounce-{kind}")
            server.start(port)
            try:
                run = ServerRun(kind, KINDS[kind], server.cold_start_s, server.rss_ready_mb)
                run.single[LOAD_PHOTO] = load(
                    server, photo, 1, budget.single_seconds, budget.single_requests
                )
                result = load(server, photo, TUNING_CONCURRENCY, budget.seconds, budget.requests)
                run.loads[TUNING_CONCURRENCY] = result
                run.requests = result.ok + run.single[LOAD_PHOTO].ok
                run.rss_after_mb = rss_mb(server.session)
            finally:
                server.stop()
            print(
                f"  {kind}: {result.throughput:.1f} img/s, p99 {result.p99_ms:.0f} ms", flush=True
            )
            runs[kind] = run
    return runs


def tune(
    settings: list[Setting],
    make: Callable[[dict[str, str]], Server],
    image: Path,
    budget: Budget,
    port: int,
) -> list[Variant]:
    """Measure each setting at TUNING_CONCURRENCY, each in a fresh server of its own."""
    variants = []
    for words, env in settings:
        server = make(env)
        server.start(port)
        try:
            result = load(server, image, TUNING_CONCURRENCY, budget.seconds, budget.requests)
        finally:
            server.stop()
        variants.append(Variant(words, env, result))
        print(f"  {words}: {result.throughput:.1f} img/s, p99 {result.p99_ms:.0f} ms", flush=True)
    return variants


def startup_steps() -> list[dict]:
    """bench/startup.py's steps, in a fresh process of their own."""
    command = [PYTHON, "-m", "bench.startup"]
    done = subprocess.run(
        command, cwd=ROOT, env=clean_env(), capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def machine() -> str:
    """The hardware in words: the figures mean little without it."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line), "")
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return (
        f"{os.cpu_count()} CPU cores ({model or platform.machine()}), "
        f"{memory_kb / 1024**2:.0f} GB RAM, {platform.system()} {platform.release()}"
    )


def versions() -> str:
    """What was measured, to the version."""
    packages = ["onnxruntime", "torch", "fastai", "litserve", "uvicorn", "starlette"]
    listed = ", ".join(f"{name} {version(name)}" for name in packages)
    return f"Python {platform.python_version()}, {listed}, wrk {wrk_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs: a smoke test")
    parser.add_argument("--port", type=int, default=18500, help="every server's port, in turn")
    parser.add_argument(
        "--rewrite", action="store_true", help="write the page again from the last run's figures"
    )
    args = parser.parse_args()
    if args.rewrite:
        markdown, plot = write(pickle.loads(SAVED.read_bytes()), ROOT / "docs")
        print(f"wrote {markdown} and {plot} from {SAVED}")
        return
    budget = QUICK if args.quick else FULL
    wrk_path()  # fail before anything runs when wrk is missing
    defaults = load_settings(EXPORT)
    model = compiled_model_path(defaults)
    photos = images()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-photos-") as name:
        folder, threads = Path(name), defaults.intra_op_threads
        paths = {name: folder / f"{name}.jpg" for name in photos}  # as bench.ceiling reads them
        for name, path in paths.items():
            path.write_bytes(photos[name])  # wrk's script reads the photo from a file
        print("measuring start-up...", flush=True)
        startup = startup_steps()
        seconds = budget.ceiling_seconds
        print("measuring the ONNX in-process ceiling...", flush=True)
        ceil = ceiling.in_child(model, folder, LOAD_PHOTO, seconds, threads)
        print(f"  {ceil.with_decoding:.1f} img/s with decoding", flush=True)
        print("compiling the INT8 model (compile --int8) and measuring its ceiling...")
        compile_in_child(ROOT / "export.pkl", INT8_MODEL, say=print, options=["--int8"])
        ceil_int8 = ceiling.in_child(INT8_MODEL, folder, LOAD_PHOTO, seconds, threads)
        print(f"  {ceil_int8.with_decoding:.1f} img/s with decoding", flush=True)
        decoded = decoding.measure(model, ceil, folder, budget, args.port, threads)
        explained = explanations.measure(model, folder, budget, args.port, threads)
        runs = {}
        for server in (pounce({}), pounce_int8(INT8_MODEL), torchscript(), naive()):
            runs[server.name] = benchmark(server, paths, budget, args.port)
        print(f"tuning LitServe at c={TUNING_CONCURRENCY}...", flush=True)
        tried = tune(litserve_settings(model), litserve, paths[LOAD_PHOTO], budget, args.port)
        best = fastest(tried)
        runs["litserve"] = benchmark(litserve(best.env, best.setting), paths, budget, args.port)
        print(f"choosing Pounce's defaults at c={TUNING_CONCURRENCY}...", flush=True)
        swept = tune(pounce_variants(), pounce, paths[LOAD_PHOTO], budget, args.port)
        print("the other kinds of model...", flush=True)
        kinds = other_kinds(paths[LOAD_PHOTO], budget, args.port)
    results = Results(
        when=time.strftime("%Y-%m-%d"),
        machine=machine(),
        versions=versions(),
        wrk_version=wrk_version(),
        budget=budget,
        photo_sizes={name: len(data) for name, data in photos.items()},
        startup=startup,
        ceiling=ceil,
        runs=runs,
        litserve=tried,
        pounce=swept,
        pounce_defaults=describe(defaults),
        int8=read_info(INT8_MODEL)["quantization"],
        ceiling_int8=ceil_int8,
        decoding=decoded,
        kinds=kinds,
        explanations=explained,
    )
    SAVED.parent.mkdir(exist_ok=True)
    SAVED.write_bytes(pickle.dumps(results))
    markdown, plot = write(results, ROOT / "docs")
    print(f"wrote {markdown} and {plot} in {(time.monotonic() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
