"""Markdown tables, as the benchmark page writes them, and the words for an agreement a
compile measured (compiler/quantize.py's `agreement_of` figures)."""

from bench.load import LoadResult


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def load_table(labels: list[str], rows: list[tuple[list[str], LoadResult]]) -> list[str]:
    """Throughput, latency, errors and memory of wrk runs, one row each."""
    head = [*labels, "img/s", "p50 ms", "p95 ms", "p99 ms", "errors", "peak RSS MB"]
    head.append("wrk CPU: % of a core (of the machine)")
    return table(
        head,
        [
            [
                *cells,
                f"{r.throughput:.1f}",
                f"{r.p50_ms:.0f}",
                f"{r.p95_ms:.0f}",
                f"{r.p99_ms:.0f}",
                str(r.errors),
                f"{r.peak_rss_mb:.0f}",
                f"{r.wrk_core_pct:.1f}% ({r.wrk_machine_pct:.1f}%)",
            ]
            for cells, r in rows
        ],
    )


def agreement(held: dict, floor: float) -> str:
    """ "N of M (x%; ...), largest probability difference d (worst)" and what changed."""
    return (
        f"{held['same_labels']} of {held['images']} ({held['agreement']:.1%}; compiling "
        f"refuses below {floor:.0%}), largest probability difference "
        f"{held['max_abs_diff']:.3f} ({held['worst_image']})"
        + (f"; changed: {', '.join(held['changed'])}." if held["changed"] else ".")
    )
