"""Explained predictions (explain=true) beside plain ones, for the default model: measured
in the same run, in a process of their own (bench/explain_cost.py) and over HTTP, and the
page's section on them.

Over HTTP, a fresh server for each (so that each one's peak memory is its own), sent the
same requests in the same order: c=1 on each photo, then c=16 on each phone photo, the
12 MP one last. Runnable alone, without the rest of `make bench` (it prints the section
and its targets instead of writing the page):

    python -m bench.explanations [--quick] [--port PORT]
"""

import argparse
import json
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from app.inference.loading import compiled_model_path
from app.settings import EXAMPLES_DIR, load_settings
from bench import explain_cost
from bench.contenders import EXPORT, pounce
from bench.load import LoadResult, load, wrk_path
from bench.notes import explanations_missed
from bench.results import (
    FULL,
    PHONE_PHOTOS,
    QUICK,
    TUNING_CONCURRENCY,
    Budget,
    ExplanationRuns,
)
from bench.servers import ROOT, Server, cpu_seconds
from bench.tables import load_table, table
from bench.targets import explaining, rendered
from bench.workload import images

C = TUNING_CONCURRENCY
QUERY = {"plain": "", "explained": "explain=true"}
EXAMPLE = EXAMPLES_DIR / "cat.jpg"  # the page's first example photo
BOUNDARY = "pounce-bench-explain"


