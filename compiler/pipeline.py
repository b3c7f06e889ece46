"""Translating a learner's validation pipeline, exactly, or refusing.

Item transforms become steps that app/inference/preprocess.py runs with Pillow and
numpy; batch transforms become operations in the graph (compiler/export.py).
Each fastai transform is matched by its exact class: a subclass may behave
differently, so it is refused like any other step this module doesn't know.
Nothing is approximated. Training-only transforms (split_idx 0: lighting)
do nothing at validation, so they are left out; aug_transforms' affine
transforms (Flip, Rotate, Zoom, Warp) still resample at validation, with the
identity transform, and RandomResizedCropGPU (aug_transforms with min_scale < 1: the
book's presizing) still takes its centred crop and resamples it, so both are compiled.
"""

import math
from dataclasses import dataclass, field

from fastai.data.transforms import IntToFloatTensor, Normalize, ToTensor
from fastai.learner import Learner
from fastai.vision.augment import (
    AffineCoordTfm,
    CropPad,
    Dihedral,
    Flip,
    RandomCrop,
    RandomResizedCrop,
    RandomResizedCropGPU,
    Resize,
    Rotate,
    Warp,
    Zoom,
)
from fastai.vision.core import PILBase

from app.inference.preprocess import MODES, PAD_MODES, RESAMPLES, RESIZE_METHODS
from compiler.learner import CompileError

SUPPORTED = (
    "item transforms Resize (crop, pad or squish; zeros, border or reflection padding), "
    "RandomResizedCrop, CropPad, RandomCrop and ToTensor; batch transforms "
    "IntToFloatTensor, Normalize, RandomResizedCropGPU and aug_transforms' Flip, Dihedral, "
    "Rotate, Zoom and Warp; training-only augmentations are left out"
)
# At validation each of these applies the identity affine transform, resampled to `size`.
AFFINE = (AffineCoordTfm, Flip, Dihedral, Rotate, Zoom, Warp)
RESAMPLE_NAMES = {int(value): name for name, value in RESAMPLES.items()}


@dataclass
class Translation:
    """What the server's preprocessing and the graph's first layers must do."""

    image_type: type[PILBase]
    preprocessing: dict
    batch: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _refuse(step: object, why: str) -> CompileError:
    return CompileError(
        f"can't compile the validation step {type(step).__name__}: {why}. "
        f"Pounce compiles {SUPPORTED}. Nothing is approximated."
    )


def _size(size: tuple) -> list[int]:
    return [int(size[0]), int(size[1])]  # fastai keeps sizes as (width, height), like Pillow


def _resample(step: object, mode: object) -> str:
    if int(mode) not in RESAMPLE_NAMES:
        raise _refuse(step, f"resampling mode {mode!r} is not one Pillow names")
    return RESAMPLE_NAMES[int(mode)]


def _resize(size: list[int], method: str, pad_mode: str, resample: str) -> dict:
    return {
        "op": "resize",
        "size": size,
        "method": method,
        "pad_mode": pad_mode,
        "resample": resample,
    }


def _always(step: object) -> None:
    """A RandTransform that applies with p < 1 would be random at validation too."""
    if getattr(step, "p", 1.0) != 1.0:
        raise _refuse(step, f"it applies with probability p={step.p}, not always")


def item_steps(step: object) -> list[dict]:
    """One item transform as preprocessing steps (app/inference/preprocess.py), or CompileError."""
    kind = type(step)
    if kind is Resize:
        _always(step)
        if step.method not in RESIZE_METHODS or step.pad_mode not in PAD_MODES:
            raise _refuse(step, f"method {step.method!r} with pad mode {step.pad_mode!r}")
        resample = _resample(step, step.mode)
        return [_resize(_size(step.size), str(step.method), str(step.pad_mode), resample)]
    if kind is RandomResizedCrop:
        # At validation: the whole image squished to size + val_xtra, then a centre crop.
        _always(step)
        extra = math.ceil(max(*step.size[:2]) * step.val_xtra / 8) * 8
        final = [int(step.size[0]) + extra, int(step.size[1]) + extra]
        steps = [_resize(final, "squish", "zeros", _resample(step, step.mode))]
        if extra:
            steps.append({"op": "crop_pad", "size": _size(step.size), "pad_mode": "zeros"})
        return steps
    if kind is CropPad:
        if step.pad_mode not in PAD_MODES:
            raise _refuse(step, f"pad mode {step.pad_mode!r}")
        return [{"op": "crop_pad", "size": _size(step.size), "pad_mode": str(step.pad_mode)}]
    if kind is RandomCrop:  # at validation, a centred crop (or zero padding)
        _always(step)
        return [{"op": "crop_pad", "size": _size(step.size), "pad_mode": "zeros"}]
    raise _refuse(step, "it is not one of the item transforms this compiler knows")


