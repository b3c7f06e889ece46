"""Learners the tests build and export the way a user would (`learn.export()`).

- `default_network_learner`: the default model's network and 1,000 classes behind
  other item transforms (squish, pad, RandomResizedCrop...), built with a DataBlock.
- `train_digits`: a tiny greyscale CNN trained in seconds on scikit-learn's digits.
- `custom_layer_learner`: a small network with a layer the ONNX exporter can't export.
"""

import textwrap
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from compiler.learner import read_learner
from tests.conftest import MODEL

# The default model's normalisation (scripts/build_default_model.py).
MEAN, STD = [127 / 255] * 3, [128 / 255] * 3


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
    from fastai.vision.all import (
        CategoryBlock,
        CrossEntropyLossFlat,
        DataBlock,
        ImageBlock,
        ItemGetter,
        Learner,
    )

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


def default_network_learner(folder: Path, item_tfms: list, batch_tfms: list | None = None) -> Path:
    """The default network behind `item_tfms`, exported to folder/export.pkl."""
    from fastai.vision.all import Normalize

    reference = read_learner(MODEL)
    normalize = Normalize.from_stats(MEAN, STD)
    return _export(
        folder,
        "export.pkl",
        reference.model,
        list(reference.dls.vocab),
        item_tfms,
        [*(batch_tfms or []), normalize],
    )


def digit_image(pixels: np.ndarray) -> Image.Image:
    """An 8x8 digit (values 0-16) as a 28x28 black-on-white greyscale picture."""
    grey = (255 - pixels.reshape(8, 8) * 15).clip(0, 255).astype(np.uint8)
    return Image.fromarray(grey, "L").resize((28, 28), Image.NEAREST)


def train_digits(root: Path) -> Path:
    """fastai's SimpleCNN on PILImageBW digits, exported to root/digits.pkl."""
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learn.fit_one_cycle(8, 1e-2)
    assert learn.validate()[1] > 0.8
    learn.export("digits.pkl")
    return root / "digits.pkl"


# A module of the user's, defining a layer built on torch.logaddexp, which the ONNX
# exporter has no form for. The second half is the README's fix: an ONNX form for the
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
