"""Proving a compiled model matches `learn.predict`, on a fixed set of images.

Both sides get the same decoded image: the server's own intake (app/inference/images.py:
allow-listed decoders, JPEG draft decoding, EXIF orientation, any mode to
8-bit RGB) converted to the learner's image mode. From there, one side runs
the server's preprocessing and the compiled graph in ONNX Runtime, the other
fastai's `learn.predict`. Every probability must agree to TOLERANCE and the
decoded answers must agree as the model's kind compares them (app/kinds/: the
top class; a multi-label learner's labels past its threshold; a segmentation
mask on 99.9% of its pixels; regression values and points are the numbers
themselves), or compiling fails.

The set is made with Pillow from the repo's example photos, so it is the same
wherever the compiler runs (a container build included): the photos as they
are, odd sizes and extreme aspect ratios, tiny images, greyscale, palette,
CMYK, 16-bit and transparent images, a sideways photo with its EXIF
orientation, and a 12 MP photo (draft-decoded, as the server does).
"""

import io
from collections.abc import Hashable, Iterator
from functools import cache

import numpy as np
import torch
from fastai.learner import Learner
from PIL import Image

from app.inference.images import ANY_SIZE, decode_image
from app.inference.model import Model
from app.kinds import kind_of
from app.settings import EXAMPLES_DIR as EXAMPLES
from compiler.kinds import fastai_decision
from compiler.learner import CompileError
from compiler.pipeline import Translation

TOLERANCE = 1e-4


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@cache
def parity_images() -> tuple[tuple[str, bytes], ...]:
    """(name, encoded file) pairs, the same on every run; made once a process."""
    return tuple(_made())


def _made() -> Iterator[tuple[str, bytes]]:
    photos = {path.stem: Image.open(path).convert("RGB") for path in sorted(EXAMPLES.glob("*.jpg"))}
    for path in sorted(EXAMPLES.glob("*.jpg")):
        yield path.name, path.read_bytes()
    cat, coffee, rocket = photos["cat"], photos["coffee"], photos["rocket"]
    yield "odd 517x333", _encode(coffee.resize((517, 333), Image.BICUBIC), "PNG")
    yield "panorama 1200x90", _encode(rocket.resize((1200, 90), Image.BICUBIC), "JPEG")
    yield "tower 60x700", _encode(cat.resize((60, 700), Image.BICUBIC), "PNG")
    yield "tiny 1x1", _encode(coffee.resize((1, 1), Image.BOX), "PNG")
    yield "tiny 3x2", _encode(cat.resize((3, 2), Image.BOX), "PNG")
    yield "tiny 13x9", _encode(rocket.resize((13, 9), Image.BOX), "PNG")
    yield "greyscale", _encode(cat.convert("L"), "PNG")
    yield "palette", _encode(coffee.quantize(64), "PNG")
    transparent = rocket.quantize(32)
    yield "palette with transparency", _encode(transparent, "PNG", transparency=0)
    yield "CMYK", _encode(rocket.convert("CMYK"), "JPEG", quality=90)
    deep = Image.fromarray(np.asarray(coffee.convert("L"), dtype="<u2") * 257)  # mode I;16
    yield "16-bit", _encode(deep, "PNG")
    rgba = cat.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(cat.size))
    yield "transparent", _encode(rgba, "PNG")
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    sideways = cat.transpose(Image.Transpose.ROTATE_90)
    yield "EXIF-rotated", _encode(sideways, "JPEG", quality=95, exif=exif)
    yield "12 MP", _encode(coffee.resize((4000, 3000), Image.BICUBIC), "JPEG", quality=90)


def _reference(
    learn: Learner, translation: Translation, image: Image.Image, kind: str
) -> tuple[np.ndarray, Hashable]:
    """learn.predict's raw output and what it decodes, as the kind compares them."""
    with learn.no_bar():
        _, decoded, probs = learn.predict(translation.image_type.create(image))
    if getattr(learn.loss_func, "activation", None) is None:
        probs = torch.softmax(probs, dim=-1)  # as the graph does (compiler/export.py)
    probs = probs.float().numpy()
    return probs, fastai_decision(kind, decoded, probs)


def check_parity(learn: Learner, translation: Translation, model: Model) -> dict:
    """The parity figures for the compiled `model`; CompileError when they miss."""
    results = []
    kind = kind_of(model.info)
    for name, data in parity_images():
        image = decode_image(data, ANY_SIZE, model.draft_size).convert(model.preprocessor.mode)
        served = model.infer([model.preprocess(image)])[0]
        expected, decoded = _reference(learn, translation, image, kind.name)
        diff = float(np.abs(served - expected).max())
        same = kind.agrees(kind.decide(served), decoded)
        results.append((name, diff, same))
    worst = max(results, key=lambda result: result[1])
    failed = [(n, d) for n, d, same in results if d > TOLERANCE or not same]
    if failed:
        listed = ", ".join(f"{name} (max difference {diff:.2g})" for name, diff in failed)
        raise CompileError(
            f"the compiled model does not match learn.predict to {TOLERANCE:g} with the same "
            f"labels on {len(failed)} of {len(results)} images: {listed}"
        )
    return {
        "images": len(results),
        "tolerance": TOLERANCE,
        "max_abs_diff": worst[1],
        "worst_image": worst[0],
        "same_labels": len(results),
        "set": [name for name, _, _ in results],
    }
