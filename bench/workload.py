"""The images every server is measured with, derived from scikit-image's photos."""

import io

import skimage.data
from PIL import Image


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def images() -> dict[str, bytes]:
    """A small JPEG (224 px), a ~2 MP photo and a 12 MP phone-size photo."""
    cat = Image.fromarray(skimage.data.chelsea())
    coffee = Image.fromarray(skimage.data.coffee())
    astronaut = Image.fromarray(skimage.data.astronaut())
    return {
        "small": _jpeg(cat.resize((224, 149), Image.LANCZOS)),
        "2mp": _jpeg(coffee.resize((1728, 1152), Image.LANCZOS)),
        "12mp": _jpeg(astronaut.resize((4000, 3000), Image.BICUBIC)),
    }
