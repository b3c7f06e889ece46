"""Learners the tests build and export the way a user would (`learn.export()`).

- `tiny_learner`: a small untrained CNN behind any item and batch transforms (squish,
  pad, RandomResizedCrop, aug_transforms...), built with a DataBlock: what translating
  a pipeline is tested on, where the network is beside the point.
- `train_digits`: a tiny greyscale CNN trained in seconds on scikit-learn's digits.
- `train_colours`: a tiny multi-label CNN trained in seconds on pictures that each
  carry two or three coloured squares, labelled with their colours.
- `custom_layer_learner`: a small network with a layer the ONNX exporter can't export.
"""

import shutil
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from app.inference.metadata import sha256_of
from tests.cache import COMPILING, REQUIREMENTS, Cache, key
from tests.helpers import fastai_vision

# The default model's normalisation (scripts/build_default_model.py).
MEAN, STD = [127 / 255] * 3, [128 / 255] * 3


def cached(cache: Cache, train: Callable[[Path], Path]) -> Path:
    """The export `train` makes (one of this module's `train_*`), from the test cache, or
    trained into it when this module, the requirements or the versions changed."""

    def build(folder: Path) -> None:
        (folder / "training").mkdir()
        made = train(folder / "training")
        shutil.move(made, folder / made.name)
        shutil.rmtree(folder / "training")

    entry_key = key(("tests/learners.py", *REQUIREMENTS), {"learner": train.__name__})
    folder = cache.make(f"trained-{train.__name__}", entry_key, build)
    return next(folder.glob("*.pkl"))


def compiled(cache: Cache, export: Path) -> Path:
    """`export` compiled by this checkout's compiler (in this process), from the test
    cache while neither the export nor what compiles it changed."""

    def build(folder: Path) -> None:
        from compiler.main import compile_file

        compile_file(export, folder / f"{export.stem}.onnx", say=lambda line: None)

    entry_key = key(COMPILING, {"export": sha256_of(export)})
    return cache.make(f"compiled-{export.stem}", entry_key, build) / f"{export.stem}.onnx"


def _export(
    folder: Path,
    name: str,
    network: object,
    vocab: list[str],
    item_tfms: list,
    batch_tfms: list | None = None,
) -> Path:
    """`network` behind a DataBlock of `vocab` and these transforms, exported to
    folder/name as a user would. DataLoaders need items to be built, so one sample
    image stands in; `export` drops it again."""
    fastai_vision()  # torchvision first
    from fastai.vision.all import (
        CategoryBlock,
        CrossEntropyLossFlat,
        DataBlock,
        ImageBlock,
        ItemGetter,
        Learner,
    )

    folder.mkdir(parents=True, exist_ok=True)
    sample = folder / "sample.png"
    Image.new("RGB", (64, 48), 127).save(sample)
    dls = DataBlock(
        blocks=(ImageBlock, CategoryBlock(vocab=vocab, sort=False)),
        get_x=ItemGetter(0),
        get_y=ItemGetter(1),
        splitter=lambda items: ([0], [1]),
        item_tfms=item_tfms,
        batch_tfms=batch_tfms,
    ).dataloaders([(sample, vocab[0]), (sample, vocab[1])], bs=1, num_workers=0)
    Learner(dls, network, loss_func=CrossEntropyLossFlat(), path=folder).export(name)
    return folder / name


def tiny_learner(folder: Path, item_tfms: list, batch_tfms: list | None = None) -> Path:
    """A small CNN of ten classes, its weights drawn from a fixed seed, behind `item_tfms`
    and `batch_tfms` and the default model's Normalize, exported to folder/export.pkl."""
    import torch

    fastai_vision()  # torchvision first
    from fastai.vision.all import Normalize

    torch.manual_seed(0)
    network = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 5, stride=4),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 10),
    )
    normalize = Normalize.from_stats(MEAN, STD)
    vocab = [f"class {index}" for index in range(10)]
    return _export(
        folder, "export.pkl", network, vocab, item_tfms, [*(batch_tfms or []), normalize]
    )


def _fit_and_export(learn: object, epochs: int, at_least: float, name: str) -> Path:
    """Train (one cycle), check the learner learned, and export it as a user would."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learn.fit_one_cycle(epochs, 1e-2)
    assert learn.validate()[1] > at_least
    learn.export(name)
    return learn.path / name


def digit_image(pixels: np.ndarray) -> Image.Image:
    """An 8x8 digit (values 0-16) as a 28x28 black-on-white greyscale picture."""
    grey = (255 - pixels.reshape(8, 8) * 15).clip(0, 255).astype(np.uint8)
    return Image.fromarray(grey, "L").resize((28, 28), Image.NEAREST)


def train_digits(root: Path) -> Path:
    """fastai's SimpleCNN on PILImageBW digits, exported to root/digits.pkl."""
    fastai_vision()  # torchvision first
    from fastai.vision.all import (
        CategoryBlock,
        DataBlock,
        GrandparentSplitter,
        ImageBlock,
        Learner,
        PILImageBW,
        SimpleCNN,
        accuracy,
        get_image_files,
        parent_label,
        set_seed,
    )
    from sklearn.datasets import load_digits

    digits = load_digits()
    for index, (pixels, target) in enumerate(zip(digits.data, digits.target, strict=True)):
        folder = root / ("valid" if index % 5 == 0 else "train") / str(target)
        folder.mkdir(parents=True, exist_ok=True)
        digit_image(pixels).save(folder / f"{index}.png")
    dls = DataBlock(
        blocks=(ImageBlock(cls=PILImageBW), CategoryBlock),
        get_items=get_image_files,
        splitter=GrandparentSplitter(),
        get_y=parent_label,
    ).dataloaders(root, bs=64, num_workers=0)
    set_seed(0, reproducible=True)
    learn = Learner(dls, SimpleCNN([1, 16, 32, 64, 10]), metrics=accuracy, path=root)
    return _fit_and_export(learn, epochs=8, at_least=0.8, name="digits.pkl")


