"""Phone photos decoded exactly (the default) and at reduced scale (compile --fast-decode):
measured in the same run, in a process of their own and over HTTP, and the page's
section on them.

Three in-process ceilings at the same setting: the exact path as the server runs it, the
same with the allocator left as glibc sets it (the exact path before the server tuned it,
app/ops/memory.py), and the fast path. Then each path's server at c=16 on each photo.
"""

from pathlib import Path

from app.inference.loading import compile_in_child
from app.inference.model import read_info
from bench import ceiling
from bench.ceiling import Ceiling
from bench.contenders import pounce
from bench.load import load
from bench.results import (
    GLIBC,
    LOAD_PHOTO,
    PHONE_PHOTOS,
    TUNING_CONCURRENCY,
    Budget,
    DecodingRuns,
    Results,
)
from bench.servers import ROOT
from bench.tables import agreement, table

C = TUNING_CONCURRENCY
FAST_MODEL = ROOT / "test-artifacts" / "export-fast-decode.onnx"  # compiled afresh every run


def measure(
    model: Path, exact: Ceiling, folder: Path, budget: Budget, port: int, threads: int
) -> DecodingRuns:
    """`exact` is the default model's ceiling; `folder` holds the photos as <name>.jpg."""
    print("compiling the fast-decoding model (compile --fast-decode)...", flush=True)
    compile_in_child(ROOT / "export.pkl", FAST_MODEL, say=print, options=["--fast-decode"])
    seconds = budget.ceiling_seconds
    ceilings = {
        "exact": exact,
        "fast": ceiling.in_child(FAST_MODEL, folder, LOAD_PHOTO, seconds, threads, exact.best),
        GLIBC: ceiling.in_child(
            model, folder, LOAD_PHOTO, seconds, threads, exact.best, allocator="glibc"
        ),
    }
    loads = {}
    servers = {"exact": pounce({}), "fast": pounce({"MODEL_PATH": str(FAST_MODEL)}, "pounce-fast")}
    for path, server in servers.items():
        server.start(port)
        try:
            loads[path] = {
                photo: load(server, folder / f"{photo}.jpg", C, budget.seconds, budget.requests)
                for photo in PHONE_PHOTOS
            }
        finally:
            server.stop()
        for photo, result in loads[path].items():
            print(f"  {path} {photo}: {result.throughput:.1f} img/s at c={C}", flush=True)
    return DecodingRuns(read_info(FAST_MODEL)["decoding"], ceilings, loads)


def section(r: Results) -> list[str]:
    d = r.decoding
    head = ["decoding", "photo", "in-process: decode + preprocess ms"]
    head += ["in-process with decoding img/s", f"HTTP img/s at c={C}", "of the ceiling"]
    head += ["p50 ms", "p99 ms", "peak RSS MB"]
    rows = []
    for path in ("exact", "fast", GLIBC):
        ceil = d.ceilings[path]
        for photo in PHONE_PHOTOS:
            row = [path, photo, f"{ceil.decode_ms[photo]:.1f}", f"{ceil.decoding[photo]:.1f}"]
            http = d.loads.get(path, {}).get(photo)
            if http is None:
                row += ["(in-process only)", "", "", "", ""]
            else:
                share = http.throughput / ceil.decoding[photo]
                row += [f"{http.throughput:.1f}", f"{share:.0%}", f"{http.p50_ms:.0f}"]
                row += [f"{http.p99_ms:.0f}", f"{http.peak_rss_mb:.0f}"]
            rows.append(row)
    held = d.record["holdout"]
    streams, threads, batch = d.ceilings["exact"].best
    sizes = ", ".join(f"{photo} {r.photo_sizes[photo] // 1024} KB" for photo in PHONE_PHOTOS)
    return [
        "**exact** is the default: every JPEG decoded at full size, as `learn.predict` "
        "decodes it. **fast** is `compile --fast-decode` of the same export: JPEGs at least "
        f"{2 * d.record['draft_size']} px on their shorter side are decoded at reduced scale "
        f"(DCT scaling, to no less than {d.record['draft_size']} px). **{GLIBC}** is the "
        "exact path in a process whose allocator is left as glibc sets it, which is how the "
        "server ran before app/ops/memory.py. The in-process figures run in a fresh process "
        f"each, at the ceiling's best setting ({streams} stream(s) x {threads} thread(s), "
        f"batch {batch}); over HTTP each path's server at its defaults. Photos: {sizes}.",
        "",
        *table(head, rows),
        "",
        f"Agreement of the fast path, measured by its compile on held-out photos "
        f"({held['folder']}, each decoded both ways where reduced scale changes it): the "
        f"exact decoding's answer on {agreement(held, d.record['min_agreement'])}",
    ]
