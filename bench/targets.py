"""The benchmark's targets, judged: each a typed record of what was aimed for, what was
measured and, when missed, by how much. bench/report.py only renders them."""

import math
from dataclasses import dataclass

from bench.load import LoadResult
from bench.results import SOAK_REQUESTS, TUNING_CONCURRENCY, Results

C = TUNING_CONCURRENCY
MAX_RSS_MB = 256
MAX_READY_S = 2.0
INT8_SPEEDUP = 1.5  # the aim for INT8's throughput over HTTP, against fp32's


@dataclass(frozen=True)
class Target:
    aim: str
    measured: str
    shortfall: str | None  # None when met

    @property
    def met(self) -> bool:
        return self.shortfall is None


def times(ours: float, theirs: float) -> float:
    """ours / theirs, infinite when theirs answered nothing (a short run of a slow server)."""
    return ours / theirs if theirs else math.inf


def short_of(measured: float, reference: float, factor: float) -> str:
    """How far a throughput falls below `factor` times a reference."""
    return (
        f"{factor - times(measured, reference):.2f}x "
        f"({factor * reference - measured:.1f} img/s short of {factor:g}x)"
    )


def against(name: str, ours: LoadResult, theirs: LoadResult, factor: float) -> Target:
    """At least `factor` times a server's throughput, and a p99 no worse."""
    ratio = times(ours.throughput, theirs.throughput)
    misses = [short_of(ours.throughput, theirs.throughput, factor)] if ratio < factor else []
    if ours.p99_ms > theirs.p99_ms:
        misses.append(f"a p99 {ours.p99_ms - theirs.p99_ms:.0f} ms worse")
    return Target(
        f"≥ {factor:g}x {name} at c={C}, p99 no worse",
        f"{ours.throughput:.1f} vs {theirs.throughput:.1f} img/s = {ratio:.2f}x; "
        f"p99 {ours.p99_ms:.0f} vs {theirs.p99_ms:.0f} ms",
        " and ".join(misses) or None,
    )


def targets(r: Results) -> list[Target]:
    pounce = r.runs["pounce"]
    ours = pounce.tuned
    baseline = r.runs["torchscript"].tuned
    ratio = times(ours.throughput, baseline.throughput)
    share = ours.throughput / r.ceiling.with_decoding
    rss, ready = pounce.rss_after_mb, pounce.cold_start_s
    soaked = pounce.requests >= SOAK_REQUESTS
    rss_miss = f"{rss - MAX_RSS_MB:.0f} MB" if soaked else f"only {pounce.requests} requests sent"
    fp32, int8 = ours, r.runs["pounce-int8"].tuned
    speedup = times(int8.throughput, fp32.throughput)
    return [
        Target(
            f"throughput at c={C} ≥ 2x the TorchScript baseline",
            f"{ours.throughput:.1f} vs {baseline.throughput:.1f} img/s = {ratio:.2f}x",
            None if ratio >= 2 else short_of(ours.throughput, baseline.throughput, 2),
        ),
        Target(
            f"throughput at c={C} ≥ 80% of the ONNX in-process ceiling with decoding",
            f"{ours.throughput:.1f} vs {r.ceiling.with_decoding:.1f} img/s = {share:.0%}",
            None if share >= 0.8 else f"{80 - 100 * share:.0f} percentage points",
        ),
        against(
            f"the best LitServe setting ({r.runs['litserve'].setting}) on the same ONNX model",
            ours,
            r.runs["litserve"].tuned,
            1.3,
        ),
        against("the naive server", ours, r.runs["naive"].tuned, 3),
        Target(
            f"one Pounce process ≤ {MAX_RSS_MB} MB RSS after {SOAK_REQUESTS:,} requests",
            f"{rss:.0f} MB after {pounce.requests:,} (when ready: {pounce.rss_ready_mb:.0f} MB)",
            None if soaked and rss <= MAX_RSS_MB else rss_miss,
        ),
        Target(
            f"ready ≤ {MAX_READY_S:g} s (process start to /readyz 200)",
            f"{ready:.2f} s",
            None if ready <= MAX_READY_S else f"{ready - MAX_READY_S:.2f} s",
        ),
        Target(
            f"INT8 (`compile --int8`) ≥ {INT8_SPEEDUP:g}x fp32's throughput at c={C}",
            f"{int8.throughput:.1f} vs {fp32.throughput:.1f} img/s = {speedup:.2f}x",
            None
            if speedup >= INT8_SPEEDUP
            else short_of(int8.throughput, fp32.throughput, INT8_SPEEDUP),
        ),
    ]
