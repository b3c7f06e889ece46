"""What one serving process's start-up time and memory go to, step by step.

Run as its own process by bench/run.py (python -m bench.startup); prints JSON.
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
    import torch  # noqa: F401

    mark("import torch")
    from app.torchvision_compat import ensure_torchvision

    ensure_torchvision()
    mark("import torchvision")
    import fastai.learner
    import fastai.vision.core  # noqa: F401

    mark("import fastai (pandas, matplotlib, ...)")
    import app.main

    mark("import the app (starlette, aiohttp, ...)")
    classifier = app.main.Classifier.load(Path("export.pkl"))
    mark("unpickle the learner, TorchScript trace")
    classifier.warm_up()
    mark("warm-up prediction")
    print(json.dumps(steps))


if __name__ == "__main__":
    main()
