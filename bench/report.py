"""docs/benchmarks.md and docs/benchmarks.png, written from one run's Results.

The page leads with the targets, each met or missed and by how much, then the
tables they come from; bench/notes.py writes its "How to read this" section.
"""

from pathlib import Path

from bench import decoding, explanations
from bench.ceiling import BATCHES
from bench.notes import notes
from bench.results import CONCURRENCY, LOAD_PHOTO, TUNING_CONCURRENCY, Results
from bench.tables import agreement, load_table, table
from bench.targets import rendered, targets

C = TUNING_CONCURRENCY


def int8(r: Results) -> list[str]:
    """fp32 and INT8 side by side: the same server, export and photos, in the same run."""
    held = r.int8["holdout"]
    rows = []
    for label, run, ceil in (
        ("fp32", r.runs["pounce"], r.ceiling),
        ("INT8", r.runs["pounce-int8"], r.ceiling_int8),
    ):
        rows.append(
            [
                label,
                f"{run.tuned.throughput:.1f}",
                f"{run.tuned.p50_ms:.0f}",
                f"{run.tuned.p99_ms:.0f}",
                f"{run.single[LOAD_PHOTO].p50_ms:.1f}",
                f"{ceil.forward_best:.0f}",
                f"{ceil.with_decoding:.0f}",
                f"{run.rss_after_mb:.0f}",
                f"{run.cold_start_s:.2f}",
            ]
        )
    head = [
        "precision",
        f"img/s at c={C}",
        "p50 ms",
        "p99 ms",
        f"c=1 p50 ms ({LOAD_PHOTO})",
        "in-process forward img/s",
        "in-process with decoding img/s",
        "RSS after MB",
        "ready s",
    ]
    return [
        *table(head, rows),
        "",
        f"Agreement, measured by the compile on held-out photos ({held['folder']}, each as "
        f"it is and mirrored; calibrated on {r.int8['calibration']['images']} others): "
        f"fp32's answer on {agreement(held, r.int8['min_agreement'])}",
        "Layers kept float: " + ", ".join(f"`{name}`" for name in r.int8["float_layers"]) + ".",
    ]


def concurrency(r: Results) -> list[str]:
    rows = [([name, str(c)], run.loads[c]) for name, run in r.runs.items() for c in CONCURRENCY]
    return load_table(["server", "c"], rows)


def single_images(r: Results) -> list[str]:
    names = list(r.runs)
    head = ["photo", "size", "in-process: decode + preprocess ms", "in-process: one image ms"]
    rows = [
        [
            photo,
            f"{size // 1024} KB",
            f"{r.ceiling.decode_ms[photo]:.1f}",
            f"{r.ceiling.single_ms[photo]:.1f}",
            *(f"{r.runs[name].single[photo].p50_ms:.1f}" for name in names),
        ]
        for photo, size in r.photo_sizes.items()
    ]
    return table(head + [f"{name} p50 ms" for name in names], rows)


def memory(r: Results) -> list[str]:
    head = ["server", "setting", "ready s", "RSS when ready MB", "RSS after its requests MB"]
    rows = [
        [
            run.name,
            run.setting,
            f"{run.cold_start_s:.2f}",
            f"{run.rss_ready_mb:.0f}",
            f"{run.rss_after_mb:.0f}",
            f"{run.requests:,}",
        ]
        for run in r.runs.values()
    ]
    steps = [[step["step"], f"{step['s']:.2f}", str(step["rss_mb"])] for step in r.startup]
    return [
        *table([*head, "requests"], rows),
        "",
        "What one Pounce process's start-up goes to, step by step in a fresh process:",
        "",
        *table(["step", "seconds (cumulative)", "RSS MB (cumulative)"], steps),
    ]


def ceiling(r: Results) -> list[str]:
    ceil = r.ceiling
    streams, threads, batch = ceil.best
    pairs = sorted({(s, t) for s, t, _ in ceil.forward})
    rows = [[f"{s} x {t}", *(f"{ceil.forward[(s, t, b)]:.1f}" for b in BATCHES)] for s, t in pairs]
    return [
        f"Best setting: {streams} parallel stream(s) of {threads} intra-op thread(s), batch "
        f"{batch}: {ceil.forward_best:.1f} img/s for the forward pass alone, "
        f"{ceil.with_decoding:.1f} img/s with each stream also decoding and preprocessing "
        f"the {LOAD_PHOTO} photo.",
        "",
        *table(["streams x intra-op threads", *(f"batch {b} img/s" for b in BATCHES)], rows),
    ]


