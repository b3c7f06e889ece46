"""What one serving process's start-up time and memory go to, step by step.

Run as its own process by bench/run.py (python -m bench.startup), from the
repository root with the app's default settings; prints JSON.
"""

import json
import time
from pathlib import Path


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    steps = []
    started = time.perf_counter()

    def mark(name: str) -> None:
        steps.append({"step": name, "rss_mb": round(rss_mb()), "s": time.perf_counter() - started})

    mark("python")
    import numpy  # noqa: F401
    import onnxruntime  # noqa: F401
    import PIL.Image  # noqa: F401

    mark("import onnxruntime, numpy, Pillow")
    import uvicorn  # noqa: F401

    import app.main  # noqa: F401

    mark("import the app (starlette, uvicorn, aiohttp, ...)")
    from app.inference.loading import load_model
    from app.settings import load_settings

    model = load_model(load_settings())
    mark("find the compiled model, load it into ONNX Runtime")
    model.warm_up()
    mark("warm-up prediction")
    print(json.dumps(steps))


if __name__ == "__main__":
    main()
