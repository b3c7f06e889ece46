"""What an explained prediction costs beside a plain one, in a process of its own, no HTTP.

Per photo, one image at a time on the server's intra-op threads, with the allocator set
as the server sets it: the whole of a plain answer (decode, preprocess, the forward pass,
the kind's answer) and of an explained one (the same, with the graph's explaining branch
and the map drawn as app/pipeline.py's Pipeline._answer draws it), timed in alternation
so that both see the same machine; then each step alone, to say where the difference
goes. And the memory one explanation's drawing holds, beside a segmentation mask's at
MAX_MASK_MEGAPIXELS on the same photo (the limit masks keep, docs/models.md).

    python -m bench.explain_cost MODEL FOLDER THREADS REPEAT --out PICKLE
"""

import argparse
import pickle
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.inference.explanation import Explainer
from app.inference.model import Model
from app.kinds import Prediction, kind_of
from app.ops.memory import tune_malloc
from app.settings import load_settings
from bench.ceiling import child_result, median_ms

MASK_CLASSES = 3  # as bench/kinds.py's segmentation model


@dataclass
class Explained:
    """Per photo, in ms unless named otherwise."""

    plain_ms: dict[str, float]  # decode + preprocess + forward pass + the kind's answer
    explained_ms: dict[str, float]  # the same with explain=true: the head's pass, the map drawn
    decode_ms: dict[str, float]  # decode + preprocess
    forward_ms: dict[str, float]  # the plain forward pass
    explain_forward_ms: dict[str, float]  # the forward pass with the explaining branch
    draw_ms: dict[str, float]  # the explanation: the map over the photo, its PNG, base64
    map_ms: dict[str, float]  # of which the map over the photo alone (uint8)
    heatmap_size: dict[str, tuple[int, int]]  # width, height
    png_kb: dict[str, float]  # the heatmap's PNG
    feature_map: tuple[int, int]  # the cells the head is run on, alone: rows, columns
    memory_photo: str  # the photo the memory figures are for
    draw_mib: float  # the most the explanation's drawing held at once (tracemalloc)
    mask_mib: float  # the same for a mask's answer at MAX_MASK_MEGAPIXELS
    mask_ms: float  # and that mask's time
    mask_size: tuple[int, int]

    def ratio(self, photo: str) -> float:
        return self.explained_ms[photo] / self.plain_ms[photo]


def alternating(first: Callable[[], object], second: Callable[[], object], repeat: int) -> tuple:
    """Median ms of each of two steps, run turn about (two warm-up turns left out)."""
    times: tuple[list[float], list[float]] = ([], [])
    for turn in range(repeat + 2):
        for step, kept in ((first, times[0]), (second, times[1])):
            started = time.perf_counter()
            step()
            if turn >= 2:
                kept.append((time.perf_counter() - started) * 1000)
    return statistics.median(times[0]), statistics.median(times[1])


def traced_mib(step: Callable[[], object]) -> float:
    """The most `step` held at once, as tracemalloc sees it (numpy's arrays and Python's
    objects; not Pillow's own copy of an image, a byte a pixel for both images here)."""
    step()
    tracemalloc.start()
    try:
        step()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


class Answers:
    """The default model's answers to a photo, plain and explained, as the server gives them."""

    def __init__(self, path: Path, threads: int) -> None:
        self.settings = load_settings({"MODEL_PATH": str(path)})
        self.model = Model.load(path, threads=threads)
        self.kind = kind_of(self.model.info, self.settings.kind_defaults)
        megapixels = self.settings.max_heatmap_megapixels
        self.explainer = Explainer(self.model.preprocessor, megapixels * 1_000_000)
        self.options: dict[str, Any] = self.kind.options({})

    def prepared(self, data: bytes) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
        """Decoded and preprocessed: the graph's input, the photo's size, the decoded size."""
        image = self.model.decode(data, self.settings.max_image_pixels)
        return self.model.preprocess(image), image.info["photo_size"], image.size

    def plain(self, data: bytes) -> dict[str, Any]:
        x, size, decoded = self.prepared(data)
        return self.kind.answer(Prediction(self.model.infer([x])[0], size, decoded), self.options)

    def predicted(self, data: bytes) -> Prediction:
        x, size, decoded = self.prepared(data)
        outputs, cells = self.model.explain([x])
        return Prediction(outputs[0], size, decoded, cells=cells[0])

    def explained(self, data: bytes) -> dict[str, Any]:
        return self.answer(self.predicted(data))

    def answer(self, prediction: Prediction) -> dict[str, Any]:
        """As app/pipeline.py's Pipeline._answer, with explain=true."""
        found = self.kind.answer(prediction, self.options)
        index, target = self.kind.explain_target(prediction.output, self.options)
        found["explanation"] = self.explainer.explain(prediction, index, target)
        return found

    def figures(self, data: bytes, repeat: int) -> dict[str, Any]:
        """One photo's times, each a median of `repeat`."""
        x = self.prepared(data)[0]
        prediction = self.predicted(data)
        explanation = self.answer(prediction)["explanation"]
        index = self.kind.explain_target(prediction.output, self.options)[0]
        size = explanation["heatmap_size"]
        return {
            "whole": alternating(lambda: self.plain(data), lambda: self.explained(data), repeat),
            "forward": alternating(
                lambda: self.model.infer([x]), lambda: self.model.explain([x]), repeat
            ),
            "decode_ms": median_ms(lambda: self.prepared(data), repeat),
            "draw_ms": median_ms(lambda: self.explainer.explain(prediction, index, ""), repeat),
            "map_ms": median_ms(lambda: self.explainer.heatmap(prediction, index), repeat),
            "heatmap_size": (size["width"], size["height"]),
            "png_kb": len(explanation["heatmap"].split(",", 1)[1]) * 3 / 4 / 1024,
        }


