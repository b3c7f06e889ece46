"""The server's preprocessing (Pillow + numpy) against fastai's own item transforms.

Each transform is translated by the compiler and replayed by app/inference/preprocess.py;
the result must be the array fastai's validation pipeline makes, byte for byte,
for sizes that crop, pad, squish and round every way. (fastai, and the compiler that
imports it, are imported by the tests as they run: `fastai_vision`, tests/conftest.py.)
"""

import numpy as np
import pytest
from PIL import Image

from app.inference.preprocess import Preprocessor

# The phone photo's crop spans its full height: fastai pads it by zero pixels, which the
# server skips (app/inference/preprocess.py's crop_pad), proven here to change nothing.
SIZES = [(1, 1), (3, 2), (13, 9), (224, 224), (225, 223), (500, 20), (20, 500), (333, 517)]
SIZES += [(1632, 1224)]

# Each transform, made from `fastai.vision.all` (v) when a test runs.
TRANSFORMS = {
    "resize crop": lambda v: v.Resize(224),
    "resize crop, non-square": lambda v: v.Resize((160, 96)),
    "resize squish": lambda v: v.Resize(224, method="squish"),
    "resize pad reflection": lambda v: v.Resize(224, method="pad", pad_mode="reflection"),
    "resize pad zeros": lambda v: v.Resize(224, method="pad", pad_mode="zeros"),
    "resize pad border": lambda v: v.Resize((120, 200), method="pad", pad_mode="border"),
    "resize bicubic": lambda v: v.Resize(64, resamples=(Image.BICUBIC, Image.NEAREST)),
    "random resized crop": lambda v: v.RandomResizedCrop(192, min_scale=0.35),
    "random resized crop, no extra": lambda v: v.RandomResizedCrop(64, val_xtra=0),
    "crop pad zeros": lambda v: v.CropPad(150),
    "crop pad reflection": lambda v: v.CropPad((90, 170), pad_mode="reflection"),
    "random crop": lambda v: v.RandomCrop(100),
}


