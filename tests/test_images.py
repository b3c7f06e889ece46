"""Image intake: every mode becomes the model's, upright, as fastai reads the file (the page's
copy of the photo as a viewer shows it); bad files get their own error."""

import io

import pytest
from PIL import Image

from app.errors import ApiError
from app.inference.images import decode_image, open_image, to_rgb
from app.intake.request import decode_base64
from tests.helpers import encode

pytestmark = pytest.mark.unit

LIMIT = 50_000_000


def test_greyscale_becomes_rgb() -> None:
    image = decode_image(encode(Image.new("L", (32, 32), 90), "PNG"), LIMIT)
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (90, 90, 90)


def _both(data: bytes, mode: str = "RGB") -> tuple[Image.Image, Image.Image]:
    """What the model sees, and what fastai's load_image gives, for the same bytes."""
    fastai = Image.open(io.BytesIO(data))
    fastai.load()
    return decode_image(data, LIMIT, mode), fastai.convert(mode)


def test_transparent_pixels_keep_their_colour_for_the_model_and_are_white_on_the_page() -> None:
    rgba = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    data = encode(rgba, "PNG")
    model, fastai = _both(data)
    assert model.mode == "RGB" and model.tobytes() == fastai.tobytes()
    assert model.getpixel((5, 5)) == (0, 0, 0) and model.getpixel((0, 0)) == (255, 0, 0)
    shown = to_rgb(open_image(data, LIMIT))
    assert shown.getpixel((5, 5)) == (255, 255, 255) and shown.getpixel((0, 0)) == (255, 0, 0)


def test_palette_with_transparency() -> None:
    palette = Image.new("P", (16, 16), 0)
    palette.putpalette([0, 0, 0, 0, 128, 0] + [0] * 762)
    palette.putpixel((1, 1), 1)
    data = encode(palette, "PNG", transparency=0)
    model, fastai = _both(data)
    assert model.tobytes() == fastai.tobytes() and model.getpixel((1, 1)) == (0, 128, 0)
    assert to_rgb(open_image(data, LIMIT)).getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_cmyk_jpeg(mode: str) -> None:
    data = encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG")
    model, fastai = _both(data, mode)
    assert model.mode == mode and model.tobytes() == fastai.tobytes()
    if mode == "RGB":
        red, green, blue = model.getpixel((8, 8))
        assert red > 200 and green < 60 and blue < 60


def test_sixteen_bit_is_clipped_as_fastai_reads_it_and_scaled_on_the_page() -> None:
    deep = Image.new("I;16", (8, 8), 32768)  # half of full scale
    data = encode(deep, "PNG")
    model, fastai = _both(data)
    assert model.tobytes() == fastai.tobytes() and model.getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb(open_image(data, LIMIT)).getpixel((0, 0)) == (128, 128, 128)


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert decode_image(data, LIMIT).getpixel((0, 0)) == (255, 0, 0)


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"", 400, "empty_file"),
        (b"hello, world", 415, "unsupported_media_type"),
        (b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", 415, "unsupported_media_type"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"/>', 415, "unsupported_media_type"),
    ],
)
def test_refused_bytes(data: bytes, status: int, code: str) -> None:
    with pytest.raises(ApiError) as caught:
        decode_image(data, LIMIT)
    assert (caught.value.status, caught.value.code) == (status, code)


def test_truncated_image(chelsea_jpeg: bytes) -> None:
    with pytest.raises(ApiError) as caught:
        decode_image(chelsea_jpeg[: len(chelsea_jpeg) // 2], LIMIT)
    assert (caught.value.status, caught.value.code) == (422, "corrupt_image")


def test_too_many_pixels_refused_before_decoding() -> None:
    # A 1-bit 12000x12000 PNG is a few kilobytes but claims 144 megapixels.
    bomb = encode(Image.new("1", (12000, 12000)), "PNG")
    assert len(bomb) < 100_000
    with pytest.raises(ApiError) as caught:
        decode_image(bomb, LIMIT)
    assert (caught.value.status, caught.value.code) == (413, "image_too_large")


def test_base64_with_and_without_data_url_prefix(coffee_png: bytes) -> None:
    import base64

    text = base64.b64encode(coffee_png).decode()
    assert decode_base64(text) == coffee_png
    assert decode_base64("data:image/png;base64," + text) == coffee_png
    with pytest.raises(ApiError) as caught:
        decode_base64("not base64 at all!")
    assert caught.value.code == "invalid_base64"