def tuning(r: Results) -> list[str]:
    best = r.best_litserve
    litserve = [
        ([f"**{v.setting}** (best)" if v is best else v.setting], v.result) for v in r.litserve
    ]
    pounce = [([f"**{r.pounce_defaults}** (the defaults)"], r.runs["pounce"].tuned)]
    pounce += [([v.setting], v.result) for v in r.pounce]
    return [
        f"## LitServe's settings at c={C}",
        "",
        "Each in a fresh server; the best one is measured at every concurrency above and is "
        "the one the targets compare against.",
        "",
        *load_table(["setting"], litserve),
        "",
        f"## Choosing Pounce's defaults at c={C}",
        "",
        f"Each in a fresh server, except the defaults (their c={C} run above). Peak RSS is the "
        "whole process tree's (with WEB_CONCURRENCY=2: uvicorn's supervisor and both workers).",
        "",
        *load_table(["setting"], pounce),
    ]


def kinds(r: Results) -> list[str]:
    """A model of each other kind beside the classifier, the same server and photo."""
    head = ["kind", "network and input", f"img/s c={C}", "p50 ms", "p99 ms", "c=1 ms"]
    head += ["RSS ready MB", "RSS after MB"]
    runs = [("single-label (the default model)", r.runs["pounce"]), *r.kinds.items()]
    rows = []
    for kind, run in runs:
        result, alone = run.loads[C], run.single[LOAD_PHOTO]
        rows.append(
            [
                kind,
                "EfficientNet-Lite0, 224x224" if run is r.runs["pounce"] else run.setting,
                f"{result.throughput:.1f}",
                f"{result.p50_ms:.0f}",
                f"{result.p99_ms:.0f}",
                f"{alone.p50_ms:.1f}",
                f"{run.rss_ready_mb:.0f}",
                f"{run.rss_after_mb:.0f}",
            ]
        )
    return [
        *table(head, rows),
        "",
        f"Each served by Pounce's defaults and loaded with the {LOAD_PHOTO} photo; the "
        "segmentation model's answers carry the mask at the photo's size (a palette PNG).",
    ]


def markdown(r: Results) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `make bench` on {r.when}: {r.machine}; {r.versions}. Every server ran "
        "alone on this machine, one after another, over real HTTP on 127.0.0.1, loaded by wrk "
        f"(on the same cores) with the same photos; concurrency sweeps send the {LOAD_PHOTO} "
        f"photo ({r.photo_sizes[LOAD_PHOTO] // 1024} KB JPEG).",
        "",
        "## Targets",
        "",
        *rendered(targets(r)),
        "",
        f"## Throughput and latency by concurrency ({LOAD_PHOTO} photo)",
        "",
        *concurrency(r),
        "",
        "![throughput and p99 by concurrency](benchmarks.png)",
        "",
        "## One image at a time (c=1), by photo",
        "",
        *single_images(r),
        "",
        "## Start-up and memory",
        "",
        *memory(r),
        "",
        "## Phone photos: exact and fast decoding",
        "",
        *decoding.section(r),
        "",
        "## Explanations (explain=true)",
        "",
        *(
            explanations.section(r.explanations)
            if r.explanations
            else ["Not measured in this run."]
        ),
        "",
        "## INT8 beside fp32",
        "",
        *int8(r),
        "",
        "## Other kinds of model",
        "",
        *(kinds(r) if r.kinds else ["Not measured in this run."]),
        "",
        "## ONNX in-process ceiling (no HTTP)",
        "",
        *ceiling(r),
        "",
        *tuning(r),
        "",
        notes(r),
    ]
    return "\n".join(lines)


def plot(r: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, run in r.runs.items():
        cs = list(run.loads)
        left.plot(cs, [run.loads[c].throughput for c in cs], marker="o", label=name)
        right.plot(cs, [run.loads[c].p99_ms for c in cs], marker="o", label=name)
    for axis, title in ((left, "throughput (images/s)"), (right, "p99 latency (ms)")):
        axis.set_xscale("log", base=2)
        axis.set_xticks(list(CONCURRENCY), [str(c) for c in CONCURRENCY])
        axis.set_xlabel("concurrent connections")
        axis.set_title(title)
        axis.grid(alpha=0.3)
    right.set_yscale("log")
    left.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(r: Results, folder: Path) -> tuple[Path, Path]:
    folder.mkdir(exist_ok=True)
    page, image = folder / "benchmarks.md", folder / "benchmarks.png"
    page.write_text(markdown(r))
    plot(r, image)
    return page, image
