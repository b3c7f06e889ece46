"""The server's preprocessing (Pillow + numpy) against fastai's own item transforms.

Each transform is translated by the compiler and replayed by app/inference/preprocess.py;
the result must be the array fastai's validation pipeline makes, byte for byte,
for sizes that crop, pad, squish and round every way.
"""

import numpy as np
import pytest
from fastai.data.transforms import ToTensor
from fastai.vision.augment import CropPad, RandomCrop, RandomResizedCrop, RatioResize, Resize
from fastai.vision.core import PILImage, PILImageBW
from fasttransform import Pipeline
from PIL import Image

from app.inference.preprocess import Preprocessor
from compiler.learner import CompileError
from compiler.pipeline import item_steps

pytestmark = pytest.mark.unit

SIZES = [(1, 1), (3, 2), (13, 9), (224, 224), (225, 223), (500, 20), (20, 500), (333, 517)]

TRANSFORMS = {
    "resize crop": Resize(224),
    "resize crop, non-square": Resize((160, 96)),
    "resize squish": Resize(224, method="squish"),
    "resize pad reflection": Resize(224, method="pad", pad_mode="reflection"),
    "resize pad zeros": Resize(224, method="pad", pad_mode="zeros"),
    "resize pad border": Resize((120, 200), method="pad", pad_mode="border"),
    "resize bicubic": Resize(64, resamples=(Image.BICUBIC, Image.NEAREST)),
    "random resized crop": RandomResizedCrop(192, min_scale=0.35),
    "random resized crop, no extra": RandomResizedCrop(64, val_xtra=0),
    "crop pad zeros": CropPad(150),
    "crop pad reflection": CropPad((90, 170), pad_mode="reflection"),
    "random crop": RandomCrop(100),
}


def photo(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """Noise with structure: any off-by-one in a crop or pad changes the result."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def fastai_array(transform: object, image: Image.Image, kind: type = PILImage) -> np.ndarray:
    tensor = Pipeline([transform, ToTensor()], split_idx=1)(kind.create(image))
    return tensor.permute(1, 2, 0).numpy()


def preprocessor(transform: object, mode: str = "RGB") -> Preprocessor:
    steps = item_steps(transform)
    return Preprocessor({"mode": mode, "size": steps[-1]["size"], "steps": steps})


@pytest.mark.parametrize("name", TRANSFORMS)
@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_same_array_as_fastai(name: str, size: tuple[int, int]) -> None:
    transform = TRANSFORMS[name]
    image = photo(size)
    ours = preprocessor(transform)(image)
    assert ours.dtype == np.uint8
    assert np.array_equal(ours, fastai_array(transform, image))


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_greyscale_same_array_as_fastai(size: tuple[int, int]) -> None:
    transform = Resize(28, method="pad", pad_mode="reflection")
    image = photo(size).convert("L")
    ours = preprocessor(transform, mode="L")(image)
    assert ours.shape == (28, 28, 1)
    assert np.array_equal(ours, fastai_array(transform, image, PILImageBW))


def test_padding_really_pads() -> None:
    """A panorama in a square: zeros above and below, or the picture mirrored there."""
    wide = photo((400, 100))
    zeros = preprocessor(Resize(224, method="pad", pad_mode="zeros"))(wide)
    mirrored = preprocessor(Resize(224, method="pad", pad_mode="reflection"))(wide)
    assert not zeros[:80].any() and zeros[100:120].any()
    assert mirrored[:80].any()


def test_rgb_images_become_the_model_mode() -> None:
    grey_model = preprocessor(Resize(8), mode="L")
    assert grey_model(photo((16, 16))).shape == (8, 8, 1)


@pytest.mark.parametrize(
    ("transform", "named"),
    [
        (Resize(224, p=0.5), "Resize"),
        (type("MyResize", (Resize,), {})(224), "MyResize"),
        (RatioResize(224), "RatioResize"),
    ],
)
def test_steps_it_cannot_translate_are_refused_by_name(transform: object, named: str) -> None:
    with pytest.raises(CompileError, match=f"validation step {named}:"):
        item_steps(transform)
