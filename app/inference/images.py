"""Decoding: untrusted bytes in, an upright Pillow image out, as fastai reads a file.

Only the formats below are decoded (Pillow is told so, and no other decoder
runs), the pixel count is checked from the header before anything is decoded,
and every failure is an `ApiError` with its own code.
"""

import io

from pi_heif import register_heif_opener
from PIL import Image, ImageOps, UnidentifiedImageError

from app.errors import ApiError

register_heif_opener()  # HEIC/HEIF, what phones send: pi-heif, libheif's decoder only
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF")
# The file names of those formats, as Pillow (and pi-heif) register them: folder walks
# (`python -m app predict DIR`, compile --int8's photos) take exactly what decodes.
SUFFIXES = frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in FORMATS)
FORMAT_NAMES = "JPEG, PNG, WebP, GIF, BMP, TIFF or HEIC"
ORIENTATION, TURNED = 0x0112, (5, 6, 7, 8)  # EXIF orientations that swap width and height
# For images that are not uploads (compiling's parity and calibration photos): no limit.
ANY_SIZE = 10**9

# Pillow refuses canvases over twice its own limit while reading the header; our
# configurable cap is checked right after, before any pixel is decoded.
Image.MAX_IMAGE_PIXELS = None


def open_image(data: bytes, max_pixels: int, draft_size: int | None = None) -> Image.Image:
    """Decode and check an uploaded image, upright, in its own mode.

    Decoded at full size by Pillow, as fastai's `PILImage.create` decodes a file. The one
    deliberate difference: the photo is turned upright by its EXIF orientation, as people
    see it (fastai ignores the orientation). With `draft_size`, which only a model compiled
    with --fast-decode asks for (compiler/decoding.py measures what it costs), a JPEG much
    larger than that is decoded at 1/2, 1/4 or 1/8 scale (JPEG's own DCT scaling), never
    below `draft_size` on its shorter side. The upright photo's own size stays in the
    image's info as "photo_size": answers given in the photo's frame (points, masks) are
    mapped to it.
    """
    if not data:
        raise ApiError("empty_file", "The file is empty.")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise ApiError(
            "unsupported_media_type",
            f"This is not an image we can read ({FORMAT_NAMES}).",
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ApiError("corrupt_image", f"The image could not be read: {exc}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ApiError(
            "image_too_large",
            f"The image is {width}x{height} pixels; the limit is {max_pixels / 1e6:g} megapixels.",
        )
    if draft_size and image.format == "JPEG":
        image.draft(None, (draft_size, draft_size))
    try:
        image.load()
        turned = image.getexif().get(ORIENTATION, 1) in TURNED
        ImageOps.exif_transpose(image, in_place=True)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ApiError("corrupt_image", f"The image is truncated or corrupt: {exc}") from None
    image.info["photo_size"] = (height, width) if turned else (width, height)
    return image


def decode_image(
    data: bytes, max_pixels: int, mode: str = "RGB", draft_size: int | None = None
) -> Image.Image:
    """An uploaded image as the model sees it: upright, then converted to the model's mode
    with Pillow's `convert`, as fastai's `load_image` does (a transparent pixel keeps the
    colour stored under it; 16 bits are clipped to 8), so the model answers as
    `learn.predict` does on the same file (compiler/parity.py proves it)."""
    image = open_image(data, max_pixels, draft_size)
    if image.mode == mode:
        return image
    converted = image.convert(mode)
    converted.info["photo_size"] = image.info["photo_size"]
    return converted


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB the way a viewer would show it (the page's
    copy of the photo, not the model's input).

    Transparent areas become white (not the black a bare convert leaves), and
    16-bit images are scaled down rather than clipped.
    """
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        image = image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
