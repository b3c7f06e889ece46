"""Learners of the corpus that are not image classifiers: the book's other vision
learners (regression, keypoints, segmentation), learners that are not vision learners
(tabular, text), and a classifier whose network class is defined in the notebook."""

import random
from pathlib import Path

import numpy as np
import pandas as pd
from fastai.tabular.all import Categorify, TabularDataLoaders, tabular_learner
from fastai.tabular.all import Normalize as TabularNormalize
from fastai.text.all import AWD_LSTM, TextDataLoaders, text_classifier_learner
from fastai.vision.all import (
    CategoryBlock,
    CrossEntropyLossFlat,
    DataBlock,
    ImageBlock,
    Learner,
    MSELossFlat,
    PointBlock,
    RandomSplitter,
    RegressionBlock,
    Resize,
    SegmentationDataLoaders,
    get_image_files,
    resnet18,
    unet_learner,
    vision_learner,
)
from PIL import Image, ImageDraw

import __main__ as notebook  # the build's "notebook": tests/corpus/__main__.py
from tests.corpus import SIZE, Shape, place, registrar

OTHERS: dict[str, Shape] = {}
other = registrar(OTHERS)
CODES = ["background", "disc"]


def drawn(root: Path, count: int = 32) -> list[Path]:
    """Pictures of one disc each, named by what the learners below learn from them:
    index, brightness (0-1), centre x and y in pixels; a mask of it beside each."""
    rng = random.Random(0)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    made = []
    for index in range(count):
        x, y, side = place(SIZE, rng)
        level = rng.random()
        image = Image.new("RGB", SIZE, tuple(int(40 + level * 200) for _ in range(3)))
        ImageDraw.Draw(image).ellipse([x, y, x + side, y + side], fill=(200, 30, 30))
        path = root / f"{index}_{level:.3f}_{x + side / 2:.1f}_{y + side / 2:.1f}.png"
        image.save(path)
        mask = Image.new("L", SIZE, 0)
        ImageDraw.Draw(mask).ellipse([x, y, x + side, y + side], fill=1)
        mask.save(root / "masks" / path.name)
        made.append(path)
    return made


@other("fastbook ch. 6 (biwi)", "DataBlock, RegressionBlock", "Resize(64)", "", "resnet18")
def regression(root: Path) -> object:
    drawn(root)
    dls = DataBlock(
        blocks=(ImageBlock, RegressionBlock),
        get_items=get_image_files,
        get_y=notebook.brightness_of,
        splitter=RandomSplitter(seed=42),
        item_tfms=Resize(64),
    ).dataloaders(root, bs=8, num_workers=0)
    return vision_learner(dls, resnet18, pretrained=False, n_out=1, loss_func=MSELossFlat())


@other("fastbook ch. 6 (biwi)", "DataBlock, PointBlock", "Resize(64)", "", "resnet18")
def keypoints(root: Path) -> object:
    drawn(root)
    dls = DataBlock(
        blocks=(ImageBlock, PointBlock),
        get_items=get_image_files,
        get_y=notebook.centre_of,
        splitter=RandomSplitter(seed=42),
        item_tfms=Resize(64),
    ).dataloaders(root, bs=8, num_workers=0)
    return vision_learner(dls, resnet18, pretrained=False, y_range=(-1, 1))


@other(
    "fastbook ch. 1 (CamVid)",
    "SegmentationDataLoaders.from_label_func",
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
    dls = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_items=get_image_files,
        get_y=notebook.bright_or_dark,
        splitter=RandomSplitter(seed=42),
        item_tfms=Resize(64),
    ).dataloaders(root, bs=8, num_workers=0)
    return Learner(dls, notebook.NotebookNet(), loss_func=CrossEntropyLossFlat())