# Item transforms of a target block that leave images as they are: PointBlock's and
# MaskBlock's (the answer's own mapping back to the photo is app/kinds/').
TARGETS_ONLY = ("PointScaler", "AddMaskCodes")


def _validation_steps(pipeline: object, skipped: list[str]) -> list:
    """The transforms that run on images at validation, in order; the others noted."""
    kept = []
    for step in pipeline.fs:
        if step.split_idx == 0 or type(step).__name__ in TARGETS_ONLY:
            skipped.append(type(step).__name__)
        else:
            kept.append(step)
    return kept


def translate(learn: Learner) -> Translation:
    """The learner's validation pipeline as preprocessing steps and graph tensors."""
    made = learn.dls.valid_ds.tls[0].types[-1]
    if not (isinstance(made, type) and issubclass(made, PILBase)):
        raise CompileError(f"the learner's inputs are {made!r}, not fastai images (PILImage)")
    mode = made._open_args.get("mode", "RGB")
    if mode not in MODES:
        raise CompileError(f"the learner's images are {made.__name__} in mode {mode!r}")
    valid = learn.dls.valid
    skipped: list[str] = []

    steps: list[dict] = []
    items = _validation_steps(valid.after_item, skipped)
    if not items or type(items[-1]) is not ToTensor:
        raise CompileError("the item pipeline does not end with ToTensor")
    for step in items[:-1]:
        steps += item_steps(step)
    for step in _validation_steps(valid.before_batch, skipped):
        raise _refuse(step, "it is a before_batch transform")

    batch = [batch_op(step) for step in _validation_steps(valid.after_batch, skipped)]
    if not batch or batch[0]["op"] != "divide":
        raise CompileError("the batch pipeline does not start with IntToFloatTensor")
    return Translation(
        image_type=made,
        preprocessing={"mode": mode, "size": steps[-1]["size"] if steps else None, "steps": steps},
        batch=batch,
        skipped=skipped,
    )


def batch_op(step: object) -> dict:
    """One batch transform as an operation of the graph (compiler/export.py)."""
    kind = type(step)
    if kind is IntToFloatTensor:
        return {"op": "divide", "by": float(step.div)}
    if kind is Normalize:
        return {"op": "normalize", "mean": step.mean.cpu().tolist(), "std": step.std.cpu().tolist()}
    if kind in AFFINE:
        size = step.size
        return {
            "op": "resample",
            "size_hw": None
            if size is None
            else list((size, size) if isinstance(size, int) else size),
            "mode": step.mode,
            "pad_mode": str(step.pad_mode),
            "align_corners": step.align_corners,
        }
    if kind is RandomResizedCropGPU:
        # At validation: a centred crop of the batch (its aspect ratio clamped to `ratio`,
        # scaled by valid_scale), resampled to `size` (compiler/export.py computes the crop).
        _always(step)
        if not 0 < step.valid_scale <= 1:
            raise _refuse(step, f"valid_scale={step.valid_scale} would crop beyond the image")
        return {
            "op": "crop_resample",
            "size_hw": list(step.size),
            "ratio": [float(r) for r in step.ratio],
            "valid_scale": float(step.valid_scale),
            "mode": step.mode,
        }
    raise _refuse(step, "it is not one of the batch transforms this compiler knows")
