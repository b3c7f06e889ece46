"""The benchmark page's closing sections: how to read it, written from the run's own
settings and figures, and the place for the analysis of what it missed."""

import os
from importlib.metadata import version

from bench.results import (
    GLIBC,
    LOAD_PHOTO,
    PHONE_PHOTOS,
    TUNING_CONCURRENCY,
    ExplanationRuns,
    Results,
)
from bench.targets import ALLOCATOR_SPEEDUP, EXPLAIN_COST, FAST_SPEEDUP, HTTP_SHARE

PREVIOUS_LITSERVE = """\
### The previous page's LitServe comparison

The previous version of this page reported Pounce at 1.97x LitServe's throughput. That
compared against an untuned LitServe: 1 worker x 2 threads, batch 8. At its best setting,
2 workers x 1 thread, batch 8, LitServe matched the TorchScript Pounce's throughput at four
times the memory. The figures reported earlier on this machine: the TorchScript Pounce
40.2-49.8 img/s in 731-788 MB; LitServe with 1 worker x 2 threads, batch 8, 26.7 img/s in
1.9 GB; LitServe with 2 workers x 1 thread, batch 8, 49.3 img/s in 3.0 GB. This page
compares against LitServe's best setting, found afresh on every run.
"""

# The TorchScript Pounce on the previous page, loaded by a Python client on the same cores.
PREVIOUS_TORCHSCRIPT_IMG_S = 40.9


def missed(r: Results) -> str:
    """Why a target this run missed was missed, with this run's figures."""
    ours, ts = r.runs["pounce"], r.runs["torchscript"]
    lit = r.runs["litserve"]
    ceiling = r.ceiling.with_decoding
    decode_ms = r.ceiling.decode_ms[LOAD_PHOTO]
    forward_ms = 1000 * r.ceiling.best[0] / r.ceiling.forward_best  # per stream
    parts = ["## What limits the missed targets", ""]
    if ours.tuned.throughput < 2 * ts.tuned.throughput:
        parts += [
            f"- **2x the TorchScript baseline** would be {2 * ts.tuned.throughput:.0f} img/s, "
            f"above the ceiling itself: decoding and preprocessing the {LOAD_PHOTO} photo "
            f"({decode_ms:.1f} ms) and running it ({forward_ms:.1f} ms per image per stream) "
            f"in this process, with no HTTP at all, come to {ceiling:.0f} img/s on these "
            f"{os.cpu_count()} cores, so no server of this model could meet it here. The "
            f"baseline is faster than it was: {ts.tuned.throughput:.1f} img/s now against "
            f"{PREVIOUS_TORCHSCRIPT_IMG_S} img/s on the previous page, whose Python load "
            "generator took a good part of one of the two cores; wrk takes about 1%. "
            f"Against that earlier figure Pounce's {ours.tuned.throughput:.1f} img/s is "
            f"{ours.tuned.throughput / PREVIOUS_TORCHSCRIPT_IMG_S:.1f}x.",
        ]
    if ours.tuned.throughput < 1.3 * lit.tuned.throughput:
        parts += [
            f"- **1.3x the best LitServe** would be {1.3 * lit.tuned.throughput:.0f} img/s, "
            f"above the ceiling too. With the same compiled model and the same decoding, both "
            f"servers come close to it (Pounce {ours.tuned.throughput / ceiling:.0%}, LitServe "
            f"{lit.tuned.throughput / ceiling:.0%}): what is left is HTTP and the multipart "
            "body, so on two cores the runtime, not the server around it, sets the pace. They "
            f"differ in cost: Pounce is one process of {ours.rss_after_mb:.0f} MB after its "
            f"requests, ready in {ours.cold_start_s:.1f} s; LitServe's tree of processes is "
            f"{lit.rss_after_mb:.0f} MB, ready in {lit.cold_start_s:.1f} s.",
        ]
    if ours.tuned.p99_ms > lit.tuned.p99_ms:
        parts += [
            f"- **A p99 no worse than LitServe's**: {ours.tuned.p99_ms:.0f} ms against "
            f"{lit.tuned.p99_ms:.0f} at c={TUNING_CONCURRENCY}. LitServe decodes and runs each "
            "request in worker processes of their own, where Pounce's one process shares its "
            "interpreter between the event loop, which parses the uploads, and the decoding "
            "threads. Measured while choosing the defaults, none narrowed the gap for good: "
            "batches of 1 to 8, 1 to 3 workers, 2 intra-op threads, two processes (table "
            "above), nor, tried outside this page, decoding in the inference thread or fewer "
            "requests in flight. Between runs on this machine the two p99s trade places.",
        ]
    fp32, int8 = ours.tuned, r.runs["pounce-int8"].tuned
    if int8.throughput < 1.5 * fp32.throughput:
        forward_int8 = 1000 * r.ceiling_int8.best[0] / r.ceiling_int8.forward_best
        parts += [
            f"- **INT8 at 1.5x fp32** would be {1.5 * fp32.throughput:.0f} img/s. INT8 makes "
            f"the forward pass {r.ceiling_int8.forward_best / r.ceiling.forward_best:.2f}x "
            f"as fast ({forward_ms:.1f} to {forward_int8:.1f} ms per image per stream), but "
            f"decoding and preprocessing the {LOAD_PHOTO} photo ({decode_ms:.1f} ms) stay "
            "what they were, so even with no HTTP the INT8 model's ceiling is "
            f"{r.ceiling_int8.with_decoding:.0f} img/s, "
            f"{r.ceiling_int8.with_decoding / ceiling:.2f}x fp32's {ceiling:.0f}. Over HTTP "
            f"INT8 reaches {int8.throughput / fp32.throughput:.2f}x; smaller photos (c=1 "
            "table), whose decoding costs less, gain more.",
        ]
    parts += decoding_missed(r)
    parts += explanations_missed(r.explanations) if r.explanations else []
    if len(parts) == 2:
        parts.append("None: every target was met in this run.")
    return "\n".join(parts) + "\n"


