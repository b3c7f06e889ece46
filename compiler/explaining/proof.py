"""The proof that a compiled file's maps are Recipro-CAM's on the learner, and INT8's record.

On every parity file, the map the server computes from the compiled graph
(app/inference/explanation.py) is held to Recipro-CAM computed with torch on the learner
itself (split.py's reference: its own network, its pooling's input replaced by each
masked map, on the image as fastai loads it): the scores within TOLERANCE, and the
normalised map within half a level of the served heatmap's 8 bits (NORMALISED), where
float32's rounding, divided by a map's small range, could move it more than TOLERANCE.
"""

import numpy as np
import torch
from fastai.learner import Learner

from app.inference.explanation import METHOD, normalised
from app.inference.images import ANY_SIZE
from app.inference.model import Model
from app.kinds import Kind, kind_of
from compiler.explaining.split import Split, find_split, recipro_cam_scores
from compiler.learner import CompileError
from compiler.parity import TOLERANCE, parity_files
from compiler.pipeline import Translation

NORMALISED = 0.5 / 255


def split_of(learn: Learner, kind: Kind, example: torch.Tensor, sized: bool) -> Split | str:
    """Where the network splits, or one line saying why its answers can't be explained;
    `sized`: whether the network takes every photo at one size."""
    if not kind.explains:
        return f"a {kind.name} model's answer is already a place in the photo"
    if not sized:  # its map's cells, and the head's rows, would grow with the photo
        return "it takes each photo at its own size, so its map grows with the photo"
    return find_split(learn.model, example)


def _scores(
    model: Model, output: np.ndarray, cells: np.ndarray, index: int | None = None
) -> tuple[int, np.ndarray]:
    """The target (the kind's default for this image, unless `index`) and its scores
    [rows, columns], from one image's output and cells as the compiled graph gives them."""
    target = kind_of(model.info).explain_target(output, {})[0] if index is None else index
    return target, cells[..., target]


def served_map(model: Model, data: bytes, index: int | None = None) -> tuple[int, np.ndarray]:
    """`_scores` for an image file, decoded and run as the server does."""
    output, cells = model.explain([model.preprocess(model.decode(data, ANY_SIZE))])
    return _scores(model, output[0], cells[0], index)


def check_explanation(
    learn: Learner,
    translation: Translation,
    model: Model,
    split: Split,
    served_cells: dict[str, tuple[np.ndarray, np.ndarray]],
) -> dict[str, object]:
    """The explanation's record for the compiled `model`, whose output and cell scores on
    each parity file check_parity kept in `served_cells`; CompileError when its maps don't
    match torch's Recipro-CAM on the learner."""
    activation = getattr(learn.loss_func, "activation", None) or (lambda x: x.softmax(-1))
    raw, normal, worst = 0.0, 0.0, ""
    for probe in parity_files():
        target, served = _scores(model, *served_cells[probe.name])
        image = translation.image_type.create(probe.reference)
        batch = learn.dls.test_dl([image], num_workers=0).one_batch()[0]
        expected = recipro_cam_scores(learn.model, split, batch, target, activation)
        diff = float(np.abs(served - expected).max())
        normal_diff = float(np.abs(normalised(served) - normalised(expected)).max())
        if diff / TOLERANCE + normal_diff / NORMALISED > raw / TOLERANCE + normal / NORMALISED:
            worst = probe.name
        raw, normal = max(raw, diff), max(normal, normal_diff)
    if raw > TOLERANCE or normal > NORMALISED:
        raise CompileError(
            f"its maps don't match Recipro-CAM computed with torch on the learner (largest "
            f"difference {raw:.2g} in the scores, tolerance {TOLERANCE:g}; {normal:.2g} in the "
            f"normalised map, tolerance {NORMALISED:.2g}; on {worst!r})"
        )
    return {
        "method": METHOD,
        "split": {
            "module": split.name,
            "pooling": type(split.pool).__name__,
            "channels": split.channels,
            "cells": [split.height, split.width],
        },
        "mask": "one cell kept (the authors' code's default)",
        "score": "the served activation's (probabilities, or the values)",
        "parity": {
            "images": len(parity_files()),
            "tolerance": TOLERANCE,
            "tolerance_normalised": NORMALISED,
            "max_abs_diff": raw,
            "max_abs_diff_normalised": normal,
            "worst_image": worst,
            "reference": "Recipro-CAM with torch on the learner's own network",
        },
        "int8": None,
    }


def int8_agreement(fp32: Model, int8: Model, files: list) -> dict[str, object]:
    """How closely the INT8 file's maps follow the fp32 file's on held-out photos, each
    for fp32's target: how often the peak cell is the same, and the largest difference
    between the normalised maps."""
    same, worst = 0, 0.0
    for file in files:
        data = file.read_bytes()
        target, theirs = served_map(fp32, data)
        _, ours = served_map(int8, data, target)
        same += int(np.argmax(ours) == np.argmax(theirs))
        worst = max(worst, float(np.abs(normalised(ours) - normalised(theirs)).max()))
    return {"images": len(files), "same_peak": same, "max_abs_diff_normalised": worst}