# The multi-label fixture's labels: the colours of the squares a picture carries.
COLOURS = {
    "blue": (30, 60, 220),
    "green": (30, 180, 40),
    "red": (220, 30, 30),
    "white": (250, 250, 250),
    "yellow": (240, 220, 20),
}


def colour_picture(names: list[str], rng: np.random.Generator) -> Image.Image:
    """A grey 48x48 picture with a 12x12 square of each named colour, placed at random."""
    from PIL import ImageDraw

    picture = Image.new("RGB", (48, 48), (110, 110, 110))
    draw = ImageDraw.Draw(picture)
    for name in names:
        x, y = (int(v) for v in rng.integers(0, 36, size=2))
        draw.rectangle([x, y, x + 11, y + 11], fill=COLOURS[name])
    return picture


def colour_names(rng: np.random.Generator) -> list[str]:
    """Two or three of the colours, sorted."""
    return sorted(str(n) for n in rng.choice(list(COLOURS), size=rng.integers(2, 4), replace=False))


def colour_pictures(count: int, seed: int = 1) -> list[tuple[list[str], bytes]]:
    """Fresh PNG pictures (not the training set), each with the colours it carries."""
    from tests.helpers import encode

    rng = np.random.default_rng(seed)
    made = []
    for _ in range(count):
        names = colour_names(rng)
        made.append((names, encode(colour_picture(names, rng), "PNG")))
    return made


def train_colours(root: Path) -> Path:
    """A multi-label learner (MultiCategoryBlock, so BCEWithLogitsLossFlat at threshold
    0.5) on 400 pictures, exported to root/colours.pkl."""
    import torch

    fastai_vision()  # torchvision first
    from fastai.vision.all import (
        DataBlock,
        ImageBlock,
        ItemGetter,
        Learner,
        MultiCategoryBlock,
        Resize,
        accuracy_multi,
        set_seed,
    )

    rng = np.random.default_rng(0)
    items = []
    for index in range(400):
        names = colour_names(rng)
        path = root / f"{index}.png"
        colour_picture(names, rng).save(path)
        items.append([path, names])  # lists, not tuples: fastai maps transforms over tuples
    dls = DataBlock(
        blocks=(ImageBlock, MultiCategoryBlock),
        get_x=ItemGetter(0),
        get_y=ItemGetter(1),
        splitter=lambda items: (list(range(320)), list(range(320, 400))),
        item_tfms=Resize(48),
    ).dataloaders(items, bs=32, num_workers=0)
    set_seed(0, reproducible=True)
    network = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveMaxPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(32, len(COLOURS)),
    )
    learn = Learner(dls, network, metrics=accuracy_multi, path=root)
    return _fit_and_export(learn, epochs=10, at_least=0.95, name="colours.pkl")


# A module of the user's, defining a layer built on torch.logaddexp, which the ONNX
# exporter has no form for. The second half is docs/models.md's fix: an ONNX form for the
# operation, registered when the module is imported (unpickling the learner imports it).
CUSTOM_LAYER_MODULE = """
import torch


class LogCosh(torch.nn.Module):
    def forward(self, x):
        return torch.logaddexp(x, -x) - 0.6931471805599453
"""
ONNX_FORM = """

def _logaddexp(g, a, b):
    return g.op("Log", g.op("Add", g.op("Exp", a), g.op("Exp", b)))


torch.onnx.register_custom_op_symbolic("aten::logaddexp", _logaddexp, 17)
"""


def custom_layer_learner(folder: Path, module: str) -> Path:
    """A small CNN with a `LogCosh` layer from `module` (written in `folder`, which
    must be on sys.path), exported to folder/custom.pkl."""
    import importlib

    import torch

    fastai_vision()  # torchvision first
    from fastai.vision.all import Resize, set_seed

    (folder / f"{module}.py").write_text(textwrap.dedent(CUSTOM_LAYER_MODULE))
    layers = importlib.import_module(module)
    set_seed(0, reproducible=True)
    network = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2),
        layers.LogCosh(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 3),
    )
    return _export(folder, "custom.pkl", network, ["a", "b", "c"], [Resize(32)])
