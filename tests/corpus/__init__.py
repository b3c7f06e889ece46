"""The learner corpus: learners built the way the fastai book and the 2022 course build them.

`python -m tests.corpus OUT` (tests/corpus/__main__.py) runs under either fastai line
(for 2.7, with its overlay first on PYTHONPATH: compiler/fastai_lines.py): each
learner is trained for one short epoch on small synthetic pictures made here (no
download, no pretrained weights), exported to OUT/<name>.pkl as a user would, and
predicted by `learn.predict` on the probe pictures, into OUT/<name>.json with the
line's version. tests/test_corpus.py compiles each export in a fresh process,
serves it over HTTP and compares the answers.

- classifiers.py: the classifier shapes (docs/models.md's table is made from them);
- others.py: vision learners that are not classifiers, and learners that are not
  vision learners;
- catalog.py: their names and descriptions, read without importing fastai;
- __main__.py: the "notebook": the functions it defines, pickled by reference from
  `__main__` by fastai 2.7, and the build;
- compiling.py: the compiler, run on the exports one after another in one process of
  their line (`python -m tests.corpus.compiling`);
- compiled.py: the `corpus` fixture: built, compiled and cached by (line, learner), in
  the background, as the tests need them.

This module imports no fastai: the unit tests read its names.
"""

import random
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw

LABELS = ("disc", "square")
PROBES = {"wide-300x100": (300, 100), "tall-100x180": (100, 180), "small-64x64": (64, 64)}
SCENES = {"scene-wide-300x100": (300, 100), "scene-tall-100x180": (100, 180)}  # for others.py
SIZE = (96, 72)  # the training pictures'; the probes have other sizes and aspect ratios
WINDOWS = "ch1_is_cat_windows"  # ch1_is_cat again, exported as if on Windows
# The other kinds the page draws: trained (by the 2.8 line) to find the disc and the square.
DRAWN = ("regression", "keypoints", "segmentation")


def registrar(recipes: dict[str, Callable[[Path], object]]) -> Callable:
    """A decorator adding the function it decorates to `recipes`. Its arguments describe
    the learner for docs/models.md's table (source, factory, item_tfms, batch_tfms,
    architecture): catalog.py reads them from the source, as literals."""

    def shape(source: str, factory: str, items: str, batch: str, architecture: str) -> Callable:
        def register(make: Callable[[Path], object]) -> Callable[[Path], object]:
            recipes[make.__name__] = make
            return make

        return register

    return shape


def place(size: tuple[int, int], rng: random.Random) -> tuple[int, int, int]:
    """Where a shape goes on a picture of `size`: left, top and side."""
    side = rng.randrange(min(size) // 3, min(size) * 2 // 3)
    return rng.randrange(0, size[0] - side), rng.randrange(0, size[1] - side), side


def picture(label: str, size: tuple[int, int], rng: random.Random) -> Image.Image:
    """A flat background with a disc or a square of another colour on it."""
    image = Image.new("RGB", size, tuple(rng.randrange(40, 120) for _ in range(3)))
    x, y, side = place(size, rng)
    fill = tuple(rng.randrange(150, 255) for _ in range(3))
    draw = ImageDraw.Draw(image)
    (draw.ellipse if label == "disc" else draw.rectangle)([x, y, x + side, y + side], fill=fill)
    return image


def scene(size: tuple[int, int], rng: random.Random) -> tuple[Image.Image, Image.Image, dict]:
    """What others.py's learners learn from: a red disc and a small blue square on a
    grey of some brightness; its mask (0 background, 1 disc, 2 square); the facts."""
    x, y, side = place(size, rng)
    small = max(4, min(size) // 6)
    sx, sy = rng.randrange(0, size[0] - small), rng.randrange(0, size[1] - small)
    level = rng.random()
    image = Image.new("RGB", size, tuple(int(40 + level * 200) for _ in range(3)))
    mask = Image.new("L", size, 0)
    for picture, disc, square in ((image, (200, 30, 30), (30, 30, 200)), (mask, 1, 2)):
        draw = ImageDraw.Draw(picture)
        draw.ellipse([x, y, x + side, y + side], fill=disc)
        draw.rectangle([sx, sy, sx + small - 1, sy + small - 1], fill=square)
    facts = {
        "level": level,
        "disc": (x + side / 2, y + side / 2),
        "square": (sx + small / 2, sy + small / 2),
    }
    return image, mask, facts


def pictures(root: Path, layout: str, count: int = 16) -> list[Path]:
    """`count` pictures under root, named the way a factory reads its labels: "name"
    (pets: Disc_3.png for a disc, lower-case for a square, so `is_cat` tells them
    apart), or "folder" (root/<label>/3.png)."""
    rng = random.Random(0)
    made = []
    for index in range(count):
        label = LABELS[index % 2]
        if layout == "name":
            path = root / f"{label.capitalize() if label == 'disc' else label}_{index}.png"
        else:
            path = root / label / f"{index}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        picture(label, SIZE, rng).save(path)
        made.append(path)
    return made