def decoding_missed(r: Results) -> list[str]:
    """The phone-photo targets: what each path's time goes to, from this run's figures."""
    d, parts = r.decoding, []
    exact, fast, glibc = d.ceilings["exact"], d.ceilings["fast"], d.ceilings[GLIBC]
    streams = exact.best[0]
    forward_ms = 1000 * streams / exact.forward_best  # per image per stream
    if exact.decoding["12mp"] < ALLOCATOR_SPEEDUP * glibc.decoding["12mp"]:
        parts.append(
            f"- **The exact path at {ALLOCATOR_SPEEDUP:g}x glibc's allocator on the 12mp "
            f"photo**: decoding and preprocessing it, one photo at a time, takes "
            f"{exact.decode_ms['12mp']:.1f} ms against {glibc.decode_ms['12mp']:.1f} ms "
            f"({glibc.decode_ms['12mp'] / exact.decode_ms['12mp']:.2f}x), but with {streams} "
            f"streams each decoding a batch of {exact.best[2]} and running it, the rate is "
            f"{exact.decoding['12mp']:.1f} against {glibc.decoding['12mp']:.1f} img/s: there "
            "the allocator's gain does not show, and why is not yet understood. The server, "
            "which decodes in threads of its own beside the inference workers, does better "
            f"than that in-process figure over HTTP ({d.loads['exact']['12mp'].throughput:.1f} "
            "img/s), so for 12 MP photos this ceiling is not one. The rest of the decode is "
            "libjpeg-turbo's own work: simplejpeg, the faster binding measured for this, "
            "gives the same bytes in the same time as Pillow's own libjpeg-turbo."
        )
    for path, loads in d.loads.items():
        for photo in PHONE_PHOTOS:
            ceiling, http = d.ceilings[path].decoding[photo], loads[photo]
            if http.throughput < HTTP_SHARE * ceiling:
                parts.append(
                    f"- **The {path} path over HTTP on the {photo} photo at "
                    f"{HTTP_SHARE:.0%} of its ceiling**: {http.throughput:.1f} against "
                    f"{ceiling:.1f} img/s ({http.throughput / ceiling:.1%}). The server "
                    f"receives each {r.photo_sizes[photo] // 1024} KB upload and parses its "
                    "multipart body on the event loop, and wrk sends it, on the same "
                    f"{os.cpu_count()} cores that decode and run the network."
                )
    fast_http, exact_http = d.loads["fast"]["12mp"], d.loads["exact"]["12mp"]
    if fast_http.throughput < FAST_SPEEDUP * exact_http.throughput:
        parts.append(
            f"- **The fast path at {FAST_SPEEDUP:g}x the exact one on the 12mp photo**: "
            f"{fast_http.throughput:.1f} against {exact_http.throughput:.1f} img/s. Reduced "
            f"scale cuts decoding and preprocessing from {exact.decode_ms['12mp']:.1f} to "
            f"{fast.decode_ms['12mp']:.1f} ms, whose floor is the entropy decoding DCT "
            f"scaling does not skip, but the network's {forward_ms:.1f} ms per image per "
            f"stream is the same for both: in-process the gain is "
            f"{fast.decoding['12mp'] / exact.decoding['12mp']:.2f}x."
        )
    return parts


