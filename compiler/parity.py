"""Proving a compiled model matches `learn.predict`, on files.

The parity set is a folder of image files, made with Pillow from the repo's example
photos, so it is the same wherever the compiler runs (a container build included). Both
sides start from each file, and nothing decoded is shared: fastai opens it (the
learner's own image type, `PILImage.create`, as `learn.predict` on a file does) and
`learn.predict` answers; the server's own path decodes the same bytes
(app/inference/images.py), preprocesses them, runs the compiled graph in ONNX Runtime
and decides as the model's kind does. Every output must agree to TOLERANCE and the
decoded answers must agree as the kind compares them (app/kinds/: the top class; a
multi-label learner's labels past its threshold; a segmentation mask on 99.9% of its
pixels; regression values and points are the numbers themselves), or compiling fails.

The set: the photos as they are; phone-size JPEGs (2 MP and 12 MP, baseline and
progressive, 4:2:0 and 4:4:4 chroma); odd sizes, extreme aspect ratios, tiny images;
greyscale, palette, CMYK, 16-bit and transparent images; a sideways phone photo with
its EXIF orientation. That one is the deliberate difference: the server answers for the
photo upright, as people see it, where fastai ignores the orientation, so its reference
is `learn.predict` on the upright image (the photo's own pixels turned, saved losslessly).
"""

import io
import tempfile
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
from fastai.learner import Learner
from PIL import Image, ImageOps

from app.inference.images import ANY_SIZE
from app.inference.model import Model
from app.kinds import Kind, kind_of
from app.settings import EXAMPLES_DIR as EXAMPLES
from compiler.learner import CompileError
from compiler.pipeline import Translation

TOLERANCE = 1e-4
PHONE_2MP, PHONE_12MP = (1632, 1224), (4000, 3000)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def phone_photo(photo: Image.Image, size: tuple[int, int], seed: int) -> Image.Image:
    """A phone-size photo: the example enlarged, with a sensor's grain, so its JPEG has
    the fine detail a phone's does (an enlarged photo alone is too smooth to test)."""
    big = np.asarray(photo.resize(size, Image.BICUBIC), dtype=np.int16)
    grain = np.random.default_rng(seed).integers(-6, 7, big.shape, dtype=np.int16)
    return Image.fromarray(np.clip(big + grain, 0, 255).astype(np.uint8))


@dataclass(frozen=True)
class Probe:
    name: str
    file: Path  # what the server is given
    reference: Path  # what learn.predict is given: the same file, but for EXIF rotation


@cache
def parity_files() -> tuple[Probe, ...]:
    """The parity set, written once a process into a folder that lasts as long as it."""
    folder = Path(_folder().name)
    probes = []
    for index, (name, data, upright) in enumerate(_made()):
        path = folder / f"{index:02d}"
        path.write_bytes(data)
        reference = path
        if upright:
            reference = folder / f"{index:02d}-upright.png"
            with Image.open(path) as image:
                ImageOps.exif_transpose(image).save(reference, "PNG")
        probes.append(Probe(name, path, reference))
    return tuple(probes)


@cache
def _folder() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="pounce-parity-")


def _made() -> Iterator[tuple[str, bytes, bool]]:
    """(name, encoded file, whether its reference is the file turned upright)."""
    photos = {path.stem: Image.open(path).convert("RGB") for path in sorted(EXAMPLES.glob("*.jpg"))}
    for path in sorted(EXAMPLES.glob("*.jpg")):
        yield path.name, path.read_bytes(), False
    cat, coffee, rocket = photos["cat"], photos["coffee"], photos["rocket"]
    for size, photo, seed in ((PHONE_2MP, cat, 1), (PHONE_12MP, coffee, 2)):
        phone, mp = phone_photo(photo, size, seed), round(size[0] * size[1] / 1e6)
        yield f"{mp} MP baseline 4:2:0", encode(phone, "JPEG", quality=90, subsampling=2), False
        progressive = encode(phone, "JPEG", quality=90, subsampling=0, progressive=True)
        yield f"{mp} MP progressive 4:4:4", progressive, False
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    sideways = phone_photo(rocket, PHONE_2MP, 3).transpose(Image.Transpose.ROTATE_90)
    yield "EXIF-rotated phone photo", encode(sideways, "JPEG", quality=90, exif=exif), True
    yield "odd 517x333", encode(coffee.resize((517, 333), Image.BICUBIC), "PNG"), False
    yield "panorama 1200x90", encode(rocket.resize((1200, 90), Image.BICUBIC), "JPEG"), False
    yield "tower 60x700", encode(cat.resize((60, 700), Image.BICUBIC), "PNG"), False
    yield "tiny 1x1", encode(coffee.resize((1, 1), Image.BOX), "PNG"), False
    yield "tiny 3x2", encode(cat.resize((3, 2), Image.BOX), "PNG"), False
    yield "tiny 13x9", encode(rocket.resize((13, 9), Image.BOX), "PNG"), False
    yield "greyscale", encode(cat.convert("L"), "PNG"), False
    yield "palette", encode(coffee.quantize(64), "PNG"), False
    transparent = rocket.quantize(32)
    yield "palette with transparency", encode(transparent, "PNG", transparency=0), False
    yield "CMYK", encode(rocket.convert("CMYK"), "JPEG", quality=90), False
    deep = Image.fromarray(np.asarray(coffee.convert("L"), dtype="<u2") * 257)  # mode I;16
    yield "16-bit", encode(deep, "PNG"), False
    rgba = cat.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(cat.size))
    yield "transparent", encode(rgba, "PNG"), False


def _reference(
    learn: Learner, translation: Translation, file: Path, kind: Kind
) -> tuple[np.ndarray, Hashable]:
    """learn.predict's raw output on the file, which fastai opens itself, and what it
    decodes, as the kind compares them."""
    with learn.no_bar():
        _, decoded, probs = learn.predict(translation.image_type.create(file))
    if getattr(learn.loss_func, "activation", None) is None:
        probs = torch.softmax(probs, dim=-1)  # as the graph does (compiler/export.py)
    probs = probs.float().numpy()
    return probs, kind.from_fastai(decoded.cpu().numpy(), probs)


def check_parity(
    learn: Learner,
    translation: Translation,
    model: Model,
    cells: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict:
    """The parity figures for the compiled `model`; CompileError when they miss. With
    `cells`, for a model that explains, each probe's output and cell scores are kept in it
    by name (the explanation's proof reads them: one decode and one run a probe)."""
    results = []
    kind = kind_of(model.info)
    for probe in parity_files():
        try:
            expected, decoded = _reference(learn, translation, probe.reference, kind)
        except Exception as exc:  # noqa: BLE001 - whatever the learner's own code raises
            raise CompileError(
                f"learn.predict itself fails on the parity image {probe.name!r} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]}): the learner can't "
                "answer every photo people send; a Resize in its item transforms would"
            ) from None
        inputs = [model.preprocess(model.decode(probe.file.read_bytes(), ANY_SIZE))]
        if cells is not None and model.explains:
            outputs, scores = model.explain(inputs)  # the same output as infer's
            cells[probe.name] = (outputs[0], scores[0])
        else:
            outputs = model.infer(inputs)
        served = outputs[0]
        diff = float(np.abs(served - expected).max())
        same = kind.agrees(kind.decide(served), decoded)
        results.append((probe.name, diff, same))
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
