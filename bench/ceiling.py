"""The ONNX in-process ceiling: app.inference.model.Model in this process, no HTTP.

What a server running this model on this machine could reach at best. A setting is
(parallel streams, ONNX Runtime intra-op threads, batch size); streams share one
session, as the server's inference workers do.
"""

import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.inference.model import Model

BATCHES = (1, 2, 4, 8)
Setting = tuple[int, int, int]  # streams, intra-op threads, batch


@dataclass
class Ceiling:
    forward: dict[Setting, float]  # img/s, the forward pass alone
    best: Setting
    with_decoding: float  # img/s at the best setting, each stream also decoding
    single_ms: dict[str, float]  # one image, decoded and run, per photo
    decode_ms: dict[str, float]  # decoding and preprocessing alone, per photo

    @property
    def forward_best(self) -> float:
        return self.forward[self.best]


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
    path: Path, photos: dict[str, bytes], load_photo: str, seconds: float, threads: int
) -> Ceiling:
    """Every setting's forward rate, the best one with decoding, and single-image times
    at `threads` intra-op threads (the server's setting)."""
    models = {t: Model.load(path, threads=t) for t in {1, os.cpu_count() or 1, threads}}
    data = photos[load_photo]

    def prepare(photo: bytes) -> np.ndarray:
        return models[1].preprocess(models[1].decode(photo, 10**9))

    array = prepare(data)
    forward = {}
    for streams, t, batch in settings(os.cpu_count() or 1):
        inputs = [array] * batch
        forward[(streams, t, batch)] = rate(
            lambda m=models[t], inputs=inputs: len(m.infer(inputs)), seconds, streams
        )
    best = max(forward, key=forward.get)
    streams, t, batch = best

    def decode_and_run() -> int:
        return len(models[t].infer([prepare(data) for _ in range(batch)]))

    served = models[threads]
    return Ceiling(
        forward=forward,
        best=best,
        with_decoding=rate(decode_and_run, seconds, streams),
        single_ms={
            name: median_ms(lambda p=photo: served.infer([prepare(p)]), 15)
            for name, photo in photos.items()
        },
        decode_ms={
            name: median_ms(lambda p=photo: prepare(p), 10) for name, photo in photos.items()
        },
    )
