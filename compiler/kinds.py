"""What a learner predicts, read from the learner itself: the kind the compiled file records.

Pounce compiles image classifiers: single-label (`CategoryBlock`: the top class is the
answer) and multi-label (`MultiCategoryBlock` trained with `BCEWithLogitsLossFlat`:
every label past its threshold). Anything else is refused in one line that says what
it is (the learner's class, its target block) and what Pounce compiles.
"""

from collections.abc import Callable, Hashable

import numpy as np
import torch
from fastai.data.transforms import Categorize, MultiCategorize
from fastai.learner import Learner
from fastai.losses import BCEWithLogitsLossFlat

from compiler.learner import CompileError

COMPILES = (
    "Pounce compiles image classifiers: single-label (CategoryBlock) and multi-label "
    "(MultiCategoryBlock with BCEWithLogitsLossFlat) vision learners"
)
# Learner classes that are not vision learners, by name: importing fastai.text or
# fastai.tabular to compare classes would only be needed to refuse them.
OTHER_LEARNERS = {
    "TabularLearner": "a tabular learner (TabularLearner)",
    "TextLearner": "a text learner (TextLearner)",
    "LMLearner": "a language model learner (LMLearner)",
    "CollabLearner": "a collaborative filtering learner",
}
# Target transforms of the vision learners that are not classifiers, by class name.
OTHER_TARGETS = {
    "RegressionSetup": "an image regression learner (RegressionBlock)",
    "PointScaler": "a keypoint learner (PointBlock)",
    "AddMaskCodes": "a segmentation learner (MaskBlock)",
    "BBoxLabeler": "an object detection learner (BBoxBlock)",
}


def _target_steps(learn: Learner) -> list[object]:
    """The transforms of every pipeline after the first (the inputs'): the targets'."""
    pipelines = list(getattr(learn.dls, "tfms", None) or [])
    return [step for pipeline in pipelines[1:] for step in getattr(pipeline, "fs", [])]


def refuse_other_kinds(learn: Learner) -> None:
    """CompileError, in one line, for a learner that is not an image classifier."""
    names = {cls.__name__ for cls in type(learn).__mro__}
    for name, what in OTHER_LEARNERS.items():
        if name in names:
            raise CompileError(f"the export is {what}: {COMPILES}")
    steps = _target_steps(learn)
    item_steps = list(getattr(getattr(learn.dls, "after_item", None), "fs", []))
    for step in steps + item_steps:  # a block's item transforms join every item's
        what = OTHER_TARGETS.get(type(step).__name__)
        if what is not None:
            raise CompileError(f"the export is {what}: {COMPILES}")
    if type(learn.model).__name__ == "DynamicUnet":
        raise CompileError(f"the export is a segmentation learner (unet_learner): {COMPILES}")
    if not any(isinstance(step, Categorize | MultiCategorize) for step in steps):
        loss = type(learn.loss_func).__name__
        raise CompileError(
            f"the export's targets are not categories (its loss function is {loss}): {COMPILES}"
        )
    vocab = getattr(learn.dls, "vocab", None)
    if vocab is None or len(vocab) == 0 or isinstance(vocab[0], list | tuple):
        raise CompileError(f"the learner has no flat vocab of labels: {COMPILES}")


def task(learn: Learner) -> dict:
    """What `learn.predict` decodes: the top class (single-label), or every label whose
    probability passes the loss function's threshold (multi-label, as fastai's
    BCEWithLogitsLossFlat decodes: sigmoid, then `> thresh`)."""
    refuse_other_kinds(learn)
    loss = learn.loss_func
    if type(loss) is BCEWithLogitsLossFlat:
        return {"kind": "multi-label", "threshold": float(loss.thresh)}
    if any(isinstance(step, MultiCategorize) for step in _target_steps(learn)):
        raise CompileError(
            f"a multi-label learner whose loss function is {type(loss).__name__}: Pounce "
            "compiles multi-label learners trained with BCEWithLogitsLossFlat (fastai's "
            "default for MultiCategoryBlock), whose threshold decides the labels"
        )
    return {"kind": "single-label", "threshold": None}


# What learn.predict decoded, in the form the served kind decides it (app/kinds/): the
# indices of the labels it gives. A multi-label learner's come from fastai's own
# decoding (its loss function's threshold); a single-label one's are its top class.
DECISIONS: dict[str, Callable[[torch.Tensor, np.ndarray], Hashable]] = {
    "single-label": lambda decoded, output: frozenset({int(output.argmax())}),
    "multi-label": lambda decoded, output: frozenset(
        int(i) for i in np.flatnonzero(decoded.numpy())
    ),
}


def fastai_decision(kind: str, decoded: torch.Tensor, output: np.ndarray) -> Hashable:
    return DECISIONS[kind](decoded, output)