def explanations_missed(e: ExplanationRuns) -> list[str]:
    """The explanation targets: what explaining adds, and where, from this run's figures."""
    cost, parts = e.cost, []
    rows, columns = cost.feature_map
    plain, explained = e.single["plain"], e.single["explained"]
    http = {photo: explained[photo].p50_ms / plain[photo].p50_ms for photo in plain}
    for photo in cost.plain_ms:
        if cost.ratio(photo) <= EXPLAIN_COST and http[photo] <= EXPLAIN_COST:
            continue
        head = cost.explain_forward_ms[photo] - cost.forward_ms[photo]
        draw, drawn, png = cost.draw_ms[photo], cost.map_ms[photo], cost.png_kb[photo]
        width, height = cost.heatmap_size[photo]
        parts.append(
            f"- **An explained prediction at {EXPLAIN_COST:g}x a plain one, {photo} photo**: "
            f"in-process {cost.explained_ms[photo]:.1f} against {cost.plain_ms[photo]:.1f} ms "
            f"({cost.ratio(photo):.2f}x), over HTTP at c=1 {explained[photo].p50_ms:.1f} "
            f"against {plain[photo].p50_ms:.1f} ms ({http[photo]:.2f}x). Explaining adds the "
            f"head run on each of the {rows}x{columns} cells of the last feature map alone, "
            f"{head:.1f} ms beside the plain forward pass's {cost.forward_ms[photo]:.1f}, and "
            f"the map drawn: {draw:.1f} ms, of which {drawn:.1f} to lay the cells over the "
            f"photo ({width}x{height}) and {draw - drawn:.1f} for its PNG ({png:.0f} KB, "
            "which the answer carries in base64). Decoding and preprocessing "
            f"({cost.decode_ms[photo]:.1f} ms) cost both the same, so the smaller the photo, the "
            "larger explaining's share."
            + (
                f" At c={TUNING_CONCURRENCY} the server spent {e.cpu_ms['explained'][photo]:.1f} "
                f"ms of CPU per explained answer against {e.cpu_ms['plain'][photo]:.1f} plain."
                if photo in e.cpu_ms["plain"]
                else ""
            )
        )
    photo = cost.memory_photo
    peak = {mode: e.loads[mode][photo].peak_rss_mb for mode in e.loads}
    allowed = cost.mask_mib * e.drawing_threads
    if cost.draw_mib > cost.mask_mib or peak["explained"] > peak["plain"] + allowed:
        parts.append(
            f"- **An explained {photo} photo within a mask's limits**: drawing its map held "
            f"{cost.draw_mib:.1f} MiB against a mask's {cost.mask_mib:.1f}; the server's peak "
            f"RSS at c={TUNING_CONCURRENCY} was {peak['explained']:.0f} MB against "
            f"{peak['plain']:.0f} plain, where {e.drawing_threads} drawing thread(s) may add "
            f"{allowed:.0f}. Peak RSS is sampled every 0.2 s in each server's own run, and the "
            f"decoded {photo} photos, not the maps, are most of it."
        )
    return parts


