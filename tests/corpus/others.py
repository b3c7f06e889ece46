"""Learners of the corpus that are not image classifiers: the book's other vision
learners (regression, keypoints, segmentation), learners that are not vision learners
(tabular, text), and a classifier whose network class is defined in the notebook."""

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from fastai.tabular.all import Categorify, TabularDataLoaders, tabular_learner
from fastai.tabular.all import Normalize as TabularNormalize
from fastai.text.all import AWD_LSTM, TextDataLoaders, text_classifier_learner
from fastai.vision.all import (
    CategoryBlock,
    ColReader,
    CrossEntropyLossFlat,
    DataBlock,
    ImageBlock,
    Learner,
    MSELossFlat,
    Normalize,
    PointBlock,
    RandomSplitter,
    RegressionBlock,
    Resize,
    SegmentationDataLoaders,
    aug_transforms,
    get_image_files,
    imagenet_stats,
    resnet18,
    unet_learner,
    vision_learner,
)

import __main__ as notebook  # the build's "notebook": tests/corpus/__main__.py
from tests.corpus import SIZE, registrar, scene

OTHERS: dict[str, Callable[[Path], object]] = {}  # by name: how each is made
other = registrar(OTHERS)
CODES = ["background", "disc", "square"]


def drawn(root: Path, count: int = 32) -> list[Path]:
    """Scenes (tests/corpus: a disc and a small square each), named by what the learners
    below learn from them: index, brightness (0-1), the disc's centre and the square's,
    in pixels; each one's mask beside it in masks/."""
    rng = random.Random(0)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    made = []
    for index in range(count):
        image, mask, facts = scene(SIZE, rng)
        centres = "_".join(f"{v:.1f}" for v in (*facts["disc"], *facts["square"]))
        path = root / f"{index}_{facts['level']:.3f}_{centres}.png"
        image.save(path)
        mask.save(root / "masks" / path.name)
        made.append(path)
    return made


def _dls(root: Path, target: object, get_y: object, item_tfms: object, batch_tfms=None):
    return DataBlock(
        blocks=(ImageBlock, target),
        get_items=get_image_files,
        get_y=get_y,
        splitter=RandomSplitter(seed=42),
        item_tfms=item_tfms,
        batch_tfms=batch_tfms,
    ).dataloaders(root, bs=8, num_workers=0)


@other(
    "fastbook ch. 6 (biwi)",
    "DataBlock, RegressionBlock(n_out=2), ColReader",
    "Resize(64)",
    "",
    "resnet18",
)
def regression(root: Path) -> object:
    """Two named values a picture (its brightness, the disc's x), read from a DataFrame."""
    files = drawn(root)
    frame = pd.DataFrame(
        {
            "fname": [str(f) for f in files],
            "brightness": [notebook.brightness_of(f) for f in files],
            "disc_x": [float(f.stem.split("_")[2]) / SIZE[0] for f in files],
        }
    )
    dls = DataBlock(
        blocks=(ImageBlock, RegressionBlock(n_out=2)),
        get_x=ColReader("fname"),
        get_y=ColReader(["brightness", "disc_x"]),
        splitter=RandomSplitter(seed=42),
        item_tfms=Resize(64),
    ).dataloaders(frame, bs=8, num_workers=0)
    return vision_learner(dls, resnet18, pretrained=False, loss_func=MSELossFlat(), y_range=(0, 1))


@other(
    "fastbook ch. 6 (biwi)",
    "DataBlock, PointBlock: two points a picture",
    "Resize(64)",
    "[*aug_transforms(size=(48, 64)), Normalize.from_stats(*imagenet_stats)]",
    "resnet18",
)
def keypoints(root: Path) -> object:
    """The book's head-pose pipeline, at small sizes: a crop Resize, then aug_transforms
    resampling to (height, width) and explicit ImageNet statistics."""
    drawn(root)
    batch = [*aug_transforms(size=(48, 64)), Normalize.from_stats(*imagenet_stats)]
    dls = _dls(root, PointBlock, notebook.centres_of, Resize(64), batch)
    return vision_learner(dls, resnet18, pretrained=False, y_range=(-1, 1))


@other(
    "fastbook ch. 6 (biwi)",
    "DataBlock, PointBlock: two points a picture",
    "",
    "[*aug_transforms(size=(48, 64)), Normalize.from_stats(*imagenet_stats)]",
    "resnet18",
)
def keypoints_book(root: Path) -> object:
    """The book's head-pose pipeline as the book writes it: no item transforms, so each
    picture is resampled from its own size by the batch transforms, at validation too."""
    drawn(root)
    batch = [*aug_transforms(size=(48, 64)), Normalize.from_stats(*imagenet_stats)]
    dls = _dls(root, PointBlock, notebook.centres_of, None, batch)
    return vision_learner(dls, resnet18, pretrained=False, y_range=(-1, 1))


@other(
    "fastbook ch. 6 (biwi)",
    "DataBlock, PointBlock: two points a picture",
    "Resize(64, method='pad', pad_mode='zeros')",
    "",
    "resnet18",
)
def keypoints_padded(root: Path) -> object:
    drawn(root)
    dls = _dls(root, PointBlock, notebook.centres_of, Resize(64, method="pad", pad_mode="zeros"))
    return vision_learner(dls, resnet18, pretrained=False, y_range=(-1, 1))


@other(
    "fastbook ch. 1 (CamVid)",
    "SegmentationDataLoaders.from_label_func, codes",
    "Resize(64)",
    "",
    "unet_learner(resnet18)",
)
def segmentation(root: Path) -> object:
    files = drawn(root)
    dls = SegmentationDataLoaders.from_label_func(
        root, files, label_func=notebook.mask_of, codes=CODES, item_tfms=Resize(64), bs=8
    )
    return unet_learner(dls, resnet18, pretrained=False)


@other("fastbook ch. 9", "TabularDataLoaders.from_df", "", "", "tabular_learner")
def tabular(root: Path) -> object:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "colour": rng.choice(["red", "blue"], 40),
            "size": rng.random(40),
            "y": rng.choice(["a", "b"], 40),
        }
    )
    dls = TabularDataLoaders.from_df(
        frame,
        root,
        procs=[Categorify, TabularNormalize],
        cat_names=["colour"],
        cont_names=["size"],
        y_names="y",
        bs=8,
    )
    return tabular_learner(dls)


@other("fastbook ch. 10", "TextDataLoaders.from_df", "", "", "AWD_LSTM")
def text(root: Path) -> object:
    words = ["good film", "bad film", "a good day", "a bad day"] * 8
    frame = pd.DataFrame({"text": words, "label": [w.split()[-2] for w in words]})
    dls = TextDataLoaders.from_df(frame, root, text_col="text", label_col="label", bs=8, seq_len=8)
    return text_classifier_learner(dls, AWD_LSTM, pretrained=False)


@other("a notebook", "DataBlock", "Resize(64)", "", "a network class defined in the notebook")
def network_from_the_notebook(root: Path) -> object:
    drawn(root)
    dls = _dls(root, CategoryBlock, notebook.bright_or_dark, Resize(64))
    return Learner(dls, notebook.NotebookNet(), loss_func=CrossEntropyLossFlat())
