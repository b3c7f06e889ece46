"""`python -m tests.corpus OUT [NAME...]`: build the corpus with this process's fastai line.

This module is the corpus's notebook: it runs as `__main__`, so fastai 2.7 pickles
the functions and the class it defines by reference to `__main__`, exactly as from a
notebook, and the compiler has to do without them (fastai 2.8 pickles them by value).
"""

import inspect
import json
import pathlib
import random
import sys
import types
from pathlib import Path

from compiler.torchvision_compat import ensure_torchvision
from tests.corpus import DRAWN, LABELS, PROBES, SCENES, WINDOWS, picture, scene

ensure_torchvision()  # before fastai is imported (see compiler/torchvision_compat.py)

import fastai  # noqa: E402
import torch  # noqa: E402
from fastai.vision.all import L, Learner, PILImage, set_seed, tensor  # noqa: E402


def is_cat(name: str) -> bool:  # fastbook ch. 1's label function
    return name[0].isupper()


def brightness_of(path: Path) -> float:  # the pictures of others.drawn are named by it
    return float(path.name.split("_")[1])


def bright_or_dark(path: Path) -> str:
    return "bright" if brightness_of(path) > 0.5 else "dark"


def centres_of(path: Path) -> torch.Tensor:  # the disc's centre, the square's
    _, _, x, y, sx, sy = path.stem.split("_")
    return tensor([[float(x), float(y)], [float(sx), float(sy)]])


def mask_of(path: Path) -> Path:
    return path.parent / "masks" / path.name


class NotebookNet(torch.nn.Module):
    """A network class defined in the notebook."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(8, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


from tests.corpus.classifiers import SHAPES  # noqa: E402 - after the notebook's names
from tests.corpus.others import OTHERS  # noqa: E402


def windows_pickle_module() -> types.ModuleType:
    """A pickle module whose pickler writes every path as `pathlib.WindowsPath`, as an
    export made on Windows holds (a Linux pickler can't make one any other way)."""
    export = inspect.signature(Learner.export).parameters["pickle_module"].default
    base = export.Pickler  # the line's own: pickle (2.7) or cloudpickle (2.8)

    class WindowsPickler(base):
        def reducer_override(self, obj: object) -> object:
            if isinstance(obj, pathlib.PosixPath):
                return pathlib.WindowsPath, ("C:\\Users\\me\\" + obj.name,)
            parent = getattr(super(), "reducer_override", None)
            return parent(obj) if parent else NotImplemented

    module = types.ModuleType("windows_pickle")
    module.Pickler = WindowsPickler
    return module


def references(learn: Learner, probes: Path) -> list[dict]:
    """learn.predict on each probe picture: the decoded labels and every probability."""
    answers = []
    vocab = [str(v) for v in learn.dls.vocab]
    for name in PROBES:
        with learn.no_bar():
            decoded, _, probs = learn.predict(PILImage.create(probes / f"{name}.png"))
        many = isinstance(decoded, list | L)
        labels = [str(label) for label in decoded] if many else [str(decoded)]
        probabilities = dict(zip(vocab, map(float, probs), strict=True))
        answers.append({"probe": name, "labels": labels, "probabilities": probabilities})
    return answers


# The learners of others.py that answer something else than classes.
VISION = ("regression", "keypoints", "keypoints_book", "keypoints_padded", "segmentation")


def outputs(learn: Learner, probes: Path) -> list[dict]:
    """learn.predict on each probe scene: its raw output and what it decoded (values,
    points in the model's frame, a mask in the model's frame)."""
    answers = []
    for name in SCENES:
        with learn.no_bar():
            decoded, _, raw = learn.predict(PILImage.create(probes / f"{name}.png"))
        decoded = decoded if isinstance(decoded, torch.Tensor) else raw
        answers.append({"probe": name, "raw": raw.tolist(), "decoded": decoded.tolist()})
    return answers


def build(out: Path, only: list[str]) -> None:
    """Every learner, or those named in `only`, in that order."""
    probes = out / "probes"
    probes.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    for index, (name, size) in enumerate(PROBES.items()):
        picture(LABELS[index % 2], size, rng).save(probes / f"{name}.png")
    for name, size in SCENES.items():
        scene(size, rng)[0].save(probes / f"{name}.png")
    torch.set_num_threads(1)  # the lines build side by side
    recipes = {**SHAPES, **OTHERS}
    for name in only or list(recipes):
        set_seed(0, reproducible=True)
        learn = recipes[name](out / "data" / name)
        learn.path = out
        with learn.no_bar(), learn.no_logging():
            if name in DRAWN and fastai.__version__.startswith("2.8"):
                # Enough to find the disc and the square: the page's pictures and INT8's
                # agreement are the 2.8 line's (tests/test_browser.py, tests/test_corpus.py).
                learn.fit_one_cycle(6, 1e-2)
            else:
                learn.fit(1, 1e-3)
        learn.export(out / f"{name}.pkl")
        record = {"shape": name, "fastai": fastai.__version__}
        if name in SHAPES:
            record["probes"] = references(learn, probes)
        elif name in VISION:
            record["probes"] = outputs(learn, probes)
        (out / f"{name}.json").write_text(json.dumps(record))
        if name == "ch1_is_cat":
            learn.export(out / f"{WINDOWS}.pkl", pickle_module=windows_pickle_module())
            (out / f"{WINDOWS}.json").write_text(json.dumps({**record, "shape": WINDOWS}))
        print(name, flush=True)


build(Path(sys.argv[1]).resolve(), sys.argv[2:])