def servers(r: Results) -> str:
    runs, best = r.runs, r.best_litserve
    return f"""\
### The servers and their settings

- **pounce** is `python -m app serve` with its defaults ({runs["pounce"].setting}): one
  process serving the compiled `export.onnx` with ONNX Runtime, no torch; decoding (at full
  size, as `learn.predict` decodes) and preprocessing in a thread pool beside the inference workers.
- **pounce-int8** is the same server and defaults serving `compile --int8`'s file, compiled
  from the same export at the start of the run (INT8 beside fp32, above). A multi-label
  model costs what a single-label one of the same network does (a sigmoid instead of a
  softmax, and a comparison), so it has no row of its own.
- **torchscript** is the previous Pounce, kept as the baseline: `bench/torchscript_server.py`
  serves `bench/torchscript_model.py` (fastai's `load_learner`, the learner's validation
  pipelines pinned to split_idx=1, a frozen TorchScript trace in channels-last layout)
  through this same app, HTTP stack and batching code, with the old defaults:
  {runs["torchscript"].setting}.
- **naive** is `bench/naive_server.py`: `learn.predict` inside the async handler, the way
  the anchor apps serve; requests queue behind each other on the event loop.
- **litserve** is `bench/litserve_server.py`: LitServe {version("litserve")} serving the same
  `export.onnx` with the same decoding and preprocessing (`Model.decode`, then
  `Model.preprocess`) in `decode_request`, and `Model.infer` in its
  batched `predict`; it does not import torch. Tuned as its docs advise: workers_per_device
  1 or 2, ONNX Runtime intra-op threads per worker 1 or 2, max_batch_size 1, 4 or 8 with a
  batch_timeout, and fast_queue (ZMQ instead of multiprocessing queues);
  {len(r.litserve)} settings tried at c={TUNING_CONCURRENCY} (table above).
  The best, {best.setting}, is the one measured at every concurrency and in the targets.
  num_api_servers stays at its default, one API server process per inference worker.
- **The ceiling** is `app.inference.model.Model` in a fresh process with the allocator set
  as the server sets it (app/ops/memory.py), no HTTP: the forward pass alone at each
  setting (parallel streams x intra-op threads x batch), then the best one with each stream
  also decoding and preprocessing each photo (the {LOAD_PHOTO} photo's is the one compared
  with the concurrency sweeps).
- **RSS** is summed over every process of a server's session: uvicorn's workers,
  LitServe's API servers, inference workers and multiprocessing's resource tracker.
"""


def load_generator(r: Results) -> str:
    loads = r.all_loads()
    cores = [result.wrk_core_pct for result in loads]
    machine = max(result.wrk_machine_pct for result in loads)
    cpu = sum(result.wrk_cpu_s for result in loads)
    wall = sum(result.wrk_wall_s for result in loads)
    budget = r.budget
    return f"""\
### The load generator

wrk {r.wrk_version} with `bench/multipart.lua`, which builds one multipart/form-data body
(field `file`, the JPEG) per wrk thread and POSTs it again and again: `c` connections, each
sending its next request as soon as its last answer is in (a closed loop), one wrk thread
(two at c=64). Each point runs for {budget.seconds} s or {budget.requests:,} responses,
whichever comes first (c=1 per photo: {budget.single_seconds} s or {budget.single_requests}), with a
30 s timeout; errors are responses with a status of 400 or more, socket errors and
timeouts. The latency percentiles are wrk's own, which include its correction for
coordinated omission (extra samples for responses slower than twice the mean interval), so
tails read slightly high.

wrk ran on the same {os.cpu_count()} cores as the servers. Its CPU time, from
getrusage(RUSAGE_CHILDREN) around each run: between {min(cores):.0f}% and {max(cores):.0f}%
of one core per run (at most {machine:.0f}% of the machine);
{cpu:.0f} s of CPU over {wall:.0f} s of load in all, {len(loads)} runs. Each run's share is in
the tables' last column.
"""


def notes(r: Results) -> str:
    return "\n".join(
        [
            "## How to read this",
            "",
            "<!-- The servers, their settings and the load generator: written by",
            "     bench/notes.py from this run's settings and figures. -->",
            "",
            servers(r),
            load_generator(r),
            PREVIOUS_LITSERVE,
            missed(r),
        ]
    )
