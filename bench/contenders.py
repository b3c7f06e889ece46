"""The servers measured, and the settings tried for each.

All four serve the same model (the ONNX file compiled from export.pkl, or export.pkl
itself for the two torch servers) and take the same multipart upload.
"""

import sys
from pathlib import Path

from app.settings import Settings, load_settings
from bench.servers import ROOT, Server

PYTHON = sys.executable
EXPORT = {"MODEL_PATH": str(ROOT / "export.pkl")}
# Pounce's alternatives to its defaults, to choose them (any equal to the defaults is skipped).
POUNCE_VARIANTS = [
    {"INFERENCE_WORKERS": "1"},
    {"INFERENCE_WORKERS": "3"},
    {"INFERENCE_WORKERS": "1", "INTRA_OP_THREADS": "2"},
    {"MICROBATCH_MAX_SIZE": "1"},
    {"MICROBATCH_MAX_SIZE": "2"},
    {"MICROBATCH_MAX_SIZE": "8"},
    {"MEMORY_ARENA": "false"},
    {"WEB_CONCURRENCY": "2"},
]
# LitServe's settings tried, as its docs suggest tuning it: (workers_per_device, ONNX
# intra-op threads per worker, max_batch_size, fast_queue).
LITSERVE_SETTINGS = [
    (1, 2, 1, False),
    (1, 2, 4, False),
    (1, 2, 8, False),
    (2, 1, 1, False),
    (2, 1, 4, False),
    (2, 1, 8, False),
    (1, 1, 8, False),
    (2, 2, 8, False),
    (2, 1, 8, True),
]
LITSERVE_BATCH_TIMEOUT_S = 0.01  # the docs' example value when batching
Setting = tuple[str, dict[str, str]]  # in words, and as environment variables


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


def describe(settings: Settings) -> str:
    """A Pounce setting in words, as the tables show it."""
    text = f"{plural(settings.inference_workers, 'worker')} x "
    text += f"{plural(settings.intra_op_threads, 'thread')}, "
    text += f"batches up to {settings.microbatch_max_size}"
    if settings.microbatch_max_wait_ms:
        text += f", wait {settings.microbatch_max_wait_ms:g} ms"
    if not settings.memory_arena:
        text += ", no memory arena"
    if settings.web_concurrency > 1:
        text = f"{settings.web_concurrency} processes (WEB_CONCURRENCY), each {text}"
    return text


def pounce(env: dict[str, str], name: str = "pounce") -> Server:
    """`python -m app serve`: the defaults, changed by `env`."""
    setting = describe(load_settings(EXPORT | env))
    return Server(name, [PYTHON, "-m", "app", "serve"], "/api/predict", "/readyz", env, setting)


def pounce_int8(model: Path) -> Server:
    """The same server and defaults, serving the INT8 compile of the same export."""
    return pounce({"MODEL_PATH": str(model)}, name="pounce-int8")


def pounce_variants() -> list[Setting]:
    """POUNCE_VARIANTS in words, less any that the current defaults already are."""
    defaults = load_settings(EXPORT)
    variants = [(load_settings(EXPORT | env), env) for env in POUNCE_VARIANTS]
    return [(describe(settings), env) for settings, env in variants if settings != defaults]


def torchscript() -> Server:
    """The baseline, with the old defaults pinned, whatever Pounce's are now."""
    env = {
        "INFERENCE_WORKERS": "2",
        "INTRA_OP_THREADS": "1",
        "MICROBATCH_MAX_SIZE": "4",
        "MICROBATCH_MAX_WAIT_MS": "0",
    }
    setting = "2 workers x 1 torch thread, batches up to 4"
    command = [PYTHON, "-m", "bench.torchscript_server"]
    return Server("torchscript", command, "/api/predict", "/readyz", env, setting)


def naive() -> Server:
    """bench/naive_server.py: how the anchor apps serve, for scale."""
    command = [PYTHON, "-m", "bench.naive_server"]
    return Server("naive", command, "/predict", "/readyz", {}, "learn.predict in the handler")


def litserve(env: dict[str, str], setting: str = "") -> Server:
    """bench/litserve_server.py at one of litserve_settings()."""
    command = [PYTHON, "-m", "bench.litserve_server"]
    return Server("litserve", command, "/predict", "/health", env, setting)


def litserve_settings(model: Path) -> list[Setting]:
    """LITSERVE_SETTINGS in words and as bench/litserve_server.py's environment."""
    settings = []
    for workers, threads, batch, fast_queue in LITSERVE_SETTINGS:
        timeout = LITSERVE_BATCH_TIMEOUT_S if batch > 1 else 0
        words = f"{plural(workers, 'worker')} x {plural(threads, 'thread')}, batch {batch}"
        words += f", timeout {timeout * 1000:g} ms" if timeout else ""
        words += ", fast_queue" if fast_queue else ""
        env = {
            "MODEL_PATH": str(model),
            "LITSERVE_WORKERS": str(workers),
            "INTRA_OP_THREADS": str(threads),
            "LITSERVE_MAX_BATCH_SIZE": str(batch),
            "LITSERVE_BATCH_TIMEOUT": str(timeout),
            "LITSERVE_FAST_QUEUE": str(fast_queue).lower(),
        }
        settings.append((words, env))
    return settings