def photo(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """Noise with structure: any off-by-one in a crop or pad changes the result."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def fastai_array(v: object, transform: object, image: Image.Image, kind: str = "PILImage"):
    created = getattr(v, kind).create(image)
    tensor = v.Pipeline([transform, v.ToTensor()], split_idx=1)(created)
    return tensor.permute(1, 2, 0).numpy()


def description(transform: object, mode: str = "RGB") -> dict:
    """The preprocessing the compiler writes down for `transform`."""
    from compiler.pipeline import item_steps

    steps = item_steps(transform)
    return {"mode": mode, "size": steps[-1]["size"], "steps": steps}


def preprocessor(transform: object, mode: str = "RGB") -> Preprocessor:
    return Preprocessor(description(transform, mode))


@pytest.mark.parametrize("name", TRANSFORMS)
@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_same_array_as_fastai(fastai_vision, name: str, size: tuple[int, int]) -> None:
    transform = TRANSFORMS[name](fastai_vision)
    image = photo(size)
    ours = preprocessor(transform)(image)
    assert ours.dtype == np.uint8
    assert np.array_equal(ours, fastai_array(fastai_vision, transform, image))


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_greyscale_same_array_as_fastai(fastai_vision, size: tuple[int, int]) -> None:
    transform = fastai_vision.Resize(28, method="pad", pad_mode="reflection")
    image = photo(size).convert("L")
    ours = preprocessor(transform, mode="L")(image)
    assert ours.shape == (28, 28, 1)
    assert np.array_equal(ours, fastai_array(fastai_vision, transform, image, "PILImageBW"))


def test_padding_really_pads(fastai_vision) -> None:
    """A panorama in a square: zeros above and below, or the picture mirrored there."""
    wide = photo((400, 100))
    resize = fastai_vision.Resize
    zeros = preprocessor(resize(224, method="pad", pad_mode="zeros"))(wide)
    mirrored = preprocessor(resize(224, method="pad", pad_mode="reflection"))(wide)
    assert not zeros[:80].any() and zeros[100:120].any()
    assert mirrored[:80].any()


def test_rgb_images_become_the_model_mode(fastai_vision) -> None:
    grey_model = preprocessor(fastai_vision.Resize(8), mode="L")
    assert grey_model(photo((16, 16))).shape == (8, 8, 1)


@pytest.mark.parametrize(
    ("transform", "named"),
    [
        (lambda v: v.Resize(224, p=0.5), "Resize"),
        (lambda v: type("MyResize", (v.Resize,), {})(224), "MyResize"),
        (lambda v: v.RatioResize(224), "RatioResize"),
    ],
)
def test_steps_it_cannot_translate_are_refused_by_name(fastai_vision, transform, named) -> None:
    from compiler.learner import CompileError
    from compiler.pipeline import item_steps

    with pytest.raises(CompileError, match=f"validation step {named}:"):
        item_steps(transform(fastai_vision))


FRAME_SIZES = [(640, 480), (300, 100), (100, 180), (225, 223), (37, 91)]
# What a keypoint learner may resize with: fastai runs CropPad and the random crops
# (order 0) on points before PointScaler scales them, so it mangles them; compiling
# refuses those (compiler/kinds.py).
FOR_POINTS = [name for name in TRANSFORMS if name.startswith("resize")]


@pytest.mark.parametrize("name", FOR_POINTS)
@pytest.mark.parametrize("size", FRAME_SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_the_frame_maps_points_back_as_fastai_maps_them_forward(
    fastai_vision, name: str, size: tuple[int, int]
) -> None:
    """Points go through fastai's validation pipeline (PointScaler, then the transform) to
    the model's -1..1; the frame takes them back to the photo they came from. (Points
    cropped out of the model's view come back too: the mapping is the same line.)"""
    v = fastai_vision
    transform = TRANSFORMS[name](v)
    points = np.array([[0.0, 0.0], [size[0], size[1]], [size[0] * 0.3, size[1] * 0.8]])
    pipeline = v.Pipeline([v.PointScaler(), transform], split_idx=1)
    start = v.TensorPoint.create(points.copy(), img_size=size)
    image, scaled = pipeline((v.PILImage.create(photo(size)), start))
    ours = preprocessor(transform)
    model = (scaled.numpy().reshape(-1, 2) + 1) / 2 * np.array(image.size)
    frame = ours.frame(size)
    assert frame.size == image.size
    back = np.stack(frame.to_photo(model[:, 0], model[:, 1]), axis=1)
    assert np.abs(back - points).max() < 1e-3, (back, points)


MASK_TRANSFORMS = ["resize crop", "resize crop, non-square", "resize squish", "resize pad zeros"]


@pytest.mark.parametrize("name", MASK_TRANSFORMS)
@pytest.mark.parametrize(
    "size", [(300, 100), (100, 180), (333, 517)], ids=lambda s: f"{s[0]}x{s[1]}"
)
def test_a_mask_maps_back_as_fastai_maps_it_forward(
    fastai_vision, name: str, size: tuple[int, int]
) -> None:
    """A photo's mask through fastai's validation Resize (nearest) to the model's frame,
    then back to the photo through the segmentation kind's mapping: the same classes,
    wherever the model saw the photo, but along the edges the two resamplings round."""
    from app.kinds import Prediction, kind_of

    transform = TRANSFORMS[name](fastai_vision)
    rng = np.random.default_rng(1)
    blocks = rng.integers(0, 3, (size[1] // 40 + 1, size[0] // 40 + 1), dtype=np.uint8)
    truth = np.kron(blocks, np.ones((40, 40), dtype=np.uint8))[: size[1], : size[0]]
    mask = fastai_vision.PILMask.create(Image.fromarray(truth))
    model = np.asarray(transform(mask, split_idx=1))
    ours = preprocessor(transform)
    info = {"kind": "segmentation", "classes": ["a", "b", "c"], "output": {"shape": [3]}}
    kind = kind_of(info | {"preprocessing": description(transform)}, {"max_mask_pixels": 1e9})
    onehot = np.stack([model == c for c in range(3)]).astype(np.float32)
    back = kind.mask(Prediction(onehot, size, size))
    frame = ours.frame(size)
    x, y = frame.to_model(np.arange(size[0]) + 0.5, np.arange(size[1]) + 0.5)
    seen = np.outer((y >= 0) & (y < frame.size[1]), (x >= 0) & (x < frame.size[0]))
    agreement = float(np.mean(back[seen] == truth[seen]))
    assert back.shape == truth.shape and agreement >= 0.95, agreement


def test_a_big_photos_mask_is_scaled_down_to_the_cap(fastai_vision) -> None:
    """A 12 MP photo's mask is at most MAX_MASK_MEGAPIXELS, in the photo's aspect ratio."""
    from app.kinds import Prediction, kind_of

    steps = description(fastai_vision.Resize(64))["steps"]
    info = {
        "kind": "segmentation",
        "classes": None,
        "output": {"shape": [2, 64, 64]},
        "preprocessing": {"mode": "RGB", "size": [64, 64], "steps": steps},
    }
    kind = kind_of(info, {"max_mask_pixels": 4e6})
    output = np.random.default_rng(0).random((2, 64, 64)).astype(np.float32)
    answer = kind.answer(Prediction(output, (4000, 3000), (1000, 750)), {"mask": True})
    width, height = answer["mask_size"]["width"], answer["mask_size"]["height"]
    assert width * height <= 4e6 and abs(width / height - 4 / 3) < 0.01
    assert answer["classes"] == ["0", "1"] and answer["image"] == {"width": 4000, "height": 3000}
