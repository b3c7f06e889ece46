"""What one benchmark run measured: the records bench/run.py fills and bench/report.py writes."""

from dataclasses import dataclass, field

from bench.ceiling import Ceiling
from bench.explain_cost import Explained
from bench.load import LoadResult

CONCURRENCY = (1, 4, 16, 64)
LOAD_PHOTO = "2mp"  # the photo every concurrency sweep sends
TUNING_CONCURRENCY = 16  # where settings are compared, and the targets measured
SOAK_REQUESTS = 2000  # Pounce's memory is read after at least this many requests
PHONE_PHOTOS = ("2mp", "12mp")  # decoded exactly and at reduced scale, side by side
GLIBC = "exact, glibc's allocator"  # the exact path with the allocator left as glibc sets it


@dataclass(frozen=True)
class Budget:
    """How long each measurement runs, and how many requests it may send."""

    seconds: int  # per concurrency point
    requests: int  # per concurrency point
    single_seconds: int  # per photo at c=1
    single_requests: int
    ceiling_seconds: float  # per in-process setting


FULL = Budget(seconds=15, requests=3000, single_seconds=5, single_requests=200, ceiling_seconds=3)
QUICK = Budget(seconds=3, requests=600, single_seconds=2, single_requests=60, ceiling_seconds=1)


@dataclass
class ServerRun:
    """One server measured through the whole sweep."""

    name: str
    setting: str  # its settings in words
    cold_start_s: float
    rss_ready_mb: float
    single: dict[str, LoadResult] = field(default_factory=dict)  # c=1, per photo
    loads: dict[int, LoadResult] = field(default_factory=dict)  # per concurrency
    requests: int = 0  # answered with a status below 400, over its whole life
    rss_after_mb: float = 0.0

    @property
    def tuned(self) -> LoadResult:
        return self.loads[TUNING_CONCURRENCY]


@dataclass
class Variant:
    """One setting of a server, measured at TUNING_CONCURRENCY in a fresh process."""

    setting: str
    env: dict[str, str]
    result: LoadResult


def fastest(variants: list[Variant]) -> Variant:
    return max(variants, key=lambda variant: variant.result.throughput)


@dataclass
class DecodingRuns:
    """The exact path (the default) and the fast one (compile --fast-decode) on phone photos."""

    record: dict  # the fast compile's decoding record (compiler/decoding.py)
    ceilings: dict[str, Ceiling]  # "exact", "fast" and GLIBC, at the same setting
    loads: dict[str, dict[str, LoadResult]]  # "exact" and "fast": per phone photo, at c=16


@dataclass
class ExplanationRuns:
    """The default model's explained predictions (explain=true) beside its plain ones:
    in-process, and over HTTP by a fresh server for each, sent the same requests."""

    photo_sizes: dict[str, int]  # bytes per photo: the bench's, and the page's example photo
    cost: Explained  # in-process, per photo, and the drawing's memory beside a mask's
    single: dict[str, dict[str, LoadResult]]  # "plain" and "explained": c=1, per photo
    loads: dict[str, dict[str, LoadResult]]  # "plain" and "explained": c=16, per phone photo
    cpu_ms: dict[str, dict[str, float]]  # the same: the server's CPU time an answer, at c=16
    drawing_threads: int  # the server's prep threads, which draw the maps (and masks)

    def all_loads(self) -> list[LoadResult]:
        return [r for runs in (self.single, self.loads) for m in runs.values() for r in m.values()]


@dataclass
class Results:
    """Everything the page shows, so writing it needs nothing else."""

    when: str
    machine: str
    versions: str
    wrk_version: str
    budget: Budget
    photo_sizes: dict[str, int]  # bytes per photo
    startup: list[dict]
    ceiling: Ceiling
    runs: dict[str, ServerRun]
    litserve: list[Variant]  # every LitServe setting tried
    pounce: list[Variant]  # Pounce's settings beside its defaults
    pounce_defaults: str
    int8: dict  # the INT8 compile's quantization figures (compiler/quantize.py)
    ceiling_int8: Ceiling  # the same in-process ceiling, for the INT8 model
    decoding: DecodingRuns
    kinds: dict[str, ServerRun] = field(default_factory=dict)  # the other kinds, at c=16
    explanations: ExplanationRuns | None = None  # None in a run from before they were measured

    def all_loads(self) -> list[LoadResult]:
        """Every wrk run, for the load generator's own CPU use."""
        runs = (*self.runs.values(), *self.kinds.values())
        loads = [r for run in runs for r in (*run.single.values(), *run.loads.values())]
        loads += [r for photos in self.decoding.loads.values() for r in photos.values()]
        loads += self.explanations.all_loads() if self.explanations else []
        return loads + [v.result for v in (*self.litserve, *self.pounce)]

    @property
    def best_litserve(self) -> Variant:
        return fastest(self.litserve)
