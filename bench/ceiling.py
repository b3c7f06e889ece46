"""The ONNX in-process ceiling: app.inference.model.Model in a process of its own, no HTTP.

What a server running this model on this machine could reach at best. A setting is
(parallel streams, ONNX Runtime intra-op threads, batch size); streams share one
session, as the server's inference workers do. Measured in a fresh process
(python -m bench.ceiling) with the allocator set as the server sets it
(app/ops/memory.py), or left at glibc's defaults to show what that setting gives.
"""

import argparse
import os
import pickle
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.inference.model import Model
from app.ops.memory import SETTINGS, tune_malloc
from bench.servers import ROOT, clean_env

BATCHES = (1, 2, 4, 8)
Setting = tuple[int, int, int]  # streams, intra-op threads, batch


@dataclass
class Ceiling:
    forward: dict[Setting, float]  # img/s, the forward pass alone
    best: Setting
    decoding: dict[str, float]  # img/s per photo at the best setting, each stream decoding
    single_ms: dict[str, float]  # one image, decoded and run, per photo
    decode_ms: dict[str, float]  # decoding and preprocessing alone, per photo
    load_photo: str

    @property
    def forward_best(self) -> float:
        return self.forward[self.best]

    @property
    def with_decoding(self) -> float:
        """img/s with decoding, of the photo the concurrency sweeps send."""
        return self.decoding[self.load_photo]


def rate(step: Callable[[], int], seconds: float, streams: int) -> float:
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


def median_ms(step: Callable[[], object], repeat: int) -> float:
    """Median wall time of `step`, its first two runs (warm-up) left out."""
    timings = []
    for _ in range(repeat + 2):
        started = time.perf_counter()
        step()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings[2:])


def settings(cores: int) -> list[Setting]:
    """One stream of one thread or of every core; a stream per core of one thread."""
    streams_threads = sorted({(1, 1), (1, cores), (cores, 1)})
    return [(s, t, b) for s, t in streams_threads for b in BATCHES]


def measure(
    path: Path,
    photos: dict[str, bytes],
    load_photo: str,
    seconds: float,
    threads: int,
    setting: Setting | None = None,
) -> Ceiling:
    """Every setting's forward rate (or only `setting`'s), the best one with decoding for
    each photo, and single-image times at `threads` intra-op threads (the server's)."""
    cores = os.cpu_count() or 1
    tried = settings(cores) if setting is None else [setting]
    counts = {1, cores, threads, *(t for _, t, _ in tried)}  # intra-op threads
    models = {t: Model.load(path, threads=t) for t in counts}

    def prepare(photo: bytes) -> np.ndarray:
        return models[1].preprocess(models[1].decode(photo, 10**9))

    array = prepare(photos[load_photo])
    forward = {}
    for streams, t, batch in tried:
        inputs = [array] * batch
        forward[(streams, t, batch)] = rate(
            lambda m=models[t], inputs=inputs: len(m.infer(inputs)), seconds, streams
        )
    best = max(forward, key=forward.get)
    streams, t, batch = best

    def decode_and_run(photo: bytes) -> int:
        return len(models[t].infer([prepare(photo) for _ in range(batch)]))

    served = models[threads]
    return Ceiling(
        forward=forward,
        best=best,
        decoding={
            name: rate(lambda p=photo: decode_and_run(p), seconds, streams)
            for name, photo in photos.items()
        },
        single_ms={
            name: median_ms(lambda p=photo: served.infer([prepare(p)]), 15)
            for name, photo in photos.items()
        },
        decode_ms={
            name: median_ms(lambda p=photo: prepare(p), 10) for name, photo in photos.items()
        },
        load_photo=load_photo,
    )


def in_child(
    path: Path,
    folder: Path,
    load_photo: str,
    seconds: float,
    threads: int,
    setting: Setting | None = None,
    allocator: str = "tuned",
) -> Ceiling:
    """measure() in a fresh process, on the photos saved as `folder`/<name>.jpg, with the
    allocator as the server sets it ("tuned") or at glibc's defaults ("glibc")."""
    args = [str(path), str(folder), load_photo, str(seconds), str(threads)]
    args += ["--allocator", allocator]
    if setting is not None:
        args += ["--setting", ",".join(map(str, setting))]
    ceiling: Ceiling = child_result("bench.ceiling", args, folder / "ceiling.pickle")
    return ceiling


def child_result(module: str, args: list[str], out: Path) -> Any:
    """What `python -m module ARGS --out OUT` pickled to `out`, run in a fresh process from
    the app's default settings, the allocator's variables left for it to set (as
    app/ops/memory.py does in the server)."""
    env = clean_env()
    for variable, _ in SETTINGS.values():
        env.pop(variable, None)
    command = [sys.executable, "-m", module, *args, "--out", str(out)]
    subprocess.run(command, cwd=ROOT, env=env, check=True)
    return pickle.loads(out.read_bytes())


def main() -> None:
    parser = argparse.ArgumentParser(description="measure() in this process, pickled to --out")
    parser.add_argument("model", type=Path)
    parser.add_argument("folder", type=Path)
    parser.add_argument("load_photo")
    parser.add_argument("seconds", type=float)
    parser.add_argument("threads", type=int)
    parser.add_argument("--setting", help="streams,threads,batch: only this one")
    parser.add_argument("--allocator", choices=("tuned", "glibc"), default="tuned")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.allocator == "tuned":
        tune_malloc()  # first, before any thread starts, as app/cli.py does
    photos = {path.stem: path.read_bytes() for path in sorted(args.folder.glob("*.jpg"))}
    setting = tuple(map(int, args.setting.split(","))) if args.setting else None
    ceiling = measure(args.model, photos, args.load_photo, args.seconds, args.threads, setting)
    args.out.write_bytes(pickle.dumps(ceiling))


if __name__ == "__main__":
    # Imported again as bench.ceiling, so that the pickled Ceiling unpickles in bench/run.py.
    from bench.ceiling import main as run

    run()
