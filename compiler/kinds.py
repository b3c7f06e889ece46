"""What a learner predicts, read from the learner itself: the kind the compiled file records.

Pounce compiles fastai's vision learners: image classifiers, single-label
(`CategoryBlock`: the top class is the answer) and multi-label (`MultiCategoryBlock`
trained with `BCEWithLogitsLossFlat`: every label past its threshold); image
regression (`RegressionBlock`: the values); keypoints (`PointBlock`: points, which
fastai's PointScaler gives in -1..1 of the model's input); and segmentation
(`MaskBlock`, `unet_learner`: a class per pixel). The kind is read from the target
pipeline's transforms, by exact class name, and from the loss function; anything
else is refused in one line that says what it is and what Pounce compiles. The rest of
what a kind means, fastai's decoding included (`from_fastai`, which compiling's parity
check holds the served one to), is its module in app/kinds/.
"""

from fastai.data.transforms import Categorize, ColReader, MultiCategorize
from fastai.learner import Learner
from fastai.losses import BCEWithLogitsLossFlat

from compiler.learner import CompileError

COMPILES = (
    "Pounce compiles fastai vision learners: classifiers (CategoryBlock, or "
    "MultiCategoryBlock with BCEWithLogitsLossFlat), image regression (RegressionBlock), "
    "keypoints (PointBlock) and segmentation (MaskBlock, unet_learner)"
)
# Learner classes that are not vision learners, by name: importing fastai.text or
# fastai.tabular to compare classes would only be needed to refuse them.
OTHER_LEARNERS = {
    "TabularLearner": "a tabular learner (TabularLearner)",
    "TextLearner": "a text learner (TextLearner)",
    "LMLearner": "a language model learner (LMLearner)",
    "CollabLearner": "a collaborative filtering learner",
}
REFUSED_TARGETS = {"BBoxLabeler": "an object detection learner (BBoxBlock)"}
# The target transform that marks each kind that is not a classifier, by class name.
TARGETS = {
    "AddMaskCodes": "segmentation",
    "PointScaler": "keypoints",
    "RegressionSetup": "regression",
}


def _target_steps(learn: Learner) -> list[object]:
    """The transforms of the target pipelines, and the item transforms (a block's item
    transforms, such as PointScaler and AddMaskCodes, join every item's)."""
    pipelines = list(getattr(learn.dls, "tfms", None) or [])
    steps = [step for pipeline in pipelines[1:] for step in getattr(pipeline, "fs", [])]
    return steps + list(getattr(getattr(learn.dls, "after_item", None), "fs", []))


def _refuse(what: str) -> CompileError:
    return CompileError(f"the export is {what}: {COMPILES}")


def _classifier(learn: Learner, steps: list[object]) -> dict:
    vocab = getattr(learn.dls, "vocab", None)
    if vocab is None or len(vocab) == 0 or isinstance(vocab[0], list | tuple):
        raise CompileError(f"the learner has no flat vocab of labels: {COMPILES}")
    labels = [str(label) for label in vocab]
    loss = learn.loss_func
    if type(loss) is BCEWithLogitsLossFlat:
        return {"kind": "multi-label", "labels": labels, "threshold": float(loss.thresh)}
    if any(isinstance(step, MultiCategorize) for step in steps):
        raise CompileError(
            f"a multi-label learner whose loss function is {type(loss).__name__}: Pounce "
            "compiles multi-label learners trained with BCEWithLogitsLossFlat (fastai's "
            "default for MultiCategoryBlock), whose threshold decides the labels"
        )
    return {"kind": "single-label", "labels": labels, "threshold": None}


def _names(steps: list[object]) -> list[str] | None:
    """A regression's value names, where its targets were read from named columns."""
    for step in steps:
        if type(step) is ColReader:
            cols = [step.cols] if isinstance(step.cols, str) else list(step.cols)
            if all(isinstance(col, str) for col in cols):
                return cols
    return None


def _points_survive(learn: Learner) -> None:
    """fastai runs CropPad and the random crops (order 0) on a keypoint learner's points
    before PointScaler (order 1) scales them, so it moves them wrongly; only Resize keeps
    them where the pictures are."""
    for step in learn.dls.valid.after_item.fs:
        if type(step).__name__ in ("CropPad", "RandomCrop", "RandomResizedCrop"):
            raise CompileError(
                f"a keypoint learner with {type(step).__name__} in its item transforms: fastai "
                "applies it to the points before PointScaler, so the points it learned don't "
                "follow the picture. Use Resize (crop, pad or squish) and export again"
            )


def task(learn: Learner) -> dict:
    """The kind and what answering needs (labels, a threshold, value names, classes);
    a one-line CompileError for a learner Pounce doesn't compile."""
    names = {cls.__name__ for cls in type(learn).__mro__}
    for name, what in OTHER_LEARNERS.items():
        if name in names:
            raise _refuse(what)
    steps = _target_steps(learn)
    found = {type(step).__name__: step for step in steps}
    for name, what in REFUSED_TARGETS.items():
        if name in found:
            raise _refuse(what)
    kind = next((kind for name, kind in TARGETS.items() if name in found), None)
    if kind == "segmentation":
        codes = getattr(found["AddMaskCodes"], "codes", None)
        return {"kind": kind, "classes": None if codes is None else [str(c) for c in codes]}
    if kind == "keypoints":
        _points_survive(learn)
        return {"kind": kind}
    if kind == "regression":
        return {"kind": kind, "names": _names(steps)}
    if not any(isinstance(step, Categorize) for step in steps):
        loss = type(learn.loss_func).__name__
        raise CompileError(
            f"the export's targets are not categories, values, points or masks (its loss "
            f"function is {loss}): {COMPILES}"
        )
    return _classifier(learn, steps)


def check_frame(kind: dict, translation: object, output: list[int]) -> None:
    """Points and masks are mapped back to the photo through the item transforms; the
    batch transforms must leave the model's frame as they found it: for points, no
    RandomResizedCropGPU (fastai crops points wrongly); for masks, the output at the
    item transforms' size."""
    if kind["kind"] == "keypoints" and any(op["op"] == "crop_resample" for op in translation.batch):
        raise CompileError(
            "a keypoint learner with RandomResizedCropGPU (aug_transforms' min_scale) in its "
            "batch transforms: fastai crops the points as if they were pixels. Use "
            "aug_transforms() with min_scale=1 and export again"
        )
    size = translation.preprocessing["size"]
    if kind["kind"] == "segmentation" and size is not None and output[1:] != size[::-1]:
        raise CompileError(
            f"a segmentation learner whose batch transforms resize its masks (the item "
            f"transforms give {size[0]}x{size[1]}, the network {output[2]}x{output[1]}): "
            "Pounce maps masks back through the item transforms; resize there instead"
        )