def answer_of(server: Server, photo: Path, query: str) -> dict:
    """One answer, asked the way wrk asks (bench/multipart.lua)."""
    body = b"\r\n".join(
        [
            f"--{BOUNDARY}".encode(),
            b'Content-Disposition: form-data; name="file"; filename="photo.jpg"',
            b"Content-Type: image/jpeg",
            b"",
            photo.read_bytes(),
            f"--{BOUNDARY}--".encode(),
            b"",
        ]
    )
    request = urllib.request.Request(
        server.url(f"{server.predict_path}?{query}"),
        body,
        {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"{server.name} refused {query!r}: {exc.read().decode()}") from None


Loads = dict[str, dict[str, LoadResult]]  # "plain" and "explained": per photo


def served(
    folder: Path, photos: list[str], budget: Budget, port: int
) -> tuple[Loads, Loads, Loads]:
    """c=1 per photo and c=16 per phone photo, plain and explained, each in a fresh server;
    and at c=16, the server's CPU time (ms) per answer."""
    single: Loads = {}
    loads: Loads = {}
    cpu: dict[str, dict[str, float]] = {}
    for mode, query in QUERY.items():
        server = pounce({}, name=f"pounce-{mode}")
        server.start(port)
        try:
            explained = "explanation" in answer_of(server, folder / f"{photos[0]}.jpg", query)
            if explained != bool(query):
                raise SystemExit(f"{server.name}: explanation in the answer is {explained}")
            single[mode] = {
                photo: load(
                    server,
                    folder / f"{photo}.jpg",
                    1,
                    budget.single_seconds,
                    budget.single_requests,
                    query,
                )
                for photo in photos
            }
            loads[mode], cpu[mode] = {}, {}
            for photo in PHONE_PHOTOS:
                before = cpu_seconds(server.session)
                result = load(
                    server, folder / f"{photo}.jpg", C, budget.seconds, budget.requests, query
                )
                loads[mode][photo] = result
                cpu[mode][photo] = 1000 * (cpu_seconds(server.session) - before) / max(1, result.ok)
        finally:
            server.stop()
        for photo, result in loads[mode].items():
            print(
                f"  {mode} {photo}: {result.throughput:.1f} img/s at c={C}, "
                f"{cpu[mode][photo]:.1f} ms of CPU an image, peak RSS {result.peak_rss_mb:.0f} MB",
                flush=True,
            )
    return single, loads, cpu


def measure(model: Path, folder: Path, budget: Budget, port: int, threads: int) -> ExplanationRuns:
    """`folder` holds the photos as <name>.jpg (measured with the page's example photo, in
    a folder of their own); `threads` is the server's intra-op threads."""
    print("explained predictions beside plain ones (explain=true)...", flush=True)
    own = folder / "explanations"
    own.mkdir(exist_ok=True)
    for path in [*folder.glob("*.jpg"), EXAMPLE]:
        name = "example" if path == EXAMPLE else path.stem
        (own / f"{name}.jpg").write_bytes(path.read_bytes())
    sizes = {path.stem: path.stat().st_size for path in own.glob("*.jpg")}
    photos = sorted(sizes, key=sizes.__getitem__)
    repeat = max(5, round(10 * budget.ceiling_seconds))
    cost = explain_cost.in_child(model, own, threads, repeat)
    for photo, plain in cost.plain_ms.items():
        print(
            f"  in-process {photo}: {plain:.1f} ms plain, {cost.explained_ms[photo]:.1f} "
            f"explained = {cost.ratio(photo):.2f}x",
            flush=True,
        )
    single, loads, cpu = served(own, photos, budget, port)
    drawing = load_settings(EXPORT).prep_threads
    return ExplanationRuns(
        {photo: sizes[photo] for photo in photos}, cost, single, loads, cpu, drawing
    )


def section(e: ExplanationRuns) -> list[str]:
    """The page's section: the cost per photo, the loads, the memory beside a mask's."""
    cost, plain, explained = e.cost, e.single["plain"], e.single["explained"]
    head = [
        "photo",
        "size",
        "heatmap",
        "in-process plain ms",
        "explained ms",
        "x",
        "the head's pass +ms",
    ]
    head += ["the map drawn ms", "its PNG KB", "HTTP c=1 p50 plain ms", "explained ms", "x"]
    rows = []
    for photo, size in e.photo_sizes.items():
        width, height = cost.heatmap_size[photo]
        head_ms = cost.explain_forward_ms[photo] - cost.forward_ms[photo]
        http = explained[photo].p50_ms / plain[photo].p50_ms
        rows.append(
            [
                photo,
                f"{size // 1024} KB",
                f"{width}x{height}",
                f"{cost.plain_ms[photo]:.1f}",
                f"{cost.explained_ms[photo]:.1f}",
                f"{cost.ratio(photo):.2f}",
                f"{head_ms:.1f}",
                f"{cost.draw_ms[photo]:.1f}",
                f"{cost.png_kb[photo]:.0f}",
                f"{plain[photo].p50_ms:.1f}",
                f"{explained[photo].p50_ms:.1f}",
                f"{http:.2f}",
            ]
        )
    loads = [([photo, mode], e.loads[mode][photo]) for photo in PHONE_PHOTOS for mode in e.loads]
    mask_w, mask_h = cost.mask_size
    heat_w, heat_h = cost.heatmap_size[cost.memory_photo]
    return [
        "The default model, plain and with `explain=true`. In-process: one image at a time in "
        "a process of its own at the server's intra-op threads, the whole answer (decode, "
        "preprocess, the forward pass, the kind's answer; explained: the graph's explaining "
        "branch, and the map drawn over the photo as a PNG, as the server draws it), plain and "
        "explained timed in turn, median; then the head's pass (the explained forward pass "
        "less the plain one) and the drawing alone. Over HTTP: a fresh server for each, "
        "sent the same requests in the same order. The photos: the bench's, and the page's "
        f"example photo (`{EXAMPLE.relative_to(ROOT)}`, the first one people try). "
        "`python -m bench.explanations` measures this section alone.",
        "",
        *table(head, rows),
        "",
        *load_table(["photo", "answers"], loads),
        "",
        f"The server's CPU time per answer at c={C} (all its threads, from /proc): "
        + "; ".join(
            f"{photo} {e.cpu_ms['explained'][photo]:.1f} ms explained against "
            f"{e.cpu_ms['plain'][photo]:.1f} plain "
            f"({e.cpu_ms['explained'][photo] / e.cpu_ms['plain'][photo]:.2f}x; in-process "
            f"{cost.ratio(photo):.2f}x)"
            for photo in PHONE_PHOTOS
        )
        + ".",
        "",
        f"Memory, {cost.memory_photo} photo: drawing its explanation (a {heat_w}x{heat_h} "
        f"heatmap) holds at most {cost.draw_mib:.1f} MiB at once; a segmentation mask's "
        f"answer for the same photo at `MAX_MASK_MEGAPIXELS` (a {mask_w}x{mask_h} mask) "
        f"holds {cost.mask_mib:.1f} MiB and takes {cost.mask_ms:.0f} ms (tracemalloc: numpy's "
        "arrays and Python's objects; Pillow's own copy of each image, a byte a pixel, comes "
        f"on top). The server draws both in its {e.drawing_threads} decoding thread(s).",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs: a smoke test")
    parser.add_argument("--port", type=int, default=18500, help="each server's port, in turn")
    args = parser.parse_args()
    wrk_path()
    budget = QUICK if args.quick else FULL
    defaults = load_settings(EXPORT)
    with tempfile.TemporaryDirectory(prefix="bench-photos-") as name:
        folder = Path(name)
        for photo, data in images().items():
            (folder / f"{photo}.jpg").write_bytes(data)
        runs = measure(
            compiled_model_path(defaults), folder, budget, args.port, defaults.intra_op_threads
        )
    why = explanations_missed(runs)
    print("\n".join(["", *rendered(explaining(runs)), "", *section(runs), "", *why]))


if __name__ == "__main__":
    main()