def measure(path: Path, photos: dict[str, bytes], threads: int, repeat: int) -> Explained:
    answers = Answers(path, threads)
    figures = {name: answers.figures(data, repeat) for name, data in photos.items()}
    # The memory: the largest photo's explanation, and a mask's answer for it.
    predictions = {name: answers.predicted(data) for name, data in photos.items()}
    memory_photo = max(photos, key=lambda name: np.prod(predictions[name].size))
    held = predictions[memory_photo]
    index = answers.kind.explain_target(held.output, answers.options)[0]
    shape = [MASK_CLASSES, *answers.model.input_size[::-1]]
    segmentation = kind_of(
        {
            "kind": "segmentation",
            "classes": None,
            "output": {"shape": shape},
            "preprocessing": answers.model.info["preprocessing"],
        },
        answers.settings.kind_defaults,
    )
    scores = np.random.default_rng(0).random(shape, "f4")
    masked = Prediction(scores, held.size, held.decoded)
    mask = segmentation.answer(masked, {"mask": True})["mask_size"]
    return Explained(
        plain_ms={name: f["whole"][0] for name, f in figures.items()},
        explained_ms={name: f["whole"][1] for name, f in figures.items()},
        decode_ms={name: f["decode_ms"] for name, f in figures.items()},
        forward_ms={name: f["forward"][0] for name, f in figures.items()},
        explain_forward_ms={name: f["forward"][1] for name, f in figures.items()},
        draw_ms={name: f["draw_ms"] for name, f in figures.items()},
        map_ms={name: f["map_ms"] for name, f in figures.items()},
        heatmap_size={name: f["heatmap_size"] for name, f in figures.items()},
        png_kb={name: f["png_kb"] for name, f in figures.items()},
        feature_map=held.cells.shape[:2] if held.cells is not None else (0, 0),
        memory_photo=memory_photo,
        draw_mib=traced_mib(lambda: answers.explainer.explain(held, index, "")),
        mask_mib=traced_mib(lambda: segmentation.answer(masked, {"mask": True})),
        mask_ms=median_ms(lambda: segmentation.answer(masked, {"mask": True}), repeat),
        mask_size=(mask["width"], mask["height"]),
    )


def in_child(path: Path, folder: Path, threads: int, repeat: int) -> Explained:
    """measure() in a fresh process, on the photos saved as `folder`/<name>.jpg, with the
    allocator as the server sets it."""
    args = [str(path), str(folder), str(threads), str(repeat)]
    explained: Explained = child_result("bench.explain_cost", args, folder / "explain-cost.pickle")
    return explained


def main() -> None:
    parser = argparse.ArgumentParser(description="measure() in this process, pickled to --out")
    parser.add_argument("model", type=Path)
    parser.add_argument("folder", type=Path)
    parser.add_argument("threads", type=int)
    parser.add_argument("repeat", type=int)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    tune_malloc()  # first, before any thread starts, as app/cli.py does
    paths = sorted(args.folder.glob("*.jpg"), key=lambda path: path.stat().st_size)
    photos = {path.stem: path.read_bytes() for path in paths}
    args.out.write_bytes(pickle.dumps(measure(args.model, photos, args.threads, args.repeat)))


if __name__ == "__main__":
    # Imported again as bench.explain_cost, so that the pickled record unpickles elsewhere.
    from bench.explain_cost import main as run

    run()
