"""Image intake: every mode becomes upright 8-bit RGB; bad files get their own error."""

import pytest
from PIL import Image

from app.errors import ApiError
from app.inference.images import decode_image
from app.intake.request import decode_base64
from tests.helpers import encode

pytestmark = pytest.mark.unit

LIMIT = 50_000_000


def test_greyscale_becomes_rgb() -> None:
    image = decode_image(encode(Image.new("L", (32, 32), 90), "PNG"), LIMIT)
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (90, 90, 90)


def test_transparent_pixels_become_white() -> None:
    rgba = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    image = decode_image(encode(rgba, "PNG"), LIMIT)
    assert image.mode == "RGB"
    assert image.getpixel((5, 5)) == (255, 255, 255)
    assert image.getpixel((0, 0)) == (255, 0, 0)


def test_palette_with_transparency() -> None:
    palette = Image.new("P", (16, 16), 0)
    palette.putpalette([0, 0, 0, 0, 128, 0] + [0] * 762)
    palette.putpixel((1, 1), 1)
    image = decode_image(encode(palette, "PNG", transparency=0), LIMIT)
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.getpixel((1, 1)) == (0, 128, 0)


def test_cmyk_jpeg() -> None:
    image = decode_image(encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG"), LIMIT)
    red, green, blue = image.getpixel((8, 8))
    assert image.mode == "RGB" and red > 200 and green < 60 and blue < 60


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    deep = Image.new("I;16", (8, 8), 32768)  # half of full scale
    image = decode_image(encode(deep, "PNG"), LIMIT)
    assert image.getpixel((0, 0)) == (128, 128, 128)


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
